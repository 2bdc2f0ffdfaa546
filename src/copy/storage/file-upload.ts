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
import { randomBytes } from "node:crypto";
import { type FileHandle, open, rename, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { PgError, SqlState } from "../../errors.js";
import { abortError, type ObjectUpload, toBuffer, withCleanupFailure } from "./object-store.js";

/** A temp file's name: `.<object name>.<upload id>.c2s-tmp`. */
export const TEMP_NAME = /^\.(.+)\.([0-9a-f]{16})\.c2s-tmp$/;
export const tempName = (name: string, id: string) => `.${name}.${id}.c2s-tmp`;

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** Bytes written between two writebacks (fdatasync) of the file; a file smaller than this has none. */
export const WRITEBACK_BYTES = 8 << 20;

/** What an upload needs of its store (FileStore): paths checked against the root, errors, limits. */
export interface UploadDirectory {
  /** Bytes queued before write() asks the caller to wait. */
  readonly bufferBytes: number;
  keyPath(key: string, create: boolean): Promise<string | undefined>;
  assertCreatedInside(path: string, rel: string): Promise<void>;
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
  #fh: Promise<{ fh: FileHandle; temp: string; final: string }> | undefined;
  /** Writes run one after another on this chain; it never rejects (failures go to #error). */
  #chain: Promise<void> = Promise.resolve();
  #queued = 0;
  #bytes = 0;
  /** Bytes written to the file since the last writeback began. */
  #unsynced = 0;
  /** The writeback in flight, if any; it never rejects (failures go to #error). */
  #writeback: Promise<void> | undefined;
  #state: "open" | "ending" | "done" = "open";
  /** The object is in place; an abort() racing end() must remove it again. */
  #renamed = false;
  #error: PgError | undefined;
  #cleanup: Promise<void> | undefined;

  constructor(store: UploadDirectory, key: string, signal: AbortSignal) {
    this.#store = store;
    this.#key = key;
    this.#signal = signal;
    if (signal.aborted) this.#onAbort();
    else signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  get bytes(): number {
    return this.#bytes;
  }

  get buffered(): number {
    return this.#queued;
  }

  #open() {
    this.#fh ??= (async () => {
      const final = (await this.#store.keyPath(this.#key, true))!;
      const temp = join(dirname(final), tempName(basename(final), this.#id));
      // "wx": O_CREAT|O_EXCL, so a planted file or symlink at the temp name is never written through.
      const fh = await open(temp, "wx", 0o644);
      try {
        await this.#store.assertCreatedInside(temp, this.#key);
      } catch (err) {
        await fh.close().catch(() => {});
        throw err;
      }
      return { fh, temp, final };
    })();
    return this.#fh;
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
        const { fh } = await this.#open();
        for (let off = 0; off < buf.length; ) {
          const { bytesWritten } = await fh.write(buf, off, buf.length - off);
          off += bytesWritten;
        }
        this.#unsynced += buf.length;
        this.#startWriteback(fh);
      } finally {
        this.#queued -= buf.length;
        // No write of it is in flight any more (fh.write has settled), written or failed.
        release?.();
      }
    });
    return this.#queued <= this.#store.bufferBytes;
  }

  /** Starts an fdatasync of what is written so far, when due and none is in flight. */
  #startWriteback(fh: FileHandle): void {
    const every = this.#store.writebackBytes ?? WRITEBACK_BYTES;
    if (every <= 0 || this.#unsynced < every || this.#writeback !== undefined) return;
    this.#unsynced = 0;
    this.#writeback = fh.datasync().then(
      () => {
        this.#writeback = undefined;
      },
      (err: unknown) => {
        this.#writeback = undefined;
        this.#fail(this.#store.fail("PutObject", err, this.#key, this.#signal));
      },
    );
  }

  async drained(): Promise<void> {
    while (this.#queued > this.#store.bufferBytes && !this.#error) await this.#chain;
    if (this.#error) throw this.#error;
  }

  async end(): Promise<{ bytes: number }> {
    if (this.#state !== "open") throw new PgError(SqlState.internalError, "upload ended twice");
    this.#state = "ending";
    this.#enqueue(async () => {
      const { fh, temp, final } = await this.#open();
      await this.#writeback;
      // An empty file (the sentinel; an empty result without a header) has no bytes to lose: the
      // fsync would only commit the journal, waiting on every other file's data written since,
      // and it never made the rename below durable anyway (docs/decisions.md).
      if (this.#bytes > 0) await fh.sync();
      await fh.close();
      if (this.#error) return;
      if (this.#signal.aborted) throw abortError(this.#signal);
      // The directory may have been swapped for a symlink since the temp file was created.
      await this.#store.keyPath(this.#key, false);
      await rename(temp, final);
      this.#renamed = true;
      await this.#store.assertCreatedInside(final, this.#key);
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
      if (this.#fh === undefined) return;
      const opened = await this.#fh.catch(() => undefined);
      if (opened === undefined) return;
      await opened.fh.close().catch(() => {}); // already closed after end()'s sync
      const path = this.#renamed ? opened.final : opened.temp;
      try {
        await unlink(path);
      } catch (e) {
        if (errnoCode(e) !== "ENOENT") {
          throw new PgError(
            SqlState.ioError,
            `could not clean up the upload of ${this.#store.url(this.#key)}`,
            {
              detail: `left behind: ${path}`,
              cause: e,
            },
          );
        }
      }
    })();
    this.#cleanup.catch(() => {});
  }
}
