// S3 (and S3-compatible) object store over the AWS SDK v3 client.
//
// Multipart uploads are driven here with CreateMultipartUpload/UploadPart/Complete rather than
// through @aws-sdk/lib-storage's Upload, because what this project needs most is exactly what
// Upload does not give:
// - abort() that is *finished* when it resolves. Upload fires AbortMultipartUpload after done()
//   has already rejected (unawaited, ~200 ms later) and lets in-flight UploadParts run on; here
//   abort cancels the parts in flight, waits for every request to settle, and aborts the upload.
// - a request whose effect outlives it (CreateMultipartUpload, CompleteMultipartUpload, PutObject)
//   is never cut short by a cancel: an HTTP request we abort is not one the server did not
//   execute. A cancel only stops the SDK from starting another attempt (sendWhole). When the
//   outcome of a Complete is still unknown, the cleanup establishes it (AbortMultipartUpload,
//   then HeadObject) before it deletes anything.
// - backpressure as a plain boolean from write() with memory accounted in bytes, not a stream
//   whose internal buffers add up to more than partSize × (partsInFlight + 1).
// - every part body is a Buffer, so the SDK's retry strategy can resend it (a streamed body
//   cannot be replayed), and every part except the last has exactly partSize bytes, which R2
//   requires.

import { createHash } from "node:crypto";
import {
  AbortMultipartUploadCommand,
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  type S3ClientConfig,
  S3ServiceException,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { PgError, SqlState } from "../../errors.js";
import { addS3Metrics } from "../../metrics/s3-metrics.js";
import { contentTypeOf } from "./content-type.js";
import {
  abortError,
  checkKey,
  checkPrefix,
  compareKeys,
  type ListResult,
  MAX_PARTS,
  type ObjectStore,
  type ObjectUpload,
  type PendingUpload,
  toBuffer,
  withCleanupFailure,
} from "./object-store.js";

export interface S3ClientSettings {
  /** S3-compatible endpoint (MinIO, Ceph, R2, moto…); implies path-style addressing. */
  endpoint?: string | undefined;
  region?: string | undefined;
  /** Absent: the SDK default chain (env, profile, web identity, instance metadata). */
  credentials?: S3ClientConfig["credentials"];
  maxAttempts: number;
  /** Default "standard": exponential backoff with full jitter, retry quota per client. */
  retryMode?: "standard" | "adaptive" | undefined;
  requestTimeoutMs: number;
}

export function createS3Client(s: S3ClientSettings): S3Client {
  const custom = s.endpoint !== undefined;
  const config: S3ClientConfig = {
    forcePathStyle: custom,
    maxAttempts: s.maxAttempts,
    retryMode: s.retryMode ?? "standard",
    // A request that gets no answer within requestTimeout fails (TimeoutError) and is retried
    // instead of hanging an export until the user gives up. Without throwOnRequestTimeout the SDK
    // (node-http-handler 4.x) only logs a warning and waits forever.
    requestHandler: {
      connectionTimeout: 10_000,
      requestTimeout: s.requestTimeoutMs,
      throwOnRequestTimeout: true,
    },
    // On AWS a bucket in another region answers 301; following it beats a confusing error.
    followRegionRedirects: !custom,
    // The SDK's default CRC32 checksums on every request are patchily supported by S3-compatible
    // servers; AWS itself gets them.
    requestChecksumCalculation: custom ? "WHEN_REQUIRED" : "WHEN_SUPPORTED",
    responseChecksumValidation: custom ? "WHEN_REQUIRED" : "WHEN_SUPPORTED",
  };
  if (custom) config.endpoint = s.endpoint;
  // Signing needs some region; S3-compatible servers accept us-east-1 whatever they call themselves.
  const region = s.region ?? (custom ? "us-east-1" : undefined);
  if (region !== undefined) config.region = region;
  if (s.credentials !== undefined) config.credentials = s.credentials;
  const client = new S3Client(config);
  addS3Metrics(client);
  // SigV4 hashes every part with SHA-256 unless the payload is declared unsigned (5-11% of the
  // proxy's CPU on an export). Over TLS, with a CRC32 checksum on the part (AWS: WHEN_SUPPORTED
  // above), that hash protects nothing more, and the AWS CLI (botocore) sends UNSIGNED-PAYLOAD in
  // exactly this case. Without TLS, or without a checksum, the body stays signed.
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { protocol?: string; headers?: Record<string, string> };
      if (
        (context.commandName === "UploadPartCommand" || context.commandName === "PutObjectCommand") &&
        req.protocol === "https:" &&
        req.headers !== undefined &&
        Object.keys(req.headers).some((h) => h.toLowerCase().startsWith("x-amz-checksum-"))
      ) {
        req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
      }
      return next(args);
    },
    // Late in the build step: after the checksum middleware, before signing (finalizeRequest).
    { step: "build", priority: "low", name: "c2sUnsignedPayloadOverTls" },
  );
  if (custom) {
    // DeleteObjects must carry Content-MD5 on MinIO/Ceph/GCS-style servers; the SDK now sends CRC32
    // instead (aws-sdk-js-v3#6920, supplemental-docs/MD5_FALLBACK.md).
    client.middlewareStack.add(
      (next, context) => async (args) => {
        const req = args.request as { headers?: Record<string, string>; body?: unknown };
        if (context.commandName === "DeleteObjectsCommand" && req.headers && typeof req.body === "string") {
          for (const h of Object.keys(req.headers)) {
            const l = h.toLowerCase();
            if (l.startsWith("x-amz-checksum-") || l.startsWith("x-amz-sdk-checksum-")) delete req.headers[h];
          }
          req.headers["content-md5"] = createHash("md5").update(req.body).digest("base64");
        }
        return next(args);
      },
      { step: "build", name: "c2sDeleteObjectsContentMd5" },
    );
  }
  return client;
}

