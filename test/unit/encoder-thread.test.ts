// An export's encoder thread as the driver sees it: DataRows in, the same files out as the encoder
// makes in-thread, a bounded queue with credits, errors as PgError, and no thread left behind.
// Started from the TypeScript sources here (tsx's loader); test/integration/npm-pack.test.ts
// starts it from the built package.
import { readdirSync, readFileSync } from "node:fs";
import { afterEach, describe, expect, test } from "vitest";
import type { EncoderSpec } from "../../src/encoders/create-encoder.js";
import { createCsvEncoder } from "../../src/encoders/csv-encoder.js";
import type { ColumnInfo, FileSink } from "../../src/encoders/types.js";
import {
  budgetAcquisitions,
  budgetHolders,
  budgetUse,
  ENDLESS_SLICE,
  encoderBudget,
  SLICE_MS,
  setBudgetSlice,
} from "../../src/encoders/worker/encoder-budget.js";
import { EncoderThread, encoderThreadTestHooks } from "../../src/encoders/worker/encoder-thread.js";
import { CHUNK_BYTES, RING_BUFFERS } from "../../src/encoders/worker/port-sink.js";
import { BATCH_BYTES, WINDOW_BYTES } from "../../src/encoders/worker/row-batcher.js";
import {
  idleEncoderThreadIds,
  keepSpareEncoderThread,
  MAX_IDLE_THREADS,
  spareEncoderThreadId,
  threadPoolTestHooks,
} from "../../src/encoders/worker/thread-pool.js";
import { waitUntil } from "../support/export-checks.js";
import { threadsAtNiceness } from "../support/thread-niceness.js";

/** A whole DataRow message of text values. */
function dataRow(values: ReadonlyArray<string | null>): Buffer {
  const parts: Buffer[] = [];
  for (const v of values) {
    const len = Buffer.alloc(4);
    len.writeInt32BE(v === null ? -1 : Buffer.byteLength(v));
    parts.push(len);
    if (v !== null) parts.push(Buffer.from(v));
  }
  const fields = Buffer.concat(parts);
  const head = Buffer.alloc(7);
  head[0] = 0x44;
  head.writeInt32BE(6 + fields.length, 1);
  head.writeInt16BE(values.length, 5);
  return Buffer.concat([head, fields]);
}

class MemorySink implements FileSink {
  files: Array<{ chunks: Buffer[]; rows: number }> = [];
  openFile(index: number): void {
    expect(index).toBe(this.files.length);
    this.files.push({ chunks: [], rows: -1 });
  }
  write(chunk: Uint8Array): void {
    this.files.at(-1)!.chunks.push(Buffer.from(chunk));
  }
  closeFile(rows: number): void {
    this.files.at(-1)!.rows = rows;
  }
  texts(): string[] {
    return this.files.map((f) => Buffer.concat(f.chunks).toString());
  }
}

const threadCount = (): number =>
  Number(/^Threads:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))![1]);

/** Niceness of each of this process's threads (field 19 of /proc/<pid>/task/<tid>/stat). */
/** Field `n` of proc(5)'s stat (19 niceness, 41 scheduling policy) of every thread of this process. */
function statOfThreads(n: number): number[] {
  return readdirSync("/proc/self/task").flatMap((tid) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
    } catch {
      return []; // ended meanwhile
    }
    return [Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[n - 3])];
  });
}
const niceOfThreads = (): number[] => statOfThreads(19);
/** sched(7): SCHED_OTHER 0, SCHED_IDLE 5. */
const policyOfThreads = (): number[] => statOfThreads(41);
const SCHED_IDLE = 5;

const csvSpec = (maxFileSize = 1 << 30): EncoderSpec => ({
  format: "csv",
  options: {
    header: true,
    delimiter: 0x2c,
    quote: 0x22,
    escape: 0x22,
    null: "",
    compression: "none",
    maxFileSize,
    columnNames: ["id", "note"],
  },
});

const threads: EncoderThread[] = [];
afterEach(() => {
  for (const t of threads.splice(0)) t.dispose();
  delete encoderThreadTestHooks.gate;
});

