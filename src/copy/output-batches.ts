// An export's output batches (Materialize's `output_batch_count`): N encoder threads, each with an
// upload sink of its own that writes files `mz-<id>-batch-<BBBB>-<NNNN>.<ext>` (Materialize
// `src/storage-types/src/sinks/s3_oneshot_sink.rs`, `S3KeyManager::data_key`). Materialize deals
// rows to batches by hash (`src/storage-operators/src/s3_oneshot_sink.rs`); the relay deals each
// socket read's whole rows to the thread with the least bytes queued, so a busy thread gets fewer.
// As in Materialize, batch 0 always ends with a file (an empty result still gives one), the other
// batches only when they got rows; the order of rows across files is not defined. Batch k > 0 gets
// its thread only once every thread before it has a full queue: an export its first thread keeps
// up with never pays for another (a Parquet thread's start-up costs a few tenths of a CPU-second).
// A file:// target's files are written by the encoder threads themselves (./thread-files.ts), where
// they are threads of this process; otherwise each file's bytes come back here to an upload.
import type { EncoderThread } from "../encoders/worker/encoder-thread.js";
import { fileKey } from "../encoders/worker/protocol.js";
import type { PgError } from "../errors.js";
import { FileStore } from "./storage/file-store.js";
import type { ObjectStore } from "./storage/object-store.js";
import { ThreadFiles } from "./thread-files.js";
import { type BatchSink, type CleanupFailure, UploadSink, type WrittenFile } from "./upload-sink.js";

/** Batch k's file i is `${prefix(k)}${i, 4 digits at least}${suffix}`. */
export interface BatchKeys {
  prefix(batch: number): string;
  suffix: string;
}

interface Batch {
  thread: EncoderThread;
  sink: BatchSink;
  /** Rows were dealt to it: its thread is finished (not just stopped) at the end. */
  used: boolean;
}

export interface BatchThreads {
  /** Batch 0's thread (started early, so it is up when the rows come). */
  first: EncoderThread;
  /** Starts the thread of the next batch. */
  more: () => EncoderThread;
  /** Batches at most (exports.encoderThreads). */
  max: number;
}

/** What a relieved row stream waits for (drained()): the encoder threads' queues, or the uploads. */
export type OutputWait = "encoder" | "uploads";

export class OutputBatches {
  private readonly batches: Batch[] = [];
  /** What drained() waits for now; null when it does not run. */
  waitingFor: OutputWait | null = null;

  /**
   * Batch k's thread encodes into files named by `keys`. Each thread is attached here; `onError`
   * hears the first failure of any of them.
   */
  constructor(
    private readonly threads: BatchThreads,
    private readonly store: ObjectStore,
    private readonly keys: BatchKeys,
    private readonly signal: AbortSignal,
    private readonly filesCompleting: number,
    private readonly onError: (err: PgError) => void,
  ) {
    this.add(threads.first).used = true;
  }

  private add(thread: EncoderThread): Batch {
    const k = this.batches.length;
    const keyPrefix = this.keys.prefix(k);
    const { suffix } = this.keys;
    let sink: BatchSink;
    if (this.store instanceof FileStore && thread.writesFiles) {
      const files = new ThreadFiles(this.store, { ...this.store.target, keyPrefix, suffix }, () =>
        thread.stopped(),
      );
      thread.attach(files, this.signal, this.onError);
      sink = files;
    } else {
      const uploads = new UploadSink(
        this.store,
        (i) => fileKey({ keyPrefix, suffix }, i),
        this.signal,
        this.filesCompleting,
      );
      thread.attach(uploads, this.signal, this.onError);
      sink = uploads;
    }
    const b = { thread, sink, used: false };
    this.batches.push(b);
    return b;
  }

  /** Every thread has a full queue, and no more may start. */
  private get allCongested(): boolean {
    return this.batches.length >= this.threads.max && this.batches.every((b) => b.thread.congested);
  }