/** SDK failure → PgError 58030 "<S3 code> error when using <Operation>"; never carries credentials. */
export function s3Error(op: string, err: unknown, where: string, signal?: AbortSignal): PgError {
  if (err instanceof PgError) return err;
  if (signal?.aborted) return abortError(signal);
  const e = (err ?? {}) as {
    name?: string;
    code?: string;
    message?: string;
    $metadata?: { httpStatusCode?: number; requestId?: string };
  };
  let code: string | undefined;
  if (err instanceof S3ServiceException) code = err.name;
  else if (typeof e.code === "string")
    code = e.code; // ECONNREFUSED, ENOTFOUND, …
  else if (e.name && e.name !== "Error") code = e.name; // TimeoutError, CredentialsProviderError, …
  const status = e.$metadata?.httpStatusCode;
  const facts = [
    status ? `HTTP ${status}` : undefined,
    e.$metadata?.requestId && `request id ${e.$metadata.requestId}`,
  ]
    .filter(Boolean)
    .join(", ");
  return new PgError(SqlState.ioError, `${code ?? "S3"} error when using ${op}`, {
    detail: `${where}: ${e.message || "no message"}${facts ? ` (${facts})` : ""}`,
    cause: sanitized(err, code, status),
  });
}

/**
 * The SDK's error holds the raw HTTP exchange ($response → socket → request headers), and with it
 * the Authorization header (access key id, signature). A logger walking `cause` would print it, so
 * only a summary is kept.
 */
function sanitized(err: unknown, code: string | undefined, status: number | undefined): Error {
  const e = new Error(err instanceof Error ? err.message : String(err));
  e.name = code ?? (err instanceof Error ? err.name : "Error");
  return Object.assign(e, { code, httpStatusCode: status });
}

function isNoSuchBucket(err: unknown): boolean {
  const e = err instanceof PgError ? err.cause : err;
  return (e as { name?: string } | null)?.name === "NoSuchBucket";
}

function httpStatus(err: unknown): number | undefined {
  const e = err as { $metadata?: { httpStatusCode?: number }; httpStatusCode?: number } | null | undefined;
  return e?.$metadata?.httpStatusCode ?? e?.httpStatusCode;
}

function isNoSuchUpload(err: unknown): boolean {
  const e = err instanceof PgError ? err.cause : err;
  return (e as { name?: string } | null)?.name === "NoSuchUpload" || httpStatus(e) === 404;
}

/**
 * Sends a command whose effect outlives its HTTP request. `signal` aborting never cuts an attempt
 * short — the server may already be executing it, and would then finish after our cleanup — it
 * only keeps the SDK's retry strategy from starting another attempt (smithy's retry middleware
 * checks the signal after a failed attempt and races it against the backoff). An attempt that gets
 * no answer is still bounded by the request timeout.
 */