async function start(spec: EncoderSpec, nice = 10, idle = false): Promise<EncoderThread> {
  const t = new EncoderThread(spec, { nice, idle });
  threads.push(t);
  await t.ready();
  return t;
}

describe("encoder thread", () => {
  test("writes the files the encoder writes in-thread, from runs, single rows and a row larger than a batch, sent before it started", async () => {
    const rows = Array.from({ length: 5000 }, (_, i) =>
      dataRow([String(i), i % 7 === 0 ? null : `note "${i}", ${"x".repeat(i % 50)}`]),
    );
    rows.push(dataRow(["big", "y".repeat(BATCH_BYTES + 10)]));
    rows.push(dataRow(["after", "z"]));
    const direct = new MemorySink();
    const spec = csvSpec(64 << 10);
    const enc = createCsvEncoder((spec as Extract<EncoderSpec, { format: "csv" }>).options, direct);
    for (const r of rows) enc.writeRows(r, 0, r.length);
    await enc.finish();

    const viaThread = new MemorySink();
    // Not waiting for it to start: the first rows wait in its queue.
    const t = new EncoderThread(spec, { nice: 10 });
    threads.push(t);
    expect(t.resultFormats).toEqual([0, 0]);
    t.attach(viaThread, new AbortController().signal, (e) => {
      throw e;
    });
    // Runs of several rows, and every third row alone as fields (Materialize's SUBSCRIBE path).
    for (let i = 0; i < rows.length; i += 3) {
      const run = Buffer.concat(rows.slice(i, i + 2));
      t.writeRows(run, 0, run.length);
      const single = rows[i + 2];
      if (single !== undefined) t.writeRow(single, 7, single.readInt16BE(5));
      if (t.congested) await t.drained();
    }
    await t.finish();
    expect(viaThread.files.length).toBeGreaterThan(3);
    expect(viaThread.texts()).toEqual(direct.texts());
    expect(viaThread.files.map((f) => f.rows)).toEqual(direct.files.map((f) => f.rows));
  });

  test("rows that trickle in reach the encoder (their file opens) without waiting for a full batch or the end", async () => {
    const sink = new MemorySink();
    const t = await start(csvSpec());
    t.attach(sink, new AbortController().signal, (e) => {
      throw e;
    });
    const one = dataRow(["1", "slow"]);
    t.writeRows(one, 0, one.length); // far less than a batch, and no finish(): a slow query's rows
    // The encoder holds small output itself; that the thread took the row shows as its file opened
    // and the row's bytes acknowledged.
    await waitUntil("the row encoded", () => (sink.files.length === 1 && t.inFlight === 0 ? true : null));
    const two = dataRow(["2", "slower"]);
    t.writeRow(two, 7, 2);
    expect(t.inFlight).toBe(0); // still in the relay's batch
    await waitUntil("the single row encoded", () => (t.maxInFlight > 0 && t.inFlight === 0 ? true : null));
    await t.finish();
    expect(sink.texts()).toEqual(["id,note\n1,slow\n2,slower\n"]);
  });

  test("a blocked thread fills its queue and no more: writeRows says stop, drained() waits for it", async () => {
    const gate = new Int32Array(new SharedArrayBuffer(4));
    gate[0] = 1;
    encoderThreadTestHooks.gate = gate;
    const t = await start(csvSpec());
    t.attach(new MemorySink(), new AbortController().signal, () => {});
    const run = Buffer.concat(Array.from({ length: 1000 }, (_, i) => dataRow([String(i), "v".repeat(50)])));
    let sent = 0;
    while (t.writeRows(run, 0, run.length)) sent += run.length;
    expect(sent).toBeLessThanOrEqual(WINDOW_BYTES + BATCH_BYTES);
    expect(t.inFlight).toBeGreaterThanOrEqual(WINDOW_BYTES);
    expect(t.inFlight).toBeLessThanOrEqual(WINDOW_BYTES + BATCH_BYTES);
    let drained = false;
    const waiting = t.drained().then(() => {
      drained = true;
    });
    await new Promise((r) => setImmediate(r));
    expect(drained).toBe(false);
    Atomics.store(gate, 0, 0);
    Atomics.notify(gate, 0);
    await waiting;
    expect(t.inFlight).toBeLessThanOrEqual(WINDOW_BYTES / 2);
    expect(t.maxInFlight).toBeLessThanOrEqual(WINDOW_BYTES + BATCH_BYTES);
    await t.finish();
  });

  test("an encoder's PgError arrives with its SQLSTATE and message, and nothing of the thread's internals", async () => {
    const columns: ColumnInfo[] = [{ name: "n", typeOid: 23, typeMod: -1, nullable: false }];
    const t = await start({
      format: "parquet",
      options: { compression: "snappy", maxFileSize: 1 << 30, columns },
    });
    const failed = new Promise<unknown>((resolve) =>
      t.attach(new MemorySink(), new AbortController().signal, resolve),
    );
    const r = dataRow([null]);
    t.writeRows(r, 0, r.length);
    const finishing = t.finish();
    const err = await failed;
    await expect(finishing).rejects.toBe(err);
    expect(err).toMatchObject({ name: "PgError", code: "22004" });
    expect((err as Error).message).toBe('null value in column "n" declared NOT NULL');
    expect(JSON.stringify({ ...(err as object), message: (err as Error).message })).not.toMatch(
      /\bat |\.ts:|\.js:|node:/,
    );
  });

  test("runs below the relay's priority, its Parquet writer in it, and dispose() ends it", async () => {
    const columns: ColumnInfo[] = [{ name: "n", typeOid: 23, typeMod: -1 }];
    const t = await start(
      { format: "parquet", options: { compression: "snappy", maxFileSize: 1 << 30, columns } },
      13,
    );
    expect(t.nice).toBe(13);
    expect(t.resultFormats).toEqual([1]);
    // The encoder thread alone: the Parquet writer runs in it, no thread of its own.
    expect(niceOfThreads().filter((n) => n === 13)).toHaveLength(1);
    expect(niceOfThreads().filter((n) => n === 0).length).toBeGreaterThan(0); // this one
    expect(t.idle).toBe(false);
    expect(policyOfThreads().filter((p) => p === SCHED_IDLE)).toHaveLength(0);
    t.dispose();
    await waitUntil("the encoder thread to end", () => !niceOfThreads().includes(13), 10_000);
  });

  test("with idle, the thread (its Parquet writer in it) runs as SCHED_IDLE; the relay stays ordinary", async () => {
    const columns: ColumnInfo[] = [{ name: "n", typeOid: 23, typeMod: -1 }];
    const t = await start(
      { format: "parquet", options: { compression: "snappy", maxFileSize: 1 << 30, columns } },
      13,
      true,
    );
    expect(t.idle).toBe(true);
    // The encoder thread alone (the Parquet writer runs in it), at its niceness.
    expect(policyOfThreads().filter((p) => p === SCHED_IDLE)).toHaveLength(1);
    expect(niceOfThreads().filter((n) => n === 13)).toHaveLength(1);
    const self = readFileSync("/proc/thread-self/stat", "utf8"); // the thread that relays, here the test's
    expect(Number(self.slice(self.lastIndexOf(")") + 2).split(" ")[41 - 3])).toBe(0);
    t.dispose();
    await waitUntil("the encoder thread to end", () => !policyOfThreads().includes(SCHED_IDLE), 10_000);
  });

  test("an abort ends the thread at once, even one that is blocked", async () => {
    const gate = new Int32Array(new SharedArrayBuffer(4));
    gate[0] = 1;
    encoderThreadTestHooks.gate = gate;
    const before = threadCount();
    const t = await start(csvSpec());
    const ac = new AbortController();
    const errors: unknown[] = [];
    t.attach(new MemorySink(), ac.signal, (e) => errors.push(e));
    const run = dataRow(["1", "x".repeat(BATCH_BYTES)]);
    t.writeRows(run, 0, run.length);
    const finishing = t.finish();
    ac.abort(new Error("cancelled"));
    await expect(finishing).rejects.toMatchObject({ message: "cancelled" });
    expect(errors).toEqual([]); // the driver aborted: it already knows why
    await waitUntil("the blocked encoder thread to end", () => threadCount() <= before, 10_000);
  });
});

