// The relay's side of the row ring (docs/isolation.md, "Rows to the encoder thread without
// framing"): once an export's rows flow, each upstream read's bytes go as they are into a
// SharedArrayBuffer ring that the export's encoder thread reads (./ring-reader.ts). The relay does
// one copy and an Atomics store per read, and frames nothing: the thread frames the DataRows
// (./data-row-reader.ts) and, at the first message that is not one, stops and leaves that message
// where it is in the ring; the relay takes it and everything after it back into its own stream.
//
// Positions are byte counts of the stream since the ring began, modulo 2^32 (Int32 words that
// wrap); the bytes at position p are at data[p & (RING_BYTES - 1)]. The relay alone advances
// WRITE, the thread alone READ (the start of what it still needs).
import { WINDOW_BYTES } from "./row-batcher.js";

/** The ring's data bytes: the export's queue to its thread (the window of the batches it replaces). */
export const RING_BYTES = WINDOW_BYTES;
const MASK = RING_BYTES - 1;
/** Below this much free space the relay stops reading the upstream: a whole read must fit. */
export const RING_HEADROOM = 64 << 10;
/** The thread wakes a held relay once this much is free. */
export const RING_LOW_WATER = RING_BYTES >>> 1;
/**
 * The most a read of the upstream straight into the ring takes (RingWriter.lend): a bulk read's
 * worth (flow-gate.ts, BULK_TURN_BYTES), so what the kernel queued during a bulk-read gap comes
 * in one read and one callback rather than in 64 KiB reads.
 */
export const LEND_BYTES = 256 << 10;
/** Less free space than this before the ring's end: that read goes to the socket's own buffer. */
const MIN_LEND_BYTES = 4 << 10;

/** Int32 words of the control block. */
export const Word = {
  /** The relay has written the stream up to here. */
  Write: 0,
  /** The thread needs the stream from here on (everything before it is free). */
  Read: 1,
  /** Bumped (and notified) by the relay when it writes while the thread waits. */
  DataSeq: 2,
  ThreadWaiting: 3,
  /** Bumped (and notified) by the thread when it frees enough while the relay waits. */
  SpaceSeq: 4,
  RelayWaiting: 5,
  /** 1: the thread stopped at a message it does not take, which begins at Read. */
  Stopped: 6,
  /**
   * 1 while the thread frees a row larger than a batch as it goes (it keeps its own copy): the
   * row ends at BigEnd, where the relay would take over if the thread died meanwhile.
   */
  Big: 7,
  BigEnd: 8,
} as const;
export type WordIndex = (typeof Word)[keyof typeof Word];
const CONTROL_WORDS = 16;
/** Rows the thread has framed so far (a BigInt64 after the control words). */
const ROWS_OFFSET = CONTROL_WORDS * 4;
const DATA_OFFSET = ROWS_OFFSET + 8;

export interface RingViews {
  control: Int32Array;
  rows: BigInt64Array;
  data: Buffer;
}

export function ringViews(sab: SharedArrayBuffer): RingViews {
  return {
    control: new Int32Array(sab, 0, CONTROL_WORDS),
    rows: new BigInt64Array(sab, ROWS_OFFSET, 1),
    data: Buffer.from(sab, DATA_OFFSET, RING_BYTES),
  };
}

/** Atomics.waitAsync (Node 16+; not in TypeScript's ES2023 library). */
export const waitAsync = (
  Atomics as unknown as {
    waitAsync(
      a: Int32Array,
      index: number,
      value: number,
      timeoutMs?: number,
    ):
      | { async: false; value: "not-equal" | "timed-out" }
      | { async: true; value: Promise<"ok" | "timed-out"> };
  }
).waitAsync;

/** Bumps `seq` and wakes its waiter. */
export function wake(control: Int32Array, seq: WordIndex): void {
  Atomics.add(control, seq, 1);
  Atomics.notify(control, seq);
}

/** Tests only: bytes the relay put into row rings (rows it did not frame), the part of them it
 * copied there (the rest the socket read into the ring), and bytes a ring's end copied out of it. */
export const rowRingTestHooks: { bytes: number; copied: number; endCopied: number } = {
  bytes: 0,
  copied: 0,
  endCopied: 0,
};

/** Rings kept for the next ones: at most this many (4 MiB each, touched already): as many as
 * encoder threads are kept idle (./thread-pool.ts, MAX_IDLE_THREADS), so a burst of exports that
 * takes them warm takes touched rings too. */
