// One object of a FileStore being written: a hidden temp file in the object's directory (created
// exclusively, checked to lie inside), written in order, then fsynced (unless empty), closed and
// renamed into place. Until the rename it plays the part of an S3 multipart upload: listUploads
// finds it by its name, abortUpload removes it, and a failure or abort removes it (or, after the
// rename, the object).
//
// Writeback while writing: every WRITEBACK_BYTES written, an fdatasync of the file so far starts
// beside the writes (another thread of libuv's pool; the writes do not wait for it). The kernel
// would otherwise leave the whole file dirty in memory (its background writeback starts at 10% of
// RAM) and the fsync before the rename would write all of it while the export waits: ~0.1 s for a
// 1M-row CSV file here, 10% of that export (docs/decisions.md, "file:// writeback while writing").
// The fsync before the rename stays, and only has the last few MiB left to write.
//
// The steps, their order and their checks are ./file-steps.ts's, shared with the encoder thread's
// writer (./sync-file-upload.ts); here they are made with promises.
import { randomBytes } from "node:crypto";
import { type FileHandle, lstat, mkdir, open, realpath, rename, unlink } from "node:fs/promises";
import { PgError, SqlState } from "../../errors.js";
import {
  completeObject,
  discardObject,
  type FileCalls,
  type OpenObject,
  openObject,
  type PathCalls,
  type StoreDir,
  WRITEBACK_BYTES,
  WritebackPace,
  writeBytes,
} from "./file-steps.js";
import { abortError, type ObjectUpload, toBuffer, withCleanupFailure } from "./object-store.js";
import { type Promised, runAsync } from "./step-runner.js";

/** The path calls, made with promises (FileStore's too). */
export const promisePathCalls: Promised<PathCalls> = {
  realpath: (path) => realpath(path),
  mkdir: async (path) => {
    await mkdir(path, { recursive: true });
  },
  lstat: (path) => lstat(path),
  unlink: (path) => unlink(path),
  rename: (from, to) => rename(from, to),
};

/** What an upload needs of its store (FileStore): its directory, errors, limits. */
export interface UploadDirectory extends StoreDir {
  /** Bytes queued before write() asks the caller to wait. */
  readonly bufferBytes: number;
  fail(op: string, err: unknown, key: string, signal?: AbortSignal): PgError;
  url(key: string): string;
  /** Bytes between two writebacks while writing (default WRITEBACK_BYTES; 0: none). */
  readonly writebackBytes?: number | undefined;
}

/** Tests only: each write of a FileUpload (in the relay's thread), by key and byte count. */
export const fileUploadTestHooks: { wrote?: (key: string, bytes: number) => void } = {};

export class FileUpload implements ObjectUpload {
  readonly #store: UploadDirectory;
  readonly #key: string;
  readonly #signal: AbortSignal;
  readonly #id = randomBytes(8).toString("hex");
  readonly #onAbort = () => this.#fail(abortError(this.#signal));
  #opened: Promise<OpenObject> | undefined;
  /** The temp file, once created. */
  #fh: FileHandle | undefined;
  readonly #calls: Promised<FileCalls> = {
    ...promisePathCalls,
    create: async (path) => {
      this.#fh = await open(path, "wx", 0o644);
    },
    write: async (buf, off, len) => (await this.#fh!.write(buf, off, len)).bytesWritten,
    writeback: () => this.#startWriteback(),
    settle: () => this.#writeback,
    sync: () => this.#fh!.sync(),
    close: () => this.#fh!.close(),
    closed: () => {
      if (this.#error) return false;
      if (this.#signal.aborted) throw abortError(this.#signal);
      return true;
    },
  };
  /** Writes run one after another on this chain; it never rejects (failures go to #error). */
  #chain: Promise<void> = Promise.resolve();
  #queued = 0;
  #bytes = 0;
  readonly #pace: WritebackPace;
  /** The writeback in flight, if any; it never rejects (failures go to #error). */
  #writeback: Promise<void> | undefined;
  #state: "open" | "ending" | "done" = "open";
  #error: PgError | undefined;
  #cleanup: Promise<void> | undefined;

  constructor(store: UploadDirectory, key: string, signal: AbortSignal) {
    this.#store = store;
    this.#key = key;
    this.#signal = signal;
    this.#pace = new WritebackPace(store.writebackBytes ?? WRITEBACK_BYTES);
    if (signal.aborted) this.#onAbort();
    else signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  get bytes(): number {
    return this.#bytes;
  }

  get buffered(): number {
    return this.#queued;
  }

  #open(): Promise<OpenObject> {
    this.#opened ??= runAsync(openObject(this.#store, this.#key, this.#id), this.#calls);
    return this.#opened;
  }

  #enqueue(op: () => Promise<void>): void {
    this.#chain = this.#chain.then(async () => {
      if (this.#error) return;
      try {
        await op();
      } catch (err) {
        this.#fail(this.#store.fail("PutObject", err, this.#key, this.#signal));
      }
    });
  }

