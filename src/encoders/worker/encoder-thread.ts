// The relay thread's handle on an export's encoder thread (./encoder-worker.ts). The relay keeps
// the upstream socket (Node cannot hand a socket to a thread) and does one copy per socket read:
// DataRow runs go to the thread in batches, under credits (./row-batcher.ts). Encoded file bytes
// come back (transferred) into the driver's FileSink, in chunk buffers that go back to the thread
// once the sink is done with them (./port-sink.ts). Where the thread comes from and goes after
// is ./thread-pool.ts; the row ring it may read is driven by ./thread-ring.ts; the files it may
// write itself are told of through ./thread-written-files.ts.
import { PgError, SqlState } from "../../errors.js";
import type { EncoderSpec } from "../create-encoder.js";
import { planParquet } from "../parquet/encoder.js";
import { parquetWasm } from "../parquet/wasm-writer.js";
import type { FileSink } from "../types.js";
import { encoderBudget, releaseSlotsOf } from "./encoder-budget.js";
import {
  type EncoderWorker,
  HostedWorker,
  type HostLoan,
  type LentSocket,
  type LoanEvents,
} from "./encoder-host.js";
import { RING_BUFFERS } from "./port-sink.js";
import { type FromEncoder, fromWireError, type ToEncoder } from "./protocol.js";
import { RowBatcher } from "./row-batcher.js";
import type { RingEvents, RingWriter } from "./row-ring.js";
import { type EncoderHostKind, type PooledThread, returnThread, takeThread } from "./thread-pool.js";
import { ThreadRing } from "./thread-ring.js";
import { ThreadFileWords, type ThreadWrittenFiles } from "./thread-written-files.js";

/** Tests only: a gate that blocks the encoder thread (threads of this process only: it is shared
 * memory), and a look at each thread started. */
export const encoderThreadTestHooks: {
  gate?: Int32Array;
  /** Holds a thread that writes its files after each rename, before it tells of it (protocol.ts). */
  renamed?: Int32Array;
  started?: (thread: EncoderThread) => void;
} = {};

export interface EncoderThreadOptions {
  /** Niceness of the thread (0 = the relay's own priority, 19 = the lowest). */
  nice: number;
  /** SCHED_IDLE for the thread (Linux): it runs only on CPU time nothing else wants. */
  idle?: boolean;
  /** At most this many encoder threads of the process encode at once (./encoder-budget.ts);
   * 0 or none: no limit. */
  maxEncoding?: number;
  /** Where the thread runs (default "thread": in this process). */
  host?: EncoderHostKind;
}

/** The result format to request per column: 0 text, 1 binary (what the encoder will expect). */
export function resultFormatsOf(spec: EncoderSpec): number[] {
  return spec.format === "csv"
    ? spec.options.columnNames.map(() => 0)
    : planParquet(spec.options.columns).resultFormats;
}

function threadFailed(what: string): PgError {
  return new PgError(SqlState.internalError, `encoder thread ${what}`);
}

interface Waiter {
  resolve: () => void;
  reject: (e: unknown) => void;
}

/**
 * An export's encoder thread, usable at once: rows sent before the thread has started (~30 ms, more
 * for Parquet's WASM) wait in its queue, which the credits bound like any other.
 */
export class EncoderThread {
  /** Result format to request per column: 0 text, 1 binary. */
  readonly resultFormats: readonly number[];
  /** Chunk buffers the thread allocated for this export, once finished (tests: the ring bounds it). */
  chunkBuffers = Number.NaN;
  /** The niceness the thread runs at, once started (NaN where the platform has none per thread). */
  nice = Number.NaN;
  /** Whether the thread runs in the SCHED_IDLE class, once started. */
  idle = false;
  private readonly thread: PooledThread;
  private readonly worker: EncoderWorker;
  private sink: FileSink | null = null;
  /** The export's files, when the thread writes them (attach() with a ThreadWrittenFiles). */
  private readonly files = new ThreadFileWords();
  private onError: ((err: PgError) => void) | null = null;
  private failure: PgError | null = null;
  private ended = false;
  /** Rows were given to it: the thread holds this export's state until it ends. */
  private gotRows = false;
  /** The thread itself failed (error, exit): it is not handed back. */
  private broken = false;
  /** Ended without rows: the thread drops the export's encoder, then goes back to the pool. */
  private dropping = false;
  private readonly rows = new RowBatcher((buf, len) => this.sendBuffer(buf, len));
  /** Chunk buffers the sink is done with, going back to the thread with the next rows. */
  private returns: ArrayBuffer[] = [];
  private finishing: Waiter | null = null;
  /** The ring the statement's rows go through, if they do. */
  private readonly rowRing = new ThreadRing((m) => this.post(m));
  private readonly started: Promise<void>;
  private onStarted: Waiter | null = null;

