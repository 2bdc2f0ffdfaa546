// Logs are structured JSON with a session id and never carry secrets: no passwords (even the
// cleartext one a 'password' auth user sends through the proxy), no S3 secret keys, no query text.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createCopyHook } from "../../src/copy/hook.js";
import { createLogger } from "../../src/log.js";
import { type ProxyServer, startProxy } from "../../src/proxy/server.js";
import { S3Check } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";

const lines: string[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    lines.push(...chunk.toString().split("\n").filter(Boolean));
    cb();
  },
});
const SECRET = "s3cr3t-SECRET-value-9f8e7d";
let proxy: ProxyServer;
let port: number;

beforeAll(async () => {
  const s3Endpoint = inject("s3Endpoint");
  const dir = mkdtempSync(join(tmpdir(), "c2s-log-"));
  const cfg = join(dir, "c.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      connections: {
        default: {
          endpoint: s3Endpoint,
          region: "us-east-1",
          accessKeyId: "test",
          secretAccessKey: { env: "C2S_LOGTEST_SECRET" },
        },
      },
    }),
  );
  process.env.C2S_LOGTEST_SECRET = SECRET;
  const { config } = loadConfig(
    [
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      `127.0.0.1:${inject("pgPort")}`,
      "--upstream-tls",
      "disable",
      "--config",
      cfg,
    ],
    process.env,
  );
  // Debug, not info: even the chattiest level must not leak.
  const log = createLogger("debug", sink);
  proxy = await startProxy(config, log, await createCopyHook(config, log));
  port = proxy.address.port;
  await new S3Check({
    endpoint: s3Endpoint,
    region: "us-east-1",
    accessKeyId: "test",
    secretAccessKey: "x",
  }).bucket("logging");
});
afterAll(async () => {
  await proxy?.shutdown(0);
});

test("no password, secret key or query text reaches the logs; every line is JSON with a session id", async () => {
  for (const [user, password] of [
    ["pwuser", "pwpass"],
    ["md5user", "md5pass"],
    ["scramuser", "scrampass"],
  ]) {
    const c = new pg.Client({ host: "127.0.0.1", port, user, password, database: "postgres" });
    await c.connect();
    await c.query("SELECT 'needle-in-query-text' AS x");
    await c.query(
      `COPY (SELECT 'needle-in-export-query' AS y) TO 's3://logging/${user}' WITH (FORMAT = 'csv')`,
    );
    await expect(
      c.query(`COPY (SELECT 1) TO 's3://logging/${user}' WITH (FORMAT = 'csv')`),
    ).rejects.toThrow();
    await c.end();
  }
  const bad = new pg.Client({
    host: "127.0.0.1",
    port,
    user: "scramuser",
    password: "wrong-password-xyz",
    database: "postgres",
  });
  await expect(bad.connect()).rejects.toThrow();
  // A session logs its end before it leaves the set (session.ts, finish): all lines are in.
  await waitUntil("every session ended", () => proxy.sessions.size === 0);
  expect(lines.length).toBeGreaterThan(5);
  const all = lines.join("\n");
  for (const secret of [
    "pwpass",
    "md5pass",
    "scrampass",
    "wrong-password-xyz",
    SECRET,
    "needle-in-query-text",
    "needle-in-export-query",
  ]) {
    expect(all).not.toContain(secret);
  }
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const sessionLines = parsed.filter((p) => p.msg === "session started" || p.msg === "export complete");
  expect(sessionLines.length).toBeGreaterThanOrEqual(6);
  for (const p of sessionLines) expect(typeof p.session).toBe("number");
});
