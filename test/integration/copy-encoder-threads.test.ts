// exports.encoderThreads = 2: an export's rows are dealt to two encoder threads, each writing its
// own files `mz-<id>-batch-<BBBB>-<NNNN>` (Materialize's output batches,
// src/storage-types/src/sinks/s3_oneshot_sink.rs `S3KeyManager::data_key`). Real PostgreSQL, moto
// (behind the fault proxy) and file://. The order of rows across files is not defined, so CSV is
// compared with PostgreSQL's own COPY output as a multiset of records, Parquet through DuckDB.
//
// Which thread gets rows is made certain with the test gate: the first thread is held, so its
// queue fills and every further read goes to the second (the one with the least bytes queued).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, test } from "vitest";
import { type EncoderThread, encoderThreadTestHooks } from "../../src/encoders/worker/encoder-thread.js";
import type { S3Check } from "../support/copy-proxy.js";
import { expectNothingLeft, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { createMixedTable, expectMixedParquet } from "../support/mixed-table.js";
import type { TestProxy } from "../support/proxy.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import type { RawPg } from "../support/raw-pg.js";
import type { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "copy_encoder_threads";
const pgPort = inject("pgPort");
const MiB = 1024 * 1024;

let stack: ProxyStack;
let check: S3Check;
let faults: S3FaultProxy;
let proxy: TestProxy;
let oracle: RawPg;
let client: pg.Client;
let bucket: string;
let root: string;
let duck: DuckDBConnection;
let direct: pg.Client;
const started: EncoderThread[] = [];
const gates: Int32Array[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "c2s-threads-"));
  stack = await startProxyStack({
    database: DB,
    bucket: "threads",
    args: ["--file-root", root],
    config: { exports: { encoderThreads: 2, partSize: 5 * MiB, s3MaxAttempts: 2 } },
  });
  ({ oracle, check, bucket, faults, proxy } = stack);
  // ~40 MB of CSV, no quoting and no newlines inside values: one record per line.
  await oracle.query(
    "CREATE TABLE wide AS SELECT g, md5(g::text) AS h, repeat(md5(g::text), 9) AS pad FROM generate_series(1, 120000) g",
  );
  await oracle.query(createMixedTable(150000));
  client = await stack.connect();
  duck = await (await DuckDBInstance.create(":memory:")).connect();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  encoderThreadTestHooks.started = (t) => {
    started.push(t);
    // Only the first thread of an export is held (the gate is read when a thread starts).
    delete encoderThreadTestHooks.gate;
  };
}, 120_000);

afterEach(() => {
  for (const g of gates.splice(0)) open(g);
  delete encoderThreadTestHooks.gate;
  started.length = 0;
  faults.clear();
});

