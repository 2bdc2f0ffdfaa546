// The S3 client as exports build it, without the process's metrics registry: the retries,
// timeouts and checksums for AWS and for S3-compatible servers, and the request middleware
// (unsigned payloads over TLS, payload hashes off the relay's thread otherwise, Content-MD5 on
// DeleteObjects). The upload thread builds its clients here: nothing in this module's imports
// loads prom-client, whose registry lives on the relay's thread (./s3-client.ts adds it there;
// docs/decisions.md, "Peak RSS: malloc arenas and young generations").
import { createHash, webcrypto } from "node:crypto";
import { S3Client, type S3ClientConfig } from "@aws-sdk/client-s3";
import { addS3Metrics, type S3MetricsSink } from "../../metrics/s3-metrics.js";
import type { ThreadClientSettings } from "./upload-protocol.js";

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
  /** Where the client's request counts go (./s3-client.ts: the relay's registry by default). */
  metrics: S3MetricsSink;
  /**
   * Signed bodies are hashed on the calling thread, in place, instead of by WebCrypto: for the
   * upload thread's clients, which are off the relay's thread already. WebCrypto copies every
   * body into fresh native memory first, and the upload thread kept those copies resident
   * (docs/decisions.md, "S3 part uploads off the relay's thread").
   */
  hashInPlace?: boolean | undefined;
}

/** How each client createS3Client built was configured, so the upload thread can build its twin. */
const settingsOf = new WeakMap<S3Client, ThreadClientSettings>();

/** The settings (not the credentials) of a client createS3Client built; undefined for any other. */
export function threadSettingsOf(client: S3Client): ThreadClientSettings | undefined {
  return settingsOf.get(client);
}

/** Smaller bodies are hashed by the signer, on the calling thread: a thread-pool round trip costs more. */
const OFF_THREAD_HASH_BYTES = 64 * 1024;

export function buildS3Client(s: S3ClientSettings): S3Client {
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
  settingsOf.set(client, {
    endpoint: s.endpoint,
    region: s.region,
    maxAttempts: s.maxAttempts,
    retryMode: s.retryMode,
    requestTimeoutMs: s.requestTimeoutMs,
  });
  addS3Metrics(client, s.metrics);
  // SigV4 hashes every part with SHA-256 unless the payload is declared unsigned (5-11% of the
  // proxy's CPU on an export). Over TLS, with a CRC32 checksum on the part (AWS: WHEN_SUPPORTED
  // above), that hash protects nothing more, and the AWS CLI (botocore) sends UNSIGNED-PAYLOAD in
  // exactly this case. Without TLS, or without a checksum, the body stays signed.
  //
  // Where the body stays signed, its SHA-256 is computed by WebCrypto, which hashes on libuv's
  // thread pool, and set as x-amz-content-sha256, which the signer then uses as it is: the relay's
  // thread only copies the part for the pool (0.13 against 0.6 ms of its CPU per MiB). The upload
  // thread's clients (hashInPlace) hash the body where it is, with no copy. The header is set once
  // per send, before the retry middleware, and every attempt sends the same body.
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const req = args.request as { protocol?: string; headers?: Record<string, string>; body?: unknown };
      if (
        (context.commandName === "UploadPartCommand" || context.commandName === "PutObjectCommand") &&
        req.headers !== undefined
      ) {
        const names = Object.keys(req.headers).map((h) => h.toLowerCase());
        if (req.protocol === "https:" && names.some((h) => h.startsWith("x-amz-checksum-"))) {
          req.headers["x-amz-content-sha256"] = "UNSIGNED-PAYLOAD";
        } else if (
          req.body instanceof Uint8Array &&
          req.body.length >= OFF_THREAD_HASH_BYTES &&
          !names.includes("x-amz-content-sha256")
        ) {
          req.headers["x-amz-content-sha256"] = s.hashInPlace
            ? createHash("sha256").update(req.body).digest("hex")
            : Buffer.from(await webcrypto.subtle.digest("SHA-256", req.body)).toString("hex");
        }
      }
      return next(args);
    },
    // Late in the build step: after the checksum middleware, before signing (finalizeRequest).
    { step: "build", priority: "low", name: "c2sPayloadHash" },
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
