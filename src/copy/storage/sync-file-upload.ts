// A FileStore object written with synchronous calls, by the encoder thread that encodes it
// (docs/isolation.md, "Encoded output written by the encoder thread"): the same steps and checks as
// ./file-upload.ts and ./file-store.ts, in the same order — the parent directory checked against
// the root before mkdir walks it, the temp file `.<name>.<id>.c2s-tmp` created exclusively and
// checked to lie inside, written in order with a writeback every WRITEBACK_BYTES, fsynced (unless
// empty), closed, the directory checked again, renamed, and the object checked once more. Errors
// carry FileStore's words (fileOpError). Nothing here waits on the event loop, so the thread's
// encoder calls it from its FileSink as it produces bytes, and the thread's niceness covers the
// writes' CPU (the copy into the page cache), which libuv's nice-0 pool did before.
//
// The writebacks alone still go through libuv's pool, on a second descriptor of the same file
// (reopened through /proc/self/fd): an fdatasync of 8 MiB waits ~15–30 ms for the disk here, which
// the encoder would otherwise spend blocked; the pool thread only waits. Where /proc is missing the
// writeback runs in the thread, synchronously.
import * as nodeFs from "node:fs";
import { basename, dirname, join, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { PgError, SqlState } from "../../errors.js";
import { escapeError, fileOpError } from "./file-store.js";
import { errnoCode as code, tempName, WRITEBACK_BYTES } from "./file-upload.js";
import { checkKey } from "./object-store.js";

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

/** FileStore's path checks (#path, #checkInside, assertCreatedInside), made synchronously. */
export class SyncFileDirectory {
  readonly dir: string;
  readonly root: string | undefined;
  readonly location: string;
  readonly writebackBytes: number;

  constructor(
    t: FileTarget,
    readonly fs: SyncFs = realFs,
  ) {
    this.dir = t.dir.replace(/\/+$/, "") || "/";
    this.root = t.root === undefined ? undefined : t.root.replace(/\/+$/, "") || "/";
    this.location = pathToFileURL(this.dir).href;
    this.writebackBytes = t.writebackBytes ?? WRITEBACK_BYTES;
  }

  url(key: string): string {
    return pathToFileURL(join(this.dir, key)).href;
  }

  fail(op: string, err: unknown, key: string): PgError {
    return fileOpError(op, err, this.url(key));
  }

  /** FileStore.keyPath: the parent checked (and with `create` made), then checked again. */
  keyPath(key: string, create: boolean): string | undefined {
    checkKey(key);
    const fs = this.fs;
    const full = join(this.dir, key);
    const parent = dirname(full);
    let root: string;
    if (this.root !== undefined) {
      root = fs.realpathSync(this.root);
      this.#checkInside(this.dir, root, key);
      if (create) {
        fs.mkdirSync(this.dir, { recursive: true });
        this.#checkInside(this.dir, root, key);
      } else if (fs.lstatSync(this.dir, { throwIfNoEntry: false }) === undefined) {
        return undefined;
      }
    } else {
      if (create) fs.mkdirSync(this.dir, { recursive: true });
      try {
        root = fs.realpathSync(this.dir);
      } catch (err) {
        if (code(err) === "ENOENT") return undefined;
        throw err;
      }
    }
    this.#checkInside(parent, root, key);
    if (create && parent !== this.dir) {
      fs.mkdirSync(parent, { recursive: true });
      this.#checkInside(parent, root, key);
    }
    return full;
  }

  #checkInside(abs: string, root: string, rel: string): void {
    const stop = this.root ?? this.dir;
    for (let probe = abs; ; probe = dirname(probe)) {
      try {
        const real = this.fs.realpathSync(probe);
        if (real !== root && !real.startsWith(root + sep)) throw escapeError(this.root, rel, this.location);
        return;
      } catch (err) {
        if (code(err) !== "ENOENT" || probe === stop || probe === dirname(probe)) throw err;
      }
    }
  }

  /** FileStore.assertCreatedInside: a file just created must lie inside, or it is removed. */
  assertCreatedInside(path: string, rel: string): void {
    const root = this.fs.realpathSync(this.root ?? this.dir);
    let real: string;
    try {
      real = this.fs.realpathSync(path);
    } catch (err) {
      if (code(err) === "ENOENT") throw escapeError(this.root, rel, this.location);
      throw err;
    }
    if (real === root || real.startsWith(root + sep)) return;
    try {
      this.fs.unlinkSync(real);
    } catch {
      // reported as the escape below either way
    }
    throw escapeError(this.root, rel, this.location);
  }
}

