// Cancel (a CancelRequest, what psql's Ctrl-C sends) aborts a COPY ... TO 's3://...' in every phase
// (SPEC §2.2, §7): the client gets 57014 within a second, then no multipart upload and no object
// is left under the prefix, the client's upstream session is idle outside a transaction, and the
// same COPY run again succeeds. A cancel after the commit point changes nothing; a cancel when
// nothing runs does nothing.
//
// That a cancel was not forwarded to the upstream is read from the proxy's own counts
// (cancel_requests_total by outcome, upstream_cancel_requests_total: support/cancel-counts.ts),
// taken before the proxy closes the cancel connection: no test waits to see that nothing happened.
//
// Each phase is pinned without timing guesses: target evaluation and reading by a server-side
// sleep (seen in pg_stat_activity), describe by a lock, the S3 phases by the fault proxy parking
// the request that marks them, the paused row stream by the backend waiting in ClientWrite.
// A parked PutObject or CompleteMultipartUpload is released once the cancel was acted on: the
// export waits for such a request's outcome (an aborted request is not one that did not happen),
// so the time to 57014 is measured from the moment the S3 server answered it (the server's own
// time is not the proxy's to shorten).
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { cancelCounts, cancelsSince } from "../support/cancel-counts.js";
import { type S3Access, type S3Check, startCopyProxy } from "../support/copy-proxy.js";
import {
  expectIdleBackend,
  expectNothingLeft,
  failure,
  keyOf,
  sendCancel,
  waitUntil,
} from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import { RawPg } from "../support/raw-pg.js";
import type { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "copy_cancel";
const pgPort = inject("pgPort");
// No time bound here: each phase lasts until the test lets it go (a held S3 request, a lock, a
// 30 s sleep) or ends in success on its own, so a cancel that waited for the phase would time the
// test out or return COPY n instead of 57014. How fast a cancel lands is bench/cancel-latency.ts's job.

let stack: ProxyStack;
let s3: S3Access;
let check: S3Check;
let faults: S3FaultProxy;
let proxy: TestProxy;
let tlsProxy: TestProxy;
let oracle: RawPg;
let client: pg.Client;
let upstreamPid: number;
let bucket: string;

beforeAll(async () => {
  stack = await startProxyStack({
    database: DB,
    bucket: "cancel",
    config: {
      exports: {
        partSize: 5 * 1024 * 1024,
        partsInFlight: 1,
        filesCompleting: 1,
        s3MaxAttempts: 2,
        s3RequestTimeoutMs: 10_000,
      },
    },
  });
  ({ s3, check, bucket, oracle, faults, proxy } = stack);
  // ~30 MB of CSV: several 5 MiB parts, two files at MAX FILE SIZE 16MB.
  await oracle.query(
    "CREATE TABLE wide AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 300000) g",
  );
  // The paused-stream phase needs more rows than every buffer between PostgreSQL and a held
  // upload takes: the proxy's upstream socket's receive buffer grows with Linux's autotuning up
  // to net.ipv4.tcp_rmem's maximum (32 MiB on the CI machines; 9 MB seen filled while held),
  // PostgreSQL's send buffer (tcp_wmem, 4 MiB), the row ring (4 MiB) and the parts (10 MiB here).
  // With `wide` alone (~30 MB) a run whose receive buffer grew far enough saw PostgreSQL send
  // everything, never wait in ClientWrite, and the phase time out (once in CI).
  await oracle.query(
    "CREATE TABLE wider AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 800000) g",
  );
  await oracle.query("CREATE TABLE locked (a int)");
  tlsProxy = await stack.startProxy(["--tls-cert", inject("pgCertFile"), "--tls-key", inject("pgKeyFile")]);
  client = await stack.connect();
  upstreamPid = (await client.query("SELECT pg_backend_pid() AS p")).rows[0].p;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

let n = 0;
const freshPrefix = (): string => `c${++n}`;

/** Waits until the backend `pid` runs something matching `pred` (pg_stat_activity, polled). */
async function backendIs(pid: number, pred: string, what: string): Promise<void> {
  await waitUntil(what, async () => {
    const r = await oracle.query(`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid} AND ${pred}`);
    return r.rows.length > 0 ? true : null;
  });
}

interface PhaseCase {
  name: string;
  /** COPY text; PREFIX is replaced by a fresh prefix. */
  sql: string;
  rows: number;
  /** Makes the phase last until the cancel (and undoes it afterwards). */
  arrange?: () => Promise<void> | void;
  /** Resolves once the export is in the phase. */
  reached: () => Promise<void>;
  /** The parked request is one the export waits for: release it after the cancel. */
  releaseAfterCancel?: boolean;
  undo?: () => Promise<void> | void;
}

const t = (p: string) => `'s3://cancel/${p}'`;
let locker: RawPg | null = null;

const PHASES: PhaseCase[] = [
  {
    name: "target evaluation (upstream statement)",
    sql: `COPY (SELECT 1 AS one) TO 's3://cancel/' || c2s_wait('PREFIX'::text) WITH (FORMAT = 'csv')`,
    rows: 1,
    arrange: () => client.query("SET c2s.wait = '30'").then(() => {}),
    reached: () => backendIs(upstreamPid, "state = 'active' AND wait_event = 'PgSleep'", "target evaluation"),
    undo: () => client.query("SET c2s.wait = '0'").then(() => {}),
  },
  {
    name: "describe (waiting for a lock while the statement is prepared)",
    sql: `COPY locked TO ${t("PREFIX")} WITH (FORMAT = 'csv')`,
    rows: 0,
    arrange: async () => {
      locker = await RawPg.connect({ port: pgPort, database: DB });
      await locker.query("BEGIN");
      await locker.query("LOCK TABLE locked IN ACCESS EXCLUSIVE MODE");
    },
    reached: () => backendIs(upstreamPid, "wait_event_type = 'Lock'", "describe blocked on the lock"),
    undo: async () => {
      await locker?.query("ROLLBACK");
      await locker?.close();
      locker = null;
    },
  },
  {
    name: "preflight: listing the prefix",
    sql: `COPY (SELECT g FROM generate_series(1, 10) g) TO ${t("PREFIX")} WITH (FORMAT = 'csv')`,
    rows: 10,
    arrange: () => faults.setRules({ op: "ListObjectsV2", fault: "hold" }),
    reached: () => faults.waitFor("ListObjectsV2"),
  },
  {
    name: "preflight: writing the sentinel",
    sql: `COPY (SELECT g FROM generate_series(1, 10) g) TO ${t("PREFIX")} WITH (FORMAT = 'csv')`,
    rows: 10,
    arrange: () => faults.setRules({ op: "PutObject", key: /-INCOMPLETE$/, fault: "hold" }),
    reached: () => faults.waitFor("PutObject"),
    releaseAfterCancel: true,
  },
  {
    name: "reading rows (the upstream query runs)",
    sql: `COPY (SELECT c2s_wait(g) AS g, md5(g::text) AS h FROM generate_series(1, 5000) g) TO ${t("PREFIX")} WITH (FORMAT = 'csv')`,
    rows: 5000,
    arrange: () => client.query("SET c2s.wait = '0.002'").then(() => {}),
    reached: async () => {
      await faults.waitFor("PutObject"); // the sentinel is there
      await backendIs(
        upstreamPid,
        "state = 'active' AND wait_event = 'PgSleep' AND query LIKE '%generate_series(1, 5000)%'",
        "reading",
      );
    },
    undo: () => client.query("SET c2s.wait = '0'").then(() => {}),
  },
  {
    name: "uploading, with the row stream paused (the backend waits in ClientWrite)",
    sql: `COPY wider TO ${t("PREFIX")} WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
    rows: 800000,
    arrange: () => faults.setRules({ op: "UploadPart", fault: "hold" }),
    reached: async () => {
      await faults.waitFor("UploadPart");
      await backendIs(upstreamPid, "wait_event = 'ClientWrite'", "the upstream blocked on the paused stream");
    },
  },
  {
    name: "completing a file (CompleteMultipartUpload in flight)",
    sql: `COPY wide TO ${t("PREFIX")} WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
    rows: 300000,
    arrange: () => faults.setRules({ op: "CompleteMultipartUpload", fault: "hold" }),
    reached: () => faults.waitFor("CompleteMultipartUpload"),
    releaseAfterCancel: true,
  },
  {
    name: "committing: writing the manifest (files complete, before the commit point)",
    sql: `COPY wide TO ${t("PREFIX")} WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
    rows: 300000,
    arrange: () => faults.setRules({ op: "PutObject", key: /-manifest\.json$/, fault: "hold" }),
    reached: () => faults.waitFor("PutObject", 2),
    releaseAfterCancel: true,
  },
];

describe("a cancel aborts the export in every phase", () => {
  for (const c of PHASES) {
    test(c.name, async () => {
      const prefix = freshPrefix();
      const sql = c.sql.replace("PREFIX", prefix);
      faults.resetStats();
      await c.arrange?.();
      let t0 = 0;
      const q = client.query(sql);
      const failed = failure(q, () =>
        Math.max(t0, faults.log.find((r) => r.fault === "hold")?.answered ?? Number.NEGATIVE_INFINITY),
      );
      try {
        await c.reached();
        const before = await cancelCounts();
        t0 = performance.now();
        await sendCancel(proxy.port, keyOf(client));
        // The proxy stopped its export itself; it forwards nothing a client sent.
        expect(await cancelsSince(before)).toMatchObject({ export: 1, forwarded: 0, idle: 0, unmatched: 0 });
        if (c.releaseAfterCancel) {
          t0 = performance.now();
          faults.release();
        }
        const { err } = await failed;
        expect(err).toMatchObject({ code: "57014", message: "canceling statement due to user request" });
      } finally {
        faults.clear();
        await c.undo?.();
        await failed.catch(() => {});
      }
      await expectNothingLeft(check, bucket, prefix, oracle, upstreamPid);
      // The session is the client's again: nothing of the export's statements is left on it.
      expect((await client.query("SHOW transaction_isolation")).rows[0].transaction_isolation).toBe(
        "read committed",
      );
      expect((await client.query("SELECT count(*)::int AS n FROM pg_prepared_statements")).rows[0].n).toBe(0);
      const again = await client.query(sql);
      expect(again.rowCount).toBe(c.rows);
      expect((await check.keys(bucket, `${prefix}/`)).some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
      expect(await check.uploads(bucket, `${prefix}/`)).toEqual([]);
    });
  }

  test("over TLS, while reading", async () => {
    const c = new pg.Client({
      connectionString: tlsProxy.url("postgres", DB),
      ssl: { rejectUnauthorized: false },
    });
    c.on("notice", () => {});
    await c.connect();
    try {
      const pid = (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p;
      await c.query("SET c2s.wait = '0.002'");
      const prefix = freshPrefix();
      let t0 = 0;
      const failed = failure(
        c.query(
          `COPY (SELECT c2s_wait(g) AS g FROM generate_series(1, 5000) g) TO ${t(prefix)} WITH (FORMAT = 'csv')`,
        ),
        () => t0,
      );
      await backendIs(pid, "wait_event = 'PgSleep' AND query LIKE '%generate_series(1, 5000)%'", "reading");
      t0 = performance.now();
      await sendCancel(tlsProxy.port, keyOf(c), true);
      const { err } = await failed;
      expect(err).toMatchObject({ code: "57014" });
      await expectNothingLeft(check, bucket, prefix, oracle, pid);
      expect((await c.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
    } finally {
      await c.end();
    }
  });

  test("Parquet, while reading", async () => {
    await client.query("SET c2s.wait = '0.002'");
    const prefix = freshPrefix();
    let t0 = 0;
    const failed = failure(
      client.query(
        `COPY (SELECT c2s_wait(g) AS g, g::numeric(10,2) AS n FROM generate_series(1, 5000) g) TO ${t(prefix)} WITH (FORMAT = 'parquet')`,
      ),
      () => t0,
    );
    try {
      await backendIs(
        upstreamPid,
        "wait_event = 'PgSleep' AND query LIKE '%generate_series(1, 5000)%'",
        "reading",
      );
      t0 = performance.now();
      await sendCancel(proxy.port, keyOf(client));
      const { err } = await failed;
      expect(err).toMatchObject({ code: "57014" });
    } finally {
      await client.query("SET c2s.wait = '0'");
    }
    await expectNothingLeft(check, bucket, prefix, oracle, upstreamPid);
  });
});

describe("cancels that must change nothing", () => {
  test("after the commit point (manifest written, sentinel being removed): COPY n, the export stands", async () => {
    const prefix = freshPrefix();
    faults.resetStats();
    faults.setRules({ op: "DeleteObjects", fault: "hold" });
    const q = client.query(
      `COPY (SELECT g FROM generate_series(1, 1000) g) TO ${t(prefix)} WITH (FORMAT = 'csv')`,
    );
    try {
      await faults.waitFor("DeleteObjects");
      await sendCancel(proxy.port, keyOf(client)); // acted on once the proxy closes the connection
    } finally {
      faults.clear();
    }
    expect((await q).rowCount).toBe(1000);
    const keys = await check.keys(bucket, `${prefix}/`);
    expect(keys.filter((k) => k.endsWith(".csv"))).toHaveLength(1);
    expect(keys.filter((k) => k.endsWith("-manifest.json"))).toHaveLength(1);
    expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
    await expectIdleBackend(oracle, upstreamPid);
  });

  test("when no statement runs: nothing is forwarded, and the next statements run", async () => {
    // A forwarded cancel would be lost on an idle backend or cancel whatever runs when it lands;
    // either way what shows is timing. What the proxy did is counted before it closed the
    // cancel connection, so once sendCancel returns, "not forwarded" is a fact to read.
    const before = await cancelCounts();
    await sendCancel(proxy.port, keyOf(client));
    expect(await cancelsSince(before)).toEqual({
      export: 0,
      forwarded: 0,
      idle: 1,
      unmatched: 0,
      upstream: 0,
    });
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
    const prefix = freshPrefix();
    expect((await client.query(`COPY (SELECT 1) TO ${t(prefix)} WITH (FORMAT = 'csv')`)).rowCount).toBe(1);
  });

  test("a wrong key does not cancel an export", async () => {
    await client.query("SET c2s.wait = '0.001'");
    try {
      const prefix = freshPrefix();
      const q = client.query(
        `COPY (SELECT c2s_wait(g) AS g FROM generate_series(1, 300) g) TO ${t(prefix)} WITH (FORMAT = 'csv')`,
      );
      await backendIs(upstreamPid, "wait_event = 'PgSleep'", "reading");
      const k = keyOf(client);
      const before = await cancelCounts();
      await sendCancel(proxy.port, { pid: k.pid, secret: k.secret ^ 1 });
      expect(await cancelsSince(before)).toEqual({
        export: 0,
        forwarded: 0,
        idle: 0,
        unmatched: 1,
        upstream: 0,
      });
      expect((await q).rowCount).toBe(300);
    } finally {
      await client.query("SET c2s.wait = '0'");
    }
  });
});

describe("cancels of plain statements (relayed, not exports)", () => {
  test("a running statement: the cancel is forwarded once, and the statement ends with 57014", async () => {
    const q = failure(client.query("SELECT pg_sleep(30) AS forwarded_cancel"), () => 0);
    await backendIs(upstreamPid, "wait_event = 'PgSleep' AND query LIKE '%forwarded_cancel%'", "pg_sleep");
    const before = await cancelCounts();
    await sendCancel(proxy.port, keyOf(client));
    expect(await cancelsSince(before)).toEqual({
      export: 0,
      forwarded: 1,
      idle: 0,
      unmatched: 0,
      upstream: 1,
    });
    expect((await q).err).toMatchObject({ code: "57014" });
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });

  test("cancels racing statements' ends are each counted once, as what the proxy did", async () => {
    // Its own session: a forwarded cancel still on its way when the test ends can only reach
    // this backend, which is gone by then (PostgreSQL ignores a key whose backend has exited).
    const c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    await c.connect();
    const before = await cancelCounts();
    const N = 60;
    let cancelled = 0;
    try {
      for (let i = 0; i < N; i++) {
        // The cancel leaves at a different point each time: with the statement, a turn of the
        // event loop after it, or once its answer came back (then nothing runs).
        const q = c.query(`SELECT ${i} AS i`).then(
          () => false,
          (e: { code?: string }) => {
            if (e.code !== "57014") throw e;
            return true;
          },
        );
        if (i % 3 === 1) await new Promise((r) => setImmediate(r));
        const cancel =
          i % 3 === 2 ? q.then(() => sendCancel(proxy.port, keyOf(c))) : sendCancel(proxy.port, keyOf(c));
        if (await q) cancelled++;
        await cancel;
      }
      const d = await cancelsSince(before);
      expect(d.forwarded + d.idle).toBe(N);
      expect(d).toMatchObject({ export: 0, unmatched: 0 });
      // Every forwarded one was sent, and nothing else was.
      expect(d.upstream).toBe(d.forwarded);
      expect(cancelled).toBeLessThanOrEqual(d.forwarded);
    } finally {
      await c.end();
    }
  });
});

describe("a cancel while waiting for an export slot", () => {
  test("57014 at once, nothing written, the running export unharmed", async () => {
    const limited = await startCopyProxy({
      upstreamPort: pgPort,
      s3,
      // Both sessions are one user: the per-user cap (default half the slots) must let B queue.
      args: ["--max-exports", "1", "--max-exports-per-user", "2"],
      config: { exports: { queueTimeoutMs: 60_000 } },
    });
    const a = new pg.Client({ connectionString: limited.url("postgres", DB) });
    const b = new pg.Client({ connectionString: limited.url("postgres", DB) });
    a.on("notice", () => {});
    b.on("notice", () => {});
    await a.connect();
    await b.connect();
    try {
      const aPid = (await a.query("SELECT pg_backend_pid() AS p")).rows[0].p;
      await a.query("SET c2s.wait = '0.001'");
      const pa = freshPrefix();
      const pb = freshPrefix();
      const qa = a.query(
        `COPY (SELECT c2s_wait(g) AS g FROM generate_series(1, 1000) g) TO ${t(pa)} WITH (FORMAT = 'csv')`,
      );
      await backendIs(aPid, "wait_event = 'PgSleep'", "export A reading");
      let t0 = 0;
      const failed = failure(b.query(`COPY (SELECT 1) TO ${t(pb)} WITH (FORMAT = 'csv')`), () => t0);
      // B waits for A's slot: both sessions have an export under way, only A's reached S3.
      await waitUntil("B queued", () =>
        [...limited.sessions].filter((s) => s.exporting !== null).length === 2 ? true : null,
      );
      t0 = performance.now();
      await sendCancel(limited.port, keyOf(b));
      const { err } = await failed;
      expect(err).toMatchObject({ code: "57014" });
      expect(await check.keys(bucket, `${pb}/`)).toEqual([]);
      expect((await qa).rowCount).toBe(1000);
      expect((await b.query(`COPY (SELECT 1) TO ${t(pb)} WITH (FORMAT = 'csv')`)).rowCount).toBe(1);
    } finally {
      await a.end();
      await b.end();
      await limited.shutdown(0);
    }
  });
});
