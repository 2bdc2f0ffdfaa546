// Faults during a COPY ... TO 's3://...' (SPEC §2.2), against real PostgreSQL and a real S3 server
// behind a fault-injecting proxy:
// - transient S3 errors (500, 503 SlowDown, connection resets, stalled requests) are retried by the
//   SDK's retry strategy and the export still equals PostgreSQL's own COPY output;
// - persistent ones end in 58030 naming the S3 operation, with nothing left behind;
// - when S3 becomes unreachable the cleanup fails too: the sentinel stays and DETAIL lists the keys;
// - the upstream backend killed, the client gone, the proxy told to stop (SIGTERM) mid-export:
//   no upload and no object survive;
// - limits: a full proxy answers 53300; uploads in flight stay within the configured bound.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { runCleanupCommand } from "../../src/copy/cleanup-command.js";
import { loadConnections } from "../../src/copy/connections.js";
import { s3UploadTestHooks } from "../../src/copy/storage/s3-upload.js";
import { type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import {
  expectBackendGone,
  expectNothingLeft,
  keyOf,
  sendCancel,
  waitUntil,
} from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { spawnCopyProxy } from "../support/proxy-process.js";
import {
  type FaultyProxy,
  type ProxyStack,
  startFaultyProxy,
  startProxyStack,
} from "../support/proxy-stack.js";
import type { RawPg } from "../support/raw-pg.js";
import type { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "copy_faults";
const pgPort = inject("pgPort");
const MiB = 1024 * 1024;
/**
 * ~23.8 MB of CSV: at MAX FILE SIZE 16MB a first file in four parts of 5 MiB (the last one less)
 * and a second in two. The tests need two multipart files and six parts; more rows only cost time.
 */
const WIDE_ROWS = 230_000;

let stack: ProxyStack;
let s3: S3Access;
let check: S3Check;
let faults: S3FaultProxy;
let proxy: TestProxy;
let oracle: RawPg;
let client: pg.Client;
let bucket: string;
/** PostgreSQL's own `COPY wide TO STDOUT (FORMAT csv)`: what every export of "wide" must equal. */
let wideOracle: Buffer;

beforeAll(async () => {
  stack = await startProxyStack({
    database: DB,
    bucket: "faults",
    config: {
      exports: {
        partSize: 5 * MiB,
        partsInFlight: 2,
        filesCompleting: 1,
        s3MaxAttempts: 4,
        // A stalled request is given up after 1.5 s of silence, then retried.
        s3RequestTimeoutMs: 1500,
      },
    },
  });
  ({ s3, check, bucket, oracle, faults, proxy } = stack);
  await oracle.query(
    `CREATE TABLE wide AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, ${WIDE_ROWS}) g`,
  );
  client = await stack.connect();
  // "wide" is big enough for synchronized sequential scans, which start where the last scan of
  // the table was: without this, two reads of it need not return the rows in the same order.
  await client.query("SET synchronize_seqscans = off");
  await oracle.query("SET synchronize_seqscans = off");
  // The oracle's bytes, read here: this first scan of the new table also sets its hint bits, a
  // cost no test should pay inside its own time.
  wideOracle = (await oracle.query("COPY wide TO STDOUT (FORMAT csv)")).copyData;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

let n = 0;
const freshPrefix = (): string => `f${++n}`;
const target = (p: string): string => `'s3://${bucket}/${p}'`;
const WIDE = (p: string) => `COPY wide TO ${target(p)} WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`;

async function concatCsv(prefix: string): Promise<Buffer> {
  const keys = (await check.keys(bucket, `${prefix}/`)).filter((k) => k.endsWith(".csv"));
  return Buffer.concat(await Promise.all(keys.map((k) => check.get(bucket, k))));
}

async function expectWideExport(prefix: string): Promise<void> {
  expect((await concatCsv(prefix)).equals(wideOracle)).toBe(true);
  const keys = await check.keys(bucket, `${prefix}/`);
  expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
  expect(keys.filter((k) => k.endsWith("-manifest.json"))).toHaveLength(1);
  expect(await check.uploads(bucket, `${prefix}/`)).toEqual([]);
}

describe("transient S3 faults are retried; the export is still exact", () => {
  test("one of each kind, at every step (list, sentinel, create, parts, complete, manifest, commit)", async () => {
    const prefix = freshPrefix();
    faults.resetStats();
    faults.setRules(
      { op: "ListObjectsV2", nth: 1, fault: "503" },
      { op: "PutObject", key: /-INCOMPLETE$/, nth: 1, fault: "500" },
      { op: "CreateMultipartUpload", nth: 1, fault: "reset" },
      { op: "UploadPart", nth: 1, fault: "500" },
      { op: "UploadPart", nth: 3, fault: "503" },
      { op: "UploadPart", nth: 5, fault: "reset" },
      { op: "UploadPart", nth: 6, fault: "stall" },
      { op: "CompleteMultipartUpload", nth: 2, fault: "reset" },
      { op: "PutObject", key: /-manifest\.json$/, nth: 1, fault: "503" },
      { op: "DeleteObjects", nth: 1, fault: "500" },
    );
    try {
      expect((await client.query(WIDE(prefix))).rowCount).toBe(WIDE_ROWS);
    } finally {
      faults.clear();
    }
    expect(faults.faultCount()).toBe(10);
    expect(faults.faultCount("stall")).toBe(1);
    await expectWideExport(prefix);
  });

  test("random faults: 10% of all requests fail with 500, 5% are reset", async () => {
    const prefix = freshPrefix();
    faults.resetStats();
    // Drawn per request from a seed (s3-fault-proxy.ts), not from the order requests arrive in: the
    // same requests fail every run, and none more often than s3MaxAttempts - 1. These seeds fail
    // two UploadParts, the sentinel's PutObject and a CompleteMultipartUpload among the export's
    // 17 requests (random draws failed one run in a hundred: a request drew all four attempts).
    faults.setRules(
      { fault: "500", probability: 0.1, seed: 5, perRequest: 3 },
      { fault: "reset", probability: 0.05, seed: 26, perRequest: 3 },
    );
    try {
      expect((await client.query(WIDE(prefix))).rowCount).toBe(WIDE_ROWS);
    } finally {
      faults.clear();
    }
    expect(faults.faultCount("500")).toBeGreaterThan(0);
    expect(faults.faultCount("reset")).toBeGreaterThan(0);
    await expectWideExport(prefix);
  });
});

describe("persistent S3 faults: 58030 naming the operation, nothing left behind", () => {
  const cases: Array<{ name: string; rule: Parameters<S3FaultProxy["setRules"]>[0]; message: string }> = [
    {
      name: "every UploadPart answers 503 SlowDown",
      rule: { op: "UploadPart", fault: "503" },
      message: "SlowDown error when using UploadPart",
    },
    {
      name: "every CompleteMultipartUpload has its connection reset",
      rule: { op: "CompleteMultipartUpload", fault: "reset" },
      message: "ECONNRESET error when using CompleteMultipartUpload",
    },
    {
      name: "the sentinel cannot be written (500)",
      rule: { op: "PutObject", key: /-INCOMPLETE$/, fault: "500" },
      message: "InternalError error when using PutObject",
    },
  ];
  for (const c of cases) {
    test(c.name, async () => {
      const prefix = freshPrefix();
      faults.resetStats();
      faults.setRules(c.rule);
      let err: pg.DatabaseError | undefined;
      try {
        await client.query(WIDE(prefix));
      } catch (e) {
        err = e as pg.DatabaseError;
      } finally {
        faults.clear();
      }
      expect(err).toMatchObject({ code: "58030", message: c.message });
      // Retried before giving up: 4 attempts of the first request that failed.
      expect(faults.faultCount()).toBeGreaterThanOrEqual(4);
      // The error names the object, never the credentials or the signature.
      expect(err!.detail).toContain(`s3://${bucket}/${prefix}`);
      expect(`${err!.message} ${err!.detail} ${err!.hint ?? ""}`).not.toMatch(
        /Credential=|Signature=|AWS4-HMAC/,
      );
      await expectNothingLeft(check, bucket, prefix);
      expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
    });
  }

  test("S3 unreachable for the cleanup too: the sentinel stays, DETAIL lists every key left; cleanup removes them", async () => {
    const prefix = freshPrefix();
    faults.resetStats();
    // The second file cannot be uploaded, and from then on nothing can be aborted or deleted.
    faults.setRules(
      { op: "UploadPart", key: /-batch-0000-0001\.csv$/, fault: "500" },
      { op: ["AbortMultipartUpload", "DeleteObjects", "ListMultipartUploads"], fault: "reset" },
    );
    let err: pg.DatabaseError | undefined;
    try {
      await client.query(WIDE(prefix));
    } catch (e) {
      err = e as pg.DatabaseError;
    } finally {
      faults.clear();
    }
    expect(err).toMatchObject({ code: "58030", message: "InternalError error when using UploadPart" });
    const keys = await check.keys(bucket, `${prefix}/`);
    const sentinel = keys.find((k) => k.endsWith("-INCOMPLETE"));
    expect(sentinel).toBeDefined();
    // Every object still there and every unfinished upload is named in the detail.
    for (const k of keys) expect(err!.detail).toContain(`s3://${bucket}/${k}`);
    for (const k of await check.uploads(bucket, `${prefix}/`))
      expect(err!.detail).toContain(`s3://${bucket}/${k}`);
    expect(err!.detail).toMatch(/cleanup failed \(.*ECONNRESET/);
    expect(err!.hint).toBe(
      `Remove them with: copy-to-s3-proxy cleanup s3://${bucket}/${prefix} --yes --older-than 0`,
    );
    expect(keys.some((k) => k.endsWith("-batch-0000-0000.csv"))).toBe(true);

    // What the hint says works.
    const lines: string[] = [];
    const code = await runCleanupCommand({
      target: `s3://${bucket}/${prefix}`,
      yes: true,
      olderThan: "0",
      connection: undefined,
      connections: loadConnections(
        {
          default: {
            endpoint: s3.endpoint,
            region: s3.region,
            accessKeyId: "test",
            secretAccessKey: { env: "C2S_TEST_S3_SECRET" },
          },
        },
        { C2S_TEST_S3_SECRET: "test" },
        { warn: () => {} },
      ),
      out: (l) => lines.push(l),
    });
    expect(code, lines.join("\n")).toBe(0);
    await expectNothingLeft(check, bucket, prefix);
  });
});

describe("the export's surroundings fail mid-export", () => {
  test("the upstream backend is terminated: an error, and nothing left in S3", async () => {
    const c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    c.on("notice", () => {});
    c.on("error", () => {});
    await c.connect();
    const pid = (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p;
    await c.query("SET c2s.wait = '0.002'");
    const prefix = freshPrefix();
    faults.resetStats();
    const q = c.query(
      `COPY (SELECT c2s_wait(g) AS g FROM generate_series(1, 5000) g) TO ${target(prefix)} WITH (FORMAT = 'csv')`,
    );
    const failed = q.then(
      () => null,
      (e: unknown) => e,
    );
    await faults.waitFor("PutObject"); // the sentinel is written: the export is reading
    await oracle.query(`SELECT pg_terminate_backend(${pid})`);
    const err = (await failed) as pg.DatabaseError | null;
    expect(err).not.toBeNull();
    expect(["08006", "57P01"]).toContain(err!.code);
    await expectNothingLeft(check, bucket, prefix);
    await c.end().catch(() => {});
  });

  test("the client disconnects: the export is aborted and cleaned up, the backend closed", async () => {
    const c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    c.on("notice", () => {});
    c.on("error", () => {});
    await c.connect();
    const pid = (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p;
    const prefix = freshPrefix();
    faults.resetStats();
    // Uploads are parked, so the export is mid-file with parts in flight when the client goes.
    faults.setRules({ op: "UploadPart", fault: "hold" });
    const q = c.query(WIDE(prefix)).catch(() => {});
    try {
      await faults.waitFor("UploadPart", 2);
      (c as unknown as { connection: { stream: { destroy(): void } } }).connection.stream.destroy();
      await q;
      await expectBackendGone(oracle, pid);
    } finally {
      faults.clear();
    }
    await waitUntil("the export's objects removed", async () =>
      (await check.keys(bucket, `${prefix}/`)).length === 0 ? true : null,
    );
    await expectNothingLeft(check, bucket, prefix);
    // The session stayed listed until its cleanup had finished; now it is gone.
    await waitUntil("session closed", () => (proxy.sessions.size === 1 ? true : null));
  });
});

describe("SIGTERM during an export", () => {
  test("within the drain timeout the export finishes (COPY n), then the proxy exits", async () => {
    const p = await spawnCopyProxy({ upstreamPort: pgPort, s3, args: ["--drain-timeout", "20000"] });
    const c = new pg.Client({ connectionString: p.url("postgres", DB) });
    c.on("notice", () => {});
    c.on("error", () => {});
    try {
      await c.connect();
      const pid = (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p;
      // ~2 s of rows in 50 sleeps of 40 ms: many short sleeps would each wait for a core on a busy
      // machine, and the export could outlast the drain timeout.
      await c.query("SET c2s.wait = '0.04'");
      const prefix = freshPrefix();
      const q = c.query(
        `COPY (SELECT CASE WHEN g % 20 = 0 THEN c2s_wait(g) ELSE g END AS g FROM generate_series(1, 1000) g) TO ${target(prefix)} WITH (FORMAT = 'csv')`,
      );
      await waitUntil("export reading", async () =>
        (await check.keys(bucket, `${prefix}/`)).some((k) => k.endsWith("-INCOMPLETE")) ? true : null,
      );
      p.proc.kill("SIGTERM");
      expect((await q).rowCount).toBe(1000);
      expect(await p.exited).toEqual({ code: 0, signal: null });
      const keys = await check.keys(bucket, `${prefix}/`);
      expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
      expect(keys.filter((k) => k.endsWith(".csv"))).toHaveLength(1);
      await expectBackendGone(oracle, pid);
    } finally {
      await c.end().catch(() => {});
      await p.stop();
    }
  });

  test("past the drain timeout the export is aborted and cleaned up before the proxy exits", async () => {
    const p = await spawnCopyProxy({ upstreamPort: pgPort, s3, args: ["--drain-timeout", "300"] });
    const c = new pg.Client({ connectionString: p.url("postgres", DB) });
    c.on("notice", () => {});
    c.on("error", () => {});
    try {
      await c.connect();
      const pid = (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p;
      // ~20 s of rows, in sleeps of 10 ms every 20th row (not 0.5 ms every row: see above).
      await c.query("SET c2s.wait = '0.01'");
      const prefix = freshPrefix();
      const q = c.query(
        `COPY (SELECT CASE WHEN g % 20 = 0 THEN c2s_wait(g) ELSE g END AS g, repeat('x', 4000) AS pad FROM generate_series(1, 40000) g) TO ${target(prefix)} WITH (FORMAT = 'csv')`,
      );
      const failed = q.then(
        () => null,
        (e: unknown) => e,
      );
      // Mid-file, with a multipart upload open.
      await waitUntil("a multipart upload open", async () =>
        (await check.uploads(bucket, `${prefix}/`)).length > 0 ? true : null,
      );
      p.proc.kill("SIGTERM");
      const err = (await failed) as pg.DatabaseError | null;
      expect(err).toMatchObject({ code: "57P01" });
      expect(await p.exited).toEqual({ code: 0, signal: null });
      // Everything was removed before the process ended: no polling needed for the objects.
      expect(await check.keys(bucket, `${prefix}/`)).toEqual([]);
      await expectNothingLeft(check, bucket, prefix);
      await expectBackendGone(oracle, pid);
    } finally {
      await c.end().catch(() => {});
      await p.stop();
    }
  });
});

describe("limits", () => {
  test("max concurrent exports: one more is refused with 53300 and writes nothing", async () => {
    const limited = await startCopyProxy({ upstreamPort: pgPort, s3, args: ["--max-exports", "1"] });
    const a = new pg.Client({ connectionString: limited.url("postgres", DB) });
    const b = new pg.Client({ connectionString: limited.url("postgres", DB) });
    a.on("notice", () => {});
    await a.connect();
    await b.connect();
    try {
      await a.query("SET c2s.wait = '0.001'");
      const pa = freshPrefix();
      const pb = freshPrefix();
      const qa = a.query(
        `COPY (SELECT c2s_wait(g) AS g FROM generate_series(1, 500) g) TO ${target(pa)} WITH (FORMAT = 'csv')`,
      );
      await waitUntil("A running", () =>
        [...limited.sessions].some((s) => s.exporting !== null) ? true : null,
      );
      await expect(b.query(`COPY (SELECT 1) TO ${target(pb)} WITH (FORMAT = 'csv')`)).rejects.toMatchObject({
        code: "53300",
        message: "too many COPY ... TO exports running (the limit is 1)",
      });
      expect(await check.keys(bucket, `${pb}/`)).toEqual([]);
      expect((await b.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
      expect((await qa).rowCount).toBe(500);
      expect((await b.query(`COPY (SELECT 1) TO ${target(pb)} WITH (FORMAT = 'csv')`)).rowCount).toBe(1);
    } finally {
      await a.end();
      await b.end();
      await limited.shutdown(0);
    }
  });

  test("memory: an upload leaves full parts waiting at partsInFlight parts in flight, and sends no further part", async () => {
    // Every UploadPart is held, so none ends and every part sent stays in flight. The upload
    // tells (a test hook) when it leaves a full part waiting for want of a slot: from then on it
    // sends nothing until a part ends, so the parts the S3 side has seen by then are all there
    // will be. (The relay may stop first for the file bound, filesCompleting: the first file's
    // last parts then wait in its end().) Parts are told apart by their number: a held part that
    // outlasts s3RequestTimeoutMs comes again as itself.
    const prefix = freshPrefix();
    const waits: number[] = [];
    const parts = (): number =>
      new Set(faults.log.filter((r) => r.op === "UploadPart").map((r) => r.id)).size;
    faults.resetStats();
    faults.setRules({ op: "UploadPart", fault: "hold" });
    s3UploadTestHooks.waitingForSlot = (n) => waits.push(n);
    const q = client.query(WIDE(prefix));
    try {
      await waitUntil("the upload to wait for a slot, its parts at S3", () =>
        waits.length > 0 && parts() >= Math.max(...waits) ? true : null,
      );
      expect(Math.max(...waits)).toBe(2);
      expect(parts()).toBe(2);
    } finally {
      delete s3UploadTestHooks.waitingForSlot;
      faults.clear();
    }
    expect((await q).rowCount).toBe(WIDE_ROWS);
    await expectWideExport(prefix);
  });

  test("memory: slow parts bring the parts in flight up to partsInFlight × (filesCompleting + 1), not past it", async () => {
    // Slow part uploads make every buffer fill up to its bound. That the bound holds is the test
    // above's: this one's upper check is only as good as the machine is fast (with the slots
    // unbounded, parts were made too slowly here to overlap more than four: it still passed).
    const prefix = freshPrefix();
    faults.resetStats();
    faults.setRules({ op: "UploadPart", fault: "stall", stallMs: 150 });
    try {
      expect((await client.query(WIDE(prefix))).rowCount).toBe(WIDE_ROWS);
    } finally {
      faults.clear();
    }
    expect(faults.count("UploadPart")).toBeGreaterThanOrEqual(6);
    // partsInFlight 2 × (filesCompleting 1 + 1): the bound is reached, not exceeded.
    expect(faults.maxPartsInFlight).toBeGreaterThanOrEqual(2);
    expect(faults.maxPartsInFlight).toBeLessThanOrEqual(4);
    await expectWideExport(prefix);
  });
});

const cephEndpoint = inject("cephEndpoint");
describe.skipIf(cephEndpoint === undefined)(
  `the same against Ceph RadosGW${cephEndpoint ? "" : ` (skipped: ${inject("cephSkipReason")})`}`,
  () => {
    const ceph: S3Access = {
      endpoint: cephEndpoint ?? "",
      region: inject("cephRegion") ?? "us-east-1",
      accessKeyId: inject("cephAccessKeyId") ?? "",
      secretAccessKey: inject("cephSecretAccessKey") ?? "",
    };
    const cephCheck = new S3Check(ceph);
    let cephStack: FaultyProxy;
    let cephFaults: S3FaultProxy;
    let cephProxy: TestProxy;
    let c: pg.Client;
    let cephBucket: string;

    beforeAll(async () => {
      cephStack = await startFaultyProxy({
        s3: ceph,
        database: DB,
        config: {
          exports: {
            partSize: 5 * MiB,
            partsInFlight: 2,
            filesCompleting: 1,
            s3MaxAttempts: 4,
            s3RequestTimeoutMs: 3000,
          },
        },
      });
      ({ faults: cephFaults, proxy: cephProxy } = cephStack);
      c = await cephStack.connect();
      await c.query("SET synchronize_seqscans = off");
      cephBucket = await cephCheck.bucket("ceph-faults");
    }, 60_000);

    afterAll(async () => {
      await cephStack?.stop();
    });

    test("transient faults at every step are retried; the files equal PostgreSQL's COPY output", async () => {
      cephFaults.setRules(
        { op: "ListObjectsV2", nth: 1, fault: "503" },
        { op: "CreateMultipartUpload", nth: 1, fault: "reset" },
        { op: "UploadPart", nth: 2, fault: "500" },
        { op: "UploadPart", nth: 4, fault: "reset" },
        { op: "CompleteMultipartUpload", nth: 1, fault: "503" },
        { op: "DeleteObjects", nth: 1, fault: "500" },
      );
      try {
        expect(
          (
            await c.query(
              `COPY wide TO 's3://${cephBucket}/t1' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
            )
          ).rowCount,
        ).toBe(WIDE_ROWS);
      } finally {
        cephFaults.clear();
      }
      expect(cephFaults.faultCount()).toBe(6);
      const keys = (await cephCheck.keys(cephBucket, "t1/")).filter((k) => k.endsWith(".csv"));
      const got = Buffer.concat(await Promise.all(keys.map((k) => cephCheck.get(cephBucket, k))));
      expect(got.equals(wideOracle)).toBe(true);
      expect((await cephCheck.keys(cephBucket, "t1/")).some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
      expect(await cephCheck.uploads(cephBucket, "t1/")).toEqual([]);
    });

    test("a persistent fault fails with 58030 and leaves nothing; so does a cancel with parts in flight", async () => {
      cephFaults.setRules({ op: "CompleteMultipartUpload", fault: "500" });
      try {
        await expect(
          c.query(`COPY wide TO 's3://${cephBucket}/t2' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`),
        ).rejects.toMatchObject({
          code: "58030",
          message: "InternalError error when using CompleteMultipartUpload",
        });
      } finally {
        cephFaults.clear();
      }
      await expectNothingLeft(cephCheck, cephBucket, "t2");

      cephFaults.resetStats();
      cephFaults.setRules({ op: "UploadPart", nth: 3, fault: "hold" });
      const q = c.query(`COPY wide TO 's3://${cephBucket}/t3' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`);
      const failed = q.then(
        () => null,
        (e: unknown) => e,
      );
      try {
        await cephFaults.waitFor("UploadPart", 3);
        // The third part is held until after the error: a cancel that waited for it would hang.
        await sendCancel(cephProxy.port, keyOf(c));
        expect(await failed).toMatchObject({ code: "57014" });
      } finally {
        cephFaults.clear();
      }
      await expectNothingLeft(cephCheck, cephBucket, "t3");
    });
  },
);
