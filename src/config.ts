// One typed configuration object: CLI flags > environment variables > config file > defaults,
// validated once at start so a bad setting fails before the proxy listens.
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve as resolvePath } from "node:path";
import { parseArgs } from "node:util";
import { firstUnknownKey, trackReads } from "./config-keys.js";
import { parseUpstreamAddress, type UpstreamAddress } from "./config-upstream.js";

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
}

/**
 * `exports.encoderThreads: "auto"`: 2 from 4 cores on, else 1. An export needs a core for the
 * relay and one for its PostgreSQL backend beside its encoders, and that single backend is the
 * ceiling a second thread already reaches (docs/decisions.md, "Several encoder threads"): a third
 * only holds memory.
 */
export function autoEncoderThreads(cores: number): number {
  return cores >= 4 ? 2 : 1;
}

/**
 * Bytes one export may hold in upload buffers at most with these settings (encoder batches aside):
 * every encoder thread has an upload sink of its own.
 */
export function uploadMemoryBound(
  e: Pick<ExportLimits, "partSize" | "partsInFlight" | "filesCompleting"> &
    Partial<Pick<ExportLimits, "encoderThreads">>,
): number {
  return (e.encoderThreads ?? 1) * e.partSize * (e.partsInFlight + 1) * (e.filesCompleting + 1);
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
  /** How Materialize catalog connections map to the proxy's identity (src/copy/connections.ts). */
  catalogConnections: { identity: string | undefined; externalIdPrefix: string | undefined };
}

export class ConfigError extends Error {
  override name = "ConfigError";
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
    meaning: "niceness (0-19) of each export's encoder thread, so the relay wins the CPU over exports",
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

const DEFAULTS = {
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
};

export function parseHostPort(s: string, what: string): HostPort {
  const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(s.trim());
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || !(port >= 0 && port < 65536)) throw new ConfigError(`${what}: expected HOST:PORT, got "${s}"`);
  return { host: m[1] ?? (m[2] || "127.0.0.1"), port };
}

function oneOf<T extends string>(v: string, allowed: readonly T[], what: string): T {
  if ((allowed as readonly string[]).includes(v)) return v as T;
  throw new ConfigError(`${what}: expected one of ${allowed.join(", ")}, got "${v}"`);
}

function positiveInt(v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  const n = typeof v === "number" ? v : Number(v);
  if (!Number.isInteger(n) || n < min || n > max) {
    const range = max === Number.MAX_SAFE_INTEGER ? `≥ ${min}` : `from ${min} to ${max}`;
    throw new ConfigError(`${what}: expected an integer ${range}, got "${String(v)}"`);
  }
  return n;
}

export interface ParsedCli {
  config: Config;
  command: "serve" | "help" | "version" | "cleanup";
  /** No upstream was configured anywhere: `serve` starts the embedded demo database. */
  demo: boolean;
  positionals: string[];
  flags: { yes: boolean; connection: string | undefined; olderThan: string | undefined };
}

type CliValues = ReturnType<typeof parseCliArgs>["values"];

