// What an operator reads in the JSON log: every export's start and end, however it ends (complete
// and cancelled at info, failed at warn), and a session only once its login succeeded.
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
import { motoAccess, S3Check } from "../support/copy-proxy.js";
import { keyOf, sendCancel, waitUntil } from "../support/export-checks.js";

type Line = Record<string, unknown> & { level: number; msg: string };
const lines: Line[] = [];
const sink = new Writable({
  write(chunk: Buffer, _enc, cb) {
    for (const l of chunk.toString().split("\n")) if (l) lines.push(JSON.parse(l) as Line);
    cb();
  },
});
const INFO = 30;
const WARN = 40;
const BUCKET = "export-logging";
let proxy: ProxyServer;
let port: number;

beforeAll(async () => {
  const s3 = motoAccess();
  const dir = mkdtempSync(join(tmpdir(), "c2s-exlog-"));
  const cfg = join(dir, "c.json");
  writeFileSync(cfg, JSON.stringify({ connections: { default: { ...s3 } } }));
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
  const log = createLogger("info", sink);
  proxy = await startProxy(config, log, await createCopyHook(config, log));
  port = proxy.address.port;
  await new S3Check(s3).bucket(BUCKET);
});
afterAll(async () => {
  await proxy?.shutdown(0);
});

const client = async (user = "postgres", password?: string): Promise<pg.Client> => {
  const c = new pg.Client({ host: "127.0.0.1", port, user, password, database: "postgres" });
  await c.connect();
  return c;
};
const linesOf = (exportId: unknown): Line[] => lines.filter((l) => l.exportId === exportId);
const ended = (msg: string): Promise<Line> =>
  waitUntil(`a "${msg}" line`, () => lines.find((l) => l.msg === msg));

test("a completed export: start and end at info, with target, format, user and totals", async () => {
  const c = await client();
  await c.query(
    `COPY (SELECT g FROM generate_series(1, 1000) g) TO 's3://${BUCKET}/done' WITH (FORMAT = 'csv')`,
  );
  await c.end();
  const end = await ended("export complete");
  const [start] = linesOf(end.exportId);
  expect(start).toMatchObject({ msg: "export started", level: INFO, user: "postgres", format: "csv" });
  expect(end).toMatchObject({
    level: INFO,
    target: `s3://${BUCKET}/done`,
    format: "csv",
    user: "postgres",
    rows: 1000,
    files: 1,
  });
  expect(end.bytes).toBeGreaterThan(3000);
  expect(typeof end.ms).toBe("number");
  // The read phase's moments (bench/export.ts --proxy-log): first row, last row, within the phase.
  const read = (end.phaseMs as Record<string, number>).read!;
  const { firstRow, lastRow } = end.readMs as Record<string, number>;
  expect(firstRow).toBeGreaterThanOrEqual(0);
  expect(lastRow).toBeGreaterThanOrEqual(firstRow!);
  expect(lastRow).toBeLessThanOrEqual(read);
});

test("a failed export: its end at warn, with the SQLSTATE and the phase it reached", async () => {
  const c = await client();
  // The prefix already holds an object: refused in the preflight (58000).
  await c.query(`COPY (SELECT 1) TO 's3://${BUCKET}/taken' WITH (FORMAT = 'csv')`);
  await expect(
    c.query(`COPY (SELECT 1) TO 's3://${BUCKET}/taken' WITH (FORMAT = 'parquet')`),
  ).rejects.toThrow(/not empty/);
  await c.end();
  const end = await ended("export failed");
  expect(end).toMatchObject({
    level: WARN,
    target: `s3://${BUCKET}/taken`,
    format: "parquet",
    user: "postgres",
    sqlstate: "58000",
    phase: "preflight",
    rows: 0,
  });
  expect(linesOf(end.exportId)[0]).toMatchObject({ msg: "export started" });
});

test("a cancelled export: its end at info with 57014", async () => {
  const c = await client();
  const q = c.query(
    `COPY (SELECT g, pg_sleep(0.05) FROM generate_series(1, 2000) g) TO 's3://${BUCKET}/cancelled' WITH (FORMAT = 'csv')`,
  );
  const started = await waitUntil("the export to start", () =>
    lines.find((l) => l.msg === "export started" && linesOf(l.exportId).length === 1),
  );
  await sendCancel(port, keyOf(c));
  await expect(q).rejects.toMatchObject({ code: "57014" });
  await c.end();
  const end = await ended("export cancelled");
  expect(end).toMatchObject({ level: INFO, exportId: started.exportId, sqlstate: "57014" });
  expect(["plan", "preflight", "read"]).toContain(end.phase);
});

test('a refused login is not a "session started"; a good one is, once', async () => {
  const before = lines.length;
  await expect(client("scramuser", "wrong-password")).rejects.toThrow();
  const c = await client("scramuser", "scrampass");
  await c.end();
  await waitUntil("both connections to be logged", () =>
    lines.slice(before).some((l) => l.msg === "connection closed before authentication"),
  );
  const started = lines.slice(before).filter((l) => l.msg === "session started");
  expect(started).toHaveLength(1);
  expect(started[0]).toMatchObject({ level: INFO, user: "scramuser" });
});
