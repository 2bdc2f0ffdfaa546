// COPY ... TO 's3://...' from drivers that open a transaction implicitly (psycopg 3 and SQLAlchemy
// with autocommit off, postgres.js's sql.begin, node-postgres after BEGIN), and with a bound
// parameter in the target. In front of PostgreSQL the export runs in the client's transaction and
// sees what it sees; a failure leaves the transaction failed, as PostgreSQL does for any statement
// in a block. In front of Materialize (the wire double) it is refused with a HINT naming the
// driver setting, the transaction left as it was.
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import { MaterializeWireDouble } from "../support/mz-double.js";
import type { TestProxy } from "../support/proxy.js";
import { RawPg } from "../support/raw-pg.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "copy_in_tx";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let oracle: RawPg;
let proxy: TestProxy;
let bucket: string;

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  await oracle.query("CREATE TABLE t (id int, v text)");
  await oracle.query("INSERT INTO t VALUES (1, 'committed')");
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3 });
  bucket = await check.bucket("in-tx");
}, 60_000);

afterAll(async () => {
  await proxy?.shutdown(0);
  await oracle?.close();
});

let n = 0;
const fresh = (): string => `p${++n}`;

async function csvUnder(prefix: string): Promise<string> {
  const keys = (await check.keys(bucket, `${prefix}/`)).filter((k) => k.endsWith(".csv"));
  return Buffer.concat(await Promise.all(keys.map((k) => check.get(bucket, k)))).toString("utf8");
}