/**
 * One object being written. Every method throws FileStore's error for what failed (as PgError);
 * after a failure, abort() removes what is left of it (the caller calls it).
 */
export class SyncFileUpload {
  readonly temp: string;
  readonly final: string;
  #fd: number;
  #bytes = 0;
  #unsynced = 0;
  /** The writeback's descriptor: -1 none yet, -2 none possible (writebacks run here). */
  #wbFd = -1;
  #wbInFlight = false;
  #wbError: unknown;
  #closed = false;
  #renamed = false;
  #done = false;

  constructor(
    private readonly d: SyncFileDirectory,
    readonly key: string,
    id: string,
  ) {
    const fs = d.fs;
    try {
      this.final = d.keyPath(key, true)!;
      this.temp = join(dirname(this.final), tempName(basename(this.final), id));
      // "wx": O_CREAT|O_EXCL, so a planted file or symlink at the temp name is never written through.
      this.#fd = fs.openSync(this.temp, "wx", 0o644);
    } catch (err) {
      throw d.fail("PutObject", err, key);
    }
    try {
      d.assertCreatedInside(this.temp, key);
    } catch (err) {
      this.#closeMain();
      throw d.fail("PutObject", err, key);
    }
  }

  get bytes(): number {
    return this.#bytes;
  }

  write(buf: Uint8Array, off: number, len: number): void {
    try {
      if (this.#wbError !== undefined) throw this.#wbError;
      for (let end = off + len; off < end; ) off += this.d.fs.writeSync(this.#fd, buf, off, end - off);
      this.#bytes += len;
      this.#unsynced += len;
      this.#writeback();
    } catch (err) {
      throw this.d.fail("PutObject", err, this.key);
    }
  }

  /** Starts a writeback of what is written so far, when due and none is in flight. */
  #writeback(): void {
    const every = this.d.writebackBytes;
    if (every <= 0 || this.#unsynced < every || this.#wbInFlight) return;
    this.#unsynced = 0;
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
    this.#wbInFlight = true;
    fs.fdatasync(this.#wbFd, (err) => {
      this.#wbInFlight = false;
      if (err !== null) this.#wbError ??= err;
      if (this.#closed) this.#closeWriteback();
    });
  }

  /**
   * Completes the object: fsync (unless empty), close, the directory checked again, rename, the
   * object checked. Returns its size.
   */
  end(): number {
    const fs = this.d.fs;
    try {
      if (this.#wbError !== undefined) throw this.#wbError;
      // An empty file (the sentinel; an empty result without a header) has no bytes to lose
      // (docs/decisions.md); the fsync covers a writeback still running too.
      if (this.#bytes > 0) fs.fdatasyncSync(this.#fd);
      this.#closed = true;
      const fd = this.#fd;
      this.#fd = -1;
      fs.closeSync(fd);
      if (!this.#wbInFlight) this.#closeWriteback();
      // The directory may have been swapped for a symlink since the temp file was created.
      this.d.keyPath(this.key, false);
      fs.renameSync(this.temp, this.final);
      this.#renamed = true;
      this.d.assertCreatedInside(this.final, this.key);
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
    this.#closed = true;
    this.#closeMain();
    if (!this.#wbInFlight) this.#closeWriteback();
    const path = this.#renamed ? this.final : this.temp;
    this.#done = true;
    try {
      this.d.fs.unlinkSync(path);
    } catch (e) {
      if (code(e) !== "ENOENT") throw cleanupError(this.d.url(this.key), path, e);
    }
  }

  #closeMain(): void {
    if (this.#fd < 0) return;
    const fd = this.#fd;
    this.#fd = -1;
    try {
      this.d.fs.closeSync(fd);
    } catch {
      // already failed; the file is removed next
    }
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

/** FileUpload's words for a temp file or object its cleanup could not remove. */
function cleanupError(url: string, path: string, cause: unknown): PgError {
  return new PgError(SqlState.ioError, `could not clean up the upload of ${url}`, {
    detail: `left behind: ${path}`,
    cause,
  });
}