export function loadConfig(argv: readonly string[], env: NodeJS.ProcessEnv): ParsedCli {
  let parsed: ReturnType<typeof parseCliArgs>;
  try {
    parsed = parseCliArgs(argv);
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
  const { values: v, positionals } = parsed;
  const configPath = v.config ?? env.C2S_CONFIG;
  let file: Record<string, unknown> = {};
  if (configPath) {
    try {
      const raw: unknown = JSON.parse(readFileSync(configPath, "utf8"));
      if (raw === null || typeof raw !== "object" || Array.isArray(raw)) throw new Error("not a JSON object");
      file = raw as Record<string, unknown>;
    } catch (e) {
      throw new ConfigError(`config file ${configPath}: ${(e as Error).message}`);
    }
    refuseUnknownKeys(file, configPath);
  }
  return resolveSettings(v, positionals, env, file).cli;
}

/** Which flags, variables and keys loadConfig reads (so --help and the key check can't drift). */
export interface SettingsRead {
  top: Set<string>;
  exports: Set<string>;
  env: Set<string>;
}

let knownKeys: SettingsRead | undefined;
/** What is read when neither flags nor the environment set anything: every key a file may have. */
export function settingsRead(): SettingsRead {
  knownKeys ??= resolveSettings({}, [], {}, {}).seen;
  return knownKeys;
}

function refuseUnknownKeys(file: Record<string, unknown>, configPath: string): void {
  const known = settingsRead();
  const top = firstUnknownKey(file, known.top);
  const exp =
    file.exports !== null && typeof file.exports === "object" && !Array.isArray(file.exports)
      ? firstUnknownKey(file.exports as Record<string, unknown>, known.exports)
      : undefined;
  const bad =
    top ?? (exp && { key: `exports.${exp.key}`, suggestion: exp.suggestion && `exports.${exp.suggestion}` });
  if (!bad) return;
  throw new ConfigError(
    `config file ${configPath}: unknown key "${bad.key}"${bad.suggestion ? ` (did you mean "${bad.suggestion}"?)` : ""}; copy-to-s3-proxy --help lists every key`,
  );
}

function resolveSettings(
  v: CliValues,
  positionals: readonly string[],
  env: NodeJS.ProcessEnv,
  rawFile: Record<string, unknown>,
): { cli: ParsedCli; seen: SettingsRead } {
  const seen: SettingsRead = { top: new Set(), exports: new Set(), env: new Set() };
  const file = trackReads(rawFile, seen.top);
  const pick = (flag: string | undefined, envName: string, key: string): string | undefined => {
    seen.env.add(envName);
    const f = file[key];
    if (flag !== undefined) return flag;
    if (env[envName] !== undefined && env[envName] !== "") return env[envName];
    return f === undefined || f === null ? undefined : String(f);
  };
  const rawExports = file.exports ?? {};
  if (typeof rawExports !== "object" || rawExports === null || Array.isArray(rawExports))
    throw new ConfigError('config key "exports": expected an object');
  const fileExports = trackReads(rawExports as Record<string, unknown>, seen.exports);
  const exportsCfg: ExportLimits = {
    maxConcurrentExports: positiveInt(
      pick(v["max-exports"], "C2S_MAX_EXPORTS", "maxConcurrentExports") ??
        fileExports.maxConcurrentExports ??
        DEFAULT_EXPORT_LIMITS.maxConcurrentExports,
      "max-exports",
      1,
    ),
    maxExportsPerUser: 0, // set below, from maxConcurrentExports when not given
    queueTimeoutMs: positiveInt(
      fileExports.queueTimeoutMs ?? DEFAULT_EXPORT_LIMITS.queueTimeoutMs,
      "exports.queueTimeoutMs",
    ),
    partSize: positiveInt(
      fileExports.partSize ?? DEFAULT_EXPORT_LIMITS.partSize,
      "exports.partSize",
      5 * 1024 * 1024,
    ),
    partsInFlight: positiveInt(
      fileExports.partsInFlight ?? DEFAULT_EXPORT_LIMITS.partsInFlight,
      "exports.partsInFlight",
      1,
    ),
    progressIntervalMs: positiveInt(
      fileExports.progressIntervalMs ?? DEFAULT_EXPORT_LIMITS.progressIntervalMs,
      "exports.progressIntervalMs",
      100,
    ),
    sentinelRefreshMs: positiveInt(
      fileExports.sentinelRefreshMs ?? DEFAULT_EXPORT_LIMITS.sentinelRefreshMs,
      "exports.sentinelRefreshMs",
      1000,
    ),
    filesCompleting: positiveInt(
      fileExports.filesCompleting ?? DEFAULT_EXPORT_LIMITS.filesCompleting,
      "exports.filesCompleting",
      1,
    ),
    maxMemoryPerExport:
      fileExports.maxMemoryPerExport === undefined
        ? undefined
        : positiveInt(fileExports.maxMemoryPerExport, "exports.maxMemoryPerExport", 1),
    maxRowBytes: positiveInt(
      fileExports.maxRowBytes ?? DEFAULT_EXPORT_LIMITS.maxRowBytes,
      "exports.maxRowBytes",
      1024,
    ),
    s3MaxAttempts: positiveInt(
      fileExports.s3MaxAttempts ?? DEFAULT_EXPORT_LIMITS.s3MaxAttempts,
      "exports.s3MaxAttempts",
      1,
    ),
    s3RetryMode: oneOf(
      String(fileExports.s3RetryMode ?? DEFAULT_EXPORT_LIMITS.s3RetryMode),
      ["standard", "adaptive"],
      "exports.s3RetryMode",
    ),
    s3RequestTimeoutMs: positiveInt(
      fileExports.s3RequestTimeoutMs ?? DEFAULT_EXPORT_LIMITS.s3RequestTimeoutMs,
      "exports.s3RequestTimeoutMs",
      1,
    ),
    stallTimeoutMs: positiveInt(
      pick(v["stall-timeout"], "C2S_STALL_TIMEOUT", "stallTimeoutMs") ??
        fileExports.stallTimeoutMs ??
        DEFAULT_EXPORT_LIMITS.stallTimeoutMs,
      "stall-timeout",
    ),
    workerNice: positiveInt(
      fileExports.workerNice ?? DEFAULT_EXPORT_LIMITS.workerNice,
      "exports.workerNice",
      0,
      19,
    ),
    encoderThreads:
      fileExports.encoderThreads === "auto"
        ? autoEncoderThreads(availableParallelism())
        : positiveInt(
            fileExports.encoderThreads ?? DEFAULT_EXPORT_LIMITS.encoderThreads,
            'exports.encoderThreads (or "auto")',
            1,
            64,
          ),
    workerPolicy: oneOf(
      String(fileExports.workerPolicy ?? DEFAULT_EXPORT_LIMITS.workerPolicy),
      ["idle", "nice"],
      "exports.workerPolicy",
    ),
  };
  exportsCfg.maxExportsPerUser = positiveInt(
    pick(v["max-exports-per-user"], "C2S_MAX_EXPORTS_PER_USER", "maxExportsPerUser") ??
      fileExports.maxExportsPerUser ??
      Math.ceil(exportsCfg.maxConcurrentExports / 2),
    "max-exports-per-user",
    1,
  );
  if (
    exportsCfg.maxMemoryPerExport !== undefined &&
    uploadMemoryBound(exportsCfg) > exportsCfg.maxMemoryPerExport
  ) {
    throw new ConfigError(
      `exports: encoderThreads × partSize × (partsInFlight + 1) × (filesCompleting + 1) = ${uploadMemoryBound(exportsCfg)} bytes exceeds exports.maxMemoryPerExport (${exportsCfg.maxMemoryPerExport}); lower encoderThreads, partsInFlight, filesCompleting or partSize`,
    );
  }
  const tlsCertFile = pick(v["tls-cert"], "C2S_TLS_CERT", "tlsCertFile");
  const tlsKeyFile = pick(v["tls-key"], "C2S_TLS_KEY", "tlsKeyFile");
  if ((tlsCertFile === undefined) !== (tlsKeyFile === undefined)) {
    throw new ConfigError("tls-cert and tls-key must be given together");
  }
  const clientTls = oneOf(
    pick(v["client-tls"], "C2S_CLIENT_TLS", "clientTls") ?? DEFAULTS.clientTls,
    ["allow", "require"],
    "client-tls",
  );
  if (clientTls === "require" && tlsCertFile === undefined) {
    throw new ConfigError("client-tls require needs tls-cert and tls-key");
  }
  const upstreamText = pick(v.upstream, "C2S_UPSTREAM", "upstream");
  const upstream = upstreamAddress(upstreamText ?? DEFAULTS.upstream);
  const tlsText = pick(v["upstream-tls"], "C2S_UPSTREAM_TLS", "upstreamTls");
  if (tlsText !== undefined && upstream.tls !== undefined && tlsText !== upstream.tls)
    throw new ConfigError(
      `upstream-tls is "${tlsText}" but the upstream URL says sslmode=${upstream.tls}: give one of them`,
    );
  const config: Config = {
    listen: parseHostPort(pick(v.listen, "C2S_LISTEN", "listen") ?? DEFAULTS.listen, "listen"),
    upstream: { host: upstream.host, port: upstream.port },
    upstreamTls: oneOf(
      tlsText ?? upstream.tls ?? DEFAULTS.upstreamTls,
      ["disable", "prefer", "require", "verify-ca", "verify-full"],
      "upstream-tls",
    ),
    upstreamCaFile: pick(v["upstream-ca"], "C2S_UPSTREAM_CA", "upstreamCaFile") ?? upstream.caFile,
    upstreamKind: oneOf(
      pick(v["upstream-kind"], "C2S_UPSTREAM_KIND", "upstreamKind") ?? DEFAULTS.upstreamKind,
      ["auto", "postgres", "materialize"],
      "upstream-kind",
    ),
    tlsCertFile,
    tlsKeyFile,
    clientTls,
    loginTimeoutMs: positiveInt(
      pick(v["login-timeout"], "C2S_LOGIN_TIMEOUT", "loginTimeoutMs") ?? DEFAULTS.loginTimeoutMs,
      "login-timeout",
    ),
    maxClientConnections: positiveInt(
      pick(v["max-client-conn"], "C2S_MAX_CLIENT_CONN", "maxClientConnections") ??
        DEFAULTS.maxClientConnections,
      "max-client-conn",
      1,
    ),
    fileRoot: absolute(pick(v["file-root"], "C2S_FILE_ROOT", "fileRoot")),
    logLevel: oneOf(
      pick(v["log-level"], "C2S_LOG_LEVEL", "logLevel") ?? DEFAULTS.logLevel,
      ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
      "log-level",
    ),
    adminListen: optionalHostPort(pick(v["admin-listen"], "C2S_ADMIN_LISTEN", "adminListen"), "admin-listen"),
    drainTimeoutMs: positiveInt(
      pick(v["drain-timeout"], "C2S_DRAIN_TIMEOUT", "drainTimeoutMs") ?? DEFAULTS.drainTimeoutMs,
      "drain-timeout",
    ),
    cancelTimeoutMs: positiveInt(file.cancelTimeoutMs ?? DEFAULTS.cancelTimeoutMs, "cancelTimeoutMs", 1),
    connectTimeoutMs: positiveInt(file.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs, "connectTimeoutMs", 1),
    exports: exportsCfg,
    connections: file.connections,
    jobs: file.jobs,
    catalogConnections: {
      identity: pick(undefined, "C2S_CATALOG_IDENTITY", "catalogIdentity"),
      externalIdPrefix: pick(undefined, "C2S_CATALOG_EXTERNAL_ID_PREFIX", "catalogExternalIdPrefix"),
    },
  };
  if (
    (config.upstreamTls === "verify-ca" || config.upstreamTls === "verify-full") &&
    !config.upstreamCaFile
  ) {
    // Without a CA file Node verifies against its bundled public roots, which is what users of a
    // managed Materialize expect; nothing to reject here.
  }
  const first = positionals[0];
  const command = v.help ? "help" : v.version ? "version" : first === "cleanup" ? "cleanup" : "serve";
  if (command === "serve" && first !== undefined && first !== "serve") {
    throw new ConfigError(`unknown command "${first}" (see --help)`);
  }
  const cli: ParsedCli = {
    config,
    command,
    demo: command === "serve" && upstreamText === undefined,
    positionals: positionals.slice(
      command === "serve" && first === "serve" ? 1 : command === "cleanup" ? 1 : 0,
    ),
    flags: { yes: v.yes ?? false, connection: v.connection, olderThan: v["older-than"] },
  };
  return { cli, seen };
}

function upstreamAddress(text: string): UpstreamAddress {
  try {
    return parseUpstreamAddress(text);
  } catch (e) {
    throw new ConfigError(`upstream: ${(e as Error).message}`);
  }
}

function optionalHostPort(s: string | undefined, what: string): HostPort | undefined {
  return s === undefined ? undefined : parseHostPort(s, what);
}

function absolute(p: string | undefined): string | undefined {
  return p === undefined ? undefined : resolvePath(p);
}

/** Every flag (the ones with a setting are in SETTINGS; the rest belong to cleanup, --help and --version). */
export const CLI_OPTIONS = {
  listen: { type: "string" },
  upstream: { type: "string" },
  "upstream-tls": { type: "string" },
  "upstream-ca": { type: "string" },
  "upstream-kind": { type: "string" },
  "tls-cert": { type: "string" },
  "tls-key": { type: "string" },
  "log-level": { type: "string" },
  "file-root": { type: "string" },
  "drain-timeout": { type: "string" },
  "max-exports": { type: "string" },
  "stall-timeout": { type: "string" },
  "max-exports-per-user": { type: "string" },
  "client-tls": { type: "string" },
  "login-timeout": { type: "string" },
  "max-client-conn": { type: "string" },
  "admin-listen": { type: "string" },
  config: { type: "string" },
  yes: { type: "boolean" },
  connection: { type: "string" },
  "older-than": { type: "string" },
  help: { type: "boolean", short: "h" },
  version: { type: "boolean", short: "V" },
} as const;

function parseCliArgs(argv: readonly string[]) {
  return parseArgs({ args: [...argv], allowPositionals: true, strict: true, options: CLI_OPTIONS });
}
