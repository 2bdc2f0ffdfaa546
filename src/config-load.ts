// Reading the settings: CLI flags > environment variables > config file > defaults, each checked
// (a bad value or an unknown key is a ConfigError naming it) and merged into one Config.
import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { resolve as resolvePath } from "node:path";
import { parseArgs } from "node:util";
import type { Config, ExportLimits, HostPort } from "./config.js";
import { firstUnknownKey, trackReads } from "./config-keys.js";
import {
  autoEncoderThreads,
  autoMaxEncodingThreads,
  DEFAULT_EXPORT_LIMITS,
  DEFAULTS,
} from "./config-settings.js";
import { parseUpstreamAddress, type UpstreamAddress } from "./config-upstream.js";

export class ConfigError extends Error {
  override name = "ConfigError";
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

/** `v` (a number, or a string of one) as an integer from `min` to `max`; else a ConfigError naming `what`. */
function boundedInt(v: unknown, what: string, min = 0, max = Number.MAX_SAFE_INTEGER): number {
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
/** The flags that take an integer. */
type IntFlag =
  | "max-exports"
  | "max-exports-per-user"
  | "stall-timeout"
  | "login-timeout"
  | "max-client-conn"
  | "drain-timeout";
/** The `exports` keys that are integers with a default. */
type ExportIntKey =
  | "queueTimeoutMs"
  | "partSize"
  | "partsInFlight"
  | "progressIntervalMs"
  | "sentinelRefreshMs"
  | "filesCompleting"
  | "maxRowBytes"
  | "s3MaxAttempts"
  | "s3RequestTimeoutMs"
  | "workerNice";

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
  /** Key `exports.<key>` of the file, or its default. */
  const exportInt = (key: ExportIntKey, min?: number, max?: number): number =>
    boundedInt(fileExports[key] ?? DEFAULT_EXPORT_LIMITS[key], `exports.${key}`, min, max);
  /** Flag `--<flag>`, else its variable, else the file's key, else `fallback`; errors name the flag. */
  const flagInt = (flag: IntFlag, envName: string, key: string, fallback: unknown, min?: number): number =>
    boundedInt(pick(v[flag], envName, key) ?? fallback, flag, min);
  const exportsCfg: ExportLimits = {
    maxConcurrentExports: flagInt(
      "max-exports",
      "C2S_MAX_EXPORTS",
      "maxConcurrentExports",
      fileExports.maxConcurrentExports ?? DEFAULT_EXPORT_LIMITS.maxConcurrentExports,
      1,
    ),
    maxExportsPerUser: 0, // set below, from maxConcurrentExports when not given
    queueTimeoutMs: exportInt("queueTimeoutMs"),
    partSize: exportInt("partSize", 5 * 1024 * 1024),
    partsInFlight: exportInt("partsInFlight", 1),
    progressIntervalMs: exportInt("progressIntervalMs", 100),
    sentinelRefreshMs: exportInt("sentinelRefreshMs", 1000),
    filesCompleting: exportInt("filesCompleting", 1),
    maxMemoryPerExport:
      fileExports.maxMemoryPerExport === undefined
        ? undefined
        : boundedInt(fileExports.maxMemoryPerExport, "exports.maxMemoryPerExport", 1),
    maxRowBytes: exportInt("maxRowBytes", 1024),
    s3MaxAttempts: exportInt("s3MaxAttempts", 1),
    s3RetryMode: oneOf(
      String(fileExports.s3RetryMode ?? DEFAULT_EXPORT_LIMITS.s3RetryMode),
      ["standard", "adaptive"],
      "exports.s3RetryMode",
    ),
    s3RequestTimeoutMs: exportInt("s3RequestTimeoutMs", 1),
    stallTimeoutMs: flagInt(
      "stall-timeout",
      "C2S_STALL_TIMEOUT",
      "stallTimeoutMs",
      fileExports.stallTimeoutMs ?? DEFAULT_EXPORT_LIMITS.stallTimeoutMs,
    ),
    workerNice: exportInt("workerNice", 0, 19),
    encoderThreads:
      fileExports.encoderThreads === "auto"
        ? autoEncoderThreads(availableParallelism())
        : boundedInt(
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
    encoderHost: oneOf(
      String(fileExports.encoderHost ?? DEFAULT_EXPORT_LIMITS.encoderHost),
      ["thread", "process"],
      "exports.encoderHost",
    ),
    warmUp: oneOf(
      pick(v["warm-up"], "C2S_WARM_UP", "warmUp") ??
        String(fileExports.warmUp ?? DEFAULT_EXPORT_LIMITS.warmUp),
      ["none", "compile", "thread"],
      "warm-up",
    ),
    maxEncodingThreads:
      fileExports.maxEncodingThreads === "auto" || fileExports.maxEncodingThreads === undefined
        ? autoMaxEncodingThreads(availableParallelism())
        : boundedInt(fileExports.maxEncodingThreads, 'exports.maxEncodingThreads (or "auto")', 0, 1024),
  };
  exportsCfg.maxExportsPerUser = flagInt(
    "max-exports-per-user",
    "C2S_MAX_EXPORTS_PER_USER",
    "maxExportsPerUser",
    fileExports.maxExportsPerUser ?? Math.ceil(exportsCfg.maxConcurrentExports / 2),
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
    loginTimeoutMs: flagInt("login-timeout", "C2S_LOGIN_TIMEOUT", "loginTimeoutMs", DEFAULTS.loginTimeoutMs),
    maxClientConnections: flagInt(
      "max-client-conn",
      "C2S_MAX_CLIENT_CONN",
      "maxClientConnections",
      DEFAULTS.maxClientConnections,
      1,
    ),
    fileRoot: absolute(pick(v["file-root"], "C2S_FILE_ROOT", "fileRoot")),
    logLevel: oneOf(
      pick(v["log-level"], "C2S_LOG_LEVEL", "logLevel") ?? DEFAULTS.logLevel,
      ["fatal", "error", "warn", "info", "debug", "trace", "silent"],
      "log-level",
    ),
    adminListen: optionalHostPort(pick(v["admin-listen"], "C2S_ADMIN_LISTEN", "adminListen"), "admin-listen"),
    drainTimeoutMs: flagInt("drain-timeout", "C2S_DRAIN_TIMEOUT", "drainTimeoutMs", DEFAULTS.drainTimeoutMs),
    cancelTimeoutMs: boundedInt(file.cancelTimeoutMs ?? DEFAULTS.cancelTimeoutMs, "cancelTimeoutMs", 1),
    connectTimeoutMs: boundedInt(file.connectTimeoutMs ?? DEFAULTS.connectTimeoutMs, "connectTimeoutMs", 1),
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
  "warm-up": { type: "string" },
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
