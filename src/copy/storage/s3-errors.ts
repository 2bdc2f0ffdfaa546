// S3 failures as the client sees them (58030 naming the S3 operation, never a credential) and the
// questions the store asks of a failure (no such bucket, no such upload, the HTTP status).
import { S3ServiceException } from "@aws-sdk/client-s3";
import { PgError, SqlState } from "../../errors.js";
import { abortError } from "./object-store.js";

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
export function sanitized(err: unknown, code: string | undefined, status: number | undefined): Error {
  const e = new Error(err instanceof Error ? err.message : String(err));
  e.name = code ?? (err instanceof Error ? err.name : "Error");
  return Object.assign(e, { code, httpStatusCode: status });
}

export function isNoSuchBucket(err: unknown): boolean {
  const e = err instanceof PgError ? err.cause : err;
  return (e as { name?: string } | null)?.name === "NoSuchBucket";
}

export function httpStatus(err: unknown): number | undefined {
  const e = err as { $metadata?: { httpStatusCode?: number }; httpStatusCode?: number } | null | undefined;
  return e?.$metadata?.httpStatusCode ?? e?.httpStatusCode;
}

export function isNoSuchUpload(err: unknown): boolean {
  const e = err instanceof PgError ? err.cause : err;
  return (e as { name?: string } | null)?.name === "NoSuchUpload" || httpStatus(e) === 404;
}
