// The storage seam of an export: one object store per target "directory" (s3://bucket/prefix or
// file:///dir). Keys are relative to that directory, so an export can never touch — list, write,
// delete or abort — anything outside the target it was given.
import { PgError, SqlState } from "../../errors.js";

export interface ListResult {
  /** The first `limit` keys (relative to the store's directory), in key order. */
  keys: string[];
  /** Every key under the prefix, not just the returned ones. */
  count: number;
}

export interface PendingUpload {
  key: string;
  uploadId: string;
  initiated?: Date | undefined;
}

export interface ObjectStore {
  /** "s3://bucket/prefix" or "file:///dir": for messages, never holds secrets. */
  readonly location: string;
  /** Full address of a key, for messages, the manifest and error details. */
  url(key: string): string;
  /**
   * Keys under `prefix/` ("" = the whole directory). The prefix is a directory: "x" does not match
   * "x2/…", nor an object named exactly "x", nor the zero-byte "x/" folder marker consoles create.
   */
  list(prefix: string, signal: AbortSignal, limit?: number): Promise<ListResult>;
  /** SPEC §2 delete-permission probe on a key that does not exist. */
  probeDelete(key: string, signal: AbortSignal): Promise<void>;
  put(key: string, body: Uint8Array | string, signal: AbortSignal): Promise<void>;
  /** When the object was last written; undefined if it does not exist. */
  modified(key: string, signal: AbortSignal): Promise<Date | undefined>;
  /** Deletes, tolerating keys that are already gone. Cleanup passes no signal: it must outlive a cancel. */
  delete(keys: readonly string[], signal?: AbortSignal): Promise<void>;
  /** A streaming upload of one object; `signal` aborting it is the same as calling abort(). */
  upload(key: string, signal: AbortSignal): ObjectUpload;
  /** Unfinished uploads under `prefix/` (for the cleanup command and tests). */
  listUploads(prefix: string, signal?: AbortSignal): Promise<PendingUpload[]>;
  /** Unfinished uploads of the keys (in the store's directory) that start with `keyPrefix`. */
  uploadsOf(keyPrefix: string, signal?: AbortSignal): Promise<PendingUpload[]>;
  /** True if this aborted the upload, false if it was gone already. */
  abortUpload(key: string, uploadId: string, signal?: AbortSignal): Promise<boolean>;
  /**
   * An upload this store made may be one we never learned the id of: a CreateMultipartUpload was
   * retried, or failed without a definite answer. False means every upload's id is known.
   */
  readonly unknownUploadsPossible: boolean;
}

export interface ObjectUpload {
  /**
   * Queues bytes; false when a full buffer is waiting (then await drained() before writing more).
   * The upload may keep `chunk` without copying: do not change its bytes until it calls `release`
   * (once it no longer reads them: at once if it copied them; never if it failed first), or ever
   * if there is none. Throws if the upload has failed.
   */
  write(chunk: Uint8Array, release?: () => void): boolean;
  /** Resolves when write() would return true again; rejects if the upload failed. */
  drained(): Promise<void>;
  /**
   * Completes the object; resolves with its size. A rejection comes after the cleanup ran: nothing
   * of the object is left, or the error's detail names what could not be removed.
   */
  end(): Promise<{ bytes: number }>;
  /**
   * Cancels an unfinished upload and resolves once nothing of it remains (no multipart upload, no
   * object, no temp file); rejects only if that could not be ensured, naming what was left. A no-op
   * after end() resolved: completed objects are removed with ObjectStore.delete().
   */
  abort(): Promise<void>;
  /** Bytes written so far. */
  readonly bytes: number;
  /** Bytes this upload currently holds in memory (queued and in flight). */
  readonly buffered: number;
}

export interface StoreOptions {
  /** Multipart part size in bytes; S3 requires ≥ 5 MiB. Also the file store's write buffer. */
  partSize?: number;
  /** Parts uploading at once per object. */
  partsInFlight?: number;
  /** Attempts per S3 request (SDK retry strategy). */
  maxAttempts?: number;
  /** SDK retry strategy: "standard" (exponential backoff with jitter) or "adaptive" (+ rate limiting). */
  retryMode?: "standard" | "adaptive";
  /** Socket idle timeout of an S3 request. */
  requestTimeoutMs?: number;
  /** Niceness of the S3 upload thread (exports.workerNice; 0 = the relay's own priority). */
  uploadNice?: number;
}

export const MIN_PART_SIZE = 5 * 1024 * 1024;
export const MAX_PART_SIZE = 5 * 1024 * 1024 * 1024;
export const MAX_PARTS = 10_000;

export const STORE_DEFAULTS: Required<StoreOptions> = {
  partSize: 8 * 1024 * 1024,
  partsInFlight: 4,
  maxAttempts: 5,
  retryMode: "standard",
  requestTimeoutMs: 120_000,
  uploadNice: 0,
};

