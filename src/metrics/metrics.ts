// The proxy's Prometheus metrics (docs/metrics.md): one registry for the process, and one small
// function per event for the hooks in the proxy, the export, the S3 client and the scheduler.
// Counting is always on (an increment per session, per export, per S3 request: nothing per row);
// the admin listener only serves it. Labels take values from small fixed sets (format, outcome,
// SQLSTATE, S3 operation and status, job names from the config): never users, targets or keys.
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from "prom-client";

export const registry = new Registry();
const registers = [registry];
const P = "copy_to_s3_proxy_";

// ---- client sessions ----------------------------------------------------------------------------

/** Bytes on the wire of a session's two legs so far. */
export interface Traffic {
  fromClient: number;
  toClient: number;
  fromUpstream: number;
  toUpstream: number;
}
/** Sessions open now; their traffic is read at each scrape, a closed one's is added to `closed`. */
const live = new Set<{ readonly traffic: Traffic }>();
const closed: Traffic = { fromClient: 0, toClient: 0, fromUpstream: 0, toUpstream: 0 };

function trafficNow(): Traffic {
  const t = { ...closed };
  for (const s of live) {
    const x = s.traffic;
    t.fromClient += x.fromClient;
    t.toClient += x.toClient;
    t.fromUpstream += x.fromUpstream;
    t.toUpstream += x.toUpstream;
  }
  return t;
}

new Gauge({
  name: `${P}client_sessions`,
  help: "Client sessions open now (logged in or logging in, past their StartupMessage).",
  registers,
  collect() {
    this.set(live.size);
  },
});
// PgBouncer's SHOW STATS total_received / total_sent, and the same for the upstream leg (which
// also carries the rows of exports). Read from the sockets' own counters: nothing per read.
new Counter({
  name: `${P}received_bytes_total`,
  help: "Bytes received from clients (peer=client) and from the upstream database (peer=upstream), on the wire.",
  labelNames: ["peer"] as const,
  registers,
  collect() {
    const t = trafficNow();
    this.reset();
    this.inc({ peer: "client" }, t.fromClient);
    this.inc({ peer: "upstream" }, t.fromUpstream);
  },
});
new Counter({
  name: `${P}sent_bytes_total`,
  help: "Bytes sent to clients (peer=client) and to the upstream database (peer=upstream), on the wire.",
  labelNames: ["peer"] as const,
  registers,
  collect() {
    const t = trafficNow();
    this.reset();
    this.inc({ peer: "client" }, t.toClient);
    this.inc({ peer: "upstream" }, t.toUpstream);
  },
});
const sessionsTotal = new Counter({
  name: `${P}client_sessions_total`,
  help: "Client sessions opened (an upstream leg was connected for them).",
  registers,
});
/** Why a client connection was refused before it had a session. */
export type RefusalReason =
  | "max_client_conn"
  | "too_many_connecting"
  | "shutting_down"
  | "ssl_required"
  | "protocol"
  | "upstream_unavailable";
const refused = new Counter({
  name: `${P}client_connections_refused_total`,
  help: "Client connections refused before a session started, by reason.",
  labelNames: ["reason"] as const,
  registers,
});

// Known label values start at 0, so that rate() and increase() see their first event.
for (const reason of [
  "max_client_conn",
  "too_many_connecting",
  "shutting_down",
  "ssl_required",
  "protocol",
  "upstream_unavailable",
] satisfies RefusalReason[])
  refused.inc({ reason }, 0);

export function sessionOpened(s: { readonly traffic: Traffic }): void {
  sessionsTotal.inc();
  live.add(s);
}
export function sessionClosed(s: { readonly traffic: Traffic }): void {
  if (!live.delete(s)) return;
  const x = s.traffic;
  closed.fromClient += x.fromClient;
  closed.toClient += x.toClient;
  closed.fromUpstream += x.fromUpstream;
  closed.toUpstream += x.toUpstream;
}

/** A socket's byte counters (Node keeps them per handle; a plain Duplex has none). */
export function trafficOf(client: unknown, upstream: unknown): Traffic {
  const c = client as { bytesRead?: number; bytesWritten?: number };
  const u = upstream as { bytesRead?: number; bytesWritten?: number };
  return {
    fromClient: c.bytesRead ?? 0,
    toClient: c.bytesWritten ?? 0,
    fromUpstream: u.bytesRead ?? 0,
    toUpstream: u.bytesWritten ?? 0,
  };
}
export function clientRefused(reason: RefusalReason): void {
  refused.inc({ reason });
}

// ---- upstream -----------------------------------------------------------------------------------

const upstreamFailures = new Counter({
  name: `${P}upstream_connect_failures_total`,
  help: "Connections to the upstream database that failed, by step (connect: TCP or timeout; tls: the SSLRequest and TLS handshake).",
  labelNames: ["step"] as const,
  registers,
});
upstreamFailures.inc({ step: "connect" }, 0);
upstreamFailures.inc({ step: "tls" }, 0);
export function upstreamConnectFailed(step: "connect" | "tls"): void {
  upstreamFailures.inc({ step });
}

// ---- cancel requests ----------------------------------------------------------------------------

/**
 * What a client's CancelRequest reached: its session's export (stopped by the proxy), a statement
 * running on the upstream (forwarded with the upstream's key), nothing (the session was idle: dropped,
 * as PostgreSQL drops a cancel for an idle backend), or no session (unknown key or wrong secret).
 */