describe("chunk buffers between the thread and the relay", () => {
  /** ~24 MiB of CSV in DataRow runs, and the files the encoder makes of them in-thread. */
  async function bigExport(): Promise<{ runs: Buffer[]; direct: MemorySink; spec: EncoderSpec }> {
    const rows = Array.from({ length: 100_000 }, (_, i) =>
      dataRow([String(i), i % 11 === 0 ? null : `${i}, "q" ${"v".repeat(200 + (i % 97))}`]),
    );
    const runs: Buffer[] = [];
    for (let i = 0; i < rows.length; i += 500) runs.push(Buffer.concat(rows.slice(i, i + 500)));
    const spec = csvSpec(10 << 20);
    const direct = new MemorySink();
    const enc = createCsvEncoder((spec as Extract<EncoderSpec, { format: "csv" }>).options, direct);
    for (const r of runs) enc.writeRows(r, 0, r.length);
    await enc.finish();
    return { runs, direct, spec };
  }

  async function send(t: EncoderThread, runs: Buffer[]): Promise<void> {
    for (const r of runs) {
      t.writeRows(r, 0, r.length);
      if (t.congested) await t.drained();
    }
    await t.finish();
  }

  test("a chunk stays the sink's until it releases it: held ones keep their bytes, and released ones are reused", async () => {
    const { runs, direct, spec } = await bigExport();
    /** Keeps each chunk (as a store writing it would) and releases it four chunks later. */
    class LateSink extends MemorySink {
      held: Array<{ chunk: Uint8Array; copy: Buffer; release: () => void }> = [];
      chunks = 0;
      changed = 0;
      override write(chunk: Uint8Array, release?: () => void): void {
        super.write(chunk);
        this.chunks++;
        this.held.push({ chunk, copy: Buffer.from(chunk), release: release! });
        while (this.held.length > 4) this.releaseOldest();
      }
      override closeFile(rows: number): void {
        while (this.held.length > 0) this.releaseOldest();
        super.closeFile(rows);
      }
      private releaseOldest(): void {
        const h = this.held.shift()!;
        // Given back (transferred) too early, the view would be empty; written into, different.
        if (!Buffer.from(h.chunk).equals(h.copy)) this.changed++;
        h.release();
      }
    }
    const sink = new LateSink();
    const t = await start(spec);
    t.attach(sink, new AbortController().signal, (e) => {
      throw e;
    });
    await send(t, runs);
    expect(sink.texts()).toEqual(direct.texts());
    expect(sink.changed).toBe(0);
    const bytes = direct.files.reduce((a, f) => a + Buffer.concat(f.chunks).length, 0);
    expect(sink.chunks).toBeGreaterThanOrEqual(Math.floor(bytes / CHUNK_BYTES));
    // Reused: a returned buffer rides on the next rows, so the thread allocates at most for what
    // the sink holds (4), the one it fills, one on its way, and what it encodes from the rows
    // window meanwhile (CSV of these rows is smaller than their DataRows) — not one per chunk.
    const bound = 4 + 2 + WINDOW_BYTES / CHUNK_BYTES;
    expect(sink.chunks).toBeGreaterThan(2 * bound);
    expect(t.chunkBuffers).toBeLessThanOrEqual(bound);
  });

  test("chunks a sink never releases are not reused: the thread allocates one buffer per chunk", async () => {
    const { runs, direct, spec } = await bigExport();
    const sink = new MemorySink();
    let chunks = 0;
    const write = sink.write.bind(sink);
    sink.write = (chunk: Uint8Array) => {
      chunks++;
      write(chunk);
    };
    const t = await start(spec);
    t.attach(sink, new AbortController().signal, (e) => {
      throw e;
    });
    await send(t, runs);
    expect(sink.texts()).toEqual(direct.texts());
    expect(t.chunkBuffers).toBe(chunks);
    expect(chunks).toBeGreaterThan(2 * RING_BUFFERS);
  });
});