export async function sendWhole<T>(
  client: S3Client,
  // biome-ignore lint/suspicious/noExplicitAny: any SDK command; its output type is T
  command: { middlewareStack: { add: (...a: any[]) => void } },
  signal: AbortSignal | undefined,
): Promise<T> {
  const gate = new AbortController();
  let inFlight = false;
  const onAbort = (): void => {
    if (!inFlight) gate.abort(signal?.reason);
  };
  command.middlewareStack.add(
    (next: (args: unknown) => Promise<unknown>) => async (args: unknown) => {
      // Checked here rather than left to the handler: nothing is sent once the cancel has come.
      if (signal?.aborted) gate.abort(signal.reason);
      inFlight = true;
      try {
        return await next(args);
      } finally {
        inFlight = false;
        if (signal?.aborted) gate.abort(signal.reason);
      }
    },
    // The deserialize step runs once per attempt, below the retry middleware (finalizeRequest).
    { step: "deserialize", priority: "high", name: "c2sWholeAttempts" },
  );
  if (signal?.aborted) gate.abort(signal.reason);
  else signal?.addEventListener("abort", onAbort, { once: true });
  try {
    // biome-ignore lint/suspicious/noExplicitAny: see the parameter
    return (await client.send(command as any, { abortSignal: gate.signal })) as T;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

export interface S3StoreConfig {
  client: S3Client;
  bucket: string;
  /** The target directory inside the bucket, without leading/trailing "/" ("" = bucket root). */
  prefix: string;
  partSize: number;
  partsInFlight: number;
  /**
   * How long the cleanup waits for the object of a CompleteMultipartUpload whose answer was lost
   * to appear (the upload is gone, so the server completed it or is completing it).
   */
  settleMs?: number;
}

export class S3Store implements ObjectStore {
  readonly location: string;
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly partSize: number;
  readonly partsInFlight: number;
  readonly settleMs: number;
  unknownUploadsPossible = false;

  constructor(c: S3StoreConfig) {
    this.client = c.client;
    this.settleMs = c.settleMs ?? 120_000;
    this.bucket = c.bucket;
    this.prefix = c.prefix.replace(/^\/+|\/+$/g, "");
    this.partSize = c.partSize;
    this.partsInFlight = c.partsInFlight;
    this.location = `s3://${this.bucket}${this.prefix === "" ? "" : `/${this.prefix}`}`;
  }

  url(key: string): string {
    return key === "" ? this.location : `${this.location}/${key}`;
  }

  /** The bucket key of a store-relative key. */
  fullKey(key: string): string {
    checkKey(key);
    return this.prefix === "" ? key : `${this.prefix}/${key}`;
  }

  #relative(full: string): string {
    return this.prefix === "" ? full : full.slice(this.prefix.length + 1);
  }

  /** The ListObjects/ListMultipartUploads prefix of a sub-directory; undefined = the whole bucket. */
  #dirPrefix(sub: string): string | undefined {
    const p = checkPrefix(sub);
    const dir = [this.prefix, p].filter((s) => s !== "").join("/");
    return dir === "" ? undefined : `${dir}/`;
  }

  async call<T>(op: string, key: string, signal: AbortSignal | undefined, fn: () => Promise<T>): Promise<T> {
    if (signal?.aborted) throw abortError(signal);
    try {
      return await fn();
    } catch (err) {
      throw s3Error(op, err, this.url(key), signal);
    }
  }

  async list(prefix: string, signal: AbortSignal, limit = 1000): Promise<ListResult> {
    const dir = this.#dirPrefix(prefix);
    const keys: string[] = [];
    let count = 0;
    let token: string | undefined;
    let startAfter: string | undefined;
    for (;;) {
      const out = await this.call("ListObjectsV2", checkPrefix(prefix), signal, () =>
        this.client.send(
          new ListObjectsV2Command({
            Bucket: this.bucket,
            Prefix: dir,
            ContinuationToken: token,
            StartAfter: token === undefined ? startAfter : undefined,
          }),
          { abortSignal: signal },
        ),
      );
      let last: string | undefined;
      for (const o of out.Contents ?? []) {
        if (o.Key === undefined) continue;
        last = o.Key;
        if (o.Key === dir) continue; // the "folder" marker a console leaves behind is not content
        count++;
        if (keys.length < limit) keys.push(this.#relative(o.Key));
      }
      if (!out.IsTruncated) break;
      // Some S3-compatible servers truncate without a continuation token; StartAfter still pages.
      token = out.NextContinuationToken;
      if (token === undefined) {
        if (last === undefined) break;
        startAfter = last;
      }
    }
    return { keys, count };
  }

  async probeDelete(key: string, signal: AbortSignal): Promise<void> {
    const Key = this.fullKey(key);
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key }), { abortSignal: signal });
    } catch (err) {
      if (signal.aborted) throw abortError(signal);
      const status = httpStatus(err);
      // S3 answers 403 whether or not the key exists; GCS answers 404 for a missing key.
      if (status === 403) {
        throw new PgError(SqlState.ioError, "AccessDenied error when using DeleteObject", {
          detail: `${this.url(key)}: the credentials may not delete objects here, so a failed export could not clean up.`,
          cause: sanitized(err, "AccessDenied", status),
        });
      }
      if (status === 404 && !isNoSuchBucket(err)) return;
      throw s3Error("DeleteObject", err, this.url(key), signal);
    }
  }

  async put(key: string, body: Uint8Array | string, signal: AbortSignal): Promise<void> {
    const Key = this.fullKey(key);
    const buf = toBuffer(body);
    await this.call("PutObject", key, signal, () =>
      sendWhole(
        this.client,
        new PutObjectCommand({
          Bucket: this.bucket,
          Key,
          Body: buf,
          ContentLength: buf.length,
          ContentType: contentTypeOf(key),
        }),
        signal,
      ),
    );
  }

  /** The object's size, or undefined when it does not exist. No signal: the cleanup uses it. */
  async size(key: string): Promise<number | undefined> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
      );
      return out.ContentLength ?? 0;
    } catch (err) {
      if (httpStatus(err) === 404) return undefined;
      throw s3Error("HeadObject", err, this.url(key));
    }
  }

  /**
   * Waits until `key` exists (polling HeadObject, up to settleMs): for an upload whose Complete
   * took effect without our learning it. Resolves with its size, or undefined when it never came.
   */
  async appeared(key: string): Promise<number | undefined> {
    const deadline = Date.now() + this.settleMs;
    for (let wait = 50; ; wait = Math.min(wait * 2, 1000)) {
      const size = await this.size(key);
      if (size !== undefined || Date.now() >= deadline) return size;
      await new Promise((r) => setTimeout(r, Math.min(wait, Math.max(0, deadline - Date.now()))));
    }
  }

  async modified(key: string, signal: AbortSignal): Promise<Date | undefined> {
    try {
      const out = await this.client.send(
        new HeadObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }),
        {
          abortSignal: signal,
        },
      );
      return out.LastModified;
    } catch (err) {
      if (signal.aborted) throw abortError(signal);
      if (httpStatus(err) === 404) return undefined;
      throw s3Error("HeadObject", err, this.url(key), signal);
    }
  }

  async delete(keys: readonly string[], signal?: AbortSignal): Promise<void> {
    const failed: string[] = [];
    let firstCode: string | undefined;
    for (let i = 0; i < keys.length; i += 1000) {
      const batch = keys.slice(i, i + 1000);
      const objects = batch.map((k) => ({ Key: this.fullKey(k) }));
      try {
        const out = await this.client.send(
          new DeleteObjectsCommand({ Bucket: this.bucket, Delete: { Objects: objects, Quiet: true } }),
          { abortSignal: signal },
        );
        for (const e of out.Errors ?? []) {
          if (e.Code === "NoSuchKey") continue;
          firstCode ??= e.Code;
          failed.push(this.url(this.#relative(e.Key ?? "?")));
        }
      } catch (err) {
        if (signal?.aborted) throw abortError(signal);
        // GCS's XML API has no multi-object delete, and some servers reject its checksums: one by one.
        if (isNoSuchBucket(err)) return; // with the bucket gone, so are the keys
        const status = httpStatus(err);
        if (status === 501 || status === 400 || status === 405) {
          await this.#deleteEach(batch, signal);
          continue;
        }
        throw s3Error("DeleteObjects", err, this.location, signal);
      }
    }
    if (failed.length > 0) {
      throw new PgError(SqlState.ioError, `${firstCode ?? "S3"} error when using DeleteObjects`, {
        detail: `could not delete ${failed.length} object(s): ${failed.slice(0, 20).join(", ")}${failed.length > 20 ? ", …" : ""}`,
      });
    }
  }

  async #deleteEach(keys: readonly string[], signal?: AbortSignal): Promise<void> {
    let next = 0;
    const worker = async () => {
      while (next < keys.length) {
        const key = keys[next++]!;
        try {
          await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.fullKey(key) }), {
            abortSignal: signal,
          });
        } catch (err) {
          if (httpStatus(err) !== 404) throw s3Error("DeleteObject", err, this.url(key), signal);
        }
      }
    };
    await Promise.all(Array.from({ length: Math.min(8, keys.length) }, worker));
  }

  upload(key: string, signal: AbortSignal): ObjectUpload {
    return new S3Upload(this, key, signal);
  }

  async listUploads(prefix: string, signal?: AbortSignal): Promise<PendingUpload[]> {
    const dir = this.#dirPrefix(prefix);
    return (await this.#listUploadsRaw(dir, checkPrefix(prefix), signal)).map((u) => ({
      ...u,
      key: this.#relative(u.key),
    }));
  }

  async uploadsOf(keyPrefix: string, signal?: AbortSignal): Promise<PendingUpload[]> {
    if (keyPrefix.includes("/")) checkKey(keyPrefix);
    const full = this.prefix === "" ? keyPrefix : `${this.prefix}/${keyPrefix}`;
    try {
      return (await this.#listUploadsRaw(full, keyPrefix, signal)).map((u) => ({
        ...u,
        key: this.#relative(u.key),
      }));
    } catch (err) {
      if (isNoSuchBucket(err)) return [];
      throw err;
    }
  }

  async #listUploadsRaw(
    prefix: string | undefined,
    where: string,
    signal?: AbortSignal,
  ): Promise<PendingUpload[]> {
    const found: PendingUpload[] = [];
    let KeyMarker: string | undefined;
    let UploadIdMarker: string | undefined;
    for (;;) {
      const out = await this.call("ListMultipartUploads", where, signal, () =>
        this.client.send(
          new ListMultipartUploadsCommand({ Bucket: this.bucket, Prefix: prefix, KeyMarker, UploadIdMarker }),
          { abortSignal: signal },
        ),
      );
      for (const u of out.Uploads ?? []) {
        if (u.Key !== undefined && u.UploadId !== undefined) {
          found.push({ key: u.Key, uploadId: u.UploadId, initiated: u.Initiated });
        }
      }
      if (!out.IsTruncated || (out.NextKeyMarker === undefined && out.NextUploadIdMarker === undefined))
        break;
      KeyMarker = out.NextKeyMarker;
      UploadIdMarker = out.NextUploadIdMarker;
    }
    return found.sort((a, b) => compareKeys(a.key, b.key));
  }

  /** True if this aborted the upload, false if it was gone already (NoSuchUpload). */
  async abortUpload(key: string, uploadId: string, signal?: AbortSignal): Promise<boolean> {
    const Key = this.fullKey(key);
    try {
      await this.client.send(
        new AbortMultipartUploadCommand({ Bucket: this.bucket, Key, UploadId: uploadId }),
        {
          abortSignal: signal,
        },
      );
      return true;
    } catch (err) {
      if (httpStatus(err) === 404) return false; // NoSuchUpload: completed or aborted already
      throw s3Error("AbortMultipartUpload", err, this.url(key), signal);
    }
  }
}