export const SPARE_RINGS = 4;
/**
 * Rings whose thread can no longer touch them, for the next ring to reuse. A new ring's memory is
 * touched for the first time by the relay's copies, and a first touch is a page fault per 4 KiB:
 * here 12 µs each, 40+ µs on a busy host, so the first lap of a fresh 4 MiB ring cost the relay
 * 12–100 ms, in reads of 0.2–1.5 ms each where a reused ring's take 4 µs (docs/isolation.md,
 * "The relay's long runs"). Shared by the process's exports; a ring of one export may serve the
 * next export of another.
 */
const spareRings: SharedArrayBuffer[] = [];

/** Keeps an ended ring's memory for the next ring (none reads or writes it any more). */
function spare(sab: SharedArrayBuffer): void {
  if (spareRings.length < SPARE_RINGS) spareRings.push(sab);
}

/** A ring's memory: a spare one, its control block and row count cleared, or a new one. */
function ringMemory(): SharedArrayBuffer {
  const sab = spareRings.pop();
  if (sab === undefined) return new SharedArrayBuffer(DATA_OFFSET + RING_BYTES);
  // Nothing else holds this memory now: the thread that read it has stopped or is gone.
  new Int32Array(sab, 0, CONTROL_WORDS).fill(0);
  new BigInt64Array(sab, ROWS_OFFSET, 1)[0] = 0n;
  return sab;
}

/**
 * RingWriter.copyIn's staging buffer, one for every ring (the relay's copies are synchronous): a
 * ring of its own would touch fresh memory again per export.
 */
let scratch: Buffer = Buffer.alloc(0);

/**
 * At most this many bytes of a ring's end are copied out of it (and its memory kept for the next
 * ring); more are handed back as views of the ring's memory, which then serves no other ring. A
 * cancelled export's thread leaves up to the whole ring (4 MiB) behind: copied into a fresh buffer
 * that was one turn of the relay of 1024 page faults and a copy out of shared memory (41 ms in a
 * profile, docs/isolation.md "A ring's end handed back as views"), where the relay then only
 * frames the views' messages (dropping the rows). A normal end leaves a few bytes.
 */
export const END_COPY_BYTES = 64 << 10;

/** What the relay's row stream does with a ring's ends and holds. */
export interface RingEvents {
  /** Rows the thread has framed so far (this ring's), after a read or a wake-up. */
  rows(n: number): void;
  /** The ring cannot take another read: hold the upstream (true) until it can (false). */
  full(held: boolean): void;
  /**
   * The ring has ended: `rest` (from a message boundary on, in order) is the relay's to read
   * first, after skipping the next `skip` bytes of the upstream (the rest of a large row, only
   * after the thread's death). Its buffers are the relay's to keep: copies, or views of the
   * ring's memory, which then goes to no other ring (END_COPY_BYTES).
   */
  back(rows: number, rest: readonly Buffer[], skip: number): void;
}

export class RingWriter {
  readonly sab = ringMemory();
  private readonly v = ringViews(this.sab);
  /** Bytes of reads that did not fit (copies), written before anything newer. */
  private overflow: Buffer[] = [];
  private overflowLen = 0;
  private held = false;
  private unheld: Array<() => void> = [];
  private done = false;
  private lastRows = 0;
  /** Rows the thread had framed when the ring ended (its memory may serve another ring since). */
  private finalRows = 0;
  /** The most bytes there ever were queued (tests: the ring bounds them). */
  maxQueued = 0;
  /** The ring's memory lent for the socket's next read (lend()), until that read is handled. */
  private lent: Buffer | null = null;
  /** Ended while lent: the memory goes to the spares once the socket no longer reads into it. */
  private spareWhenReturned = false;

  constructor(private readonly events: RingEvents) {}

  /** The ring still takes the stream (it has not been given back). */
  get active(): boolean {
    return !this.done;
  }

  /** Bytes written and not yet taken by the thread (the queue to it). */
  get queued(): number {
    return this.done ? 0 : this.used() + this.overflowLen;
  }

  /** The ring cannot take another read: the upstream is held. */
  get full(): boolean {
    return this.held;
  }

  /** Resolves once the ring takes reads again (or has ended). */
  notFull(): Promise<void> {
    if (!this.held) return Promise.resolve();
    return new Promise((resolve) => this.unheld.push(resolve));
  }

  /**
   * The ring's free space at the write position, for the upstream socket's next read to go into
   * (fast-socket.ts, ReadLender): that read's chunk, given to write(), is then in place already.
   * None while the ring is held or has copies waiting (their bytes come first), or has ended.
   */
  lend(): Buffer | null {
    if (this.done || this.held || this.overflow.length > 0) return null;
    const off = Atomics.load(this.v.control, Word.Write) & MASK;
    const n = Math.min(RING_BYTES - this.used(), RING_BYTES - off, LEND_BYTES);
    if (n < MIN_LEND_BYTES) return null;
    this.lent = this.v.data.subarray(off, off + n);
    return this.lent;
  }