describe("the kept encoder thread", () => {
  test("a finished export's thread serves the next one (CSV after Parquet after CSV, same bytes as in-thread), only while kept; a failed one is ended; releasing ends the idle one", async () => {
    const before = threadCount();
    const release = keepSpareEncoderThread();
    try {
      const rows = Array.from({ length: 3000 }, (_, i) =>
        dataRow([String(i), `n "${i}", ${"x".repeat(i % 40)}`]),
      );
      const run = Buffer.concat(rows);
      const direct = new MemorySink();
      const enc = createCsvEncoder((csvSpec() as Extract<EncoderSpec, { format: "csv" }>).options, direct);
      enc.writeRows(run, 0, run.length);
      await enc.finish();
      // One binary int4 value (Parquet asks for binary results).
      const int4Row = Buffer.from([0x44, 0, 0, 0, 14, 0, 1, 0, 0, 0, 4, 0, 0, 0, 7]);
      const exportOnce = async (spec: EncoderSpec, nice = 10): Promise<{ id: number; sink: MemorySink }> => {
        const sink = new MemorySink();
        const t = new EncoderThread(spec, { nice });
        threads.push(t);
        const id = t.threadId; // an ended thread's reads -1
        t.attach(sink, new AbortController().signal, (e) => {
          throw e;
        });
        const r = spec.format === "csv" ? run : int4Row;
        t.writeRows(r, 0, r.length);
        await t.finish();
        return { id, sink };
      };
      const parquet: EncoderSpec = {
        format: "parquet",
        options: {
          compression: "snappy",
          maxFileSize: 1 << 30,
          columns: [{ name: "n", typeOid: 23, typeMod: -1 }],
        },
      };
      const first = await exportOnce(csvSpec());
      expect(spareEncoderThreadId()).toBe(first.id);
      const withOne = threadCount();
      const second = await exportOnce(parquet);
      expect(second.id).toBe(first.id);
      // The Parquet encoder's writer thread ended with its export; the kept thread stays alone.
      await waitUntil("the writer thread to end", () => threadCount() <= withOne, 10_000);
      expect(second.sink.files).toHaveLength(1);
      expect(Buffer.concat(second.sink.files[0]!.chunks).subarray(0, 4).toString()).toBe("PAR1");
      const third = await exportOnce(csvSpec());
      expect(third.id).toBe(first.id);
      expect(third.sink.texts()).toEqual(direct.texts());
      // Another niceness (a SIGHUP changed it): not that thread.
      const other = await exportOnce(csvSpec(), 12);
      expect(other.id).not.toBe(first.id);
      expect(spareEncoderThreadId()).toBe(other.id);
      // A failed export's thread is ended, not kept.
      const failing = new EncoderThread(
        {
          format: "parquet",
          options: {
            ...parquet.options,
            columns: [{ name: "n", typeOid: 23, typeMod: -1, nullable: false }],
          },
        },
        { nice: 12 },
      );
      threads.push(failing);
      expect(failing.threadId).toBe(other.id);
      const failed = new Promise<unknown>((resolve) =>
        failing.attach(new MemorySink(), new AbortController().signal, resolve),
      );
      const nullRow = dataRow([null]);
      failing.writeRows(nullRow, 0, nullRow.length);
      await expect(failing.finish()).rejects.toMatchObject({ code: "22004" });
      await failed;
      failing.dispose();
      expect(spareEncoderThreadId()).toBeNull();
      const last = await exportOnce(csvSpec());
      expect(spareEncoderThreadId()).toBe(last.id);
    } finally {
      release();
    }
    expect(spareEncoderThreadId()).toBeNull();
    await waitUntil("the idle thread to end", () => threadCount() <= before, 10_000);
  });
});

