// Every setting in one table: its flag, environment variable, config file key, default and an
// example, as --help prints them; and the default values loadConfig falls back to.
import { availableParallelism } from "node:os";
import type { ExportLimits } from "./config.js";

/**
 * `exports.encoderThreads: "auto"`: 2 from 4 cores on, else 1. An export needs a core for the
 * relay and one for its PostgreSQL backend beside its encoders, and that single backend is the
 * ceiling a second thread already reaches (docs/decisions.md, "Several encoder threads"): a third
 * only holds memory.
 */
export function autoEncoderThreads(cores: number): number {
  return cores >= 4 ? 2 : 1;
}

/** `exports.maxEncodingThreads: "auto"`: every core but one, which is left to the relay (and the
 * upstream's backends and the clients), and at least 1. */
export function autoMaxEncodingThreads(cores: number): number {
  return Math.max(1, cores - 1);
}

/**
 * Every setting, as `--help` prints it: flag (if any), environment variable (if any), config file
 * key, default and an example. A test checks that every flag, variable and key loadConfig reads
 * is listed here.
 */
export interface SettingHelp {
  flag?: string;
  env?: string;
  key: string;
  default: string;
  example: string;
  meaning: string;
}

export const SETTINGS: readonly SettingHelp[] = [
  {
    flag: "--listen HOST:PORT",
    env: "C2S_LISTEN",
    key: "listen",
    default: "127.0.0.1:6877",
    example: "--listen 0.0.0.0:6877",
    meaning: "address to accept clients on",
  },
  {
    flag: "--upstream URL|HOST[:PORT]",
    env: "C2S_UPSTREAM",
    key: "upstream",
    default: "none: an embedded demo database",
    example: "--upstream 'postgres://mz.internal:6875?sslmode=require'",
    meaning:
      "Materialize or PostgreSQL to forward to (no port: 5432; sslmode and sslrootcert are read from a URL, users, passwords and databases come from each client)",
  },
  {
    flag: "--upstream-tls MODE",
    env: "C2S_UPSTREAM_TLS",
    key: "upstreamTls",
    default: "prefer",
    example: "--upstream-tls verify-full",
    meaning: "disable | prefer | require | verify-ca | verify-full (libpq's meanings)",
  },
  {
    flag: "--upstream-ca FILE",
    env: "C2S_UPSTREAM_CA",
    key: "upstreamCaFile",
    default: "the system's roots",
    example: "--upstream-ca /etc/ssl/mz-ca.pem",
    meaning: "CA bundle to verify the upstream's certificate",
  },
  {
    flag: "--upstream-kind KIND",
    env: "C2S_UPSTREAM_KIND",
    key: "upstreamKind",
    default: "auto (detected per session)",
    example: "--upstream-kind materialize",
    meaning: "auto | postgres | materialize",
  },
  {
    flag: "--tls-cert FILE",
    env: "C2S_TLS_CERT",
    key: "tlsCertFile",
    default: "none",
    example: "--tls-cert server.crt --tls-key server.key",
    meaning: "certificate for the client leg; with --tls-key, SSLRequest is answered 'S' (else 'N')",
  },
  {
    flag: "--tls-key FILE",
    env: "C2S_TLS_KEY",
    key: "tlsKeyFile",
    default: "none",
    example: "--tls-key server.key",
    meaning: "private key for --tls-cert",
  },
  {
    flag: "--client-tls MODE",
    env: "C2S_CLIENT_TLS",
    key: "clientTls",
    default: "allow",
    example: "--client-tls require",
    meaning: "allow | require (require: refuse clients without TLS; needs --tls-cert and --tls-key)",
  },
  {
    flag: "--login-timeout MS",
    env: "C2S_LOGIN_TIMEOUT",
    key: "loginTimeoutMs",
    default: "60000 (0 = never)",
    example: "--login-timeout 30000",
    meaning: "disconnect clients not logged in after MS",
  },
  {
    flag: "--max-client-conn N",
    env: "C2S_MAX_CLIENT_CONN",
    key: "maxClientConnections",
    default: "100",
    example: "--max-client-conn 500",
    meaning: "clients logging in or logged in at once; more are refused",
  },
  {
    flag: "--file-root DIR",
    env: "C2S_FILE_ROOT",
    key: "fileRoot",
    default: "none: file:// refused (the demo: ./exports)",
    example: "--file-root /srv/exports",
    meaning: "allow file:///... COPY targets below DIR",
  },
  {
    flag: "--max-exports N",
    env: "C2S_MAX_EXPORTS",
    key: "exports.maxConcurrentExports",
    default: "4",
    example: "--max-exports 8",
    meaning: "exports at once; more get 53300 (the top-level key maxConcurrentExports works too)",
  },
  {
    flag: "--max-exports-per-user N",
    env: "C2S_MAX_EXPORTS_PER_USER",
    key: "exports.maxExportsPerUser",
    default: "half of --max-exports, rounded up",
    example: "--max-exports-per-user 1",
    meaning:
      "exports one user may run or wait for at once; more get 53300 (the top-level key maxExportsPerUser works too)",
  },
  {
    flag: "--stall-timeout MS",
    env: "C2S_STALL_TIMEOUT",
    key: "exports.stallTimeoutMs",
    default: "600000 (0 = never)",
    example: "--stall-timeout 120000",
    meaning:
      "cancel an export whose snapshot read makes no progress this long (the top-level key stallTimeoutMs works too)",
  },
  {
    flag: "--drain-timeout MS",
    env: "C2S_DRAIN_TIMEOUT",
    key: "drainTimeoutMs",
    default: "30000",
    example: "--drain-timeout 60000",
    meaning: "on SIGTERM/SIGINT, how long sessions and exports get to finish",
  },
  {
    flag: "--log-level LEVEL",
    env: "C2S_LOG_LEVEL",
    key: "logLevel",
    default: "info",
    example: "--log-level debug",
    meaning: "fatal | error | warn | info | debug | trace | silent (JSON lines on stdout)",
  },
  {
    flag: "--admin-listen HOST:PORT",
    env: "C2S_ADMIN_LISTEN",
    key: "adminListen",
    default: "none: no admin listener (the Docker image: 0.0.0.0:6879)",
    example: "--admin-listen 127.0.0.1:6879",
    meaning: "serve GET /metrics (Prometheus), /healthz and /readyz over HTTP here (docs/metrics.md)",
  },
  {
    flag: "--config FILE",
    env: "C2S_CONFIG",
    key: "(none)",
    default: "none",
    example: "--config proxy.json",
    meaning: "a JSON file with any key of this list; unknown keys are refused",
  },
  {
    key: "cancelTimeoutMs",
    default: "5000",
    example: '"cancelTimeoutMs": 2000',
    meaning: "how long a cancel request to the upstream may take",
  },
  {
    key: "connectTimeoutMs",
    default: "10000",
    example: '"connectTimeoutMs": 3000',
    meaning: "how long connecting to the upstream may take",
  },
  {
    key: "exports.queueTimeoutMs",
    default: "0 (refused at once)",
    example: '"exports": { "queueTimeoutMs": 30000 }',
    meaning: "how long an export waits for a free slot before 53300",
  },
  {
    key: "exports.partSize",
    default: "8388608 (8 MiB)",
    example: '"exports": { "partSize": 16777216 }',
    meaning: "multipart part size in bytes (at least 5 MiB)",
  },
  {
    key: "exports.partsInFlight",
    default: "4",
    example: '"exports": { "partsInFlight": 8 }',
    meaning: "parts uploading at once per file",
  },
  {
    key: "exports.progressIntervalMs",
    default: "2000",
    example: '"exports": { "progressIntervalMs": 5000 }',
    meaning: "interval of the progress NOTICEs",
  },
  {
    key: "exports.sentinelRefreshMs",
    default: "300000",
    example: '"exports": { "sentinelRefreshMs": 60000 }',
    meaning: "how often a running export re-writes its sentinel (cleanup --older-than relies on it)",
  },
  {
    key: "exports.filesCompleting",
    default: "1",
    example: '"exports": { "filesCompleting": 2 }',
    meaning: "finished files whose last parts and completion run while the next file fills",
  },
  {
    key: "exports.maxMemoryPerExport",
    default: "none",
    example: '"exports": { "maxMemoryPerExport": 134217728 }',
    meaning:
      "refuse to start when encoderThreads x partSize x (partsInFlight + 1) x (filesCompleting + 1) exceeds it",
  },
  {
    key: "exports.maxRowBytes",
    default: "67108864 (64 MiB)",
    example: '"exports": { "maxRowBytes": 268435456 }',
    meaning: "largest row an export accepts (held whole while encoded); larger rows fail with 54000",
  },
  {
    key: "exports.workerNice",
    default: "10",
    example: '"exports": { "workerNice": 19 }',
    meaning:
      "niceness (0-19) of each export's encoder thread and of the process's S3 upload thread, so the relay wins the CPU over exports",
  },
  {
    key: "exports.encoderThreads",
    default: "1",
    example: '"exports": { "encoderThreads": "auto" }',
    meaning:
      'encoder threads per export, each writing its own files mz-<id>-batch-<BBBB>-<NNNN>; "auto" = 2 from 4 cores on, else 1',
  },
  {
    key: "exports.workerPolicy",
    default: "nice",
    example: '"exports": { "workerPolicy": "idle" }',
    meaning:
      "nice: encoder threads run at exports.workerNice; idle: also as SCHED_IDLE (Linux, via util-linux chrt), using only CPU time nothing else in their scheduling group wants (best where the proxy has its own cgroup: a container, a systemd service)",
  },
  {
    key: "exports.encoderHost",
    default: "thread",
    example: '"exports": { "encoderHost": "process" }',
    meaning:
      "thread: encoder threads run in the proxy's process; process: in one child process of the proxy (started at the first export, in a session of its own), all its threads and its Linux autogroup at exports.workerNice",
  },
  {
    flag: "--warm-up MODE",
    env: "C2S_WARM_UP",
    key: "exports.warmUp",
    default: "compile",
    example: "--warm-up thread",
    meaning:
      "prepared for the proxy's first export: compile (the COPY statement parser warmed before the proxy listens, ~0.05 CPU-s on the main thread, ~0.3 on V8's, 6-20 MB; in the background once it listens, parquet-wasm compiled in a thread of its own, ~0.1-0.25 CPU-s, 4-10 MB), thread (also the spare encoder thread started and warmed by a 2048-row synthetic export; ~0.6-1.0 CPU-s, 35-50 MB kept), none",
  },
  {
    key: "exports.maxEncodingThreads",
    default: "auto",
    example: '"exports": { "maxEncodingThreads": 0 }',
    meaning:
      'encoder threads of all exports that encode at the same time, at most (the others wait, their upstream paused); "auto" = the cores less one, at least 1; 0 = no limit',
  },
  {
    key: "exports.s3MaxAttempts",
    default: "5",
    example: '"exports": { "s3MaxAttempts": 8 }',
    meaning: "attempts per S3 request (exponential backoff with jitter)",
  },
  {
    key: "exports.s3RetryMode",
    default: "standard",
    example: '"exports": { "s3RetryMode": "adaptive" }',
    meaning: "standard | adaptive (also slows down when S3 throttles)",
  },
  {
    key: "exports.s3RequestTimeoutMs",
    default: "120000",
    example: '"exports": { "s3RequestTimeoutMs": 30000 }',
    meaning: "an S3 request without an answer this long fails and is retried",
  },
  {
    env: "C2S_CATALOG_IDENTITY",
    key: "catalogIdentity",
    default: "the SDK's default chain at AWS STS",
    example: '"catalogIdentity": "prod"',
    meaning:
      "the configured connection that assumes the roles of Materialize catalog connections (CREATE CONNECTION ... TO AWS (ASSUME ROLE ARN ...))",
  },
  {
    env: "C2S_CATALOG_EXTERNAL_ID_PREFIX",
    key: "catalogExternalIdPrefix",
    default: "the catalog's external_id",
    example: '"catalogExternalIdPrefix": "abc123"',
    meaning: "for catalog connections the ExternalId is mz_<prefix>_<connection id>",
  },
  {
    key: "jobs",
    default: "none",
    example:
      '"jobs": [{ "name": "orders", "source": "orders", "target": "s3://b/snap/orders", "options": "FORMAT parquet", "user": "exporter", "cron": "0 * * * *" }]',
    meaning: "scheduled snapshots of a view or query (docs/schedules.md)",
  },
  {
    env: "C2S_CONNECTION_<NAME>_<SETTING>",
    key: "connections",
    default: "the AWS SDK's default chain",
    example: '"connections": { "prod": { "region": "eu-west-1" } }',
    meaning: "AWS connections for COPY ... WITH (AWS CONNECTION = name); see the README",
  },
];

