// Real drivers through the proxy: node-postgres and postgres.js, passwords, TLS on both legs,
// cancel, large values and many concurrent clients.
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { untilWaiting } from "../support/backends.js";
import { cancelCounts, cancelsSince } from "../support/cancel-counts.js";
import { startTestProxy, type TestProxy } from "../support/proxy.js";

const pgPort = inject("pgPort");
const certFile = inject("pgCertFile");
const keyFile = inject("pgKeyFile");

/** Straight to PostgreSQL: sees what the proxied sessions' backends are doing. */
let direct: pg.Client;
let plain: TestProxy; // no client TLS, upstream TLS disabled
let tls: TestProxy; // client TLS terminated at the proxy, upstream TLS required

beforeAll(async () => {
  direct = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "postgres", database: "postgres" });
  await direct.connect();
  plain = await startTestProxy({ upstreamPort: pgPort, args: ["--upstream-tls", "disable"] });
  tls = await startTestProxy({
    upstreamPort: pgPort,
    args: ["--upstream-tls", "require", "--tls-cert", certFile, "--tls-key", keyFile],
  });
});
afterAll(async () => {
  await Promise.all([plain?.shutdown(0), tls?.shutdown(0), direct?.end()]);
});

async function withClient<T>(config: pg.ClientConfig, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client(config);
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

describe("node-postgres through the proxy", () => {
  test("prepared statements, binary parameters and results", async () => {
    await withClient({ connectionString: plain.url() }, async (c) => {
      const r1 = await c.query({ name: "add", text: "select $1::int + $2::int as s", values: [2, 3] });
      const r2 = await c.query({ name: "add", text: "select $1::int + $2::int as s", values: [40, 2] });
      expect([r1.rows[0].s, r2.rows[0].s]).toEqual([5, 42]);
      const bin = Buffer.from([0, 1, 2, 255]);
      const r3 = await c.query({ text: "select $1::bytea as b, length($1::bytea) as n", values: [bin] });
      expect(Buffer.compare(r3.rows[0].b, bin)).toBe(0);
      const r4 = await c.query({
        text: "select 12345::int4 as i, 'x'::text as t",
        binary: true,
      } as pg.QueryConfig);
      expect(r4.rows[0].t).toBe("x");
      expect(r4.rows[0].i).toBe(12345);
    });
  });

  test("a 100 MB text value goes both ways", async () => {
    await withClient({ connectionString: plain.url() }, async (c) => {
      const big = "y".repeat(100 * 1024 * 1024);
      const r = await c.query("select length($1::text) as n, md5($1::text) as h", [big]);
      expect(r.rows[0].n).toBe(big.length);
      const r2 = await c.query("select repeat('z', 100 * 1024 * 1024) as v");
      expect(r2.rows[0].v.length).toBe(100 * 1024 * 1024);
    });
  });

  for (const [user, password] of [
    ["scramuser", "scrampass"],
    ["md5user", "md5pass"],
    ["pwuser", "pwpass"],
  ] as const) {
    test(`password authentication is relayed: ${user}`, async () => {
      for (const proxy of [plain, tls]) {
        const ssl = proxy === tls ? { rejectUnauthorized: false } : false;
        await withClient({ connectionString: proxy.url(user, "postgres", password), ssl }, async (c) => {
          const r = await c.query(
            "select current_user as u, ssl from pg_stat_ssl where pid = pg_backend_pid()",
          );
          expect(r.rows[0].u).toBe(user);
          // The upstream leg is TLS exactly when the proxy was told to use it.
          expect(r.rows[0].ssl).toBe(proxy === tls);
        });
        await expect(
          withClient({ connectionString: proxy.url(user, "postgres", "wrong"), ssl }, async () => {}),
        ).rejects.toThrow(/password authentication failed/);
      }
    });
  }

  test("TLS client leg with sslmode=require is terminated at the proxy", async () => {
    await withClient({ connectionString: `${tls.url()}?uselibpqcompat=true&sslmode=require` }, async (c) => {
      const r = await c.query("select 1 as one");
      expect(r.rows[0].one).toBe(1);
      // The client side really is TLS.
      expect(
        (c as unknown as { connection: { stream: { encrypted?: boolean } } }).connection.stream.encrypted,
      ).toBe(true);
    });
  });

  test("direct TLS (PostgreSQL 17 sslnegotiation=direct) with ALPN 'postgresql'; without ALPN it is refused", async () => {
    const { serialize } = await import("pg-protocol");
    const handshake = (alpn: string[] | undefined): Promise<{ ok: boolean; data: Buffer }> =>
      new Promise((resolve) => {
        const t = tlsConnect({
          host: "127.0.0.1",
          port: tls.port,
          rejectUnauthorized: false,
          ALPNProtocols: alpn,
        });
        let data = Buffer.alloc(0);
        t.on("secureConnect", () => t.write(serialize.startup({ user: "postgres", database: "postgres" })));
        t.on("data", (d: Buffer) => {
          data = Buffer.concat([data, d]);
          if (data.includes(Buffer.from([0x5a, 0, 0, 0, 5]))) {
            t.end(serialize.end());
            resolve({ ok: true, data });
          }
        });
        t.on("error", () => resolve({ ok: false, data }));
        t.on("close", () => resolve({ ok: false, data }));
      });
    const good = await handshake(["postgresql"]);
    expect(good.ok).toBe(true);
    expect(good.data[0]).toBe(0x52); // AuthenticationOk first
    const bad = await handshake(undefined);
    expect(bad.ok).toBe(false);
  });

  test("a plain-text client of the TLS proxy still works (SSLRequest not required)", async () => {
    await withClient({ connectionString: tls.url(), ssl: false }, async (c) => {
      expect((await c.query("select 2 as two")).rows[0].two).toBe(2);
    });
  });

  test("pool of 50 concurrent clients", async () => {
    const pool = new pg.Pool({ connectionString: plain.url(), max: 50 });
    try {
      const results = await Promise.all(
        Array.from({ length: 200 }, (_, i) => pool.query("select $1::int as i, pg_sleep(0.02)", [i])),
      );
      expect(results.map((r) => r.rows[0].i)).toEqual(Array.from({ length: 200 }, (_, i) => i));
      expect(plain.sessions.size).toBeGreaterThanOrEqual(40);
    } finally {
      await pool.end();
    }
  });
});

describe("postgres.js through the proxy", () => {
  test("queries, prepared statements, transactions, SCRAM", async () => {
    const sql = postgres(plain.url("scramuser", "postgres", "scrampass"), {
      max: 4,
      prepare: true,
      onnotice: () => {},
    });
    try {
      const rows = await sql`select ${41}::int + 1 as n, ${"x"}::text as t`;
      expect(rows[0]).toEqual({ n: 42, t: "x" });
      const inTx = await sql.begin(async (tx) => {
        await tx`create temp table tt (a int)`;
        await tx`insert into tt values (1), (2)`;
        return tx`select count(*)::int as c from tt`;
      });
      expect(inTx[0]!.c).toBe(2);
      await expect(sql`select 1/0`).rejects.toThrow(/division by zero/);
      expect((await sql`select 1 as ok`)[0]!.ok).toBe(1);
    } finally {
      await sql.end();
    }
  });

  test("query.cancel() cancels pg_sleep with 57014", async () => {
    const sql = postgres(plain.url(), { max: 1 });
    try {
      const q = sql`select pg_sleep(30) as postgres_js_cancelled`;
      // postgres.js sends a query once it is awaited, and cancels one it has not sent yet by itself
      // (with the same 57014): the cancel must find it sleeping upstream to go through the proxy.
      const outcome = q.then(
        () => "completed",
        (e: { code?: string }) => e.code,
      );
      await untilWaiting(direct, "postgres_js_cancelled");
      q.cancel();
      // 57014, not the 30 s sleep's end: the cancel reached the upstream.
      expect(await outcome).toBe("57014");
      expect((await sql`select 1 as ok`)[0]!.ok).toBe(1);
    } finally {
      await sql.end();
    }
  });
});

/** Sends a CancelRequest by hand, over plain TCP or TLS (PostgreSQL 17 libpq does both). */
async function sendCancel(port: number, pid: number, secret: number, overTls: boolean): Promise<void> {
  const req = Buffer.alloc(16);
  req.writeInt32BE(16, 0);
  req.writeInt32BE(80877102, 4);
  req.writeInt32BE(pid, 8);
  req.writeInt32BE(secret, 12);
  const sock = netConnect({ host: "127.0.0.1", port });
  await new Promise((r) => sock.once("connect", r));
  if (!overTls) {
    sock.end(req);
    await new Promise((r) => sock.once("close", r));
    return;
  }
  const sslReq = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);
  sock.write(sslReq);
  const answer = await new Promise<Buffer>((r) => sock.once("data", r));
  expect(answer.toString()).toBe("S");
  const t = tlsConnect({ socket: sock, rejectUnauthorized: false });
  await new Promise((r) => t.once("secureConnect", r));
  t.end(req);
  await new Promise((r) => t.once("close", r));
}

