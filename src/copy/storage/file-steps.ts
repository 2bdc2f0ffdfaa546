// The steps of writing a FileStore object, described once for its two writers: FileStore's upload
// in the relay (./file-upload.ts, with promises) and the encoder thread's (./sync-file-upload.ts,
// with synchronous calls). Each step is a generator that yields the file-system calls it makes, in
// order, and is handed each call's result back (or has its error thrown at the yield); runAsync
// and runSync (./step-runner.ts) make the calls, through the writer's FileCalls. So what is
// checked and in which order — the parent's realpath against the root before mkdir walks it, the
// temp file created exclusively and checked to lie inside, the writes and their writebacks, the
// fsync (unless empty), the close, the second check, the rename, the final check — and which
// errors mean "absent" are the same for both: a new step or check lands in both or in neither.
import { basename, dirname, join, sep } from "node:path";
import { pathToFileURL } from "node:url";
import { PgError, SqlState } from "../../errors.js";
import { outsideRoot } from "./file-root.js";
import { checkKey } from "./object-store.js";
import type { Args, Call, Result, Steps as RunnerSteps } from "./step-runner.js";

/** A temp file's name: `.<object name>.<upload id>.c2s-tmp`. */
export const TEMP_NAME = /^\.(.+)\.([0-9a-f]{16})\.c2s-tmp$/;
export const tempName = (name: string, id: string) => `.${name}.${id}.c2s-tmp`;

/** Bytes written between two writebacks (fdatasync) of the file; a file smaller than this has none. */
export const WRITEBACK_BYTES = 8 << 20;

export function errnoCode(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | null)?.code;
}

/** The calls that resolve and change paths (a store's, or an upload's), as made synchronously. */
export interface PathCalls {
  realpath(path: string): string;
  /** mkdir -p. */
  mkdir(path: string): void;
  /** Throws if `path` cannot be looked at (not there, or not reachable). */
  lstat(path: string): unknown;
  unlink(path: string): void;
  rename(from: string, to: string): void;
}

/**
 * The calls of one upload besides those: on its own file (which the writer keeps), and the
 * writer's own moments in the sequence. An async writer returns promises of the same.
 */
export interface FileCalls extends PathCalls {
  /** O_CREAT|O_EXCL, 0644: a planted file or symlink at the name is never written through. */
  create(path: string): void;
  /** Writes some of buf[off, off + len) at the end of the file; returns how many bytes. */
  write(buf: Uint8Array, off: number, len: number): number;
  /** Starts a writeback of the file so far beside the writes (not waited for here). */
  writeback(): void;
  /** The writeback in flight, if any, has settled; one that failed fails the object. */
  settle(): void;
  /** The file's bytes go to the disk (before the rename). */
  sync(): void;
  close(): void;
  /** The file is closed: whether the object still goes in place (false: it is failing already). */
  closed(): boolean;
}

/** A step of an upload: the calls it makes (of `C`), returning T. */
type Steps<T, C = FileCalls> = RunnerSteps<T, C>;

function* call<K extends keyof FileCalls>(
  c: K,
  ...args: Args<FileCalls[K]>
): Generator<Call<Pick<FileCalls, K>>, Result<FileCalls[K]>, unknown> {
  return (yield { c, args } as Call<Pick<FileCalls, K>>) as Result<FileCalls[K]>;
}

/** A store's directory: every path must resolve inside `root` (--file-root), else inside `dir`. */
export interface StoreDir {
  /** Absolute, without a trailing slash. */
  readonly dir: string;
  readonly root: string | undefined;
  /** `dir` as a file:// URL (error messages). */
  readonly location: string;
}

export function storeDir(dir: string, root: string | undefined): StoreDir {
  const d = dir.replace(/\/+$/, "") || "/";
  return {
    dir: d,
    root: root === undefined ? undefined : root.replace(/\/+$/, "") || "/",
    location: pathToFileURL(d).href,
  };
}

/** A key that resolves outside the directory (or the root): a symlink leads elsewhere. */
export function escapeError(d: StoreDir, rel: string): PgError {
  if (d.root !== undefined) return outsideRoot();
  return new PgError(
    SqlState.insufficientPrivilege,
    `object key ${JSON.stringify(rel)} resolves outside ${d.location}`,
    {
      hint: "A symbolic link inside the target directory points elsewhere.",
    },
  );
}

/**
 * The path of `rel` ("" = the directory itself, only for listings), after checking that its
 * parent really lies inside the directory. `create` makes the parent directories — only after
 * the check, or mkdir would itself walk through a planted symlink. Undefined: the directory does
 * not exist yet (so nothing is under it).
 */
export function* storePath(d: StoreDir, rel: string, create: boolean): Steps<string | undefined, PathCalls> {
  const full = rel === "" ? d.dir : join(d.dir, rel);
  const parent = rel === "" ? full : dirname(full);
  let root: string;
  if (d.root !== undefined) {
    root = yield* call("realpath", d.root);
    // Checked before mkdir, which would itself walk through a link above the directory.
    yield* checkInside(d, d.dir, root, rel);
    if (create) {
      yield* call("mkdir", d.dir);
      yield* checkInside(d, d.dir, root, rel);
    } else {
      try {
        yield* call("lstat", d.dir);
      } catch {
        return undefined;
      }
    }
  } else {
    if (create) yield* call("mkdir", d.dir);
    try {
      root = yield* call("realpath", d.dir);
    } catch (err) {
      if (errnoCode(err) === "ENOENT") return undefined;
      throw err;
    }
  }
  yield* checkInside(d, parent, root, rel);
  if (create && parent !== d.dir) {
    yield* call("mkdir", parent);
    yield* checkInside(d, parent, root, rel); // a link swapped in meanwhile
  }
  return full;
}

