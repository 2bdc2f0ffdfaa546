// The S3 client as the relay's thread uses it: ./s3-client-core.ts's client (retries, timeouts,
// checksums, the request middleware) counted in this thread's metrics registry, and sending a
// command whose effect outlives its request without cutting an attempt short.
import type { S3Client } from "@aws-sdk/client-s3";
import { s3Attempt, s3Operation } from "../../metrics/metrics.js";
import type { S3MetricsSink } from "../../metrics/s3-metrics.js";
import { buildS3Client, type S3ClientSettings as CoreSettings } from "./s3-client-core.js";

export { threadSettingsOf } from "./s3-client-core.js";

/** createS3Client's settings; `metrics` defaults to this thread's registry (the relay's). */
export type S3ClientSettings = Omit<CoreSettings, "metrics"> & { metrics?: S3MetricsSink | undefined };

/** The relay's S3 metrics: the process's registry (src/metrics/metrics.ts). */
const registry: S3MetricsSink = { attempt: s3Attempt, operation: s3Operation };

export function createS3Client(s: S3ClientSettings): S3Client {
  return buildS3Client({ ...s, metrics: s.metrics ?? registry });
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
