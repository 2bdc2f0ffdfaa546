// What the in-process proxy did with CancelRequests (src/metrics/metrics.ts: cancel_requests_total
// by outcome, upstream_cancel_requests_total), read from this process's registry. The proxy counts
// a request before it closes the client's cancel connection (cancel-registry.ts), and counts a
// cancel it sends upstream before the send starts (session-cancel-keys.ts): once sendCancel() has
// returned, the counts say whether the cancel was forwarded, with no wait for its effects.
import { registry } from "../../src/metrics/metrics.js";
import { Samples } from "./prom-text.js";

export interface CancelCounts {
  export: number;
  forwarded: number;
  idle: number;
  unmatched: number;
  /** CancelRequests sent to the upstream, by any path (forwarded ones and an export's own). */
  upstream: number;
}

const P = "copy_to_s3_proxy_";

export async function cancelCounts(): Promise<CancelCounts> {
  const s = new Samples(await registry.metrics());
  const n = (outcome: string) => s.n(`${P}cancel_requests_total`, { outcome });
  return {
    export: n("export"),
    forwarded: n("forwarded"),
    idle: n("idle"),
    unmatched: n("unmatched"),
    upstream: s.n(`${P}upstream_cancel_requests_total`),
  };
}

/** The counts since `before` (field by field). */
export async function cancelsSince(before: CancelCounts): Promise<CancelCounts> {
  const now = await cancelCounts();
  return {
    export: now.export - before.export,
    forwarded: now.forwarded - before.forwarded,
    idle: now.idle - before.idle,
    unmatched: now.unmatched - before.unmatched,
    upstream: now.upstream - before.upstream,
  };
}
