// The encoder host's side of a row loan (docs/isolation.md, "The host reads the rows itself"): the
// relay lends the host its upstream socket for one statement's row stream, and the host reads the
// DataRows straight into its thread's batch buffers instead of the relay reading them, copying
// them into frames and writing them to the host. The checks are the relay's (its MessageStream
// with an export's policy): each message must be a DataRow whose length word is sane and whose
// size is at most exports.maxRowBytes; at the first message that is not (CommandComplete, an
// ErrorResponse, a NoticeResponse, PortalSuspended, an oversized or malformed row…) the host stops
// reading and gives that message and every byte after it back, and the relay reads on from there
// and handles it as it always did. A full window pauses the reading (TCP backpressure), as the
// relay pauses the upstream.
import type { Socket } from "node:net";
import { withStaticReads } from "../../proxy/fast-socket.js";
import { DataRowReader } from "./data-row-reader.js";
import { PARTIAL_BATCH_MS, WINDOW_BYTES } from "./row-batcher.js";

/** The socket's read buffer (the relay's upstream reads use the same size). */
const READ_BUFFER = 64 << 10;
const LOW_WATER = WINDOW_BYTES >>> 1;

export interface LoanTarget {
  /** A buffer of BATCH_BYTES to fill (one the thread gave back, or a new one). */
  buffer(): ArrayBuffer;
  /** Whole DataRows in `buf[0..len)` for the thread; false when it is gone (the rows are dropped). */
  send(buf: ArrayBuffer, len: number): boolean;
  /**
   * Rows sent to the thread so far; `full`: reading waits for the thread. `read`: bytes read from
   * the socket since the last call.
   */
  progress(rows: number, full: boolean, read: number): void;
  /** The loan has ended; `rest` is the relay's to read first (its own buffer). */
  back(rows: number, rest: Buffer, read: number, error?: string): void;
}

export class RowLoan {
  /** Bytes sent to the thread and not yet encoded. */
  private inFlight = 0;
  private rows = 0;
  /** Rows in the batch being filled. */
  private batchRows = 0;
  private batch: Buffer | null = null;
  private batchLen = 0;
  private timer: NodeJS.Timeout | null = null;
  /** Frames the DataRows (the relay's checks); what it does not take is given back. */
  private readonly reader: DataRowReader;
  private held = false;
  private full = false;
  /** The export is ending: rows are read and dropped until the stream's first other message. */
  private dropping = false;
  private done = false;
  private readonly sock: Socket;
  /** Bytes read from the socket and not yet reported. */
  private read = 0;

  constructor(
    received: Socket,
    leftover: Buffer,
    maxRowBytes: number,
    private readonly target: LoanTarget,
  ) {
    this.reader = new DataRowReader(maxRowBytes, {
      rows: (buf, start, end, count, own) => this.rowsOut(buf, start, end, count, own),
    });
    // The socket Node made of the handle started reading at once: what it has read comes first.
    const early: Buffer[] = [];
    for (;;) {
      const b = received.read() as Buffer | null;
      if (b === null) break;
      early.push(b);
    }
    // Read through onread into one reused buffer, as the relay reads (fast-socket.ts): no Buffer
    // per read, and pause() stops the reads at once (readStop), so nothing is read past the rows.
    const fast = withStaticReads(received, READ_BUFFER, (c) => this.fromSocket(c));
    this.sock = fast ?? received;
    if (fast === null) received.on("data", (c: Buffer) => this.fromSocket(c));
    this.sock.on("end", () => this.end("the upstream closed the connection"));
    this.sock.on("error", (e) => this.end(`upstream socket error: ${e.message}`));
    this.feed(leftover);
    for (const b of early) this.fromSocket(b);
    if (!this.done) this.flow();
  }

  /** The thread has encoded `len` bytes of this loan's. */
  acked(len: number): void {
    this.inFlight -= len;
    if (this.full && this.inFlight <= LOW_WATER) {
      this.full = false;
      this.target.progress(this.rows, false, this.takeRead());
      this.flow();
    }
  }

