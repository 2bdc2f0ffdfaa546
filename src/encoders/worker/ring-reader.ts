// The encoder thread's side of the row ring (./row-ring.ts): frames the DataRows of the bytes the
// relay put there, with the checks the relay's stream makes (./data-row-reader.ts), and frees what
// it has taken. It frees only up to the start of a message it has begun and not finished — the
// relay can read on from there if this thread dies — except for a row larger than a batch, which
// it copies out as it comes and frees as it goes (marking where it ends). At the first message it
// does not take it stops, with Read at that message, for the relay to take back. A piece's rows
// are handed out (`rows`) before the piece is freed: the encoder thread writes them to its encoder
// straight from the ring's memory during that call.
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
