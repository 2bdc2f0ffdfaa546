// file:///abs/dir: a local directory behaving like an S3 prefix. Objects appear atomically (written
// to a hidden temp name, fsynced, renamed: ./file-upload.ts); a temp file plays the part of an
// unfinished multipart upload, so listUploads/abortUpload and the cleanup command work here too.
//
// Containment: keys are checked syntactically (no "..", no absolute keys) and every path is
// resolved through realpath before use, against the root (--file-root; else the directory itself),
// so a symlink at any level — the target directory, a directory above or below it, one swapped in
// while an export runs — cannot lead a write, delete or listing outside it: parents are checked
// before mkdir walks them, and every file created is checked again once it exists (and removed if
// it landed outside). Listing never follows symlinks. Those checks are ./file-steps.ts's, shared
// with the encoder thread's writer (./sync-file-upload.ts).
import { constants, type Dirent } from "node:fs";
import { access, lstat, readdir, unlink } from "node:fs/promises";
import { basename, dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { PgError, SqlState } from "../../errors.js";
import {
  errnoCode as code,
  escapeError,
  keyPath,
  storeDir,
  storePath,
  TEMP_NAME as TEMP,
  tempName,
} from "./file-steps.js";
import { FileUpload, promisePathCalls, type UploadDirectory } from "./file-upload.js";
import {
  abortError,
  checkKey,
  checkPrefix,
  compareKeys,
  type ListResult,
  type ObjectStore,
  type ObjectUpload,
  type PendingUpload,
  toBuffer,
} from "./object-store.js";
import { runAsync } from "./step-runner.js";
import type { FileTarget } from "./sync-file-upload.js";

export interface FileStoreConfig {
  /** Absolute directory; created on the first write. */
  dir: string;
  /** Bytes queued before write() asks the caller to wait. */
  bufferBytes: number;
  /** Every path must resolve (realpath) inside this directory; default: `dir` itself. */
  root?: string | undefined;
  /** Bytes an upload writes between two writebacks of its file (default WRITEBACK_BYTES). */
  writebackBytes?: number | undefined;
}

/**
 * A file operation's failure as the S3 store would word it (58030, naming the S3 operation whose
 * part the file plays): the same words whichever thread made the call (./sync-file-upload.ts).
 */
export function fileOpError(op: string, err: unknown, url: string): PgError {
  if (err instanceof PgError) return err;
  const c = code(err);
  const msg =
    c === "EACCES" || c === "EPERM"
      ? `AccessDenied error when using ${op}`
      : `${c ?? "I/O"} error when using ${op}`;
  return new PgError(SqlState.ioError, msg, {
    detail: `${url}: ${err instanceof Error ? err.message : String(err)}`,
    cause: err,
  });
}

export class FileStore implements ObjectStore, UploadDirectory {
  readonly location: string;
  readonly dir: string;
  readonly bufferBytes: number;
  readonly root: string | undefined;
  readonly writebackBytes: number | undefined;
  /** A temp file is named by us before it is created: its id is always known. */
  readonly unknownUploadsPossible = false;

  constructor(c: FileStoreConfig) {
    ({ dir: this.dir, root: this.root, location: this.location } = storeDir(c.dir, c.root));
    this.bufferBytes = c.bufferBytes;
    this.writebackBytes = c.writebackBytes;
  }

  /** What an encoder thread needs to write this store's objects itself (./sync-file-upload.ts). */
  get target(): FileTarget {
    return { dir: this.dir, root: this.root, writebackBytes: this.writebackBytes };
  }

  url(key: string): string {
    return key === "" ? this.location : pathToFileURL(join(this.dir, key)).href;
  }

  fail(op: string, err: unknown, key: string, signal?: AbortSignal): PgError {
    if (err instanceof PgError) return err;
    if (signal?.aborted) return abortError(signal);
    return fileOpError(op, err, this.url(key));
  }

  /** ./file-steps.ts's storePath: `rel`'s path once its parent is checked (undefined: no directory yet). */
  #path(rel: string, create: boolean): Promise<string | undefined> {
    return runAsync(storePath(this, rel, create), promisePathCalls);
  }

  async keyPath(key: string, create: boolean): Promise<string | undefined> {
    return runAsync(keyPath(this, key, create), promisePathCalls);
  }

  #escape(rel: string): PgError {
    return escapeError(this, rel);
  }

  async list(prefix: string, signal: AbortSignal, limit = 1000): Promise<ListResult> {
    const p = checkPrefix(prefix);
    const keys: string[] = [];
    try {
      const start = await this.#path(p, false);
      if (start === undefined) return { keys: [], count: 0 };
      // A listing that starts at a symlink would read another directory.
      if (p !== "" && (await lstat(start).catch(() => undefined))?.isSymbolicLink()) throw this.#escape(p);
      await this.#walk(start, p, signal, (rel, name) => {
        if (!TEMP.test(name)) keys.push(rel);
      });
    } catch (err) {
      throw this.fail("ListObjectsV2", err, p, signal);
    }
    keys.sort(compareKeys);
    return { keys: keys.slice(0, limit), count: keys.length };
  }

  /** Calls `visit` for every non-directory entry below `abs`, without following symlinks. */
  async #walk(
    abs: string,
    rel: string,
    signal: AbortSignal | undefined,
    visit: (rel: string, name: string, abs: string) => void,
  ) {
    if (signal?.aborted) throw abortError(signal);
    let entries: Dirent[];
    try {
      entries = await readdir(abs, { withFileTypes: true });
    } catch (err) {
      if (code(err) === "ENOENT" || code(err) === "ENOTDIR") return;
      throw err;
    }
    for (const e of entries) {
      const r = rel === "" ? e.name : `${rel}/${e.name}`;
      if (e.isDirectory()) await this.#walk(join(abs, e.name), r, signal, visit);
      else visit(r, e.name, join(abs, e.name));
    }
  }

  async probeDelete(key: string, signal: AbortSignal): Promise<void> {
    try {
      const full = await this.keyPath(key, false);
      if (signal.aborted) throw abortError(signal);
      // unlink of a missing name says ENOENT even where we could not delete: ask the directory.
      let dir = full === undefined ? this.dir : dirname(full);
      for (;;) {
        try {
          await access(dir, constants.W_OK | constants.X_OK);
          break;
        } catch (err) {
          if (code(err) !== "ENOENT" || dir === "/") throw err;
          dir = dirname(dir);
        }
      }
      if (full !== undefined)
        await unlink(full).catch((err) => (code(err) === "ENOENT" ? undefined : Promise.reject(err)));
    } catch (err) {
      throw this.fail("DeleteObject", err, key, signal);
    }
  }

  async put(key: string, body: Uint8Array | string, signal: AbortSignal): Promise<void> {
    const up = this.upload(key, signal);
    try {
      up.write(toBuffer(body));
      await up.end();
    } catch (err) {
      await up.abort().catch(() => {});
      throw err;
    }
  }

  async modified(key: string, signal: AbortSignal): Promise<Date | undefined> {
    try {
      const full = await this.keyPath(key, false);
      if (signal.aborted) throw abortError(signal);
      return full === undefined ? undefined : (await lstat(full)).mtime;
    } catch (err) {
      if (code(err) === "ENOENT") return undefined;
      throw this.fail("HeadObject", err, key, signal);
    }
  }

  async delete(keys: readonly string[], signal?: AbortSignal): Promise<void> {
    for (const key of keys) {
      try {
        if (signal?.aborted) throw abortError(signal);
        const full = await this.keyPath(key, false);
        if (full !== undefined) await unlink(full);
      } catch (err) {
        if (code(err) === "ENOENT") continue;
        throw this.fail("DeleteObject", err, key, signal);
      }
    }
  }

  upload(key: string, signal: AbortSignal): ObjectUpload {
    checkKey(key);
    return new FileUpload(this, key, signal);
  }

  async listUploads(prefix: string, signal?: AbortSignal): Promise<PendingUpload[]> {
    const p = checkPrefix(prefix);
    const found: PendingUpload[] = [];
    try {
      const start = await this.#path(p, false);
      if (start === undefined) return [];
      if (p !== "" && (await lstat(start).catch(() => undefined))?.isSymbolicLink()) throw this.#escape(p);
      const temps: Array<{ key: string; uploadId: string; abs: string }> = [];
      await this.#walk(start, p, signal, (rel, name, abs) => {
        const m = TEMP.exec(name);
        if (m) temps.push({ key: join(dirname(rel), m[1]!).replace(/^\.\//, ""), uploadId: m[2]!, abs });
      });
      for (const t of temps) {
        const st = await lstat(t.abs).catch(() => undefined);
        if (st) found.push({ key: t.key === "." ? "" : t.key, uploadId: t.uploadId, initiated: st.mtime });
      }
    } catch (err) {
      throw this.fail("ListMultipartUploads", err, p, signal);
    }
    return found.sort((a, b) => compareKeys(a.key, b.key));
  }

  async uploadsOf(keyPrefix: string, signal?: AbortSignal): Promise<PendingUpload[]> {
    const dir = keyPrefix.includes("/") ? keyPrefix.slice(0, keyPrefix.lastIndexOf("/")) : "";
    return (await this.listUploads(dir, signal)).filter((u) => u.key.startsWith(keyPrefix));
  }

  async abortUpload(key: string, uploadId: string, signal?: AbortSignal): Promise<boolean> {
    if (!/^[0-9a-f]{16}$/.test(uploadId)) {
      throw new PgError(SqlState.invalidParameterValue, `invalid upload id ${JSON.stringify(uploadId)}`);
    }
    try {
      const full = await this.keyPath(key, false);
      if (full === undefined) return false;
      await unlink(join(dirname(full), tempName(basename(full), uploadId)));
      return true;
    } catch (err) {
      if (code(err) === "ENOENT") return false;
      throw this.fail("AbortMultipartUpload", err, key, signal);
    }
  }
}