export function resolveStoreOptions(o: StoreOptions = {}): Required<StoreOptions> {
  const r = {
    partSize: o.partSize ?? STORE_DEFAULTS.partSize,
    partsInFlight: o.partsInFlight ?? STORE_DEFAULTS.partsInFlight,
    maxAttempts: o.maxAttempts ?? STORE_DEFAULTS.maxAttempts,
    retryMode: o.retryMode ?? STORE_DEFAULTS.retryMode,
    requestTimeoutMs: o.requestTimeoutMs ?? STORE_DEFAULTS.requestTimeoutMs,
    uploadNice: o.uploadNice ?? STORE_DEFAULTS.uploadNice,
  };
  const bad = (what: string) =>
    new PgError(SqlState.invalidParameterValue, `invalid storage setting: ${what}`);
  if (!Number.isSafeInteger(r.partSize) || r.partSize < MIN_PART_SIZE || r.partSize > MAX_PART_SIZE) {
    throw bad(`part size must be between 5 MiB and 5 GiB, got ${r.partSize}`);
  }
  if (!Number.isSafeInteger(r.partsInFlight) || r.partsInFlight < 1) {
    throw bad(`parts in flight must be at least 1, got ${r.partsInFlight}`);
  }
  if (!Number.isSafeInteger(r.maxAttempts) || r.maxAttempts < 1) {
    throw bad(`max attempts must be at least 1, got ${r.maxAttempts}`);
  }
  if (!Number.isSafeInteger(r.requestTimeoutMs) || r.requestTimeoutMs < 1) {
    throw bad(`request timeout must be positive, got ${r.requestTimeoutMs}`);
  }
  return r;
}

/**
 * Keys are plain relative paths. "." and ".." segments are refused for S3 too: MinIO and other
 * S3-compatible servers normalise them, which would let a key escape the target prefix.
 */
export function checkKey(key: string): void {
  const bad =
    key === "" ||
    key.startsWith("/") ||
    key.includes("\0") ||
    key.split("/").some((seg) => seg === "" || seg === "." || seg === "..");
  if (bad) {
    throw new PgError(SqlState.invalidParameterValue, `invalid object key ${JSON.stringify(key)}`, {
      hint: "Keys are relative paths without empty, '.' or '..' segments.",
    });
  }
}

/** A sub-prefix given to list()/listUploads(): "" or a relative path, checked like a key. */
export function checkPrefix(prefix: string): string {
  const p = prefix.replace(/^\/+|\/+$/g, "");
  if (p !== "") checkKey(p);
  return p;
}

export function toBuffer(chunk: Uint8Array | string): Buffer {
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8");
  return Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
}

/** The error to report when `signal` ended an operation: its reason if that is ours, else a cancel. */
export function abortError(signal: AbortSignal | undefined): PgError {
  const reason: unknown = signal?.reason;
  if (reason instanceof PgError) return reason;
  return new PgError(SqlState.queryCanceled, "canceling statement due to user request");
}

/** An upload's failure whose cleanup failed too: the caller must learn both (SPEC §2.2 detail). */
export function withCleanupFailure(err: PgError, cleanup: unknown): PgError {
  const c = PgError.from(cleanup, SqlState.ioError);
  const also = `${c.message}${c.detail ? ` (${c.detail})` : ""}`;
  return new PgError(err.code, err.message, {
    detail: err.detail ? `${err.detail}; ${also}` : also,
    hint: err.hint,
    cause: err,
  });
}

/**
 * Aborts every unfinished upload of the keys starting with `keyPrefix` (an export's own keys), and
 * resolves once a listing shows none. This is what finds an upload made by a CreateMultipartUpload
 * that the server executed but whose answer was lost: the SDK's retry created another, and only
 * that one's id reached us. Rejects naming the uploads it could not remove.
 */
export async function abortUploadsOf(store: ObjectStore, keyPrefix: string): Promise<void> {
  let pending: PendingUpload[] = [];
  try {
    for (let round = 0; round < 4; round++) {
      pending = await store.uploadsOf(keyPrefix);
      if (pending.length === 0) return;
      // Some servers list an upload for a moment after its abort.
      if (round > 0) await new Promise((r) => setTimeout(r, 100 * round));
      await Promise.all(pending.map((u) => store.abortUpload(u.key, u.uploadId)));
    }
  } catch (err) {
    const e = PgError.from(err, SqlState.ioError);
    throw new PgError(e.code, e.message, {
      detail: `${e.detail ?? ""}${e.detail ? "; " : ""}unverified: multipart uploads of ${store.url(keyPrefix)}*`,
      cause: err,
    });
  }
  throw new PgError(SqlState.ioError, "could not abort multipart uploads", {
    detail: pending.map((u) => `multipart upload ${u.uploadId} of ${store.url(u.key)}`).join(", "),
  });
}

/** Sorts like S3 lists: by UTF-8 bytes (JS string order differs for astral characters). */
export function compareKeys(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a), Buffer.from(b));
}
