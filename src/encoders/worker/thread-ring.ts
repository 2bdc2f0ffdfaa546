// The row ring (./row-ring.ts) as an export's encoder thread handle (./encoder-thread.ts) drives
// it: a statement's rows may go to the thread through a ring, opened behind the rows sent so far;
// the thread gives the stream back (`ringBack`) at its first message that is not a DataRow, and if
// the thread is ended first, the relay takes the stream back once the thread can no longer touch
// the ring. One ring at a time; its figures (bytes queued, the most ever) count with the batches'.
import type { ToEncoder } from "./protocol.js";
import { type RingEvents, RingWriter } from "./row-ring.js";

export class ThreadRing {
  /** The ring the statement's rows go through now, if they do. */
  private writer: RingWriter | null = null;
  /** The most bytes the export's earlier rings held (tests). */
  private earlierMaxQueued = 0;

  constructor(private readonly post: (m: ToEncoder) => void) {}

  /** The rows go through a ring now (no `rows` message goes to the thread meanwhile). */
  get open(): boolean {
    return this.writer !== null;
  }

  /** Bytes in the ring not yet taken by the thread. */
  get queued(): number {
    return this.writer?.queued ?? 0;
  }

  /** The most bytes this export's rings ever held (tests). */
  get maxQueued(): number {
    return Math.max(this.earlierMaxQueued, this.writer?.maxQueued ?? 0);
  }

  get full(): boolean {
    return this.writer?.full === true;
  }

  /** While the ring is full: resolves once the thread has freed half of it (or it has ended). */
  notFull(): Promise<void> | null {
    const w = this.writer;
    return w?.full === true ? w.notFull() : null;
  }

  /** Opens a ring for the statement's next bytes and tells the thread to read it. */
  start(maxRowBytes: number, events: RingEvents): RingWriter {
    const writer = new RingWriter({
      rows: events.rows,
      full: events.full,
      back: (rows, rest, skip) => {
        this.earlierMaxQueued = Math.max(this.earlierMaxQueued, writer.maxQueued);
        if (this.writer === writer) this.writer = null;
        events.back(rows, rest, skip);
      },
    });
    this.writer = writer;
    this.post({ t: "ring", sab: writer.sab, maxRowBytes });
    return writer;
  }

  /** The thread's `ringBack`: it stopped at a message it does not take. */
  stopped(): void {
    this.writer?.stopped();
  }

  /**
   * The thread is being ended, maybe mid-ring: once `gone` settles it can no longer touch the
   * ring, and the relay reads on from the thread's last message boundary.
   */
  takeOverAfter(gone: Promise<unknown>): void {
    const ring = this.writer;
    if (ring === null) return;
    const takeOver = (): void => ring.takeOver();
    gone.then(takeOver, takeOver);
  }
}