function helpText(): string {
  const lines = [
    "copy-to-s3-proxy — a pgwire proxy that runs COPY ... TO 's3://...' itself",
    "",
    "Usage:",
    "  copy-to-s3-proxy [options]                  start the proxy (without --upstream: an embedded demo)",
    "  copy-to-s3-proxy cleanup s3://bucket/prefix [--yes] [--connection NAME] [--older-than 15m]",
    "                                              abort orphaned uploads of crashed exports",
    "  copy-to-s3-proxy --version | --help",
    "",
    "Settings (flags win over environment variables, which win over the --config file):",
  ];
  for (const s of SETTINGS) {
    const where = [s.flag, s.env && `env ${s.env}`, s.key !== "(none)" && `key ${s.key}`].filter(Boolean);
    lines.push(
      "",
      `  ${where.join("   ")}`,
      `      ${s.meaning}`,
      `      default: ${s.default}   example: ${s.example}`,
    );
  }
  lines.push("");
  return lines.join("\n");
}

export const HELP = helpText();

export const DEFAULTS = {
  listen: "127.0.0.1:6877",
  upstream: "127.0.0.1:6875",
  upstreamTls: "prefer",
  upstreamKind: "auto",
  logLevel: "info",
  drainTimeoutMs: 30_000,
  cancelTimeoutMs: 5_000,
  connectTimeoutMs: 10_000,
  clientTls: "allow",
  // PostgreSQL's authentication_timeout and PgBouncer's client_login_timeout are both 60 s.
  loginTimeoutMs: 60_000,
  // PgBouncer's max_client_conn default, and PostgreSQL's max_connections default.
  maxClientConnections: 100,
} as const;

export const DEFAULT_EXPORT_LIMITS: ExportLimits = {
  maxConcurrentExports: 4,
  maxExportsPerUser: 2,
  queueTimeoutMs: 0,
  partSize: 8 * 1024 * 1024,
  partsInFlight: 4,
  progressIntervalMs: 2_000,
  sentinelRefreshMs: 5 * 60_000,
  filesCompleting: 1,
  maxMemoryPerExport: undefined,
  maxRowBytes: 64 * 1024 * 1024,
  s3MaxAttempts: 5,
  s3RetryMode: "standard",
  s3RequestTimeoutMs: 120_000,
  stallTimeoutMs: 600_000,
  workerNice: 10,
  encoderThreads: 1,
  workerPolicy: "nice",
  encoderHost: "thread",
  warmUp: "compile",
  maxEncodingThreads: autoMaxEncodingThreads(availableParallelism()),
};
