// The messages between the relay's thread and the S3 upload thread (upload-thread.ts,
// upload-worker.ts). Part bodies travel as transferred ArrayBuffers, there and back; credentials
// travel only as an answer to the thread's own request, and errors only as the fields s3-errors.ts
// reads (never the SDK's raw HTTP exchange, which holds the Authorization header).

/** What the thread needs to build a client like the relay's (createS3Client), without credentials. */
export interface ThreadClientSettings {
  endpoint?: string | undefined;
  region?: string | undefined;
  maxAttempts: number;
  retryMode?: "standard" | "adaptive" | undefined;
  requestTimeoutMs: number;
}

export interface PartRequest {
  bucket: string;
  key: string;
  uploadId: string;
  partNumber: number;
}

/** An UploadPart's answer: the ETag and checksums Complete needs. */
export interface PartResult {
  ETag?: string | undefined;
  ChecksumCRC32?: string | undefined;
  ChecksumCRC32C?: string | undefined;
  ChecksumCRC64NVME?: string | undefined;
  ChecksumSHA1?: string | undefined;
  ChecksumSHA256?: string | undefined;
  /** The thread the request ran on (for tests and the record). */
  threadId: number;
}

/** An SDK failure as s3-errors.ts and the metrics read it. */
export interface WireS3Error {
  name: string;
  message: string;
  code?: string | undefined;
  /** An S3ServiceException (the server's error code in `name`). */
  service: boolean;
  fault?: "client" | "server" | undefined;
  httpStatusCode?: number | undefined;
  requestId?: string | undefined;
  attempts?: number | undefined;
}

export interface WireCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string | undefined;
  expiration?: Date | undefined;
}

export type ToUploadThread =
  | { t: "client"; client: number; settings: ThreadClientSettings }
  | { t: "drop"; client: number }
  | {
      t: "part";
      req: number;
      client: number;
      part: PartRequest;
      buf: ArrayBuffer;
      offset: number;
      length: number;
    }
  | { t: "cancel"; req: number }
  | { t: "credentials"; ask: number; credentials?: WireCredentials; error?: WireS3Error };

export type FromUploadThread =
  | { t: "settled"; req: number; buf: ArrayBuffer; result?: PartResult; error?: WireS3Error }
  | { t: "credentials"; ask: number; client: number }
  | { t: "attempt"; op: string; status: string; seconds: number }
  | { t: "operation"; op: string; attempts: number; code: string | undefined };

export interface UploadWorkerData {
  /** Niceness the thread lowers itself to (exports.workerNice). */
  nice: number;
}

/** The fields of an SDK (or network) error that s3-errors.ts and the metrics use. */
export function toWireS3Error(err: unknown, service: boolean): WireS3Error {
  const e = (err ?? {}) as {
    name?: unknown;
    message?: unknown;
    code?: unknown;
    $fault?: unknown;
    $metadata?: { httpStatusCode?: number; requestId?: string; attempts?: number };
  };
  return {
    name: typeof e.name === "string" ? e.name : "Error",
    message: typeof e.message === "string" ? e.message : String(err),
    code: typeof e.code === "string" ? e.code : undefined,
    service,
    fault: e.$fault === "client" || e.$fault === "server" ? e.$fault : undefined,
    httpStatusCode: e.$metadata?.httpStatusCode,
    requestId: e.$metadata?.requestId,
    attempts: e.$metadata?.attempts,
  };
}