type Checksums = Pick<
  CompletedPart,
  "ChecksumCRC32" | "ChecksumCRC32C" | "ChecksumCRC64NVME" | "ChecksumSHA1" | "ChecksumSHA256"
>;

class S3Upload implements ObjectUpload {
  readonly #store: S3Store;
  readonly #key: string;
  readonly #fullKey: string;
  readonly #signal: AbortSignal;
  /** Cancels this upload's requests (parts, PutObject, Complete) — never its CreateMultipartUpload. */
  readonly #ops = new AbortController();
  readonly #opSignal: AbortSignal;
  readonly #onAbort = () => this.#fail(abortError(this.#signal));

  /**
   * The part being filled. Writes are copied into it rather than kept by reference: memory is then
   * exactly what is accounted, parts are exactly partSize, and tiny writes cost no per-chunk
   * bookkeeping (memcpy is cheap next to the network).
   */
  #cur: Buffer | undefined;
  #curLen = 0;
  /** Full parts waiting for a slot (more than one only if the caller ignores backpressure). */
  #full: Buffer[] = [];
  #fullBytes = 0;
  #bytes = 0;
  #inflight = new Set<Promise<void>>();
  #inflightBytes = 0;
  #parts: CompletedPart[] = [];
  #nextPart = 1;
  #created: Promise<string> | undefined;
  #objectOp: Promise<unknown> | undefined;
  /** The request that makes the object, once sent: from then on the object may exist. */
  #object: "put" | "complete" | undefined;
  #state: "open" | "ending" | "done" = "open";
  #error: PgError | undefined;
  #cleanup: Promise<void> | undefined;

