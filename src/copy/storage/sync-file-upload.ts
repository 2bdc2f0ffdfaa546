// A FileStore object written with synchronous calls, by the encoder thread that encodes it
// (docs/isolation.md, "Encoded output written by the encoder thread"): the steps and checks of
// ./file-steps.ts, which FileStore's own upload (./file-upload.ts) takes too — the parent directory
// checked against the root before mkdir walks it, the temp file `.<name>.<id>.c2s-tmp` created
// exclusively and checked to lie inside, written in order with a writeback every WRITEBACK_BYTES,
// fsynced (unless empty), closed, the directory checked again, renamed, and the object checked
// once more. Errors carry FileStore's words (fileOpError). Nothing here waits on the event loop,
// so the thread's encoder calls it from its FileSink as it produces bytes, and the thread's
// niceness covers the writes' CPU (the copy into the page cache), which libuv's nice-0 pool did
// before.
//
// The writebacks alone still go through libuv's pool, on a second descriptor of the same file
// (reopened through /proc/self/fd): an fdatasync of 8 MiB waits ~15–30 ms for the disk here, which
// the encoder would otherwise spend blocked; the pool thread only waits. Where /proc is missing the
// writeback runs in the thread, synchronously.
import * as nodeFs from "node:fs";
import { join } from "node:path";
import { pathToFileURL } from "node:url";
import type { PgError } from "../../errors.js";
import {
  completeObject,
  discardObject,
  type FileCalls,
  type OpenObject,
  openObject,
  type PathCalls,
  type StoreDir,
  storeDir,
  WRITEBACK_BYTES,
  WritebackPace,
  writeBytes,
} from "./file-steps.js";
import { fileOpError } from "./file-store.js";
import { runSync } from "./step-runner.js";

/** What the encoder thread needs of a FileStore: plain data (it crosses to the thread). */
export interface FileTarget {
  /** The store's directory (absolute). */
  dir: string;
  /** --file-root: every path must resolve inside it; none: inside `dir`. */
  root?: string | undefined;
  /** Bytes between two writebacks (default WRITEBACK_BYTES; 0: none). */
  writebackBytes?: number | undefined;
}

/** The calls made, so tests can make one fail (the real ones by default). */
export type SyncFs = Pick<
  typeof nodeFs,
  | "openSync"
  | "writeSync"
  | "fdatasyncSync"
  | "fdatasync"
  | "closeSync"
  | "renameSync"
  | "unlinkSync"
  | "mkdirSync"
  | "lstatSync"
> & { realpathSync: (path: string) => string };

const realFs: SyncFs = { ...nodeFs, realpathSync: (p) => nodeFs.realpathSync.native(p) };

/** A FileStore's directory, for synchronous writes (its checks are ./file-steps.ts's). */
export class SyncFileDirectory implements StoreDir {
  readonly dir: string;
  readonly root: string | undefined;
  readonly location: string;
  readonly writebackBytes: number;
  /** The path calls, made synchronously. */
  readonly calls: PathCalls;

  constructor(
    t: FileTarget,
    readonly fs: SyncFs = realFs,
  ) {
    ({ dir: this.dir, root: this.root, location: this.location } = storeDir(t.dir, t.root));
    this.writebackBytes = t.writebackBytes ?? WRITEBACK_BYTES;
    this.calls = {
      realpath: (path) => fs.realpathSync(path),
      mkdir: (path) => {
        fs.mkdirSync(path, { recursive: true });
      },
      lstat: (path) => fs.lstatSync(path),
      unlink: (path) => fs.unlinkSync(path),
      rename: (from, to) => fs.renameSync(from, to),
    };
  }

  url(key: string): string {
    return pathToFileURL(join(this.dir, key)).href;
  }

  fail(op: string, err: unknown, key: string): PgError {
    return fileOpError(op, err, this.url(key));
  }
}

/**
 * One object being written. Every method throws FileStore's error for what failed (as PgError);
 * after a failure, abort() removes what is left of it (the caller calls it).
 */
export class SyncFileUpload {
  readonly #o: OpenObject;
  #fd = -1;
  #bytes = 0;
  readonly #pace: WritebackPace;
  /** The writeback's descriptor: -1 none yet, -2 none possible (writebacks run here). */
  #wbFd = -1;
  #wbError: unknown;
  #done = false;
  readonly #calls: FileCalls;

  constructor(
    private readonly d: SyncFileDirectory,
    readonly key: string,
    id: string,
  ) {
    const fs = d.fs;
    this.#pace = new WritebackPace(d.writebackBytes);
    this.#calls = {
      ...d.calls,
      create: (path) => {
        this.#fd = fs.openSync(path, "wx", 0o644);
      },
      write: (buf, off, len) => fs.writeSync(this.#fd, buf, off, len),
      writeback: () => this.#writeback(),
      settle: () => {
        if (this.#wbError !== undefined) throw this.#wbError;
      },
      sync: () => fs.fdatasyncSync(this.#fd),
      close: () => {
        const fd = this.#fd;
        this.#fd = -1;
        fs.closeSync(fd);
      },
      closed: () => {
        if (!this.#pace.inFlight) this.#closeWriteback();
        return true;
      },
    };
    try {
      this.#o = runSync(openObject(d, key, id), this.#calls);
    } catch (err) {
      throw d.fail("PutObject", err, key);
    }
  }

  get temp(): string {
    return this.#o.temp;
  }

  get final(): string {
    return this.#o.final;
  }

  get bytes(): number {
    return this.#bytes;
  }

  write(buf: Uint8Array, off: number, len: number): void {
    try {
      if (this.#wbError !== undefined) throw this.#wbError;
      runSync(writeBytes(buf, off, len, this.#pace), this.#calls);
      this.#bytes += len;
    } catch (err) {
      throw this.d.fail("PutObject", err, this.key);
    }
  }

  /** Starts a writeback of what is written so far (the steps say when: none is in flight). */
  #writeback(): void {
    const fs = this.d.fs;
    if (this.#wbFd === -1) {
      try {
        // The same open file, not the same path: nothing swapped in at the name can be synced.
        this.#wbFd = fs.openSync(`/proc/self/fd/${this.#fd}`, "r");
      } catch {
        this.#wbFd = -2;
      }
    }
    if (this.#wbFd === -2) {
      fs.fdatasyncSync(this.#fd);
      return;
    }
    this.#pace.inFlight = true;
    fs.fdatasync(this.#wbFd, (err) => {
      this.#pace.inFlight = false;
      if (err !== null) this.#wbError ??= err;
      if (this.#o.closed) this.#closeWriteback();
    });
  }

  /**
   * Completes the object: fsync (unless empty), close, the directory checked again, rename, the
   * object checked. Returns its size.
   */
  end(): number {
    try {
      runSync(completeObject(this.d, this.#o, this.key, this.#bytes), this.#calls);
    } catch (err) {
      throw this.d.fail("PutObject", err, this.key);
    }
    this.#done = true;
    return this.#bytes;
  }

  /**
   * Removes what is left of an object that did not complete (its temp file, or the object if
   * the rename happened). Throws FileStore's cleanup error naming what it could not remove.
   */
  abort(): void {
    if (this.#done) return;
    this.#done = true;
    if (!this.#pace.inFlight) this.#closeWriteback();
    runSync(discardObject(this.#o, this.d.url(this.key)), this.#calls);
  }

  #closeWriteback(): void {
    if (this.#wbFd < 0) return;
    const fd = this.#wbFd;
    this.#wbFd = -2;
    try {
      this.d.fs.closeSync(fd);
    } catch {
      // a read-only descriptor: nothing of the object depends on its close
    }
  }
}
