// The FileSink of an export: each file the encoder produces becomes one streaming upload. It keeps
// track of everything the export has put in the store, so that a failure can take it all back.

import type { FileSink } from "../encoders/types.js";
import { PgError } from "../errors.js";
import type { ObjectStore, ObjectUpload } from "./storage/object-store.js";

export interface WrittenFile {
  key: string;
  rows: number;
  bytes: number;
}

export interface CleanupFailure {
  key: string;
  message: string;
}

/** What an export's output batch (./output-batches.ts) asks of where its thread's files go. */
export interface BatchSink {
  /** True when the encoder should stop feeding until drained() resolves. */
  readonly needsDrain: boolean;
  drained(): Promise<void>;
  /** Waits for every file to complete; throws the first failure. The files by index. */
  finish(): Promise<WrittenFile[]>;
  /** Takes back everything of the batch, with `extra` keys; resolves with what could not be removed. */
  takeBack(extra?: readonly string[]): Promise<CleanupFailure[]>;
  /** Bytes written (or handed to uploads) so far, for progress. */
  readonly bytes: number;
  readonly filesStarted: number;
  readonly filesDone: number;
}

export class UploadSink implements FileSink, BatchSink {
  private current: { index: number; key: string; upload: ObjectUpload } | null = null;
  /** Uploads not known to be finished or cleaned up, by key (a failed end() stays until takeBack). */
  private readonly open = new Map<ObjectUpload, string>();
  private readonly completing = new Set<Promise<void>>();
  private readonly done: WrittenFile[] = [];
  private failure: PgError | null = null;
  private bytesQueued = 0;
  private filesOpened = 0;
  private mustDrain = false;

  constructor(
    private readonly store: ObjectStore,
    private readonly keyOf: (index: number) => string,
    private readonly signal: AbortSignal,
    /**
     * Files completing in the background at once; more waits (bounds memory to a few files' parts).
     * No default here: the configuration's (exports.filesCompleting) is the only one.
     */
    private readonly maxCompleting: number,
  ) {}

  openFile(index: number): void {
    const key = this.keyOf(index);
    const upload = this.store.upload(key, this.signal);
    this.current = { index, key, upload };
    this.open.set(upload, key);
    this.filesOpened++;
  }

  write(chunk: Uint8Array, release?: () => void): void {
    this.throwIfFailed();
    this.bytesQueued += chunk.length;
    if (!this.current!.upload.write(chunk, release)) this.mustDrain = true;
  }

  closeFile(rows: number): void {
    const { key, upload, index } = this.current!;
    this.current = null;
    const p = upload.end().then(
      ({ bytes }) => {
        this.open.delete(upload);
        this.done[index] = { key, rows, bytes };
      },
      (e: unknown) => {
        // Stays in `open`: takeBack() asks it again and learns whether anything of it is left.
        this.failure ??= PgError.from(e);
      },
    );
    this.completing.add(p);
    void p.finally(() => this.completing.delete(p));
    if (this.completing.size >= this.maxCompleting) this.mustDrain = true;
  }

  /** True when the encoder should stop feeding until drained() resolves. */
  get needsDrain(): boolean {
    return this.mustDrain || this.failure !== null;
  }

  async drained(): Promise<void> {
    while (this.completing.size >= this.maxCompleting) await Promise.race(this.completing);
    if (this.current !== null) await this.current.upload.drained();
    this.mustDrain = false;
    this.throwIfFailed();
  }

  /** Waits for every file to complete; throws the first upload failure. */
  async finish(): Promise<WrittenFile[]> {
    await Promise.all(this.completing);
    this.throwIfFailed();
    return this.done.filter((f) => f !== undefined);
  }

  /** Bytes handed to uploads so far (for progress). */
  get bytes(): number {
    return this.bytesQueued;
  }

  /** Files begun (for progress). */
  get filesStarted(): number {
    return this.filesOpened;
  }

  get filesDone(): number {
    return this.done.filter((f) => f !== undefined).length;
  }

  /**
   * Takes back everything this sink put in the store, all at once: one DeleteObjects for the
   * completed files (and `extra` keys, e.g. the manifest) while every unfinished upload is aborted
   * (an upload whose Complete is in flight waits for it and deletes its object). Resolves with what
   * could not be removed.
   */
  async takeBack(extra: readonly string[] = []): Promise<CleanupFailure[]> {
    const failures: CleanupFailure[] = [];
    const fail = (keys: readonly string[], e: unknown): void => {
      const err = PgError.from(e);
      for (const key of keys)
        failures.push({ key, message: err.detail ? `${err.message}: ${err.detail}` : err.message });
    };
    const deleted = new Set<string>();
    const remove = async (keys: string[]): Promise<void> => {
      for (const k of keys) deleted.add(k);
      if (keys.length > 0) await this.store.delete(keys).catch((e: unknown) => fail(keys, e));
    };
    await Promise.all([
      remove([...this.done.filter((f) => f !== undefined).map((f) => f.key), ...extra]),
      ...[...this.open].map(([u, key]) =>
        u.abort().then(
          () => this.open.delete(u),
          (e: unknown) => fail([key], e),
        ),
      ),
    ]);
    await Promise.allSettled([...this.completing]);
    // A file whose end() resolved just before its abort(): abort() left its object to us.
    await remove(this.done.filter((f) => f !== undefined && !deleted.has(f.key)).map((f) => f.key));
    return failures;
  }

  private throwIfFailed(): void {
    if (this.failure !== null) throw this.failure;
  }
}