describe("the process's encoding budget (exports.maxEncodingThreads)", () => {
  /** Holds the threads inside a batch's encoding (gate[2]), counting them (gate[1]). */
  function countingGate(): Int32Array {
    const gate = new Int32Array(new SharedArrayBuffer(12));
    gate[2] = 1;
    encoderThreadTestHooks.gate = gate;
    return gate;
  }
  function open(gate: Int32Array): void {
    Atomics.store(gate, 2, 0);
    Atomics.notify(gate, 2);
  }
  const rowsOf = (tag: string): Buffer =>
    Buffer.concat(Array.from({ length: 200 }, (_, i) => dataRow([String(i), `${tag}${i}`])));
  const expected = (tag: string): string =>
    `id,note\n${Array.from({ length: 200 }, (_, i) => `${i},${tag}${i}\n`).join("")}`;

  for (const k of [1, 2]) {
    test(`with ${k} slot(s), ${k} of three exports' threads encode and the others wait, their batches unacknowledged; all finish`, async () => {
      const gate = countingGate();
      const budget = encoderBudget(k);
      const sinks = [0, 1, 2].map(() => new MemorySink());
      const ts = sinks.map((sink, i) => {
        const t = new EncoderThread(csvSpec(), { nice: 10, maxEncoding: k });
        threads.push(t);
        t.attach(sink, new AbortController().signal, (e) => {
          throw e;
        });
        const rows = rowsOf(`t${i}-`);
        t.writeRows(rows, 0, rows.length); // a partial batch: it leaves after 20 ms
        return t;
      });
      await waitUntil(
        "each thread at the gate or waiting for a slot",
        () => Atomics.load(gate, 1) + budgetUse(budget).waiting === 3,
        10_000,
      );
      expect(Atomics.load(gate, 1)).toBe(k); // encoding at once: no more than the slots
      expect(budgetUse(budget)).toEqual({ encoding: k, waiting: 3 - k });
      expect(ts.filter((t) => t.inFlight > 0)).toHaveLength(3); // the waiting ones' rows unacknowledged
      open(gate);
      await Promise.all(ts.map((t) => t.finish()));
      expect(sinks.map((s) => s.texts())).toEqual([0, 1, 2].map((i) => [expected(`t${i}-`)]));
      expect(budgetUse(budget)).toEqual({ encoding: 0, waiting: 0 });
    });
  }

  /** Rows filling `batches` full batches and a part of one more, as one DataRow each. */
  const manyRows = (tag: string, batches: number): { rows: Buffer[]; csv: string } => {
    const rows: Buffer[] = [];
    const lines = ["id,note\n"];
    let bytes = 0;
    for (let i = 0; bytes < batches * BATCH_BYTES + 1000; i++) {
      const r = dataRow([String(i), `${tag}${i}`]);
      rows.push(r);
      lines.push(`${i},${tag}${i}\n`);
      bytes += r.length;
    }
    return { rows, csv: lines.join("") };
  };

  /**
   * Two exports' threads, one slot, each thread with 6 full batches, a partial one and the
   * finish queued before either begins (the test gate holds them until `go`); returns how many
   * times the slot was taken until both finished.
   */
  async function twoQueuedExports(slice: number, go: () => Promise<void>): Promise<number> {
    const budget = encoderBudget(1);
    setBudgetSlice(budget, slice);
    try {
      const sinks = [new MemorySink(), new MemorySink()];
      const data = [manyRows("a-", 6), manyRows("b-", 6)];
      const ts = sinks.map((sink) => {
        const t = new EncoderThread(csvSpec(), { nice: 10, maxEncoding: 1 });
        threads.push(t);
        t.attach(sink, new AbortController().signal, (e) => {
          throw e;
        });
        return t;
      });
      await Promise.all(ts.map((t) => t.ready()));
      const before = budgetAcquisitions(budget);
      const done = ts.map((t, i) => {
        for (const r of data[i]!.rows) expect(t.writeRows(r, 0, r.length)).toBe(true); // within the window
        return t.finish();
      });
      await go();
      await Promise.all(done);
      expect(sinks.map((s) => s.texts())).toEqual(data.map((d) => [d.csv]));
      expect(budgetUse(budget)).toEqual({ encoding: 0, waiting: 0 });
      return budgetAcquisitions(budget) - before;
    } finally {
      setBudgetSlice(budget, SLICE_MS);
    }
  }

  test("a thread keeps its slot from batch to batch while it has batches queued: one turn per export, not one per batch", async () => {
    const gate = new Int32Array(new SharedArrayBuffer(4));
    gate[0] = 1;
    encoderThreadTestHooks.gate = gate;
    // An endless turn: each thread encodes its 7 batches and its finish in one turn, the other
    // waiting; handed on per batch, the slot would have been taken 16 times.
    const go = async (): Promise<void> => {
      Atomics.store(gate, 0, 0);
      Atomics.notify(gate, 0);
    };
    expect(await twoQueuedExports(ENDLESS_SLICE, go)).toBe(2);
  });

  test("a thread whose turn is over hands the slot to a waiter although it has batches queued; both finish", async () => {
    // One thread is inside its first batch (slot held), the other waits for the slot; a turn of
    // 0 ms is over after that batch, so the holder gives the slot back with batches queued and
    // the slot is taken again at least twice (the waiter's turn, the holder's next).
    const gate = countingGate();
    const budget = encoderBudget(1);
    const go = async (): Promise<void> => {
      await waitUntil(
        "one thread inside its first batch, the other waiting for the slot",
        () => Atomics.load(gate, 1) === 1 && budgetUse(budget).waiting === 1,
        10_000,
      );
      open(gate);
    };
    expect(await twoQueuedExports(0, go)).toBeGreaterThanOrEqual(3);
    expect(budgetUse(budget)).toEqual({ encoding: 0, waiting: 0 });
  });

  test("a thread builds its export's encoder only with a slot: a start-up waits while another encodes", async () => {
    const gate = countingGate();
    const budget = encoderBudget(1);
    const a = new EncoderThread(csvSpec(), { nice: 10, maxEncoding: 1 });
    threads.push(a);
    const sinks = [new MemorySink(), new MemorySink()];
    a.attach(sinks[0]!, new AbortController().signal, (e) => {
      throw e;
    });
    const rowsA = rowsOf("a-");
    a.writeRows(rowsA, 0, rowsA.length);
    await waitUntil("the first thread inside its batch", () => Atomics.load(gate, 1) === 1, 10_000);
    const b = new EncoderThread(csvSpec(), { nice: 10, maxEncoding: 1 });
    threads.push(b);
    b.attach(sinks[1]!, new AbortController().signal, (e) => {
      throw e;
    });
    let bReady = false;
    void b.ready().then(() => {
      bReady = true;
    });
    await waitUntil(
      "the second thread waiting for the slot to build its encoder",
      () => budgetUse(budget).waiting === 1,
      10_000,
    );
    expect(bReady).toBe(false);
    open(gate);
    await b.ready();
    const rowsB = rowsOf("b-");
    b.writeRows(rowsB, 0, rowsB.length);
    await Promise.all([a.finish(), b.finish()]);
    expect(sinks.map((s) => s.texts())).toEqual([[expected("a-")], [expected("b-")]]);
    expect(budgetUse(budget)).toEqual({ encoding: 0, waiting: 0 });
  });

  /** Two CSV exports under a budget of 1: one thread holds the slot at the gate, one waits. */
  async function twoThreadsOneWaiting() {
    const gate = countingGate();
    const budget = encoderBudget(1);
    const ctl = [new AbortController(), new AbortController()];
    const sinks = [new MemorySink(), new MemorySink()];
    const ts = ctl.map((c, i) => {
      const t = new EncoderThread(csvSpec(), { nice: 10, maxEncoding: 1 });
      threads.push(t);
      t.attach(sinks[i]!, c.signal, () => {});
      const rows = rowsOf(`t${i}-`);
      t.writeRows(rows, 0, rows.length);
      return t;
    });
    await waitUntil(
      "one thread at the gate, one waiting",
      () => Atomics.load(gate, 1) === 1 && budgetUse(budget).waiting === 1,
      10_000,
    );
    return { gate, budget, ctl, sinks, ts };
  }

  test("a thread ended while it waits for a slot (a cancel) no longer counts as waiting", async () => {
    const { gate, budget, ctl, sinks, ts } = await twoThreadsOneWaiting();
    const waiter = ts.findIndex((t) => !budgetHolders(budget).includes(t.threadId));
    const cancelled = ts[waiter]!.finish();
    ctl[waiter]!.abort(new Error("cancelled"));
    await expect(cancelled).rejects.toMatchObject({ message: "cancelled" });
    // Counted off once its thread has ended: a phantom waiter would make every holder hand its
    // slot on after each turn and every taker wait for nobody.
    await waitUntil("the cancelled waiter counted off", () => budgetUse(budget).waiting === 0, 10_000);
    open(gate);
    await ts[1 - waiter]!.finish();
    expect(sinks[1 - waiter]!.texts()).toEqual([expected(`t${1 - waiter}-`)]);
    expect(budgetUse(budget)).toEqual({ encoding: 0, waiting: 0 });
  });

  test("a thread ended in the middle of a batch (a cancel) gives its slot to the next", async () => {
    const { gate, budget, ctl, sinks, ts } = await twoThreadsOneWaiting();
    const holder = ts.findIndex((t) => budgetHolders(budget).includes(t.threadId));
    expect(holder).toBeGreaterThanOrEqual(0);
    const other = 1 - holder;
    const cancelled = ts[holder]!.finish();
    ctl[holder]!.abort(new Error("cancelled"));
    await expect(cancelled).rejects.toMatchObject({ message: "cancelled" });
    // The other thread gets the slot (and reaches the gate) once the cancelled one has ended.
    await waitUntil("the waiting thread to take the slot", () => Atomics.load(gate, 1) === 2, 10_000);
    open(gate);
    await ts[other]!.finish();
    expect(sinks[other]!.texts()).toEqual([expected(`t${other}-`)]);
    expect(budgetUse(budget)).toEqual({ encoding: 0, waiting: 0 });
  });
});

