// S3 requests, retries and errors in the metrics, counted by two middlewares on every S3 client
// the proxy builds: one above the SDK's retry strategy (once per operation: its attempts and how
// it ended) and one below it (once per HTTP attempt: status and time).
//
// This module does not import the registry (./metrics.ts, prom-client): the upload thread adds
// these middlewares to its own clients with a sink that posts the counts to the relay's thread,
// and loads nothing of prom-client (docs/decisions.md, "Peak RSS: malloc arenas and young
// generations").
import type { S3Client } from "@aws-sdk/client-s3";

interface SdkErrorShape {
  name?: string;
  code?: unknown;
  $fault?: string;
  $metadata?: { httpStatusCode?: number; attempts?: number };
  $response?: { statusCode?: number };
}

/** "PutObjectCommand" → "PutObject". */
function operationOf(commandName: string | undefined): string {
  return (commandName ?? "Unknown").replace(/Command$/, "");
}

function statusOf(e: SdkErrorShape | undefined): string {
  const s = e?.$metadata?.httpStatusCode ?? e?.$response?.statusCode;
  if (s !== undefined) return String(s);
  // A cancel stopping a request in flight (an export's parts) is not a failure of S3.
  return e?.name === "AbortError" ? "aborted" : "network";
}

/** S3's error code (SlowDown, NoSuchKey…), else the network's (ECONNRESET) or the SDK's (TimeoutError). */
function codeOf(e: SdkErrorShape | undefined): string {
  const raw =
    e?.$metadata?.httpStatusCode !== undefined ? e.name : typeof e?.code === "string" ? e.code : e?.name;
  // The server chooses S3 codes: keep the label to a sane token.
  const code = (raw ?? "Unknown").replace(/[^A-Za-z0-9_.-]/g, "").slice(0, 64);
  return code === "" || code === "Error" ? "Unknown" : code;
}

/** Where the counts go: this thread's registry, or (the upload thread) a message to the relay's. */
export interface S3MetricsSink {
  /** One HTTP attempt of `op` ended with `status` (an HTTP status, "network" or "aborted"). */
  attempt: (op: string, status: string, seconds: number) => void;
  /** One operation ended after `attempts`, failed with `code` (undefined: it succeeded). */
  operation: (op: string, attempts: number, code: string | undefined) => void;
}

export function addS3Metrics(client: S3Client, sink: S3MetricsSink): void {
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const op = operationOf(context.commandName);
      try {
        const out = await next(args);
        const meta = (out.output as { $metadata?: { attempts?: number } } | undefined)?.$metadata;
        sink.operation(op, meta?.attempts ?? 1, undefined);
        return out;
      } catch (e) {
        const err = e as SdkErrorShape | undefined;
        sink.operation(op, err?.$metadata?.attempts ?? 1, codeOf(err));
        throw e;
      }
    },
    // Above the retry middleware (finalizeRequest): once per operation, with its attempt count.
    { step: "initialize", priority: "high", name: "c2sMetricsOperation" },
  );
  client.middlewareStack.add(
    (next, context) => async (args) => {
      const op = operationOf(context.commandName);
      const began = performance.now();
      try {
        const out = await next(args);
        const status = (out.response as { statusCode?: number } | undefined)?.statusCode;
        sink.attempt(
          op,
          status === undefined ? "network" : String(status),
          (performance.now() - began) / 1000,
        );
        return out;
      } catch (e) {
        sink.attempt(op, statusOf(e as SdkErrorShape | undefined), (performance.now() - began) / 1000);
        throw e;
      }
    },
    // The deserialize step runs once per attempt, below the retry middleware.
    { step: "deserialize", priority: "high", name: "c2sMetricsAttempt" },
  );
}
