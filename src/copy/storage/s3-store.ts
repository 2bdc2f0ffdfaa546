// S3 (and S3-compatible) object store over the AWS SDK v3 client: listing, small objects,
// deletes, and the multipart uploads of this export (s3-upload.ts writes each one).
import {
  AbortMultipartUploadCommand,
  DeleteObjectCommand,
  DeleteObjectsCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  type S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { PgError, SqlState } from "../../errors.js";
import { contentTypeOf } from "./content-type.js";
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
import { PartBuffers } from "./part-buffers.js";
import { sendWhole } from "./s3-client.js";
import { httpStatus, isNoSuchBucket, s3Error, sanitized } from "./s3-errors.js";
import { S3Upload } from "./s3-upload.js";
import type { PartResult } from "./upload-protocol.js";
import { threadCanSend, type UploadThread, uploadThread } from "./upload-thread.js";

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
  /**
   * UploadParts go out from the process's upload thread (upload-thread.ts) when the client was
   * built by createS3Client (default); false: from this thread, through `client` itself.
   */
  uploadThread?: boolean;
  /** Niceness of the upload thread (exports.workerNice; 0 = the relay's own priority). */
  uploadNice?: number;
}

/** A part's buffer while it may be lent out: `body` is undefined while the upload thread has it. */
export interface HeldPart {
  body: Buffer | undefined;
}

export class S3Store implements ObjectStore {
  readonly location: string;
  readonly client: S3Client;
  readonly bucket: string;
  readonly prefix: string;
  readonly partSize: number;
  readonly partsInFlight: number;
  readonly settleMs: number;
  /** The uploads' part buffers, reused (part-buffers.ts); as many kept free as one upload holds. */
  readonly parts: PartBuffers;
  unknownUploadsPossible = false;
  readonly #threaded: boolean;
  readonly #uploadNice: number;

  constructor(c: S3StoreConfig) {
    this.client = c.client;
    this.#threaded = c.uploadThread !== false && threadCanSend(c.client);
    this.#uploadNice = c.uploadNice ?? 0;
    this.settleMs = c.settleMs ?? 120_000;
    this.bucket = c.bucket;
    this.prefix = c.prefix.replace(/^\/+|\/+$/g, "");
    this.partSize = c.partSize;
    this.partsInFlight = c.partsInFlight;
    this.parts = new PartBuffers(c.partSize, c.partsInFlight + 1);
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

  /**
   * One UploadPart of `held.body`, settled (its request ended) when this settles. From the upload
   * thread, the buffer is lent there (held.body undefined meanwhile) and comes back with the
   * answer; a thread that died keeps it. The SDK's errors come back as the same errors.
   */
  async sendPart(
    key: string,
    uploadId: string,
    partNumber: number,
    held: HeldPart,
    signal: AbortSignal,
  ): Promise<Omit<PartResult, "threadId">> {
    const body = held.body!;
    const Key = this.fullKey(key);
    if (!this.#threaded) {
      return this.client.send(
        new UploadPartCommand({
          Bucket: this.bucket,
          Key,
          UploadId: uploadId,
          PartNumber: partNumber,
          Body: body,
          ContentLength: body.length,
        }),
        { abortSignal: signal },
      );
    }
    let thread: UploadThread;
    try {
      thread = uploadThread(this.#uploadNice);
    } catch (err) {
      throw new PgError(SqlState.internalError, "could not start the S3 upload thread", { cause: err });
    }
    held.body = undefined;
    try {
      const r = await thread.send(
        this.client,
        { bucket: this.bucket, key: Key, uploadId, partNumber },
        body,
        signal,
      );
      held.body = r.body;
      return r.result;
    } catch (e) {
      const { error, body: back } = e as { error: unknown; body: Buffer | undefined };
      held.body = back;
      throw error;
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