  constructor(spec: EncoderSpec, opts: EncoderThreadOptions) {
    this.resultFormats = resultFormatsOf(spec);
    const idle = opts.idle ?? false;
    const host = opts.host ?? "thread";
    this.thread = takeThread(opts.nice, idle, host);
    this.worker = this.thread.worker;
    this.worker.ref();
    const start: Extract<ToEncoder, { t: "start" }> = { t: "start", spec };
    // In the host both live there: the budget (every encoder thread is there) and parquet-wasm.
    const hosted = this.worker instanceof HostedWorker ? this.worker : null;
    let budget: Int32Array | undefined;
    if (hosted !== null) hosted.postStart(start, opts.maxEncoding);
    else {
      if (encoderThreadTestHooks.gate !== undefined) start.gate = encoderThreadTestHooks.gate;
      budget = opts.maxEncoding ? encoderBudget(opts.maxEncoding) : undefined;
      if (budget !== undefined) start.budget = budget;
      this.post(start);
    }
    this.started = new Promise<void>((resolve, reject) => {
      this.onStarted = { resolve, reject };
    });
    this.started.catch(() => {}); // the failure reaches the driver through onError
    this.worker.on("message", (m: FromEncoder) => this.receive(m));
    this.worker.on("error", (e) => {
      this.broken = true;
      this.fail(threadFailed(`failed: ${e instanceof Error ? e.message : String(e)}`));
    });
    const id = this.worker.threadId;
    this.worker.on("exit", (code) => {
      this.broken = true;
      // Terminated (a cancel, a failure) in the middle of a batch: its slot goes to the others.
      if (budget !== undefined) releaseSlotsOf(budget, id);
      this.fail(threadFailed(`exited (${code})`));
      // Every message it posted has been emitted before 'exit' (Node drains the port first).
      this.files.stop();
    });
    if (spec.format === "parquet" && !this.thread.hasWasm && hosted === null) {
      // Compiled once per process, in this thread; the encoder thread waits for it.
      parquetWasm().then(
        (wasm) => {
          // A thread being handed back still needs it: its Parquet encoder waits for it.
          if (this.ended && !this.dropping) return;
          this.post({ t: "wasm", wasm });
          this.thread.hasWasm = true;
        },
        (e: unknown) => {
          // Its encoder would wait for WASM forever: the thread cannot serve anyone.
          this.broken = true;
          this.fail(PgError.from(e));
          if (this.dropping) void this.worker.terminate();
        },
      );
    }
    encoderThreadTestHooks.started?.(this);
  }

  /** The thread's id (the same for exports that were given the same kept thread). */
  get threadId(): number {
    return this.worker.threadId;
  }

  /** Resolves once the thread runs its encoder (tests; the driver need not wait for it). */
  ready(): Promise<void> {
    return this.started;
  }

  /**
   * The thread can write an export's files itself (a thread of this process; the encoder host's
   * hand their bytes back as chunks).
   */
  get writesFiles(): boolean {
    return !(this.worker instanceof HostedWorker);
  }

  /**
   * Resolves once the thread no longer touches this export's files: it has finished (or dropped)
   * the export, or it has exited. Every file it told of has been told by then.
   */
  stopped(): Promise<void> {
    return this.files.stopped();
  }