  /** The socket no longer reads into what lend() gave: an ended ring's memory may serve the next. */
  returned(): void {
    this.lent = null;
    if (this.spareWhenReturned) {
      this.spareWhenReturned = false;
      spare(this.sab);
    }
  }

  /** The relay's next upstream bytes (a reused read buffer: copied before return). */
  write(chunk: Buffer): void {
    if (this.done) return;
    const lent = this.lent;
    if (lent !== null && chunk.buffer === lent.buffer && chunk.byteOffset === lent.byteOffset) {
      // Read straight into the ring at the write position (lend): nothing to copy. Nothing else
      // was written since lend(): it lends nothing while copies wait or the ring is held.
      this.lent = null;
      this.advance(chunk.length);
    } else if (this.overflow.length > 0) this.keep(chunk);
    else {
      const n = this.put(chunk, 0);
      if (n < chunk.length) this.keep(chunk.subarray(n));
    }
    this.maxQueued = Math.max(this.maxQueued, this.queued);
    this.reportRows();
    if (!this.held && RING_BYTES - this.used() < RING_HEADROOM) this.hold();
  }

  /** A copy of bytes that did not fit (at most about a read: the upstream is held meanwhile). */
  private keep(bytes: Buffer): void {
    this.overflow.push(Buffer.from(bytes));
    this.overflowLen += bytes.length;
  }

  /** The thread stopped at a message it does not take: that message on is the relay's again. */
  stopped(): void {
    if (this.done || Atomics.load(this.v.control, Word.Stopped) !== 1) return;
    this.end(Atomics.load(this.v.control, Word.Read));
  }

  /**
   * The thread is gone (terminated by a cancel, or dead) while the ring was in use: the relay
   * reads on from the thread's last message boundary (the end of a large row it was freeing, the
   * message it stopped at, or the start of what it still needed).
   */
  takeOver(): void {
    if (this.done) return;
    const c = this.v.control;
    const read = Atomics.load(c, Word.Read);
    const bigEnd = Atomics.load(c, Word.BigEnd);
    // Inside a large row (Read before its end): what comes after it. Read past it is a message
    // boundary (the thread died before clearing Big); so is Read whenever Big is clear.
    const inBig =
      Atomics.load(c, Word.Stopped) === 0 && Atomics.load(c, Word.Big) === 1 && ((bigEnd - read) | 0) > 0;
    this.end(inBig ? bigEnd : read);
  }

  /** Rows the thread has framed so far. */
  get rows(): number {
    return this.done ? this.finalRows : Number(Atomics.load(this.v.rows, 0));
  }

  private used(): number {
    const c = this.v.control;
    return (Atomics.load(c, Word.Write) - Atomics.load(c, Word.Read)) | 0;
  }

  /**
   * Copies `chunk[from..from + n)` to the ring at `off`, its first `first` bytes there and the rest
   * from the ring's start. V8 copies into shared memory with relaxed atomic stores, a word at a
   * time only where source and target lie at the same offset modulo 8, else a byte at a time:
   * a 64 KiB read took 19.5 µs against 2.6 µs (and 0.9 µs into unshared memory), and in a profile
   * of rated export windows this copy was the relay's largest export cost. So a read whose
   * offsets do not agree is first copied (at memcpy speed) into a scratch buffer at the target's
   * offset modulo 8: 3.8 µs in all.
   */
  private copyIn(chunk: Buffer, from: number, n: number, off: number, first: number): void {
    const data = this.v.data;
    let src = chunk;
    let at = from;
    if (((chunk.byteOffset + from - (data.byteOffset + off)) & 7) !== 0) {
      const shift = (data.byteOffset + off) & 7;
      if (scratch.length < shift + n) scratch = Buffer.allocUnsafeSlow(shift + n);
      chunk.copy(scratch, shift, from, from + n);
      src = scratch;
      at = shift;
    }
    src.copy(data, off, at, at + first);
    if (first < n) src.copy(data, 0, at + first, at + n);
  }

  /** Copies what fits of `chunk[from..]` into the ring and wakes a waiting thread; returns where it stopped. */
  private put(chunk: Buffer, from: number): number {
    const c = this.v.control;
    const w = Atomics.load(c, Word.Write);
    const n = Math.min(chunk.length - from, RING_BYTES - this.used());
    if (n <= 0) return from;
    const off = w & MASK;
    const first = Math.min(n, RING_BYTES - off);
    this.copyIn(chunk, from, n, off, first);
    rowRingTestHooks.copied += n;
    this.advance(n);
    return from + n;
  }

