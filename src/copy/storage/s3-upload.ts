// One object written to S3 (or an S3-compatible server): PutObject when it fits in one part, else
// a multipart upload.
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

import {
  type CompletedPart,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  PutObjectCommand,
} from "@aws-sdk/client-s3";
import { PgError, SqlState } from "../../errors.js";
import { contentTypeOf } from "./content-type.js";
import { abortError, MAX_PARTS, type ObjectUpload, toBuffer, withCleanupFailure } from "./object-store.js";
import { sendWhole } from "./s3-client.js";
import { httpStatus, isNoSuchUpload, s3Error } from "./s3-errors.js";
import type { HeldPart, S3Store } from "./s3-store.js";

type Checksums = Pick<
  CompletedPart,
  "ChecksumCRC32" | "ChecksumCRC32C" | "ChecksumCRC64NVME" | "ChecksumSHA1" | "ChecksumSHA256"
>;

/**
 * Tests only: told when full parts are left waiting because every one of partsInFlight slots is
 * taken, with the parts then in flight: that the bound holds is then a fact, not a lack of parts.
 */
export const s3UploadTestHooks: { waitingForSlot?: (partsInFlight: number) => void } = {};

export class S3Upload implements ObjectUpload {
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

  write(chunk: Uint8Array, release?: () => void): boolean {
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
        this.#cur = this.#store.parts.take();
        this.#curLen = 0;
      }
      const n = src.copy(this.#cur, this.#curLen, off);
      this.#curLen += n;
      off += n;
    }
    this.#bytes += src.length;
    release?.(); // copied into the part
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
        const part = this.#cur;
        const body = part === undefined ? Buffer.alloc(0) : part.subarray(0, this.#curLen);
        this.#cur = undefined;
        this.#curLen = 0;
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
        if (part !== undefined) {
          const give = () => this.#store.parts.give(part);
          this.#objectOp.then(give, give);
        }
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
    const waiting = s3UploadTestHooks.waitingForSlot;
    if (waiting !== undefined && this.#inflight.size >= this.#store.partsInFlight && this.#blocked())
      waiting(this.#inflight.size);
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
        new PgError(SqlState.programLimitExceeded, `object would need more than ${MAX_PARTS} parts`, {
          detail: this.#store.url(this.#key),
          hint: "Raise the part size.",
        }),
      );
      return;
    }
    const length = body.length;
    this.#inflightBytes += length;
    const created = this.#ensureCreated();
    /** The part's buffer, while this thread has it (not while the upload thread does). */
    const held: HeldPart = { body };
    const p = (async () => {
      const UploadId = await created;
      const out = await this.#store.call("UploadPart", this.#key, this.#opSignal, () =>
        this.#store.sendPart(this.#key, UploadId, PartNumber, held, this.#opSignal),
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
        this.#inflightBytes -= length;
        if (held.body !== undefined) this.#store.parts.give(held.body); // no request reads it any more
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
    // Parts not yet sent: no request has them.
    for (const b of [...this.#full, ...(this.#cur === undefined ? [] : [this.#cur])])
      this.#store.parts.give(b);
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