  /**
   * Where the encoded files go, and whom to tell when encoding fails. `signal` ends the thread at
   * once (a cancel does not wait for rows already sent to be encoded). A ThreadWrittenFiles (only
   * where writesFiles) has the thread write the files itself; a FileSink gets their bytes.
   */
  attach(sink: FileSink | ThreadWrittenFiles, signal: AbortSignal, onError: (err: PgError) => void): void {
    if ("output" in sink) this.post(this.files.attach(sink, encoderThreadTestHooks.renamed));
    else this.sink = sink;
    this.onError = onError;
    if (this.failure !== null) {
      const err = this.failure;
      queueMicrotask(() => onError(err));
    }
    const stop = (): void => this.end(PgError.from(signal.reason));
    if (signal.aborted) stop();
    else signal.addEventListener("abort", stop, { once: true });
  }

  /** Bytes sent and not yet acknowledged (or in the row ring, not yet taken). */
  get inFlight(): number {
    return this.rows.inFlight + this.rowRing.queued;
  }

  /** The most bytes there ever were in flight (tests). */
  get maxInFlight(): number {
    return Math.max(this.rows.maxInFlight, this.rowRing.maxQueued);
  }

  /** True while the queue to the thread is full: pause the rows and await drained(). */
  get congested(): boolean {
    return this.rows.congested || this.rowRing.full;
  }

  /**
   * Whole DataRow messages in `buf[start..end)`, copied (the caller's buffer is free again on
   * return). Returns false when the queue is full: await drained() before sending more.
   */
  writeRows(buf: Buffer, start: number, end: number): boolean {
    if (this.failure !== null) return true; // the export is ending; nothing more is encoded
    this.gotRows = true;
    return this.rows.writeRows(buf, start, end);
  }

  /** One row as fields (`nFields` length-prefixed values at buf[pos..]): sent as a DataRow. */
  writeRow(buf: Buffer, pos: number, nFields: number): boolean {
    if (this.failure !== null) return true;
    this.gotRows = true;
    return this.rows.writeRow(buf, pos, nFields);
  }

  /** The thread is the encoder host's and its export goes on: lend() would take the loan. */
  get canLend(): boolean {
    return this.worker instanceof HostedWorker && this.failure === null && !this.ended;
  }

  /**
   * In the encoder host: lends it the upstream socket, whose next DataRows it reads into this
   * thread's batches itself (./row-loan.ts), behind the rows sent so far. Null where it cannot:
   * a thread of this process, or one whose export is ending.
   */
  lend(lent: LentSocket, maxRowBytes: number, events: LoanEvents): HostLoan | null {
    if (!this.canLend) return null;
    this.rows.sendBatch();
    return (this.worker as HostedWorker).lend(lent, maxRowBytes, events);
  }

  /** A thread of this process whose export goes on: ring() would take the rows. */
  get canRing(): boolean {
    return !(this.worker instanceof HostedWorker) && this.failure === null && !this.ended;
  }

  /**
   * The statement's next bytes go to the thread through a ring, unframed (./row-ring.ts), behind
   * the rows sent so far: the relay writes each upstream read there, the thread frames the
   * DataRows and gives the stream back at its first other message (`events.back`). If the thread
   * ends first (a cancel terminates it, or it dies), the relay takes the stream back from the
   * thread's last message boundary once it has stopped. Only where canRing.
   */
  ring(maxRowBytes: number, events: RingEvents): RingWriter {
    this.rows.sendBatch();
    this.gotRows = true;
    return this.rowRing.start(maxRowBytes, events);
  }

  /** Resolves once the queue is down to half (or rejects with the export's failure). */
  drained(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    // A full ring: once the thread has freed half of it (or the ring has ended).
    const roomy = this.rowRing.notFull();
    if (roomy !== null) return roomy.then(() => this.drained());
    return this.rows.drained();
  }

  /** Sends what is left, and resolves once the encoder has finished its last file. */
  finish(): Promise<void> {
    if (this.failure !== null) return Promise.reject(this.failure);
    this.rows.sendBatch();
    this.post({ t: "finish" });
    return new Promise((resolve, reject) => {
      this.finishing = { resolve, reject };
    });
  }