  /** `n` more bytes are in the ring at the write position: the thread may take them. */
  private advance(n: number): void {
    const c = this.v.control;
    Atomics.store(c, Word.Write, (Atomics.load(c, Word.Write) + n) | 0);
    rowRingTestHooks.bytes += n;
    if (Atomics.load(c, Word.ThreadWaiting) === 1) {
      Atomics.store(c, Word.ThreadWaiting, 0);
      wake(c, Word.DataSeq);
    }
  }

  private reportRows(): void {
    const n = this.rows;
    if (n === this.lastRows) return;
    this.lastRows = n;
    this.events.rows(n);
  }

  /** Holds the upstream until the thread has freed half the ring (it wakes us: no polling). */
  private hold(): void {
    this.held = true;
    this.events.full(true);
    this.waitForSpace();
  }

  private waitForSpace(): void {
    const c = this.v.control;
    Atomics.store(c, Word.RelayWaiting, 1);
    const seq = Atomics.load(c, Word.SpaceSeq);
    if (RING_BYTES - this.used() >= RING_LOW_WATER) {
      Atomics.store(c, Word.RelayWaiting, 0);
      this.spaceFreed();
      return;
    }
    const r = waitAsync(c, Word.SpaceSeq, seq);
    if (r.async) void r.value.then(() => this.spaceFreed());
    else queueMicrotask(() => this.spaceFreed());
  }

  private spaceFreed(): void {
    if (this.done) return;
    while (this.overflow.length > 0) {
      const b = this.overflow[0]!;
      const n = this.put(b, 0);
      this.overflowLen -= n;
      if (n < b.length) {
        this.overflow[0] = b.subarray(n);
        break;
      }
      this.overflow.shift();
    }
    this.reportRows();
    if (this.overflow.length > 0 || RING_BYTES - this.used() < RING_HEADROOM) {
      this.waitForSpace();
      return;
    }
    this.unhold();
  }

  private unhold(): void {
    this.held = false;
    this.events.full(false);
    for (const f of this.unheld.splice(0)) f();
  }

  /**
   * The ring's bytes from `from` to the write position, then the overflow, back to the relay. A
   * `from` past the write position (the end of a large row not yet all read) makes the relay skip
   * the bytes up to it as they come. Called only once the thread no longer touches the ring
   * (it stopped, or it is gone), so its memory then goes to the spares.
   */
  private end(from: number): void {
    this.finalRows = this.rows;
    this.done = true;
    const c = this.v.control;
    const w = Atomics.load(c, Word.Write);
    const n = Math.max((w - from) | 0, 0);
    const skip = Math.max((from - w) | 0, 0);
    const off = from & MASK;
    const first = Math.min(n, RING_BYTES - off);
    const inRing =
      first < n
        ? [this.v.data.subarray(off, off + first), this.v.data.subarray(0, n - first)]
        : n > 0
          ? [this.v.data.subarray(off, off + n)]
          : [];
    // Large: the ring's own bytes as views, no copy (their memory stays theirs); the overflow
    // buffers are copies already.
    const viewed = n + this.overflowLen > END_COPY_BYTES;
    let rest: Buffer[];
    if (viewed) rest = [...inRing, ...this.overflow];
    else {
      const all = [...inRing, ...this.overflow];
      rest = all.length === 0 ? [] : [Buffer.concat(all, n + this.overflowLen)];
      rowRingTestHooks.endCopied += n;
    }
    this.overflow = [];
    this.overflowLen = 0;
    // A `from` past the write position (the end of a large row not yet all read): n is 0 then,
    // and the overflow (bytes of that row read since) is skipped first.
    let toSkip = skip;
    while (toSkip > 0 && rest.length > 0) {
      const k = Math.min(toSkip, rest[0]!.length);
      toSkip -= k;
      if (k === rest[0]!.length) rest.shift();
      else rest[0] = rest[0]!.subarray(k);
    }
    // A wait of ours still pending resolves now (and finds the ring done); its waiter is off the
    // memory's list before the memory can serve another ring.
    wake(c, Word.SpaceSeq);
    // The socket may still read into a buffer lent from this memory: spared once it no longer does.
    if (!viewed) {
      if (this.lent === null) spare(this.sab);
      else this.spareWhenReturned = true;
    }
    if (this.held) this.unhold();
    this.events.back(this.finalRows, rest, toSkip);
  }
}