async function withClient<T>(f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

describe("in front of PostgreSQL", () => {
  test("node-postgres BEGIN: the export sees the transaction's own uncommitted rows; the transaction goes on, settings as they were", async () => {
    const prefix = fresh();
    await withClient(async (c) => {
      await c.query("SET idle_in_transaction_session_timeout = '10min'");
      await c.query("BEGIN");
      await c.query("INSERT INTO t VALUES (2, 'uncommitted')");
      const r = await c.query(
        `COPY (SELECT id, v FROM t WHERE id < 3) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
      );
      expect(r.rowCount).toBe(2);
      // Still the client's transaction, writable, with its own settings back.
      await c.query("INSERT INTO t VALUES (3, 'later')");
      expect((await c.query("SELECT count(*)::int AS n FROM t")).rows[0].n).toBe(3);
      expect((await c.query("SHOW transaction_read_only")).rows[0].transaction_read_only).toBe("off");
      expect(
        (await c.query("SHOW idle_in_transaction_session_timeout")).rows[0]
          .idle_in_transaction_session_timeout,
      ).toBe("10min");
      await c.query("ROLLBACK");
      expect((await c.query("SELECT count(*)::int AS n FROM t")).rows[0].n).toBe(1);
    });
    // What the transaction saw, as PostgreSQL's own COPY would print it there.
    expect((await csvUnder(prefix)).split("\n").sort()).toEqual(["", "1,committed", "2,uncommitted"]);
    // A session outside the transaction never saw row 2, and no savepoint or setting leaked.
    expect((await oracle.query("SELECT count(*) FROM t")).rows.length).toBe(1);
  });

  test("postgres.js sql.begin: the export runs in the transaction, which commits", async () => {
    const prefix = fresh();
    const sql = postgres(proxy.url("postgres", DB), { max: 1, onnotice: () => {} });
    try {
      const count = await sql.begin(async (tx) => {
        await tx`CREATE TABLE made_in_tx AS SELECT g FROM generate_series(1, 5) g`;
        const r = await tx.unsafe(`COPY made_in_tx TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
        await tx`INSERT INTO made_in_tx VALUES (6)`;
        return r.count;
      });
      expect(count).toBe(5);
      expect((await sql`SELECT count(*)::int AS n FROM made_in_tx`)[0]!.n).toBe(6);
      await sql`DROP TABLE made_in_tx`;
    } finally {
      await sql.end();
    }
    expect(await csvUnder(prefix)).toBe("1\n2\n3\n4\n5\n");
  });

  test("a failure aborts the client's transaction like any failing statement: ReadyForQuery 'E', then 25P02 until ROLLBACK", async () => {
    const c = await RawPg.connect({ port: proxy.port, database: DB });
    try {
      // The proxy's own failure (the prefix is not empty), and an upstream one while reading.
      const taken = fresh();
      await c.query(`COPY (SELECT 1) TO 's3://${bucket}/${taken}' WITH (FORMAT = 'csv')`);
      const failing = [
        { sql: `COPY (SELECT 1) TO 's3://${bucket}/${taken}' WITH (FORMAT = 'csv')`, code: "58000" },
        { sql: `COPY (SELECT 1/0) TO 's3://${bucket}/${fresh()}' WITH (FORMAT = 'csv')`, code: "22012" },
        { sql: `COPY (SELECT 1) TO 's3://${bucket}/' || (1/0)::text WITH (FORMAT = 'csv')`, code: "22012" },
      ];
      for (const f of failing) {
        await c.query("BEGIN");
        await c.query("INSERT INTO t VALUES (9, 'doomed')");
        await expect(c.query(f.sql)).rejects.toMatchObject({ code: f.code });
        expect(c.txStatus).toBe("E");
        await expect(c.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
        await expect(c.query(f.sql)).rejects.toMatchObject({ code: "25P02" });
        await c.query("ROLLBACK");
        expect(c.txStatus).toBe("I");
        expect((await c.query("SELECT count(*) FROM t WHERE id = 9")).rows[0]!.toString("utf8", 6)).toBe("0");
      }
    } finally {
      await c.close();
    }
  });

  test("an S3 failure after the rows were read (the export's savepoint still held) fails the transaction too", async () => {
    const faults = await S3FaultProxy.start(s3.endpoint);
    const failing = await startCopyProxy({
      upstreamPort: pgPort,
      s3: { ...s3, endpoint: faults.endpoint },
      config: { exports: { s3MaxAttempts: 1 } },
    });
    const c = await RawPg.connect({ port: failing.port, database: DB });
    try {
      faults.setRules({
        op: ["CompleteMultipartUpload", "PutObject", "UploadPart"],
        key: /-batch-/,
        fault: "500",
      });
      const prefix = fresh();
      await c.query("BEGIN");
      await c.query("INSERT INTO t VALUES (8, 'doomed')");
      await expect(
        c.query(`COPY (SELECT id FROM t) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({ code: "58030" });
      expect(c.txStatus).toBe("E");
      await expect(c.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
      await c.query("ROLLBACK");
      expect((await c.query("SHOW transaction_read_only")).rows[0]!.toString("utf8", 6)).toBe("off");
      expect(await check.keys(bucket, `${prefix}/`)).toEqual([]);
    } finally {
      await c.close();
      await failing.shutdown(0);
      await faults.close();
    }
  });

  test("ReadyForQuery after a successful export in a transaction is 'T'", async () => {
    const c = await RawPg.connect({ port: proxy.port, database: DB });
    try {
      await c.query("BEGIN");
      await c.query(`COPY (SELECT 1) TO 's3://${bucket}/${fresh()}' WITH (FORMAT = 'csv')`);
      expect(c.txStatus).toBe("T");
      await c.query("COMMIT");
      expect(c.txStatus).toBe("I");
    } finally {
      await c.close();
    }
  });

  test("the client's idle_in_transaction_session_timeout does not end the session while S3 is slow", async () => {
    // The sentinel's PutObject is held until the upstream backend has sat idle in its transaction
    // for twice the client's timeout; then the export must finish and the session go on.
    const faults = await S3FaultProxy.start(s3.endpoint);
    const slow = await startCopyProxy({ upstreamPort: pgPort, s3: { ...s3, endpoint: faults.endpoint } });
    try {
      for (const inTx of [false, true]) {
        const c = new pg.Client({ connectionString: slow.url("postgres", DB) });
        await c.connect();
        try {
          const pid = (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p as number;
          await c.query("SET idle_in_transaction_session_timeout = '300ms'");
          if (inTx) await c.query("BEGIN");
          faults.resetStats();
          faults.setRules({ op: "PutObject", key: /INCOMPLETE$/, fault: "hold" });
          const prefix = fresh();
          const q = c.query(`COPY (SELECT 1) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
          await faults.waitFor("PutObject");
          await waitUntil("the backend idle in transaction for 600 ms, or gone", async () => {
            const r = await oracle.query(
              `SELECT coalesce((SELECT (now() - state_change > interval '600ms')::text FROM pg_stat_activity WHERE pid = ${pid} AND state = 'idle in transaction'), 'gone?')`,
            );
            const v = r.rows[0]!.toString("utf8", 6);
            if (v === "gone?") {
              const alive = await oracle.query(`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid}`);
              return alive.rows.length === 0 ? "gone" : null;
            }
            return v === "true" ? v : null;
          });
          faults.clear();
          expect((await q).rowCount).toBe(1);
          expect((await c.query("SELECT 2 AS two")).rows[0].two).toBe(2);
          if (inTx) await c.query("COMMIT");
        } finally {
          await c.end().catch(() => {});
        }
      }
    } finally {
      await slow.shutdown(0);
      await faults.close();
    }
  });

  test("a bound parameter in the target: node-postgres and postgres.js", async () => {
    const a = fresh();
    await withClient(async (c) => {
      const r = await c.query(`COPY (SELECT 1 AS x) TO 's3://${bucket}/' || $1 WITH (FORMAT = 'csv')`, [a]);
      expect(r.rowCount).toBe(1);
      // Too many or too few values: PostgreSQL's words, and the session goes on.
      await expect(
        c.query(`COPY (SELECT 1) TO 's3://${bucket}/' || $1 WITH (FORMAT = 'csv')`, [a, "extra"]),
      ).rejects.toMatchObject({
        code: "08P01",
        message: 'bind message supplies 2 parameters, but prepared statement "" requires 1',
      });
      expect((await c.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
    });
    expect(await csvUnder(a)).toBe("1\n");

    const b = fresh();
    const d = fresh();
    const sql = postgres(proxy.url("postgres", DB), { max: 1, onnotice: () => {} });
    try {
      // The whole URL as a parameter, as a tagged template writes it.
      const url = `s3://${bucket}/${b}`;
      const r1 = await sql`COPY (SELECT 2 AS x) TO ${url} WITH (FORMAT = 'csv')`;
      expect(r1.count).toBe(1);
      const r2 = await sql.unsafe(
        `COPY (SELECT 3 AS x) TO 's3://${bucket}/' || $1 || '/' || to_char($2::date, 'YYYY') WITH (FORMAT = 'csv')`,
        [d, "2024-05-06"],
        { prepare: true },
      );
      expect(r2.count).toBe(1);
    } finally {
      await sql.end();
    }
    expect(await csvUnder(b)).toBe("2\n");
    expect(await csvUnder(`${d}/2024`)).toBe("3\n");
  });

  test("a parameter without a Bind (simple Query) is the upstream's 42P02", async () => {
    await withClient(async (c) => {
      await expect(
        c.query(`COPY (SELECT 1) TO 's3://${bucket}/' || $1 WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({ code: "42P02", message: "there is no parameter $1" });
      expect((await c.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
    });
  });
});

describe("in front of Materialize (the wire double)", () => {
  let double: MaterializeWireDouble;
  let mzProxy: TestProxy;
  beforeAll(async () => {
    double = await MaterializeWireDouble.start({ pgPort });
    mzProxy = await startCopyProxy({ upstreamPort: double.port, s3 });
  }, 60_000);
  afterAll(async () => {
    await mzProxy?.shutdown(0);
    await double?.stop();
  });

  test("inside a transaction block: 25001 with a HINT naming the driver's autocommit setting; the transaction goes on", async () => {
    const c = new pg.Client({ connectionString: mzProxy.url("postgres", DB) });
    await c.connect();
    try {
      await c.query("BEGIN");
      const prefix = fresh();
      await expect(
        c.query(`COPY (SELECT 1) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "25001",
        message: "COPY ... TO 's3://...' cannot run inside a transaction block",
        hint: expect.stringMatching(
          /autocommit.*psycopg: conn\.autocommit = True.*SQLAlchemy: isolation_level="AUTOCOMMIT"/,
        ),
      });
      expect((await c.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
      await c.query("ROLLBACK");
      // Autocommit, as the HINT says: it runs.
      const r = await c.query(`COPY (SELECT 1) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
      expect(r.rowCount).toBe(1);
    } finally {
      await c.end();
    }
  });
});