  /** The relay's uploads are behind (true) or caught up (false). */
  hold(held: boolean): void {
    this.held = held;
    this.flow();
  }

  /** The export is ending: read on to the end of the rows, dropping them. */
  drop(): void {
    this.dropping = true;
    this.batch = null;
    this.batchLen = 0;
    this.flow();
  }

  private flow(): void {
    if (this.done) return;
    if (this.dropping || (!this.held && !this.full)) this.sock.resume();
    else this.sock.pause();
  }

  private fromSocket(chunk: Buffer): void {
    this.read += chunk.length;
    this.feed(chunk);
  }

  private takeRead(): number {
    const n = this.read;
    this.read = 0;
    return n;
  }

  /** The next bytes of the stream. Nothing keeps a view of `chunk` (it may be a reused read buffer). */
  private feed(chunk: Buffer): void {
    if (this.done) return;
    const refused = this.reader.feed(chunk);
    if (refused === null || this.done) return;
    const rest = chunk.subarray(refused.at);
    this.giveBack(refused.head.length > 0 ? Buffer.concat([refused.head, rest]) : Buffer.from(rest));
  }

  /** `count` whole DataRows `buf[start..end)` to the thread; `own`: buf is a row's own buffer, sent as it is. */
  private rowsOut(buf: Buffer, start: number, end: number, count: number, own: boolean): void {
    if (count === 0 || this.dropping) return;
    const n = end - start;
    if (own) {
      this.sendBatch();
      this.rows += count;
      this.post(buf.buffer as ArrayBuffer, n);
      return;
    }
    if (this.batch === null || this.batchLen + n > this.batch.length) {
      this.sendBatch();
      this.batch = Buffer.from(this.target.buffer());
    }
    buf.copy(this.batch, this.batchLen, start, end);
    this.batchLen += n;
    this.batchRows += count;
    if (this.timer === null) {
      this.timer = setTimeout(() => {
        this.timer = null;
        this.sendBatch();
      }, PARTIAL_BATCH_MS);
    }
  }

  private sendBatch(): void {
    if (this.timer !== null) {
      clearTimeout(this.timer);
      this.timer = null;
    }
    const b = this.batch;
    if (b === null || this.batchLen === 0) return;
    this.batch = null;
    this.rows += this.batchRows;
    this.batchRows = 0;
    const len = this.batchLen;
    this.batchLen = 0;
    this.post(b.buffer as ArrayBuffer, len);
  }

  private post(buf: ArrayBuffer, len: number): void {
    if (!this.target.send(buf, len)) {
      // The thread is gone (cancelled, failed): the rows go nowhere until the stream's end.
      this.drop();
      return;
    }
    this.inFlight += len;
    const full = this.inFlight >= WINDOW_BYTES;
    this.target.progress(this.rows, full, this.takeRead());
    if (full && !this.full) {
      this.full = true;
      this.flow();
    }
  }

  /** The first message the host does not take, and everything after it: the relay's again. */
  private giveBack(rest: Buffer): void {
    if (this.done) return;
    if (!this.dropping) this.sendBatch();
    this.finish();
    this.target.back(this.rows, rest, this.takeRead());
  }

  /** The socket ended or failed under the loan: the relay's upstream is lost. */
  private end(why: string): void {
    if (this.done) return;
    if (!this.dropping) this.sendBatch();
    this.finish();
    this.target.back(this.rows, Buffer.alloc(0), this.takeRead(), why);
  }

  private finish(): void {
    this.done = true;
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
    this.reader.reset();
    this.sock.pause();
    this.sock.removeAllListeners();
    this.sock.on("error", () => {});
    // Closes the host's descriptor only: no shutdown(2), the relay's descriptor keeps the connection.
    this.sock.destroy();
  }
}