export type CancelOutcome = "export" | "forwarded" | "idle" | "unmatched";
const cancelRequests = new Counter({
  name: `${P}cancel_requests_total`,
  help: "CancelRequests from clients, by what they reached: export (the proxy stopped the session's export), forwarded (a statement ran: sent to the upstream), idle (nothing ran: dropped), unmatched (no session has the key).",
  labelNames: ["outcome"] as const,
  registers,
});
for (const outcome of ["export", "forwarded", "idle", "unmatched"] satisfies CancelOutcome[])
  cancelRequests.inc({ outcome }, 0);
// Counted where the request is sent, apart from the decision above: each one costs the upstream a
// connection (a fork in PostgreSQL), and a cancel forwarded by any path shows here.
const upstreamCancels = new Counter({
  name: `${P}upstream_cancel_requests_total`,
  help: "CancelRequests the proxy sent to the upstream: clients' forwarded ones, and those an export sends to stop its own statement.",
  registers,
});

/** Counted once per CancelRequest, when the proxy decides what it does (cancel-registry.ts). */
export function cancelRequest(outcome: CancelOutcome): void {
  cancelRequests.inc({ outcome });
}
/** Counted when a CancelRequest to the upstream is about to be sent (session-cancel-keys.ts). */
export function upstreamCancelSent(): void {
  upstreamCancels.inc();
}

// ---- exports ------------------------------------------------------------------------------------

const exportsRunning = new Gauge({
  name: `${P}exports_running`,
  help: "COPY ... TO exports running now (past the export queue).",
  registers,
});
const exportsFinished = new Counter({
  name: `${P}exports_finished_total`,
  help: 'Exports that ended, by outcome (completed, cancelled, failed) and SQLSTATE ("" when completed).',
  labelNames: ["outcome", "sqlstate"] as const,
  registers,
});
const rowsExported = new Counter({
  name: `${P}exported_rows_total`,
  help: "Rows written by completed exports, by format.",
  labelNames: ["format"] as const,
  registers,
});
const bytesExported = new Counter({
  name: `${P}exported_bytes_total`,
  help: "Bytes of data files written by completed exports (after compression), by format.",
  labelNames: ["format"] as const,
  registers,
});
const exportDuration = new Histogram({
  name: `${P}export_duration_seconds`,
  help: "Time from an export's start (past the queue) to its end, by outcome.",
  labelNames: ["outcome"] as const,
  buckets: [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600, 4 * 3600],
  registers,
});
const queueWait = new Histogram({
  name: `${P}export_queue_wait_seconds`,
  help: "Time an export waited for a free slot (0 when one was free), for exports that got one.",
  buckets: [0.001, 0.1, 1, 5, 15, 60, 300],
  registers,
});
const exportsRefused = new Counter({
  name: `${P}exports_refused_total`,
  help: "Exports refused with 53300 by --max-exports / --max-exports-per-user (at once, or after exports.queueTimeoutMs).",
  registers,
});

exportsFinished.inc({ outcome: "completed", sqlstate: "" }, 0);

export type ExportOutcome = "completed" | "cancelled" | "failed";

export function exportStarted(): void {
  exportsRunning.inc();
}

export function exportEnded(
  outcome: ExportOutcome,
  sqlstate: string,
  format: string,
  totals: { rows: number; bytes: number },
  seconds: number,
): void {
  exportsRunning.dec();
  exportsFinished.inc({ outcome, sqlstate });
  exportDuration.observe({ outcome }, seconds);
  if (outcome === "completed") {
    rowsExported.inc({ format }, totals.rows);
    bytesExported.inc({ format }, totals.bytes);
  }
}

export function exportQueued(seconds: number): void {
  queueWait.observe(seconds);
}
export function exportRefused(): void {
  exportsRefused.inc();
}

// ---- S3 ------------------------------------------------------------------------------------------

const s3Requests = new Counter({
  name: `${P}s3_requests_total`,
  help: 'HTTP requests to S3 (every attempt), by operation and HTTP status ("network" when no answer came).',
  labelNames: ["operation", "status"] as const,
  registers,
});
const s3RequestDuration = new Histogram({
  name: `${P}s3_request_duration_seconds`,
  help: "Time of one HTTP request to S3 (one attempt), by operation.",
  labelNames: ["operation"] as const,
  buckets: [0.005, 0.025, 0.1, 0.25, 1, 2.5, 10, 30, 120],
  registers,
});
const s3Retries = new Counter({
  name: `${P}s3_retries_total`,
  help: "S3 requests the SDK's retry strategy sent again, by operation.",
  labelNames: ["operation"] as const,
  registers,
});
const s3Errors = new Counter({
  name: `${P}s3_errors_total`,
  help: "S3 operations that failed after their retries, by operation and error code (S3's code, or the network error's).",
  labelNames: ["operation", "code"] as const,
  registers,
});

export function s3Attempt(operation: string, status: string, seconds: number): void {
  s3Requests.inc({ operation, status });
  s3RequestDuration.observe({ operation }, seconds);
}
export function s3Operation(operation: string, attempts: number, errorCode: string | undefined): void {
  if (attempts > 1) s3Retries.inc({ operation }, attempts - 1);
  if (errorCode !== undefined) s3Errors.inc({ operation, code: errorCode });
}

// ---- the process ---------------------------------------------------------------------------------

let defaults = false;
/** Node's and the process's own metrics (CPU, memory, event loop lag, GC), under their usual names. */
export function collectProcessMetrics(): void {
  if (defaults) return;
  defaults = true;
  collectDefaultMetrics({ register: registry });
}