  /**
   * The thread that takes every row (one batch at most: exports.encoderThreads 1), for a loan of
   * the upstream to its encoder host; null when rows may go to more than one thread.
   */
  get soleThread(): EncoderThread | null {
    return this.threads.max === 1 && this.batches.length === 1 ? this.batches[0]!.thread : null;
  }

  /** Whole DataRow messages `buf[start..end)`, to one batch (the caller's buffer is free on return). */
  writeRows(buf: Buffer, start: number, end: number): void {
    const b = this.leastQueued();
    b.used = true;
    b.thread.writeRows(buf, start, end);
  }

  /** One row as `nFields` length-prefixed fields at `buf[pos..]` (Materialize's SUBSCRIBE rows). */
  writeRow(buf: Buffer, pos: number, nFields: number): void {
    const b = this.leastQueued();
    b.used = true;
    b.thread.writeRow(buf, pos, nFields);
  }

  /**
   * True when the rows must pause until drained(): every thread's queue is full (so no batch can
   * take more), or some upload wants its buffers drained first.
   */
  get needsRelief(): boolean {
    for (const b of this.batches) if (b.sink.needsDrain) return true;
    return this.allCongested;
  }

  /**
   * Resolves once some thread's queue is down to half and no upload wants draining (with one
   * thread: exactly the single-thread driver's wait). A thread can fill up again while uploads
   * drain, so the rows resume only when not every queue is full.
   */
  async drained(): Promise<void> {
    try {
      do {
        // The first thread down to half its queue; the others' answers come too and are ignored.
        this.waitingFor = "encoder";
        await new Promise<void>((resolve, reject) => {
          for (const b of this.batches) b.thread.drained().then(resolve, reject);
        });
        this.waitingFor = "uploads";
        await Promise.all(this.batches.map((b) => b.sink.drained()));
      } while (this.allCongested);
    } finally {
      this.waitingFor = null;
    }
  }

  /**
   * Sends every thread what is left and waits for its last file; a batch that got no rows is
   * stopped instead (finishing it would write an empty file).
   */
  async finishEncoding(): Promise<void> {
    await Promise.all(
      this.batches.map((b) => {
        if (b.used) return b.thread.finish();
        b.thread.dispose();
        return undefined;
      }),
    );
  }

  /** Waits for every upload; the files by batch, then by index (the manifest's order). */
  async finish(): Promise<WrittenFile[]> {
    const files = await Promise.all(this.batches.map((b) => b.sink.finish()));
    return files.flat();
  }

  /**
   * SPEC §2.2 for every batch at once: completed files deleted, unfinished uploads aborted;
   * `extra` (the manifest) goes with batch 0's files. Resolves with what could not be removed.
   */
  async takeBack(extra: readonly string[] = []): Promise<CleanupFailure[]> {
    const left = await Promise.all(this.batches.map((b, k) => b.sink.takeBack(k === 0 ? extra : [])));
    return left.flat();
  }

  /** Bytes handed to uploads so far (for progress). */
  get bytes(): number {
    return this.sum((s) => s.bytes);
  }

  get filesStarted(): number {
    return this.sum((s) => s.filesStarted);
  }

  get filesDone(): number {
    return this.sum((s) => s.filesDone);
  }

  private sum(f: (s: BatchSink) => number): number {
    let n = 0;
    for (const b of this.batches) n += f(b.sink);
    return n;
  }

  /**
   * The batch whose thread has the fewest bytes queued (ties: the lowest batch), or a new batch
   * when every thread's queue is full and more may start.
   */
  private leastQueued(): Batch {
    let best = this.batches[0]!;
    for (let k = 1; k < this.batches.length; k++) {
      const b = this.batches[k]!;
      if (b.thread.inFlight < best.thread.inFlight) best = b;
    }
    if (best.thread.congested && this.batches.length < this.threads.max && !this.signal.aborted)
      return this.add(this.threads.more());
    return best;
  }
}
