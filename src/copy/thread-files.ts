// An output batch whose encoder thread writes its files itself (a file:// target in thread mode:
// ../encoders/worker/file-writer-sink.ts). The relay writes none of their bytes: it hears of each
// file before it exists, of its progress, and of its completion, and that is what it needs for the
// manifest, the progress NOTICEs, the export log, and — SPEC §2.2 — for taking it all back.

import { type FileOutput, fileKey } from "../encoders/worker/protocol.js";
import type { ThreadWrittenFiles } from "../encoders/worker/thread-written-files.js";
import { PgError } from "../errors.js";
import type { ObjectStore } from "./storage/object-store.js";
import type { BatchSink, CleanupFailure, WrittenFile } from "./upload-sink.js";

export class ThreadFiles implements ThreadWrittenFiles, BatchSink {
  /** Temp file ids of the files the thread announced, by index. */
  private readonly announced = new Map<number, string>();
  private readonly complete: WrittenFile[] = [];
  private doneCount = 0;
  private doneBytes = 0;
  /** Bytes of the file being written, as last told. */
  private current = 0;
  /** Writing has no queue here: a slow disk holds the thread, whose row credits hold the rows. */
  readonly needsDrain = false;

  constructor(
    private readonly store: ObjectStore,
    readonly output: FileOutput,
    /** Resolves once the thread writes no more (EncoderThread.stopped). */
    private readonly stopped: () => Promise<void>,
  ) {}

  opened(index: number, uploadId: string): void {
    this.announced.set(index, uploadId);
    this.current = 0;
  }

  wrote(bytes: number): void {
    this.current += bytes;
  }

  done(index: number, rows: number, bytes: number): void {
    this.complete[index] = { key: fileKey(this.output, index), rows, bytes };
    this.doneCount++;
    this.doneBytes += bytes;
    this.current = 0;
  }

  async drained(): Promise<void> {}

  /** Every file is done once the thread has finished (its words come before `finished`). */
  async finish(): Promise<WrittenFile[]> {
    return this.complete.filter((f) => f !== undefined);
  }

  get bytes(): number {
    return this.doneBytes + this.current;
  }

  get filesStarted(): number {
    return this.announced.size;
  }

  get filesDone(): number {
    return this.doneCount;
  }

  /**
   * Once the thread has stopped (a cancel terminates it at any moment, even between a rename and
   * its word), removes every file it announced — the object by its key and the temp file by its
   * id, whichever exists — with `extra` keys, all at once.
   */
  async takeBack(extra: readonly string[] = []): Promise<CleanupFailure[]> {
    await this.stopped();
    const failures: CleanupFailure[] = [];
    const fail = (keys: readonly string[], e: unknown): void => {
      const err = PgError.from(e);
      for (const key of keys)
        failures.push({ key, message: err.detail ? `${err.message}: ${err.detail}` : err.message });
    };
    const keys = [...this.announced.keys()].map((i) => fileKey(this.output, i));
    const remove = [...keys, ...extra];
    await Promise.all([
      remove.length > 0 ? this.store.delete(remove).catch((e: unknown) => fail(remove, e)) : undefined,
      ...[...this.announced]
        .filter(([i]) => this.complete[i] === undefined)
        .map(([i, id]) => {
          const key = fileKey(this.output, i);
          return this.store.abortUpload(key, id).catch((e: unknown) => fail([key], e));
        }),
    ]);
    return failures;
  }
}
