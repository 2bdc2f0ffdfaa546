// A hostile or careless client before it has logged in (docs/security.md): whatever it does, the
// upstream keeps no session for it, and the proxy answers as PostgreSQL would. Counts are small
// and everything is on loopback, so the file stays fast.
import { execFile } from "node:child_process";
import { connect, type Socket } from "node:net";
import pg from "pg";
import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import { startTestProxy, type TestProxy } from "../support/proxy.js";

const pgPort = inject("pgPort");
let plain: TestProxy; // upstream TLS off
let withCopy: TestProxy; // upstream TLS off, COPY TO S3 on: statements are looked at
let prefer: TestProxy; // upstream TLS on (the default `prefer`; the suite's PostgreSQL has ssl on)
let direct: pg.Client;

beforeAll(async () => {
  plain = await startTestProxy({ upstreamPort: pgPort, args: ["--upstream-tls", "disable"] });
  prefer = await startTestProxy({ upstreamPort: pgPort, args: ["--upstream-tls", "prefer"] });
  withCopy = await startCopyProxy({ upstreamPort: pgPort, s3: motoAccess() });
  direct = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "postgres", database: "postgres" });
  await direct.connect();
});
afterAll(async () => {
  await direct?.end();
  await Promise.all([plain?.shutdown(0), prefer?.shutdown(0), withCopy?.shutdown(0)]);
});

async function upstreamSessions(app: string): Promise<number> {
  const r = await direct.query(
    "select count(*)::int as n from pg_stat_activity where application_name = $1",
    [app],
  );
  return r.rows[0].n as number;
}

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, noDelay: true });
    s.on("error", () => {});
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

/** Everything received on a connection until the peer closes it (or `waitMs` passes: a failure,
 * so it is generous for a loaded machine). */
function received(s: Socket, waitMs = 20_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      resolve({ data: Buffer.concat(chunks), closed: false });
    }, waitMs);
    s.on("data", (d: Buffer) => chunks.push(d));
    s.on("close", () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(chunks), closed: true });
    });
  });
}

describe("a client that leaves during the upstream connect leaves no upstream session", () => {
  for (const [mode, proxy] of [
    ["upstream TLS off", () => plain],
    ["upstream TLS prefer", () => prefer],
  ] as const) {
    for (const delayMs of [0, 1, 5]) {
      test(`${mode}: 12 clients close ${delayMs} ms after their StartupMessage`, async () => {
        const app = `leak-${mode.replace(/\W+/g, "-")}-${delayMs}`;
        const p = proxy();
        const before = p.clients.accepted;
        await Promise.all(
          Array.from({ length: 12 }, async () => {
            const s = await open(p.port);
            s.write(serialize.startup({ user: "postgres", database: "postgres", application_name: app }));
            if (delayMs > 0) await new Promise((r) => setTimeout(r, delayMs));
            s.destroy();
          }),
        );
        // Every connection accepted and past its startup phase, and then nothing left anywhere.
        await waitUntil(
          "startup phases over",
          () => p.clients.accepted >= before + 12 && p.clients.starting === 0,
        );
        await waitUntil("no proxy session left", () => p.sessions.size === 0);
        await waitUntil("no upstream session left", async () => (await upstreamSessions(app)) === 0);
      });
    }
  }
});

describe("an invalid startup packet length is answered with silence, as PostgreSQL does", () => {
  const invalid: Record<string, Buffer> = {
    "length 4": Buffer.from([0, 0, 0, 4, 0, 3, 0, 0]),
    "length 2 GiB": Buffer.from([0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0]),
    // node-postgres's `connect(); end()`: its Terminate goes out before the StartupMessage.
    "a Terminate first": Buffer.concat([
      Buffer.from([0x58, 0, 0, 0, 4]),
      serialize.startup({ user: "postgres" }),
    ]),
  };
  for (const [name, bytes] of Object.entries(invalid)) {
    test(name, async () => {
      for (const port of [pgPort, plain.port]) {
        const s = await open(port);
        const got = received(s);
        s.write(bytes);
        const r = await got;
        expect({ port: port === pgPort ? "postgres" : "proxy", ...r }).toEqual({
          port: port === pgPort ? "postgres" : "proxy",
          data: Buffer.alloc(0),
          closed: true,
        });
      }
    });
  }

  test("node-postgres's connect(); end() exits cleanly through the proxy as it does directly", async () => {
    const script = `
      const pg = require("pg");
      const c = new pg.Client({ connectionString: process.argv[1] });
      c.connect().catch(() => {});
      c.end().then(() => console.log("ended"));
    `;
    for (const url of [`postgres://postgres@127.0.0.1:${pgPort}/postgres`, plain.url()]) {
      const out = await new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = execFile(process.execPath, ["-e", script, url], { timeout: 15_000 }, (_e, stdout) =>
          resolve({ code: child.exitCode, stdout }),
        );
      });
      expect({ url, ...out }).toEqual({ url, code: 0, stdout: "ended\n" });
    }
  });
});