describe("idle threads for a burst of exports", () => {
  test("exports that ran at once leave their threads idle for the next burst (at most MAX_IDLE_THREADS); the extras end once idle for their time, the spare stays; releasing ends them all", async () => {
    // A niceness of their own: the threads counted are this test's.
    const NICE = 11;
    const release = keepSpareEncoderThread();
    try {
      const rows = Buffer.concat(Array.from({ length: 500 }, (_, i) => dataRow([String(i), `v${i}`])));
      const burst = async (n: number): Promise<number[]> => {
        const ts = Array.from({ length: n }, () => new EncoderThread(csvSpec(), { nice: NICE }));
        threads.push(...ts);
        const ids = ts.map((t) => t.threadId);
        await Promise.all(
          ts.map(async (t) => {
            const sink = new MemorySink();
            t.attach(sink, new AbortController().signal, (e) => {
              throw e;
            });
            t.writeRows(rows, 0, rows.length);
            await t.finish();
            expect(sink.files[0]!.rows).toBe(500);
          }),
        );
        return ids;
      };
      const first = await burst(MAX_IDLE_THREADS + 1);
      expect(new Set(first).size).toBe(MAX_IDLE_THREADS + 1);
      // One of them ended: MAX_IDLE_THREADS idle, all of them threads of the burst.
      const idle = idleEncoderThreadIds();
      expect(idle).toHaveLength(MAX_IDLE_THREADS);
      expect(idle.every((id) => first.includes(id))).toBe(true);
      // The next burst takes them all warm: no thread is started.
      const second = await burst(MAX_IDLE_THREADS);
      expect(new Set(second)).toEqual(new Set(idle));
      // Extras idle past their time end; the spare stays.
      threadPoolTestHooks.idleMs = 1;
      await burst(MAX_IDLE_THREADS);
      await waitUntil("the extras to end", () => threadsAtNiceness(NICE) === 1, 10_000);
      expect(idleEncoderThreadIds()).toHaveLength(1);
      expect(spareEncoderThreadId()).toBe(idleEncoderThreadIds()[0]);
      delete threadPoolTestHooks.idleMs;
      await burst(2);
      expect(idleEncoderThreadIds()).toHaveLength(2);
    } finally {
      delete threadPoolTestHooks.idleMs;
      release();
    }
    expect(idleEncoderThreadIds()).toEqual([]);
    await waitUntil("the idle threads to end", () => threadsAtNiceness(NICE) === 0, 10_000);
  });
});
