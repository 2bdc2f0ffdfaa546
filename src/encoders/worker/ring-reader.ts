// The encoder thread's side of the row ring (./row-ring.ts): frames the DataRows of the bytes the
// relay put there, with the checks the relay's stream makes (./data-row-reader.ts), and frees what
// it has taken. It frees only up to the start of a message it has begun and not finished — the
// relay can read on from there if this thread dies — except for a row larger than a batch, which
// it copies out as it comes and frees as it goes (marking where it ends). At the first message it
// does not take it stops, with Read at that message, for the relay to take back.
import { DataRowReader } from "./data-row-reader.js";
import { BATCH_BYTES } from "./row-batcher.js";
import { RING_BYTES, RING_LOW_WATER, type RingViews, ringViews, Word, waitAsync, wake } from "./row-ring.js";

const MASK = RING_BYTES - 1;

/** Where the ring's rows go: as DataRowOut's, with `at`, the stream position of their first byte. */
export interface RingRowsOut {
  rows(buf: Buffer, start: number, end: number, count: number, own: boolean, at: number): void;
}

export class RingReader {
  private readonly v: RingViews;
  private readonly reader: DataRowReader;
  /** The stream up to here has been given to the reader. */
  private fed: number;
  /** Rows framed so far (published to the relay after each take). */
  private rows = 0;
  /** The end of the large row being freed as it comes (Word.Big), if one is. */
  private bigEnd: number | null = null;
  private stopped = false;
  /** The piece of the ring being fed, and the stream positions of its start and of a row carried into it. */
  private chunk: Buffer | null = null;
  private chunkAt = 0;
  private carryAt = 0;

  constructor(sab: SharedArrayBuffer, maxRowBytes: number, out: RingRowsOut) {
    this.v = ringViews(sab);
    this.fed = Atomics.load(this.v.control, Word.Read);
    this.reader = new DataRowReader(maxRowBytes, {
      rows: (buf, start, end, count, own) => {
        this.rows += count;
        // The piece's rows by their place in it; a row begun in an earlier piece where it began.
        const at = buf === this.chunk ? (this.chunkAt + start) | 0 : this.carryAt;
        out.rows(buf, start, end, count, own, at);
      },
    });
  }

  /** Bytes the relay has written that were not framed yet. */
  get available(): number {
    return this.stopped ? 0 : (Atomics.load(this.v.control, Word.Write) - this.fed) | 0;
  }

  /**
   * Frames up to `limit` bytes of what is there. Returns the bytes taken, 0 when there were none,
   * -1 once stopped at a message not taken (which stays in the ring for the relay).
   */
  take(limit: number): number {
    if (this.stopped) return -1;
    const c = this.v.control;
    const avail = (Atomics.load(c, Word.Write) - this.fed) | 0;
    if (avail === 0) return 0;
    const from = this.fed;
    const off = from & MASK;
    const n = Math.min(avail, RING_BYTES - off, limit);
    this.chunk = this.v.data.subarray(off, off + n);
    this.chunkAt = from;
    this.carryAt = (from - this.reader.carried) | 0;
    const refused = this.reader.feed(this.chunk);
    this.chunk = null;
    Atomics.store(this.v.rows, 0, BigInt(this.rows));
    if (refused !== null) {
      this.stopped = true;
      Atomics.store(c, Word.Read, (from + refused.at - refused.head.length) | 0);
      Atomics.store(c, Word.Stopped, 1);
      return -1;
    }
    this.fed = (from + n) | 0;
    const carried = this.reader.carried;
    const total = this.reader.carriedTotal;
    if (carried > 0 && total > BATCH_BYTES) {
      // A large row: the reader keeps a copy of it, so its bytes are freed as they come. Its end
      // is marked first: a relay taking over after this thread's death starts there.
      const end = (this.fed - carried + total) | 0;
      if (this.bigEnd !== end) {
        Atomics.store(c, Word.BigEnd, end);
        Atomics.store(c, Word.Big, 1);
        this.bigEnd = end;
      }
      this.free(this.fed);
    } else {
      this.free((this.fed - carried) | 0);
      if (this.bigEnd !== null) {
        Atomics.store(c, Word.Big, 0);
        this.bigEnd = null;
      }
    }
    return n;
  }

