// An export's rows are decoded and encoded in a thread of the export's own, never on the thread that
// relays every session (issue 13 item 1; docs/isolation.md). The proxy runs in this process, so the
// encoder modules as this process loads them are the relay thread's: counting their use shows
// where rows are encoded, and blocking the encoder thread shows what the relay does meanwhile.
import { readFileSync } from "node:fs";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, onTestFinished, test, vi } from "vitest";
import { budgetUse, encoderBudget } from "../../src/encoders/worker/encoder-budget.js";
import { type EncoderThread, encoderThreadTestHooks } from "../../src/encoders/worker/encoder-thread.js";
import { BATCH_BYTES, WINDOW_BYTES } from "../../src/encoders/worker/row-batcher.js";
import { threadPoolTestHooks } from "../../src/encoders/worker/thread-pool.js";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { RawPg } from "../support/raw-pg.js";

const onRelayThread = vi.hoisted(() => ({ encoders: 0 }));
vi.mock("../../src/encoders/csv-encoder.js", async (original) => {
  const m = await original<typeof import("../../src/encoders/csv-encoder.js")>();
  return {
    ...m,
    createCsvEncoder: (...args: Parameters<typeof m.createCsvEncoder>) => {
      onRelayThread.encoders++;
      return m.createCsvEncoder(...args);
    },
  };
});
vi.mock("../../src/encoders/parquet-encoder.js", async (original) => {
  const m = await original<typeof import("../../src/encoders/parquet-encoder.js")>();
  return {
    ...m,
    createParquetEncoder: (...args: Parameters<typeof m.createParquetEncoder>) => {
      onRelayThread.encoders++;
      return m.createParquetEncoder(...args);
    },
  };
});

const DB = "export_isolation";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let oracle: RawPg;
let client: pg.Client;
let other: pg.Client;
let bucket: string;
const started: EncoderThread[] = [];

const threads = (): number =>
  Number(/^Threads:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))![1]);

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3 });
  client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  other = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  await client.connect();
  await other.connect();
  bucket = await check.bucket("isolation");
  encoderThreadTestHooks.started = (t) => started.push(t);
}, 60_000);

afterEach(() => {
  const gate = encoderThreadTestHooks.gate;
  if (gate !== undefined) {
    Atomics.store(gate, 0, 0);
    Atomics.notify(gate, 0);
  }
  delete encoderThreadTestHooks.gate;
  started.length = 0;
});

afterAll(async () => {
  delete encoderThreadTestHooks.started;
  await client?.end();
  await other?.end();
  await proxy?.shutdown(0);
  await oracle?.close();
});

async function lines(prefix: string): Promise<number> {
  const keys = (await check.keys(bucket, `${prefix}/`)).filter((k) => /-batch-\d{4}-\d{4}\.csv$/.test(k));
  const bodies = await Promise.all(keys.map((k) => check.get(bucket, k)));
  return bodies.reduce((n, b) => n + b.toString().split("\n").length - 1, 0);
}

