// One typed configuration object: CLI flags > environment variables > config file > defaults,
// validated once at start so a bad setting fails before the proxy listens.
import { readFileSync } from "node:fs";
import { resolve as resolvePath } from "node:path";
import { parseArgs } from "node:util";

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
}

/** Bytes one export may hold in upload buffers at most with these settings (encoder batches aside). */
export function uploadMemoryBound(
  e: Pick<ExportLimits, "partSize" | "partsInFlight" | "filesCompleting">,
): number {
  return e.partSize * (e.partsInFlight + 1) * (e.filesCompleting + 1);
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

export const HELP = `copy-to-s3-proxy — a pgwire proxy that runs COPY ... TO 's3://...' itself

Usage:
  copy-to-s3-proxy [options]                      start the proxy
  copy-to-s3-proxy cleanup s3://bucket/prefix [--yes] [--connection NAME] [--older-than 15m]
                                                  abort orphaned uploads of crashed exports

Options (flag / environment variable / config file key):
  --listen HOST:PORT        C2S_LISTEN          listen     address to accept clients on (default 127.0.0.1:6877)
  --upstream HOST:PORT      C2S_UPSTREAM        upstream   Materialize or PostgreSQL (default 127.0.0.1:6875)
  --upstream-tls MODE       C2S_UPSTREAM_TLS    upstreamTls  disable | prefer | require | verify-ca | verify-full (default prefer)
  --upstream-ca FILE        C2S_UPSTREAM_CA     upstreamCaFile  CA bundle to verify the upstream's certificate
  --upstream-kind KIND      C2S_UPSTREAM_KIND   upstreamKind  auto | postgres | materialize (default auto: detected per session)
  --tls-cert FILE           C2S_TLS_CERT        tlsCertFile  certificate for the client leg; with --tls-key,
  --tls-key FILE            C2S_TLS_KEY         tlsKeyFile   SSLRequest is answered 'S' (else 'N')
  --client-tls MODE         C2S_CLIENT_TLS      clientTls  allow | require (require: refuse clients without TLS; default allow)
  --login-timeout MS        C2S_LOGIN_TIMEOUT   loginTimeoutMs  disconnect clients not logged in after MS (default 60000, 0 = never)
  --max-client-conn N       C2S_MAX_CLIENT_CONN maxClientConnections  clients logging in or logged in at once (default 100)
  --file-root DIR           C2S_FILE_ROOT       fileRoot   allow file:///... COPY targets below DIR (default: none allowed)
  --log-level LEVEL         C2S_LOG_LEVEL       logLevel   fatal|error|warn|info|debug|trace|silent (default info)
  --drain-timeout MS        C2S_DRAIN_TIMEOUT   drainTimeoutMs  on SIGTERM/SIGINT, time sessions get to finish (default 30000)
  --max-exports N           C2S_MAX_EXPORTS     exports.maxConcurrentExports (default 4)
  --stall-timeout MS        C2S_STALL_TIMEOUT   exports.stallTimeoutMs  cancel an export whose read makes no progress this long (default 600000; 0 = never)
  --max-exports-per-user N  C2S_MAX_EXPORTS_PER_USER  exports.maxExportsPerUser (default: half of --max-exports, rounded up)
  --config FILE             C2S_CONFIG          a JSON file with any of the keys above, plus "connections"
  --help                                        this text

AWS connections (for COPY ... WITH (AWS CONNECTION = name)) come from the config file's
"connections" object or from C2S_CONNECTION_<NAME>_<SETTING> variables; see README.md.
Connections from Materialize's catalog (CREATE CONNECTION ... TO AWS (ASSUME ROLE ARN ...)):
                            C2S_CATALOG_IDENTITY  catalogIdentity  configured connection that assumes
                                                  their roles (default: the SDK's default chain at AWS STS)
                            C2S_CATALOG_EXTERNAL_ID_PREFIX  catalogExternalIdPrefix  ExternalId is
                                                  mz_<prefix>_<connection id> (default: the catalog's external_id)
`;

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
  s3MaxAttempts: 5,
  s3RetryMode: "standard",
  s3RequestTimeoutMs: 120_000,
  stallTimeoutMs: 600_000,
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

function positiveInt(v: unknown, what: string, min = 0): number {
  const n = typeof v === "number" ? v : Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new ConfigError(`${what}: expected an integer ≥ ${min}, got "${String(v)}"`);
  return n;
}

export interface ParsedCli {
  config: Config;
  command: "serve" | "help" | "cleanup";
  positionals: string[];
  flags: { yes: boolean; connection: string | undefined; olderThan: string | undefined };
}

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
  }
  const pick = (flag: string | undefined, envName: string, key: string): string | undefined => {
    if (flag !== undefined) return flag;
    if (env[envName] !== undefined && env[envName] !== "") return env[envName];
    const f = file[key];
    return f === undefined || f === null ? undefined : String(f);
  };
  const fileExports = (file.exports ?? {}) as Record<string, unknown>;
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
      `exports: partSize × (partsInFlight + 1) × (filesCompleting + 1) = ${uploadMemoryBound(exportsCfg)} bytes exceeds exports.maxMemoryPerExport (${exportsCfg.maxMemoryPerExport}); lower partsInFlight, filesCompleting or partSize`,
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
  const config: Config = {
    listen: parseHostPort(pick(v.listen, "C2S_LISTEN", "listen") ?? DEFAULTS.listen, "listen"),
    upstream: parseHostPort(pick(v.upstream, "C2S_UPSTREAM", "upstream") ?? DEFAULTS.upstream, "upstream"),
    upstreamTls: oneOf(
      pick(v["upstream-tls"], "C2S_UPSTREAM_TLS", "upstreamTls") ?? DEFAULTS.upstreamTls,
      ["disable", "prefer", "require", "verify-ca", "verify-full"],
      "upstream-tls",
    ),
    upstreamCaFile: pick(v["upstream-ca"], "C2S_UPSTREAM_CA", "upstreamCaFile"),
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
  const command = v.help ? "help" : first === "cleanup" ? "cleanup" : "serve";
  if (command === "serve" && first !== undefined && first !== "serve") {
    throw new ConfigError(`unknown command "${first}" (see --help)`);
  }
  return {
    config,
    command,
    positionals: positionals.slice(
      command === "serve" && first === "serve" ? 1 : command === "cleanup" ? 1 : 0,
    ),
    flags: { yes: v.yes ?? false, connection: v.connection, olderThan: v["older-than"] },
  };
}

function absolute(p: string | undefined): string | undefined {
  return p === undefined ? undefined : resolvePath(p);
}

function parseCliArgs(argv: readonly string[]) {
  return parseArgs({
    args: [...argv],
    allowPositionals: true,
    strict: true,
    options: {
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
      config: { type: "string" },
      yes: { type: "boolean" },
      connection: { type: "string" },
      "older-than": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
}