  /**
   * Resolves once the relay has written more (true), or after `timeoutMs` without (false; no
   * timeout when undefined). The relay notifies only a thread that said it waits: no polling.
   */
  async waitForBytes(timeoutMs?: number): Promise<boolean> {
    const c = this.v.control;
    Atomics.store(c, Word.ThreadWaiting, 1);
    const seq = Atomics.load(c, Word.DataSeq);
    if (this.available === 0) {
      const r = waitAsync(c, Word.DataSeq, seq, timeoutMs);
      if (r.async) await r.value;
    }
    Atomics.store(c, Word.ThreadWaiting, 0);
    return this.available > 0;
  }

  /** Everything before `to` is free; a relay held for space is woken at half the ring. */
  private free(to: number): void {
    const c = this.v.control;
    Atomics.store(c, Word.Read, to);
    if (
      Atomics.load(c, Word.RelayWaiting) === 1 &&
      RING_BYTES - ((Atomics.load(c, Word.Write) - to) | 0) >= RING_LOW_WATER
    ) {
      Atomics.store(c, Word.RelayWaiting, 0);
      wake(c, Word.SpaceSeq);
    }
  }
}

/** A batch of whole rows for the encoder: `rows` (a view); `buf`, its batch buffer to reuse after, if any. */
export interface RowBatch {
  rows: Buffer;
  buf: Buffer | null;
}

/** A batch buffer: BATCH_BYTES of rows from any of its first 8 offsets. */
const BATCH_BUFFER_BYTES = BATCH_BYTES + 8;

/**
 * The ring's rows copied into batches of up to BATCH_BYTES for the encoder (a row larger than a
 * batch is a batch of its own, in the reader's copy).
 *
 * A batch begins at the offset modulo 8 its first row has in the ring, so that every copy out of
 * the ring into it has source and target at the same offset modulo 8 (a batch's rows are
 * consecutive in the stream, and the ring's data begins 8-aligned). V8 copies out of a
 * SharedArrayBuffer a word at a time only then, else a byte at a time: a 64 KiB copy took 16–25 µs
 * misaligned against 1–4.5 µs aligned here (the relay's side of the ring does the same, with a
 * scratch buffer: row-ring.ts's copyIn).
 */
export class RingBatches {
  readonly ready: RowBatch[] = [];
  private batch: Buffer | null = null;
  private start = 0;
  private len = 0;

  /** `spares`: batch buffers to reuse, shared by the thread's rings (done() keeps a few). */
  constructor(private readonly spares: Buffer[]) {}

  /** A RingRowsOut's rows. */
  add(buf: Buffer, start: number, end: number, own: boolean, at: number): void {
    if (own) {
      this.queue();
      this.ready.push({ rows: buf.subarray(start, end), buf: null });
      return;
    }
    const n = end - start;
    if (this.batch === null || this.len + n > this.batch.length) {
      this.queue();
      this.batch = this.spares.pop() ?? Buffer.allocUnsafeSlow(BATCH_BUFFER_BYTES);
      this.start = (at - this.batch.byteOffset) & 7;
      this.len = this.start;
    }
    buf.copy(this.batch, this.len, start, end);
    this.len += n;
  }

  /** Rows wait in a batch not yet full. */
  get partial(): boolean {
    return this.len > this.start;
  }

  /** The batch being filled goes to `ready` as it is. */
  queue(): void {
    if (this.batch !== null && this.len > this.start)
      this.ready.push({ rows: this.batch.subarray(this.start, this.len), buf: this.batch });
    else if (this.batch !== null && this.spares.length < 2) this.spares.push(this.batch);
    this.batch = null;
    this.start = this.len = 0;
  }

  /** The encoder is done with `b`: its buffer is kept for reuse (two at most). */
  done(b: RowBatch): void {
    if (b.buf !== null && this.spares.length < 2) this.spares.push(b.buf);
  }
}