describe("cancel", () => {
  for (const overTls of [false, true]) {
    test(`CancelRequest ${overTls ? "over TLS" : "in plain text"} cancels pg_sleep`, async () => {
      const proxy = overTls ? tls : plain;
      const c = new pg.Client({
        connectionString: proxy.url(),
        ssl: overTls ? { rejectUnauthorized: false } : false,
      });
      await c.connect();
      try {
        const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
        const marker = overTls ? "cancelled_over_tls" : "cancelled_in_plain_text";
        const q = c.query(`select pg_sleep(30) as ${marker}`);
        q.catch(() => {});
        await untilWaiting(direct, marker);
        await sendCancel(proxy.port, processID, secretKey, overTls);
        // 57014, not the 30 s sleep's end: the cancel reached the upstream.
        await expect(q).rejects.toMatchObject({ code: "57014" });
        expect((await c.query("select 1 as ok")).rows[0].ok).toBe(1);
      } finally {
        await c.end();
      }
    });
  }

  test("a cancel with the wrong secret or an unknown pid does nothing", async () => {
    // Both queries wait on a lock this test holds, so the cancels come while they run (a cancel
    // that came before would be dropped by PostgreSQL anyway, and prove nothing). That the wrong
    // ones were not forwarded is the proxy's count, taken before it closed their connections
    // (support/cancel-counts.ts); the witness, cancelled by a right key after them, shows the path
    // they would have taken works.
    const c = new pg.Client({ connectionString: plain.url() });
    const witness = new pg.Client({ connectionString: plain.url() });
    await c.connect();
    await witness.connect();
    await direct.query("select pg_advisory_lock(7311)");
    let locked = true;
    try {
      const { processID, secretKey } = c as unknown as { processID: number; secretKey: number };
      const q = c.query("select pg_advisory_xact_lock(7311)::text as done, 'wrong_cancels' as marker");
      q.catch(() => {});
      const w = witness.query("select pg_advisory_xact_lock(7311)::text, 'right_cancel' as marker");
      w.catch(() => {});
      await untilWaiting(direct, "wrong_cancels", 1, "advisory");
      await untilWaiting(direct, "right_cancel", 1, "advisory");
      const before = await cancelCounts();
      await sendCancel(plain.port, processID, secretKey ^ 1, false);
      await sendCancel(plain.port, processID ^ 0x1234, secretKey, false);
      expect(await cancelsSince(before)).toEqual({
        export: 0,
        forwarded: 0,
        idle: 0,
        unmatched: 2,
        upstream: 0,
      });
      const key = witness as unknown as { processID: number; secretKey: number };
      await sendCancel(plain.port, key.processID, key.secretKey, false);
      expect(await cancelsSince(before)).toMatchObject({ forwarded: 1, unmatched: 2, upstream: 1 });
      await expect(w).rejects.toMatchObject({ code: "57014" });
      await direct.query("select pg_advisory_unlock(7311)");
      locked = false;
      expect((await q).rows[0].done).toBe("");
    } finally {
      if (locked) await direct.query("select pg_advisory_unlock(7311)");
      await c.end();
      await witness.end();
    }
  });

  test("the client sees the proxy's key, not the upstream's", async () => {
    await withClient({ connectionString: plain.url() }, async (c) => {
      const { processID } = c as unknown as { processID: number };
      const real = (await c.query("select pg_backend_pid() as p")).rows[0].p;
      expect(processID).not.toBe(real);
      expect(processID).toBeGreaterThan(0);
    });
  });
});
