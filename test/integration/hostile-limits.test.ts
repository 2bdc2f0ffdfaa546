// The limits of docs/security.md, each against the attack it defends from: clients that never log
// in (--login-timeout), too many clients (--max-client-conn), clients in clear text when TLS is
// required (--client-tls require), one user holding every export slot (--max-exports-per-user).
// Real PostgreSQL and moto; counts are small, everything on loopback.
import { connect, type Socket } from "node:net";
import pg from "pg";
import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { untilWaiting } from "../support/backends.js";
import { motoAccess, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import { startTestProxy, type TestProxy } from "../support/proxy.js";

const pgPort = inject("pgPort");
let direct: pg.Client;

beforeAll(async () => {
  direct = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "postgres", database: "postgres" });
  await direct.connect();
});
afterAll(async () => {
  await direct?.end();
});

function open(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port, noDelay: true });
    s.on("error", () => {});
    s.once("connect", () => resolve(s));
    s.once("error", reject);
  });
}

function closedWith(s: Socket, waitMs = 10_000): Promise<{ data: Buffer; closed: boolean }> {
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

/** The SQLSTATE and message of the first ErrorResponse in `data`. */
function error(data: Buffer): { code?: string; message?: string } {
  const i = data.indexOf(0x45);
  if (i < 0) return {};
  const out: { code?: string; message?: string } = {};
  for (let p = i + 5; p < data.length && data[p] !== 0; ) {
    const z = data.indexOf(0, p + 1);
    const v = data.toString("utf8", p + 1, z);
    if (data[p] === 0x43) out.code = v;
    if (data[p] === 0x4d) out.message = v;
    p = z + 1;
  }
  return out;
}

describe("--login-timeout", () => {
  let proxy: TestProxy;
  beforeAll(async () => {
    proxy = await startTestProxy({
      upstreamPort: pgPort,
      // Long enough for the logged-in client's own login on a loaded machine (the clock starts at
      // its accept; a PostgreSQL backend's start can take a second there): that login must win.
      args: ["--upstream-tls", "disable", "--login-timeout", "3000"],
    });
  });
  afterAll(async () => {
    await proxy?.shutdown(0);
  });

  test("a connection that sends 4 bytes, and one that never sends its password, are closed; logged-in ones stay", async () => {
    const loggedIn = new pg.Client({ connectionString: proxy.url() });
    await loggedIn.connect();
    const silent = await open(proxy.port);
    const silentEnd = closedWith(silent);
    silent.write(Buffer.from([0, 0, 0, 40]));
    const noPassword = await open(proxy.port);
    const noPasswordEnd = closedWith(noPassword);
    noPassword.write(
      serialize.startup({ user: "scramuser", database: "postgres", application_name: "no-password" }),
    );
    expect((await silentEnd).closed).toBe(true);
    const r = await noPasswordEnd;
    expect(r.closed).toBe(true);
    expect(r.data[0]).toBe(0x52); // it got the AuthenticationSASL request, then nothing
    await waitUntil("the upstream session of the client that never logged in is gone", async () => {
      const q = await direct.query(
        "select count(*)::int as n from pg_stat_activity where application_name = 'no-password'",
      );
      return q.rows[0].n === 0;
    });
    // Both waited past the timeout; the logged-in session was not touched.
    expect((await loggedIn.query("select 1 as ok")).rows[0].ok).toBe(1);
    await loggedIn.end();
  });
});

describe("--max-client-conn", () => {
  test("one client over the limit gets PgBouncer's 08P01; cancels still work; a freed slot is reused", async () => {
    const proxy = await startTestProxy({
      upstreamPort: pgPort,
      args: ["--upstream-tls", "disable", "--max-client-conn", "2"],
    });
    const a = new pg.Client({ connectionString: proxy.url() });
    const b = new pg.Client({ connectionString: proxy.url() });
    try {
      await a.connect();
      await b.connect();
      const c = new pg.Client({ connectionString: proxy.url() });
      await expect(c.connect()).rejects.toMatchObject({
        code: "08P01",
        message: "no more connections allowed (max_client_conn)",
      });
      // A CancelRequest is not a client connection: it still reaches the busy session.
      const sleeping = a.query("select pg_sleep(30) as max_client_conn_sleep").then(
        () => null,
        (e: { code?: string }) => e.code,
      );
      // Inside pg_sleep, not merely sent (test/support/backends.ts says why).
      await untilWaiting(direct, "max_client_conn_sleep");
      // The CancelRequest comes on a fresh connection, as drivers send it.
      const key = a as unknown as { processID: number; secretKey: number };
      const msg = Buffer.alloc(16);
      msg.writeInt32BE(16, 0);
      msg.writeInt32BE(80877102, 4);
      msg.writeInt32BE(key.processID, 8);
      msg.writeInt32BE(key.secretKey, 12);
      const cancel = await open(proxy.port);
      const cancelled = closedWith(cancel);
      cancel.end(msg);
      await cancelled;
      expect(await sleeping).toBe("57014");
      await b.end();
      await waitUntil("b's session is gone", () => proxy.sessions.size === 1);
      const d = new pg.Client({ connectionString: proxy.url() });
      await d.connect();
      expect((await d.query("select 1 as ok")).rows[0].ok).toBe(1);
      await d.end();
    } finally {
      await a.end().catch(() => {});
      await b.end().catch(() => {});
      await proxy.shutdown(0);
    }
  });

  test("connections that never send a StartupMessage count apart, against the same limit", async () => {
    const proxy = await startTestProxy({
      upstreamPort: pgPort,
      args: ["--upstream-tls", "disable", "--max-client-conn", "3"],
    });
    const idle: Socket[] = [];
    try {
      for (let i = 0; i < 3; i++) idle.push(await open(proxy.port));
      await waitUntil("three connections in their startup phase", () => proxy.clients.starting === 3);
      const extra = await open(proxy.port);
      const r = await closedWith(extra);
      expect(r.closed).toBe(true);
      expect(error(r.data)).toEqual({ code: "53300", message: "sorry, too many clients already" });
      // Those idle connections do not keep a real client out of its session slot.
      const c = new pg.Client({ connectionString: proxy.url() });
      for (const s of idle.splice(0, 1)) s.destroy();
      await waitUntil("a startup slot is free", () => proxy.clients.starting < 3);
      await c.connect();
      expect((await c.query("select 1 as ok")).rows[0].ok).toBe(1);
      await c.end();
    } finally {
      for (const s of idle) s.destroy();
      await proxy.shutdown(0);
    }
  });
});

describe("--client-tls require", () => {
  test("a plaintext StartupMessage gets PgBouncer's 08P01 'SSL required'; TLS clients log in", async () => {
    const proxy = await startTestProxy({
      upstreamPort: pgPort,
      args: [
        "--upstream-tls",
        "disable",
        "--tls-cert",
        inject("pgCertFile"),
        "--tls-key",
        inject("pgKeyFile"),
        "--client-tls",
        "require",
      ],
    });
    try {
      const plain = new pg.Client({
        connectionString: proxy.url("pwuser", "postgres", "pwpass"),
        ssl: false,
      });
      await expect(plain.connect()).rejects.toMatchObject({ code: "08P01", message: "SSL required" });
      const tls = new pg.Client({
        connectionString: proxy.url("pwuser", "postgres", "pwpass"),
        ssl: { rejectUnauthorized: false },
      });
      await tls.connect();
      expect((await tls.query("select 1 as ok")).rows[0].ok).toBe(1);
      await tls.end();
    } finally {
      await proxy.shutdown(0);
    }
  });
});

describe("--max-exports-per-user", () => {
  test("one user holding its share of the export slots leaves the others theirs", async () => {
    const s3 = motoAccess();
    const bucket = await new S3Check(s3).bucket("hostile-limits");
    const proxy = await startCopyProxy({ upstreamPort: pgPort, s3, args: ["--max-exports", "4"] });
    const greedy = await Promise.all(
      [1, 2, 3].map(async () => {
        const c = new pg.Client({ connectionString: proxy.url("postgres") });
        c.on("error", () => {});
        await c.connect();
        return c;
      }),
    );
    const other = new pg.Client({ connectionString: proxy.url("plainuser") });
    await other.connect();
    try {
      const holding = greedy.slice(0, 2).map((c, i) =>
        c
          .query(
            `COPY (SELECT pg_sleep(30) AS greedy_hold) TO 's3://${bucket}/greedy${i}' WITH (FORMAT = 'csv')`,
          )
          .then(
            () => null,
            (e: { code?: string }) => e.code,
          ),
      );
      await waitUntil("two exports of one user running", () =>
        [...proxy.sessions].filter((s) => s.exporting !== null).length === 2 ? true : null,
      );
      await expect(
        greedy[2]!.query(`COPY (SELECT 1) TO 's3://${bucket}/greedy2' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "53300",
        message: 'too many COPY ... TO exports running for role "postgres" (the limit is 2)',
      });
      const r = await other.query(`COPY (SELECT 1) TO 's3://${bucket}/other' WITH (FORMAT = 'csv')`);
      expect(r.rowCount).toBe(1);
      // Both upstream queries inside pg_sleep before the cancel, which would otherwise miss one whose
      // export was admitted but whose query had not started; only this test's sleeps are cancelled.
      await untilWaiting(direct, "greedy_hold", 2);
      await direct.query(
        "select pg_cancel_backend(pid) from pg_stat_activity where wait_event = 'PgSleep' and query like '%greedy_hold%' and pid <> pg_backend_pid()",
      );
      expect(await Promise.all(holding)).toEqual(["57014", "57014"]);
    } finally {
      for (const c of greedy) await c.end().catch(() => {});
      await other.end();
      await proxy.shutdown(0);
    }
  });
});