describe("an export's rows are encoded off the relay's thread", () => {
  test("CSV and Parquet: every row is encoded in the export's thread, at a lower priority", async () => {
    const csv = await client.query(
      `COPY (SELECT g, md5(g::text) FROM generate_series(1, 20000) g) TO 's3://${bucket}/csv' WITH (FORMAT = 'csv')`,
    );
    const parquet = await client.query(
      `COPY (SELECT g, md5(g::text) FROM generate_series(1, 20000) g) TO 's3://${bucket}/parquet' WITH (FORMAT = 'parquet')`,
    );
    expect([csv.rowCount, parquet.rowCount]).toEqual([20000, 20000]);
    expect(await lines("csv")).toBe(20000);
    expect(onRelayThread.encoders).toBe(0);
    expect(started.map((t) => t.nice)).toEqual([10, 10]);
    // exports.workerPolicy "nice", the default: SCHED_IDLE threads starve where the proxy shares
    // its scheduling group with busy threads (docs/isolation.md).
    expect(started.map((t) => t.idle)).toEqual([false, false]);
  });

  test("a blocked encoder thread: other sessions are answered, the export's upstream waits, its queue stays bounded", async () => {
    const gate = new Int32Array(new SharedArrayBuffer(4));
    gate[0] = 1;
    encoderThreadTestHooks.gate = gate;
    const rows = 200_000; // ~45 MB of CSV rows: ten times the queue
    const copy = client.query(
      `COPY (SELECT g, repeat('x', 200) FROM generate_series(1, ${rows}) g) TO 's3://${bucket}/blocked' WITH (FORMAT = 'csv')`,
    );
    const thread = await waitUntil("the export's encoder thread to fill its queue", () =>
      started[0]?.congested ? started[0] : undefined,
    );
    await waitUntil("the export's upstream backend to wait for the proxy to read", async () => {
      // In this file's database: copy-stall.test.ts reads the same rows, and files run side by side.
      const r = await oracle.query(
        `SELECT 1 FROM pg_stat_activity WHERE datname = current_database() AND wait_event = 'ClientWrite' AND query LIKE '%generate_series(1, ${rows})%'`,
      );
      return r.rows.length === 1;
    });
    for (let i = 0; i < 20; i++) expect((await other.query("SELECT $1::int AS i", [i])).rows[0].i).toBe(i);
    expect(thread.maxInFlight).toBeLessThanOrEqual(WINDOW_BYTES + BATCH_BYTES);
    Atomics.store(gate, 0, 0);
    Atomics.notify(gate, 0);
    expect((await copy).rowCount).toBe(rows);
    expect(await lines("blocked")).toBe(rows);
    expect(thread.maxInFlight).toBeLessThanOrEqual(WINDOW_BYTES + BATCH_BYTES);
  });

  test("exports.maxEncodingThreads 1: of two exports at once one encodes while the other waits for the slot; both complete", async () => {
    const capped = await startCopyProxy({
      upstreamPort: pgPort,
      s3,
      config: { exports: { maxEncodingThreads: 1, maxExportsPerUser: 2 } },
    });
    const clients = [0, 1].map(() => new pg.Client({ connectionString: capped.url("postgres", DB) }));
    // Held inside the encoding (its slot taken), counted in gate[1].
    const gate = new Int32Array(new SharedArrayBuffer(12));
    gate[2] = 1;
    encoderThreadTestHooks.gate = gate;
    try {
      for (const c of clients) await c.connect();
      const copies = clients.map((c, i) =>
        c.query(
          `COPY (SELECT g, md5(g::text) FROM generate_series(1, 20000) g) TO 's3://${bucket}/capped-${i}' WITH (FORMAT = 'csv')`,
        ),
      );
      await waitUntil(
        "one export's thread encoding, the other's waiting for a slot",
        () => Atomics.load(gate, 1) + budgetUse(encoderBudget(1)).waiting === 2,
      );
      expect(Atomics.load(gate, 1)).toBe(1);
      Atomics.store(gate, 2, 0);
      Atomics.notify(gate, 2);
      expect((await Promise.all(copies)).map((r) => r.rowCount)).toEqual([20000, 20000]);
      expect([await lines("capped-0"), await lines("capped-1")]).toEqual([20000, 20000]);
    } finally {
      Atomics.store(gate, 2, 0);
      Atomics.notify(gate, 2);
      for (const c of clients) await c.end().catch(() => {});
      await capped.shutdown(0);
    }
  });

  test("a cancelled export ends its blocked encoder thread, and refused exports leave no thread", async () => {
    await client.query(`COPY (SELECT 1 AS a) TO 's3://${bucket}/taken' WITH (FORMAT = 'csv')`);
    const before = threads();
    // A thread that comes back while another export has started its own is kept idle for a burst
    // (thread-pool.ts, SPARE_IDLE_MS): briefly here, so that only a thread nobody ends counts.
    threadPoolTestHooks.idleMs = 50;
    onTestFinished(() => {
      delete threadPoolTestHooks.idleMs;
    });
    for (const format of ["csv", "parquet"]) {
      await expect(
        client.query(`COPY (SELECT 1 AS a) TO 's3://${bucket}/taken' WITH (FORMAT = '${format}')`),
      ).rejects.toMatchObject({ code: "58000" });
    }
    const gate = new Int32Array(new SharedArrayBuffer(4));
    gate[0] = 1;
    encoderThreadTestHooks.gate = gate;
    const copy = client.query(
      `COPY (SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g) TO 's3://${bucket}/cancelled' WITH (FORMAT = 'parquet')`,
    );
    await waitUntil("the export's encoder thread to fill its queue", () => started.at(-1)?.congested);
    await sendCancel(proxy.port, keyOf(client));
    await expect(copy).rejects.toMatchObject({ code: "57014" });
    await waitUntil("the exports' encoder threads to end", () => threads() <= before, 10_000);
    expect(await check.keys(bucket, "cancelled/")).toEqual([]);
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });

  test("an encoder's error reaches the client as its SQLSTATE, message and hint, and the session goes on", async () => {
    const err = await client
      .query(
        `COPY (SELECT d FROM (VALUES (date '2024-01-01'), (date 'infinity')) v(d)) TO 's3://${bucket}/infinite' WITH (FORMAT = 'parquet')`,
      )
      .then(
        () => undefined,
        (e: unknown) =>
          e as { code: string; message: string; hint?: string; detail?: string; where?: string },
      );
    expect(err).toMatchObject({
      code: "22008",
      message: 'column "d": date infinity cannot be represented in Parquet',
      hint: "Filter or replace infinite dates in the query, e.g. with NULLIF or CASE.",
    });
    expect(JSON.stringify([err?.message, err?.detail, err?.hint, err?.where])).not.toMatch(
      /\bat |\.[jt]s:\d|node:/,
    );
    expect(started).toHaveLength(1);
    expect(await check.keys(bucket, "infinite/")).toEqual([]);
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });
});