afterAll(async () => {
  delete encoderThreadTestHooks.started;
  await direct?.end();
  await stack?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

/** Holds the next export's first encoder thread until open(gate). */
function holdFirstThread(): Int32Array {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  gate[0] = 1;
  gates.push(gate);
  encoderThreadTestHooks.gate = gate;
  return gate;
}

function open(gate: Int32Array): void {
  Atomics.store(gate, 0, 0);
  Atomics.notify(gate, 0);
}

let n = 0;
const freshPrefix = (): string => `t${++n}`;

/** The export's data keys, relative to `prefix/`, in key order. */
async function dataKeys(prefix: string): Promise<string[]> {
  return (await check.keys(bucket, `${prefix}/`))
    .filter((k) => /-batch-\d{4}-\d{4}\./.test(k))
    .map((k) => k.slice(prefix.length + 1));
}

const batchOf = (key: string): number => Number(/-batch-(\d{4})-\d{4}\./.exec(key)![1]);

/** The second thread has taken rows while the first was held. */
async function secondThreadFed(): Promise<void> {
  await waitUntil("rows dealt to the second encoder thread", () => (started[1]?.maxInFlight ?? 0) > 0);
}

describe("CSV over two encoder threads (moto)", () => {
  test("the records equal PostgreSQL's COPY as a multiset; MAX FILE SIZE holds per batch; the manifest lists every file by batch, then index", async () => {
    const prefix = freshPrefix();
    const gate = holdFirstThread();
    const copy = client.query(
      `COPY wide TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv', HEADER, MAX FILE SIZE = '16MB')`,
    );
    // Batch 1 has finished a 16 MB file while batch 0's thread was held: both write several.
    await waitUntil(
      "batch 1's first file",
      async () => (await dataKeys(prefix)).some((k) => k.endsWith("-batch-0001-0000.csv")),
      90_000,
    );
    open(gate);
    expect((await copy).rowCount).toBe(120000);

    const keys = await dataKeys(prefix);
    expect(new Set(keys.map(batchOf))).toEqual(new Set([0, 1]));
    expect(keys.filter((k) => batchOf(k) === 1).length).toBeGreaterThanOrEqual(2);
    const header = "g,h,pad\n";
    const records: string[] = [];
    for (const k of keys) {
      const f = await check.get(bucket, `${prefix}/${k}`);
      expect(f.length).toBeLessThanOrEqual(16 * MiB);
      expect(f.subarray(0, header.length).toString()).toBe(header);
      const body = f.subarray(header.length).toString();
      expect(body.endsWith("\n")).toBe(true);
      records.push(...body.slice(0, -1).split("\n"));
    }
    const want = (await oracle.query("COPY wide TO STDOUT (FORMAT csv)")).copyData.toString();
    const wantRecords = want.slice(0, -1).split("\n");
    expect(records.length).toBe(wantRecords.length);
    expect(records.sort()).toEqual(wantRecords.sort());

    const manifestKey = (await check.keys(bucket, `${prefix}/`)).find((k) => k.endsWith("-manifest.json"))!;
    const manifest = JSON.parse((await check.get(bucket, manifestKey)).toString()) as {
      rows: number;
      files: Array<{ key: string; rows: number; bytes: number }>;
    };
    // Keys sort as batch, then index (both zero-padded): the listing's order is the manifest's.
    expect(manifest.files.map((f) => f.key)).toEqual(keys);
    for (const f of manifest.files) {
      const body = await check.get(bucket, `${prefix}/${f.key}`);
      expect(f.bytes).toBe(body.length);
      expect(f.rows).toBe(body.toString().split("\n").length - 2); // the header, the last newline
    }
    expect(manifest.files.reduce((a, f) => a + f.rows, 0)).toBe(120000);
    expect(manifest.rows).toBe(120000);
  }, 180_000);

  test("an empty result gives exactly one file, batch 0's, with the header only, and starts one thread", async () => {
    const prefix = freshPrefix();
    const r = await client.query(
      `COPY (SELECT g FROM wide WHERE false) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv', HEADER)`,
    );
    expect(r.rowCount).toBe(0);
    const keys = await dataKeys(prefix);
    expect(keys).toHaveLength(1);
    expect(keys[0]).toMatch(/^mz-[0-9a-f-]+-batch-0000-0000\.csv$/);
    expect((await check.get(bucket, `${prefix}/${keys[0]}`)).toString()).toBe("g\n");
    // Batch 1's thread starts only once batch 0's queue is full.
    expect(started).toHaveLength(1);
  });
});

describe("Parquet over two encoder threads (file://)", () => {
  test("DuckDB reading *.parquet gets every value of the source", async () => {
    const dir = join(root, freshPrefix());
    const gate = holdFirstThread();
    const copy = client.query(`COPY mixed TO 'file://${dir}' WITH (FORMAT = 'parquet')`);
    await secondThreadFed();
    open(gate);
    expect((await copy).rowCount).toBe(150000);
    const files = readdirSync(dir)
      .filter((f) => f.endsWith(".parquet"))
      .sort();
    expect(new Set(files.map(batchOf))).toEqual(new Set([0, 1]));
    await expectMixedParquet(duck, direct, dir);
    const manifest = JSON.parse(
      readFileSync(
        join(dir, "_meta", readdirSync(join(dir, "_meta")).find((f) => f.endsWith(".json"))!),
        "utf8",
      ),
    ) as { files: Array<{ key: string; rows: number }> };
    expect(manifest.files.map((f) => f.key)).toEqual(files);
    expect(manifest.files.reduce((a, f) => a + f.rows, 0)).toBe(150000);
  });

  test("an empty result gives exactly batch 0's file, with no rows", async () => {
    const dir = join(root, freshPrefix());
    await client.query(`COPY (SELECT * FROM mixed WHERE false) TO 'file://${dir}' WITH (FORMAT = 'parquet')`);
    const files = readdirSync(dir).filter((f) => f.endsWith(".parquet"));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/-batch-0000-0000\.parquet$/);
    const count = (
      await duck.runAndReadAll(`SELECT count(*) FROM read_parquet('${dir}/*.parquet')`)
    ).getRows()[0]?.[0];
    expect(Number(count)).toBe(0);
  });
});

describe("nothing half-done with two batches", () => {
  test("a cancel while batch 1 has a completed file and an open upload leaves the prefix as found", async () => {
    const prefix = freshPrefix();
    holdFirstThread(); // held to the end: every row past batch 0's queue goes to batch 1
    await client.query("SET c2s.wait = '0.05'");
    // The rows of wide, then a slow tail that keeps the export running until it is cancelled.
    const copy = client.query(
      `COPY (SELECT g, h, pad FROM wide UNION ALL SELECT c2s_wait(g), '', '' FROM generate_series(1, 100000) g)
       TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
    );
    try {
      await waitUntil(
        "batch 1's first file complete and its second uploading",
        async () => {
          const keys = await dataKeys(prefix);
          const uploads = await check.uploads(bucket, `${prefix}/`);
          return (
            keys.some((k) => k.endsWith("-batch-0001-0000.csv")) &&
            uploads.some((k) => k.endsWith("-batch-0001-0001.csv"))
          );
        },
        90_000,
      );
      await sendCancel(proxy.port, keyOf(client));
      await expect(copy).rejects.toMatchObject({ code: "57014" });
    } finally {
      await copy.catch(() => {});
      await client.query("RESET c2s.wait");
    }
    await expectNothingLeft(check, bucket, prefix);
  }, 180_000);

  test.each([0, 1])(
    "batch %i's file cannot be completed (S3 500s): 58030, and nothing of either batch is left",
    async (failing) => {
      const prefix = freshPrefix();
      const gate = holdFirstThread();
      faults.setRules({
        // A file under partSize is one PutObject, a larger one a multipart upload.
        op: ["CompleteMultipartUpload", "PutObject"],
        key: new RegExp(`-batch-000${failing}-`),
        fault: "500",
      });
      const copy = client.query(
        `COPY (SELECT * FROM wide WHERE g <= 40000) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
      );
      await secondThreadFed();
      open(gate);
      await expect(copy).rejects.toMatchObject({ code: "58030" });
      await expectNothingLeft(check, bucket, prefix);
    },
  );
});