  constructor(store: S3Store, key: string, signal: AbortSignal) {
    this.#store = store;
    this.#key = key;
    this.#fullKey = store.fullKey(key);
    this.#signal = signal;
    this.#opSignal = AbortSignal.any([signal, this.#ops.signal]);
    if (signal.aborted) this.#onAbort();
    else signal.addEventListener("abort", this.#onAbort, { once: true });
  }

  get bytes(): number {
    return this.#bytes;
  }

  get buffered(): number {
    return this.#curLen + this.#fullBytes + this.#inflightBytes;
  }

  write(chunk: Uint8Array): boolean {
    if (this.#error) throw this.#error;
    if (this.#state !== "open") throw new PgError(SqlState.internalError, "write after end of upload");
    const src = toBuffer(chunk);
    const P = this.#store.partSize;
    for (let off = 0; off < src.length; ) {
      // A full part is set aside only once a further byte arrives: an object of exactly one part
      // is still a single PutObject.
      if (this.#cur !== undefined && this.#curLen === P) {
        this.#full.push(this.#cur);
        this.#fullBytes += P;
        this.#cur = undefined;
      }
      if (this.#cur === undefined) {
        this.#cur = Buffer.allocUnsafe(P);
        this.#curLen = 0;
      }
      const n = src.copy(this.#cur, this.#curLen, off);
      this.#curLen += n;
      off += n;
    }
    this.#bytes += src.length;
    this.#pump();
    return !this.#blocked();
  }

  async drained(): Promise<void> {
    for (;;) {
      if (this.#error) throw this.#error;
      this.#pump();
      if (!this.#blocked()) return;
      if (this.#inflight.size > 0) await Promise.race(this.#inflight);
      else if (!this.#error) throw new PgError(SqlState.internalError, "upload stalled with a full buffer");
    }
  }

  async end(): Promise<{ bytes: number }> {
    if (this.#state !== "open") throw new PgError(SqlState.internalError, "upload ended twice");
    this.#state = "ending";
    try {
      if (this.#error) throw this.#error;
      if (this.#created === undefined && this.#full.length === 0) {
        // Smaller than one part (or empty): one PutObject, no multipart upload to leak.
        const body = this.#cur === undefined ? Buffer.alloc(0) : this.#cur.subarray(0, this.#curLen);
        this.#object = "put";
        this.#objectOp = this.#store.call("PutObject", this.#key, undefined, () =>
          sendWhole(
            this.#store.client,
            new PutObjectCommand({
              Bucket: this.#store.bucket,
              Key: this.#fullKey,
              Body: body,
              ContentLength: body.length,
              ContentType: contentTypeOf(this.#key),
            }),
            this.#opSignal,
          ),
        );
        await this.#objectOp;
      } else {
        if (this.#cur !== undefined && this.#curLen > 0) {
          this.#full.push(this.#cur.subarray(0, this.#curLen));
          this.#fullBytes += this.#curLen;
        }
        this.#cur = undefined;
        this.#curLen = 0;
        while (this.#full.length > 0) {
          if (this.#error) throw this.#error;
          this.#pump();
          if (this.#full.length > 0) await Promise.race(this.#inflight);
        }
        await Promise.all(this.#inflight);
        if (this.#error) throw this.#error;
        const uploadId = await this.#created;
        if (this.#error) throw this.#error;
        const parts = [...this.#parts].sort((a, b) => a.PartNumber! - b.PartNumber!);
        this.#object = "complete";
        this.#objectOp = this.#complete(uploadId!, parts);
        await this.#objectOp;
      }
      // A cancel that came while the last request ran: its object exists, and goes again (cleanup).
      if (this.#error) throw this.#error;
      this.#state = "done";
      this.#signal.removeEventListener("abort", this.#onAbort);
      return { bytes: this.#bytes };
    } catch (err) {
      this.#fail(
        err instanceof PgError ? err : s3Error("upload", err, this.#store.url(this.#key), this.#signal),
      );
      try {
        await this.#cleanup;
      } catch (cleanupErr) {
        throw withCleanupFailure(this.#error!, cleanupErr);
      }
      throw this.#error;
    }
  }

  /**
   * CompleteMultipartUpload, sent whole (sendWhole). S3 may answer 200 with an error in the body
   * (the SDK's throw200Exceptions middleware turns it into a retried 5xx). A NoSuchUpload answer
   * after the first attempt means an earlier attempt completed the upload and its answer was lost
   * (AWS: the upload "might have been aborted or completed"; only our cleanup aborts, and it runs
   * after this settles): the object, once HeadObject shows it with our size, is the result.
   */
  async #complete(uploadId: string, parts: CompletedPart[]): Promise<void> {
    try {
      await this.#store.call("CompleteMultipartUpload", this.#key, undefined, () =>
        sendWhole(
          this.#store.client,
          new CompleteMultipartUploadCommand({
            Bucket: this.#store.bucket,
            Key: this.#fullKey,
            UploadId: uploadId,
            MultipartUpload: { Parts: parts },
          }),
          this.#opSignal,
        ),
      );
    } catch (err) {
      if (!isNoSuchUpload(err)) throw err;
      if (this.#error === undefined) {
        const size = await this.#store.appeared(this.#key);
        if (size === this.#bytes) return;
      }
      throw err;
    }
  }

  async abort(): Promise<void> {
    if (this.#state === "done") return;
    this.#fail(new PgError(SqlState.queryCanceled, "upload aborted"));
    await this.#cleanup;
  }

  /** A full part cannot go out for lack of a slot: the caller should wait. */
  #blocked(): boolean {
    return this.#full.length > 0 || (this.#created !== undefined && this.#curLen === this.#store.partSize);
  }

  /** Starts full parts while there is room in flight. */
  #pump(): void {
    while (!this.#error && this.#inflight.size < this.#store.partsInFlight) {
      const next = this.#full.shift();
      if (next !== undefined) {
        this.#fullBytes -= next.length;
        this.#startPart(next);
      } else if (
        this.#created !== undefined &&
        this.#cur !== undefined &&
        this.#curLen === this.#store.partSize
      ) {
        // Once multipart has begun, a full part need not wait to learn whether more follows.
        this.#startPart(this.#cur);
        this.#cur = undefined;
        this.#curLen = 0;
      } else {
        break;
      }
    }
  }

  #ensureCreated(): Promise<string> {
    if (this.#created !== undefined) return this.#created;
    this.#created = (async () => {
      // Checksums negotiated at creation must be repeated per part in Complete (as lib-storage does).
      const algo = (await this.#store.client.config.requestChecksumCalculation()) === "WHEN_SUPPORTED";
      // Sent whole: an upload created by an attempt we cut short would be one whose id we never
      // learn. One whose answer is lost anyway is found by the export's sweep (abortUploadsOf).
      const out = await this.#store.call("CreateMultipartUpload", this.#key, undefined, () =>
        sendWhole<{ UploadId?: string }>(
          this.#store.client,
          new CreateMultipartUploadCommand({
            Bucket: this.#store.bucket,
            Key: this.#fullKey,
            ContentType: contentTypeOf(this.#key),
            ...(algo ? { ChecksumAlgorithm: "CRC32" as const } : {}),
          }),
          this.#opSignal,
        ),
      );
      // The SDK counts the attempts: more than one, and an earlier one may have created an upload.
      if (((out as { $metadata?: { attempts?: number } }).$metadata?.attempts ?? 1) > 1)
        this.#store.unknownUploadsPossible = true;
      if (!out.UploadId) {
        throw new PgError(SqlState.ioError, "CreateMultipartUpload returned no upload id", {
          detail: this.#store.url(this.#key),
        });
      }
      return out.UploadId;
    })();
    this.#created.catch((err: unknown) => {
      // Observed through the parts that await it and by the cleanup. Only a 4xx says for sure that
      // no attempt created anything.
      const status = httpStatus(err instanceof PgError ? err.cause : err);
      if (status === undefined || status >= 500) this.#store.unknownUploadsPossible = true;
    });
    return this.#created;
  }

  #startPart(body: Buffer): void {
    const PartNumber = this.#nextPart++;
    if (PartNumber > MAX_PARTS) {
      this.#fail(
        // 54000 program_limit_exceeded
        new PgError("54000", `object would need more than ${MAX_PARTS} parts`, {
          detail: this.#store.url(this.#key),
          hint: "Raise the part size.",
        }),
      );
      return;
    }
    this.#inflightBytes += body.length;
    const created = this.#ensureCreated();
    const p = (async () => {
      const UploadId = await created;
      const out = await this.#store.call("UploadPart", this.#key, this.#opSignal, () =>
        this.#store.client.send(
          new UploadPartCommand({
            Bucket: this.#store.bucket,
            Key: this.#fullKey,
            UploadId,
            PartNumber,
            Body: body,
            ContentLength: body.length,
          }),
          { abortSignal: this.#opSignal },
        ),
      );
      const sums: Checksums = {};
      if (out.ChecksumCRC32) sums.ChecksumCRC32 = out.ChecksumCRC32;
      if (out.ChecksumCRC32C) sums.ChecksumCRC32C = out.ChecksumCRC32C;
      if (out.ChecksumCRC64NVME) sums.ChecksumCRC64NVME = out.ChecksumCRC64NVME;
      if (out.ChecksumSHA1) sums.ChecksumSHA1 = out.ChecksumSHA1;
      if (out.ChecksumSHA256) sums.ChecksumSHA256 = out.ChecksumSHA256;
      this.#parts.push({ PartNumber, ETag: out.ETag, ...sums });
    })()
      .catch((err: unknown) => this.#fail(PgError.from(err, SqlState.ioError)))
      .finally(() => {
        this.#inflight.delete(p);
        this.#inflightBytes -= body.length;
        this.#pump();
      });
    this.#inflight.add(p);
  }

  /** The first failure wins; it cancels everything in flight and starts the cleanup. */
  #fail(err: PgError): void {
    if (this.#error !== undefined || this.#state === "done") return;
    this.#error = err;
    this.#ops.abort(err);
    this.#signal.removeEventListener("abort", this.#onAbort);
    this.#cur = undefined;
    this.#curLen = 0;
    this.#full = [];
    this.#fullBytes = 0;
    this.#cleanup = this.#runCleanup();
    this.#cleanup.catch(() => {}); // reported by abort()
  }

  async #runCleanup(): Promise<void> {
    // Nothing may be sent before every request of this upload has settled. Parts in flight were
    // cut short (a part landing after the abort is invisible: AWS documents that aborting again
    // frees its storage); CreateMultipartUpload and the object's request run their attempt out.
    await Promise.allSettled([...this.#inflight, this.#created, this.#objectOp]);
    const url = this.#store.url(this.#key);
    const left: string[] = [];
    let cause: unknown;
    const uploadId = await this.#created?.catch(() => undefined);
    const written = await this.#objectOp?.then(
      () => true,
      () => false,
    );
    /** The object may exist, or may still appear. */
    let mayExist = written === true || this.#object === "put";
    if (uploadId !== undefined && written !== true) {
      try {
        const aborted = await this.#store.abortUpload(this.#key, uploadId);
        if (!aborted && this.#object === "complete") {
          // Gone without our abort: a Complete of ours took effect. Its object may be on its way.
          mayExist = (await this.#store.appeared(this.#key)) !== undefined;
          if (!mayExist) {
            left.push(`${url} (its CompleteMultipartUpload may still finish)`);
            cause ??= new Error("the upload is gone but its object did not appear");
          }
        }
      } catch (err) {
        left.push(`multipart upload ${uploadId} of ${url}`);
        if (this.#object === "complete") left.push(url);
        cause ??= err;
      }
    }
    if (mayExist) {
      try {
        await this.#store.delete([this.#key]);
      } catch (err) {
        left.push(url);
        cause ??= err;
      }
    }
    if (left.length > 0) {
      throw new PgError(SqlState.ioError, `could not clean up the upload of ${url}`, {
        detail: `left behind: ${left.join(", ")}`,
        cause,
      });
    }
  }
}
