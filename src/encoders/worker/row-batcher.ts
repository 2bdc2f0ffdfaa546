// The relay's side of the rows on their way to an export's encoder thread (./encoder-thread.ts).
// DataRow runs are copied into batch buffers that are sent (transferred) to the thread, which sends
// them back with its acknowledgement, so the buffers are reused. Credits bound the bytes on their
// way: when WINDOW_BYTES are unacknowledged, a write says so and the driver pauses the upstream
// until drained().
import type { PgError } from "../../errors.js";

/**
 * Rows are sent in batches of this size (a larger row goes alone, in a buffer of its own). 1 MiB
 * batches were tried and undone: on a quiet machine they cost the relay's thread ~0.4 s more per
 * 10M-row Parquet export (0.89 against 0.81 CPU-s per 1M rows) and saved nothing for CSV (0.79
 * against 0.73) (docs/benchmarks.md, "Final figures, session 6").
 */
export const BATCH_BYTES = 256 << 10;
/** Row bytes sent but not yet encoded, at most (plus one row): the export's queue to its thread. */
export const WINDOW_BYTES = 4 << 20;
/**
 * A batch that is not full leaves after this long: rows that trickle in (a slow query, a
 * SUBSCRIBE's sparse updates) reach their file, and the progress counts, without waiting for more.
 */
export const PARTIAL_BATCH_MS = 20;
/** drained() resolves once the queue is down to this, so the upstream is not paused per batch. */
const LOW_WATER = WINDOW_BYTES >>> 1;

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

/** Batches rows for one export's thread; `send` posts a batch's first `len` bytes to it. */
export class RowBatcher {
  /** Bytes sent and not yet acknowledged, and the most there ever were (for tests). */
  inFlight = 0;
  maxInFlight = 0;
  private readonly pool: ArrayBuffer[] = [];
  private batch: Buffer | null = null;
  private batchLen = 0;
  private readonly waiters: Waiter[] = [];
  private partialTimer: NodeJS.Timeout | null = null;

  constructor(private readonly send: (buf: ArrayBuffer, len: number) => void) {}

  /** True while the queue to the thread is full: pause the rows and await drained(). */
  get congested(): boolean {
    return this.inFlight >= WINDOW_BYTES;
  }

  /** Copies whole DataRow messages `buf[start..end)`. Returns false when the queue is full. */
  writeRows(buf: Buffer, start: number, end: number): boolean {
    const len = end - start;
    if (len > BATCH_BYTES) {
      const own = Buffer.allocUnsafeSlow(len);
      buf.copy(own, 0, start, end);
      this.sendAlone(own);
    } else {
      const at = this.reserve(len);
      buf.copy(this.batch!, at, start, end);
      this.sendPartialSoon();
    }
    return !this.congested;
  }

  /** One row as fields (`nFields` length-prefixed values at buf[pos..]): sent as a DataRow. */
  writeRow(buf: Buffer, pos: number, nFields: number): boolean {
    let p = pos;
    for (let i = 0; i < nFields; i++) p += 4 + Math.max(buf.readInt32BE(p), 0);
    const len = 7 + (p - pos);
    const big = len > BATCH_BYTES;
    const at = big ? 0 : this.reserve(len);
    const into = big ? Buffer.allocUnsafeSlow(len) : this.batch!;
    into[at] = 0x44; // 'D'
    into.writeInt32BE(len - 1, at + 1);
    into.writeInt16BE(nFields, at + 5);
    buf.copy(into, at + 7, pos, p);
    if (big) this.sendAlone(into);
    else this.sendPartialSoon();
    return !this.congested;
  }

  /** Resolves once the queue is down to half (or rejects with the failure given to fail()). */
  drained(): Promise<void> {
    if (this.inFlight <= LOW_WATER) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiters.push({ resolve, reject }));
  }

  /** The thread has encoded `len` bytes and sent back their buffer `buf`. */
  acked(len: number, buf: ArrayBuffer): void {
    this.inFlight -= len;
    if (buf.byteLength === BATCH_BYTES && this.pool.length < WINDOW_BYTES / BATCH_BYTES) {
      this.pool.push(buf);
    }
    if (this.inFlight <= LOW_WATER) for (const w of this.waiters.splice(0)) w.resolve();
  }

  /** Sends the batch being filled, if it holds any rows. */
  sendBatch(): void {
    if (this.partialTimer !== null) {
      clearTimeout(this.partialTimer);
      this.partialTimer = null;
    }
    const b = this.batch;
    if (b === null) return;
    const len = this.batchLen;
    this.batch = null;
    this.batchLen = 0;
    if (len === 0) {
      this.pool.push(b.buffer as ArrayBuffer);
      return;
    }
    this.inFlight += len;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.send(b.buffer as ArrayBuffer, len);
  }

  /** No partial batch leaves any more (the export has ended). */
  stop(): void {
    if (this.partialTimer !== null) clearTimeout(this.partialTimer);
  }

  /** The export failed: whoever waits for drained() gets `err`, and the batch is dropped. */
  fail(err: PgError): void {
    for (const w of this.waiters.splice(0)) w.reject(err);
    this.batch = null;
  }

  /** Makes room for `len` (≤ BATCH_BYTES) bytes at the end of the batch; returns where they go. */
  private reserve(len: number): number {
    if (this.batch === null || this.batchLen + len > this.batch.length) {
      this.sendBatch();
      this.batch = Buffer.from(this.pool.pop() ?? new ArrayBuffer(BATCH_BYTES));
    }
    const at = this.batchLen;
    this.batchLen += len;
    return at;
  }

  private sendPartialSoon(): void {
    if (this.partialTimer !== null) return;
    this.partialTimer = setTimeout(() => {
      this.partialTimer = null;
      // Not while the queue is full: the batch waits (it is memory either way), so no more than
      // one batch beyond the window is ever sent.
      if (this.congested) this.sendPartialSoon();
      else this.sendBatch();
    }, PARTIAL_BATCH_MS);
    this.partialTimer.unref();
  }

  /** A row larger than a batch: sent at once, in a buffer of its size (maxRowBytes bounds it). */
  private sendAlone(own: Buffer): void {
    this.sendBatch();
    this.inFlight += own.length;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.send(own.buffer as ArrayBuffer, own.length);
  }
}