/** storePath of an object's key (checked: no "..", not absolute). */
export function* keyPath(d: StoreDir, key: string, create: boolean): Steps<string | undefined, PathCalls> {
  checkKey(key);
  return yield* storePath(d, key, create);
}

/** The nearest existing ancestor of `abs` (itself included) must resolve inside `root`. */
function* checkInside(d: StoreDir, abs: string, root: string, rel: string): Steps<void, PathCalls> {
  const stop = d.root ?? d.dir;
  for (let probe = abs; ; probe = dirname(probe)) {
    try {
      const real = yield* call("realpath", probe);
      if (real !== root && !real.startsWith(root + sep)) throw escapeError(d, rel);
      return;
    } catch (err) {
      if (errnoCode(err) !== "ENOENT" || probe === stop || probe === dirname(probe)) throw err;
    }
  }
}

/**
 * A file the store just created (exclusively) must lie inside: a directory swapped for a link
 * between the check and the creation would have put it elsewhere. If so it is removed.
 */
export function* assertCreatedInside(d: StoreDir, path: string, rel: string): Steps<void, PathCalls> {
  const root = yield* call("realpath", d.root ?? d.dir);
  let real: string;
  try {
    real = yield* call("realpath", path);
  } catch (err) {
    // Gone from its path: a directory on the way was swapped since it was created.
    if (errnoCode(err) === "ENOENT") throw escapeError(d, rel);
    throw err;
  }
  if (real === root || real.startsWith(root + sep)) return;
  try {
    yield* call("unlink", real);
  } catch {
    // reported as the escape below either way
  }
  throw escapeError(d, rel);
}

/** An object being written: its temp file, and where it goes. */
export interface OpenObject {
  readonly temp: string;
  readonly final: string;
  /** Its file is closed, or being closed (never closed twice: a descriptor may be reused). */
  closed: boolean;
  /** It is in place: taking it back removes the object, not the temp file. */
  renamed: boolean;
}

/** Creates object `key`'s temp file (upload `id`), inside the store. */
export function* openObject(d: StoreDir, key: string, id: string): Steps<OpenObject> {
  const final = (yield* keyPath(d, key, true))!;
  const temp = join(dirname(final), tempName(basename(final), id));
  yield* call("create", temp);
  const o: OpenObject = { temp, final, closed: false, renamed: false };
  try {
    yield* assertCreatedInside(d, temp, key);
  } catch (err) {
    yield* closeQuietly(o);
    throw err;
  }
  return o;
}

/** When a writeback of the file written so far is due: every `every` bytes (0: never), one at a time. */
export class WritebackPace {
  /** A writeback has started and not yet settled (the writer says). */
  inFlight = false;
  #unsynced = 0;

  constructor(readonly every: number) {}

  due(written: number): boolean {
    this.#unsynced += written;
    if (this.every <= 0 || this.#unsynced < this.every || this.inFlight) return false;
    this.#unsynced = 0;
    return true;
  }
}

/** Writes buf[off, off + len) to the file, all of it, then starts a writeback if one is due. */
export function* writeBytes(buf: Uint8Array, off: number, len: number, pace: WritebackPace): Steps<void> {
  for (let end = off + len; off < end; ) off += yield* call("write", buf, off, end - off);
  if (pace.due(len)) yield* call("writeback");
}

/** Puts the object in place once all `bytes` are written. */
export function* completeObject(d: StoreDir, o: OpenObject, key: string, bytes: number): Steps<void> {
  yield* call("settle");
  // An empty file (the sentinel; an empty result without a header) has no bytes to lose: the
  // fsync would only commit the journal, waiting on every other file's data written since, and
  // it never made the rename below durable anyway (docs/decisions.md). With bytes, it also
  // covers the end of a writeback still running.
  if (bytes > 0) yield* call("sync");
  o.closed = true;
  yield* call("close");
  if (!(yield* call("closed"))) return;
  // The directory may have been swapped for a symlink since the temp file was created.
  yield* keyPath(d, key, false);
  yield* call("rename", o.temp, o.final);
  o.renamed = true;
  yield* assertCreatedInside(d, o.final, key);
}

/**
 * Removes what is left of an object that did not complete: its temp file, or the object if the
 * rename happened. Throws the cleanup error naming what it could not remove (`url`: the object's).
 */
export function* discardObject(o: OpenObject, url: string): Steps<void> {
  yield* closeQuietly(o);
  const path = o.renamed ? o.final : o.temp;
  try {
    yield* call("unlink", path);
  } catch (e) {
    if (errnoCode(e) !== "ENOENT") {
      throw new PgError(SqlState.ioError, `could not clean up the upload of ${url}`, {
        detail: `left behind: ${path}`,
        cause: e,
      });
    }
  }
}

function* closeQuietly(o: OpenObject): Steps<void> {
  if (o.closed) return;
  o.closed = true;
  try {
    yield* call("close");
  } catch {
    // already failed; the file is removed next
  }
}