  write(chunk: Uint8Array, release?: () => void): boolean {
    if (this.#error) throw this.#error;
    if (this.#state !== "open") throw new PgError(SqlState.internalError, "write after end of upload");
    const buf = toBuffer(chunk);
    fileUploadTestHooks.wrote?.(this.#key, buf.length);
    this.#queued += buf.length;
    this.#bytes += buf.length;
    this.#enqueue(async () => {
      try {
        await this.#open();
        await runAsync(writeBytes(buf, 0, buf.length, this.#pace), this.#calls);
      } finally {
        this.#queued -= buf.length;
        // No write of it is in flight any more (fh.write has settled), written or failed.
        release?.();
      }
    });
    return this.#queued <= this.#store.bufferBytes;
  }

  /** Starts an fdatasync of what is written so far (the steps say when: none is in flight). */
  #startWriteback(): void {
    this.#pace.inFlight = true;
    const settled = (): void => {
      this.#writeback = undefined;
      this.#pace.inFlight = false;
    };
    this.#writeback = this.#fh!.datasync().then(settled, (err: unknown) => {
      settled();
      this.#fail(this.#store.fail("PutObject", err, this.#key, this.#signal));
    });
  }

  async drained(): Promise<void> {
    while (this.#queued > this.#store.bufferBytes && !this.#error) await this.#chain;
    if (this.#error) throw this.#error;
  }

  async end(): Promise<{ bytes: number }> {
    if (this.#state !== "open") throw new PgError(SqlState.internalError, "upload ended twice");
    this.#state = "ending";
    this.#enqueue(async () => {
      const o = await this.#open();
      await runAsync(completeObject(this.#store, o, this.#key, this.#bytes), this.#calls);
    });
    await this.#chain;
    if (this.#error) {
      try {
        await this.#cleanup;
      } catch (cleanupErr) {
        throw withCleanupFailure(this.#error!, cleanupErr);
      }
      throw this.#error;
    }
    this.#state = "done";
    this.#signal.removeEventListener("abort", this.#onAbort);
    return { bytes: this.#bytes };
  }

  async abort(): Promise<void> {
    if (this.#state === "done") return;
    this.#fail(new PgError(SqlState.queryCanceled, "upload aborted"));
    await this.#cleanup;
  }

  #fail(err: PgError): void {
    if (this.#error !== undefined || this.#state === "done") return;
    this.#error = err;
    this.#signal.removeEventListener("abort", this.#onAbort);
    this.#cleanup = (async () => {
      await this.#chain;
      await this.#writeback; // settles (never rejects) before its file is closed and removed
      if (this.#opened === undefined) return;
      const o = await this.#opened.catch(() => undefined);
      if (o === undefined) return;
      await runAsync(discardObject(o, this.#store.url(this.#key)), this.#calls);
    })();
    this.#cleanup.catch(() => {});
  }
}
