// One typed configuration object: CLI flags > environment variables > config file > defaults,
// validated once at start so a bad setting fails before the proxy listens.
// This module is the configuration's shape and the one place the rest of the code imports it from;
// the table of settings (flags, variables, keys, defaults, --help) is config-settings.ts, reading
// and validating them is config-load.ts.

export {
  CLI_OPTIONS,
  ConfigError,
  loadConfig,
  type ParsedCli,
  parseHostPort,
  type SettingsRead,
  settingsRead,
  uploadMemoryBound,
} from "./config-load.js";
export {
  autoEncoderThreads,
  autoMaxEncodingThreads,
  DEFAULT_EXPORT_LIMITS,
  HELP,
  SETTINGS,
  type SettingHelp,
} from "./config-settings.js";

export type UpstreamTlsMode = "disable" | "prefer" | "require" | "verify-ca" | "verify-full";
export type ClientTlsMode = "allow" | "require";
export type UpstreamKind = "auto" | "postgres" | "materialize";
export type LogLevel = "fatal" | "error" | "warn" | "info" | "debug" | "trace" | "silent";

export interface HostPort {
  host: string;
  port: number;
}

export interface ExportLimits {
  /** Exports running at once in this proxy; more wait up to `queueTimeoutMs`, then get 53300. */
  maxConcurrentExports: number;
  /** Exports one user may run (or wait for) at once; more get 53300 at once. */
  maxExportsPerUser: number;
  queueTimeoutMs: number;
  /** Multipart part size in bytes (S3 minimum 5 MiB). */
  partSize: number;
  /** Parts uploading at once per file. */
  partsInFlight: number;
  /** Interval between progress notices. */
  progressIntervalMs: number;
  /** How often a running export re-writes its sentinel (cleanup's default --older-than is 3×). */
  sentinelRefreshMs: number;
  /** Finished files whose last parts and CompleteMultipartUpload run while the next file fills. */
  filesCompleting: number;
  /**
   * Upper bound on one export's upload buffers, checked at start against
   * partSize × (partsInFlight + 1) × (filesCompleting + 1); undefined = not checked.
   */
  maxMemoryPerExport: number | undefined;
  /**
   * Largest row (DataRow message) an export accepts: a row is held whole while it is encoded, so
   * this bounds an export's memory for one huge value; larger rows fail the export with 54000.
   */
  maxRowBytes: number;
  /** Attempts per S3 request (the SDK retry strategy, with exponential backoff and jitter). */
  s3MaxAttempts: number;
  /** The SDK retry strategy: "standard", or "adaptive" (also rate-limits when throttled). */
  s3RetryMode: "standard" | "adaptive";
  /** Socket idle timeout of one S3 request; a stalled request fails and is retried. */
  s3RequestTimeoutMs: number;
  /**
   * While the snapshot is read: how long neither a row may arrive nor the paused row stream be
   * let go again before the export is cancelled (57014); 0 = never.
   */
  stallTimeoutMs: number;
  /**
   * Niceness of each export's encoder thread (0–19; Linux applies it to that thread only), so the
   * relay's thread wins the CPU over the rows an export encodes.
   */
  workerNice: number;
  /**
   * Encoder threads per export (Materialize's output batches): each encodes its share of the rows
   * into files of its own, `mz-<id>-batch-<BBBB>-<NNNN>`. "auto" in the config file is resolved at
   * start (autoEncoderThreads).
   */
  encoderThreads: number;
  /**
   * "idle": each encoder thread also moves itself to Linux's SCHED_IDLE class (it runs only on CPU
   * time no ordinary thread wants); "nice": its niceness alone (docs/isolation.md).
   */
  workerPolicy: "idle" | "nice";
  /**
   * Where the encoder threads run: "thread", in the proxy's process; "process", in one child
   * process of the proxy (its encoder host), lowered as a whole and in a scheduling group of its
   * own (docs/isolation.md, "Encoders in a process of their own").
   */
  encoderHost: "thread" | "process";
  /**
   * What the proxy prepares in the background once it listens, so that its first export does not
   * pay it (src/encoders/worker/encoder-warm-up.ts; docs/decisions.md "The first export of a
   * proxy"): "compile" parquet-wasm (and, before it listens, the COPY statement parser:
   * src/copy/sql-tokens.ts); "thread" also the spare encoder thread, warmed by a small synthetic
   * export; "none" nothing.
   */
  warmUp: "none" | "compile" | "thread";
  /**
   * At most this many encoder threads of the process encode at the same time (a slot per batch
   * of rows; the others wait with their export's upstream paused); 0 = no limit. "auto" in the
   * config file: one less than the cores, at least 1 (autoMaxEncodingThreads; docs/isolation.md).
   */
  maxEncodingThreads: number;
}

export interface Config {
  listen: HostPort;
  upstream: HostPort;
  upstreamTls: UpstreamTlsMode;
  upstreamCaFile: string | undefined;
  upstreamKind: UpstreamKind;
  tlsCertFile: string | undefined;
  tlsKeyFile: string | undefined;
  /** "require": a client must use TLS (PgBouncer's client_tls_sslmode = require). */
  clientTls: ClientTlsMode;
  /** A client that has not logged in after this long is disconnected (0 = never). */
  loginTimeoutMs: number;
  /** Client connections logging in or logged in at once; more are refused (PgBouncer's max_client_conn). */
  maxClientConnections: number;
  /** file:// COPY targets are allowed only below this directory; undefined = not at all. */
  fileRoot: string | undefined;
  logLevel: LogLevel;
  /** Where /metrics, /healthz and /readyz are served (src/metrics/admin-server.ts); undefined = nowhere. */
  adminListen: HostPort | undefined;
  drainTimeoutMs: number;
  cancelTimeoutMs: number;
  connectTimeoutMs: number;
  exports: ExportLimits;
  /** The raw `connections` section of the config file (validated by src/copy/connections.ts). */
  connections: unknown;
  /** The raw `jobs` section: scheduled snapshots (validated by src/schedule/jobs.ts). */
  jobs: unknown;
  /** How Materialize catalog connections map to the proxy's identity (src/copy/catalog-policy.ts). */
  catalogConnections: { identity: string | undefined; externalIdPrefix: string | undefined };
}