  /**
   * Ends the export's use of the thread: a thread that got no rows (a refused export, an unused
   * batch) goes back to the pool once it has dropped the export's encoder; one that got rows ends
   * (and with it the Parquet writer's WASM memory) rather than encode them for nobody.
   */
  dispose(): void {
    this.end(new PgError(SqlState.queryCanceled, "encoder thread stopped"));
  }

  /** Ends the export's use of the thread; whoever waits on it gets `reason` (onError does not: the driver knows). */
  private end(reason: PgError): void {
    if (this.ended) return;
    this.ended = true;
    this.rows.stop();
    this.fail(reason);
    if (!this.gotRows && !this.broken) {
      this.dropping = true;
      // Its answer comes in order, after anything the dropped encoder had posted.
      this.worker.unref();
      this.post({ t: "drop" });
      return;
    }
    // The thread may be mid-ring: once it can no longer touch it, the relay reads on from there.
    this.rowRing.takeOverAfter(this.worker.terminate());
  }

  private sendBuffer(buf: ArrayBuffer, len: number): void {
    if (this.failure !== null) return;
    const free = this.returns;
    this.returns = [];
    this.post({ t: "rows", buf, len, free }, [buf, ...free]);
  }

  /** The sink no longer reads chunk buffer `buf`: it may go back to the thread for reuse. */
  private giveBack(buf: ArrayBuffer): void {
    // A hosted thread's chunk buffers never go to its host (it has its own): straight back to the
    // pool they are read into. Riding on row batches, they never came back while the host read the
    // rows itself (a loan), and every chunk was a new 1 MiB buffer of the relay's.
    if (this.worker instanceof HostedWorker) {
      this.worker.reclaim(buf);
      return;
    }
    if (this.ended || this.failure !== null || this.returns.length >= RING_BUFFERS) return;
    // While the rows come through the row ring no `rows` message would carry it back.
    if (this.rowRing.open) this.post({ t: "free", free: [buf] }, [buf]);
    else this.returns.push(buf);
  }

  private post(m: ToEncoder, transfer: ArrayBuffer[] = []): void {
    this.worker.postMessage(m, transfer);
  }

  private receive(m: FromEncoder): void {
    // Told even after a failure: the driver takes back every file the thread may have made.
    if (this.files.receive(m)) return;
    if (m.t === "finished") this.files.stop();
    if (this.dropping) {
      if (m.t === "finished" && !this.broken) returnThread(this.thread);
      return;
    }
    if (this.failure !== null) return;
    try {
      switch (m.t) {
        case "ack":
          this.rows.acked(m.len, m.buf);
          break;
        case "open":
          this.sink!.openFile(m.index);
          break;
        case "chunk": {
          const buf = m.buf;
          let given = false;
          this.sink!.write(new Uint8Array(buf, 0, m.len), () => {
            // Once only: a buffer listed twice in a transfer list fails the postMessage.
            if (given) return;
            given = true;
            this.giveBack(buf);
          });
          break;
        }
        case "close":
          this.sink!.closeFile(m.rows);
          break;
        case "finished": {
          // The thread is done with this export: kept warm for the next one, or ended.
          const f = this.finishing;
          this.finishing = null;
          this.ended = true;
          this.chunkBuffers = m.buffers;
          this.returns = [];
          this.rows.stop();
          returnThread(this.thread);
          f?.resolve();
          break;
        }
        case "error":
          this.fail(fromWireError(m.error));
          break;
        case "ringBack":
          this.rowRing.stopped();
          break;
        case "ready":
          this.nice = m.nice;
          this.idle = m.idle;
          this.onStarted?.resolve();
          break;
      }
    } catch (e) {
      // The sink refused (an upload failed): the export ends with that.
      this.fail(PgError.from(e));
    }
  }

  private fail(err: PgError): void {
    if (this.failure !== null) return;
    this.failure = err;
    this.rows.fail(err);
    this.finishing?.reject(err);
    this.finishing = null;
    this.onStarted?.reject(err);
    this.returns = [];
    if (!this.ended) this.onError?.(err);
  }
}