describe("before the login a client can only answer the authentication", () => {
  /** Sends `first`, waits for the upstream's authentication request, then sends `then`. */
  async function afterAuthRequest(
    port: number,
    user: string,
    then: Buffer,
  ): Promise<{ data: Buffer; closed: boolean }> {
    const s = await open(port);
    const chunks: Buffer[] = [];
    s.on("data", (d: Buffer) => chunks.push(d));
    s.write(serialize.startup({ user, database: "postgres" }));
    await waitUntil("an authentication request", () => Buffer.concat(chunks).includes(0x52));
    const rest = received(s);
    s.write(then);
    const r = await rest;
    return { data: Buffer.concat([...chunks, r.data]), closed: r.closed };
  }

  const fields = (data: Buffer): Record<string, string> => {
    const i = data.indexOf(0x45, 9);
    const out: Record<string, string> = {};
    for (let p = i + 5; i >= 0 && p < data.length && data[p] !== 0; ) {
      const z = data.indexOf(0, p + 1);
      out[String.fromCharCode(data[p]!)] = data.toString("utf8", p + 1, z);
      p = z + 1;
    }
    return { code: out.C ?? "", message: out.M ?? "" };
  };

  test("a Parse instead of the password: closed with PostgreSQL's 08P01, as PostgreSQL does", async () => {
    const parse = serialize.parse({
      text: "COPY (SELECT 1) TO 's3://b/p' WITH (FORMAT bogus)",
      name: "",
      types: [],
    });
    const viaPg = await afterAuthRequest(pgPort, "pwuser", parse);
    const viaProxy = await afterAuthRequest(withCopy.port, "pwuser", parse);
    expect(viaPg.closed && viaProxy.closed).toBe(true);
    expect(fields(viaProxy.data)).toEqual(fields(viaPg.data));
    expect(fields(viaProxy.data)).toEqual({
      code: "08P01",
      message: "expected password response, got message type 80",
    });
  });

  test("a password message over PG_MAX_AUTH_TOKEN_LENGTH is refused before it is read", async () => {
    const head = Buffer.from([0x70, 0, 1, 0, 0]); // 'p', 65536 bytes
    const r = await afterAuthRequest(withCopy.port, "pwuser", head);
    expect(r.closed).toBe(true);
    expect(fields(r.data).code).toBe("08P01");
  });
});

describe("no message is assembled beyond what its handling needs", () => {
  test("after a refused local Parse, a 1 GiB message is skipped, not assembled", async () => {
    const s = await open(withCopy.port);
    try {
      const chunks: Buffer[] = [];
      s.on("data", (d: Buffer) => chunks.push(d));
      s.write(serialize.startup({ user: "postgres", database: "postgres" }));
      await waitUntil("logged in", () => Buffer.concat(chunks).includes(Buffer.from([0x5a, 0, 0, 0, 5])));
      // Refused here (unknown format): the rest of the Sync segment is discarded.
      s.write(
        serialize.parse({ text: "COPY (SELECT 1) TO 's3://b/p' WITH (FORMAT bogus)", name: "", types: [] }),
      );
      await waitUntil("the Parse refused", () => Buffer.concat(chunks).indexOf(0x45, 20) >= 0);
      const before = process.memoryUsage().arrayBuffers;
      s.write(Buffer.from([0x51, 0x40, 0, 0, 0])); // a Query claiming 1 GiB
      const piece = Buffer.alloc(1 << 20, 0x20);
      for (let i = 0; i < 32; i++) {
        if (!s.write(piece)) await new Promise((r) => s.once("drain", r));
      }
      const grew = process.memoryUsage().arrayBuffers - before;
      expect(grew).toBeLessThan(128 << 20);
    } finally {
      s.destroy();
    }
  });
});
