// The registry of named AWS connections (SPEC §6) for `COPY … WITH (AWS CONNECTION = name)`, loaded
// at start from the config file's "connections" section and C2S_CONNECTION_<NAME>_* variables
// (environment wins per setting; spellings in connection-settings.ts, secrets in
// connection-secrets.ts), and checked there: configuration errors are found before the proxy listens.

import { PgError, SqlState } from "../errors.js";
import { AwsConnection } from "./aws-connection.js";
import { type CatalogConnectionSettings, type CatalogPolicy, catalogPolicy } from "./catalog-policy.js";
import { fileSecret, readSecret, type Secret } from "./connection-secrets.js";
import {
  ALL_SETTINGS,
  BY_NORMAL,
  ConnectionConfigError,
  ENV_PREFIX,
  ENV_SUFFIXES,
  EXTERNAL_ID,
  isSecretSetting,
  normal,
  type SecretSetting,
  type TEXT_SETTINGS,
} from "./connection-settings.js";

export interface ConnectionRegistry {
  /**
   * The connection named by `AWS CONNECTION`; without one, the connection named "default" if
   * configured, else the SDK's default credentials with AWS_REGION / AWS_ENDPOINT_URL.
   * Unknown name → PgError 42704.
   */
  get(name?: string): AwsConnection;
  names(): string[];
  /** What catalog connections may use; see CatalogConnectionSettings. */
  readonly catalog: CatalogPolicy;
  /** Closes the cached clients' sockets (shutdown). */
  close(): void;
}

export interface LoadOptions {
  /** Called for settings that work but should not be used in production (inline secrets). */
  warn?: (message: string) => void;
  catalog?: CatalogConnectionSettings;
}

interface Draft {
  text: Partial<Record<(typeof TEXT_SETTINGS)[number], string>>;
  secrets: Partial<Record<SecretSetting, Secret>>;
}

export function loadConnections(
  fileSection: unknown,
  env: NodeJS.ProcessEnv,
  opts: LoadOptions = {},
): ConnectionRegistry {
  const warn = opts.warn ?? ((m: string) => process.emitWarning(m, "ConnectionConfigWarning"));
  const drafts = new Map<string, Draft>();
  const draft = (name: string) => {
    let d = drafts.get(name);
    if (d === undefined) {
      d = { text: {}, secrets: {} };
      drafts.set(name, d);
    }
    return d;
  };

  if (fileSection !== undefined && fileSection !== null) {
    if (typeof fileSection !== "object" || Array.isArray(fileSection)) {
      throw new ConnectionConfigError(`"connections" must be an object of name → settings`);
    }
    for (const [name, raw] of Object.entries(fileSection)) {
      if (name === "") throw new ConnectionConfigError(`"connections" has an empty connection name`);
      if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
        throw new ConnectionConfigError(`connection '${name}': settings must be an object`);
      }
      const d = draft(name);
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        const setting = BY_NORMAL.get(normal(k));
        if (setting === undefined) {
          throw new ConnectionConfigError(
            `connection '${name}': unknown setting "${k}" (known: ${ALL_SETTINGS.join(", ")})`,
          );
        }
        const where = `connection '${name}': ${setting}`;
        if (isSecretSetting(setting)) {
          d.secrets[setting] = fileSecret(v, where, env);
          if (typeof v === "string" && setting !== "accessKeyId") {
            warn(
              `${where} is written inline in the config file; use {"env": "VAR"} or {"file": "/path"} outside development`,
            );
          }
        } else {
          if (typeof v !== "string" || v === "")
            throw new ConnectionConfigError(`${where} must be a non-empty string`);
          d.text[setting] = v;
        }
      }
    }
  }

  for (const [k, v] of Object.entries(env)) {
    if (!k.startsWith(ENV_PREFIX) || v === undefined) continue;
    const rest = k.slice(ENV_PREFIX.length);
    const match = ENV_SUFFIXES.find(([suffix]) => rest.endsWith(suffix) && rest.length > suffix.length);
    if (match === undefined) {
      throw new ConnectionConfigError(
        `${k}: expected ${ENV_PREFIX}<NAME>_<SETTING> with SETTING one of ${[...new Set(ENV_SUFFIXES.map(([s]) => s.slice(1)))].join(", ")}`,
      );
    }
    const [suffix, setting, isFile] = match;
    // SQL folds unquoted identifiers to lower case: AWS CONNECTION = minio finds C2S_CONNECTION_MINIO_….
    const name = rest.slice(0, -suffix.length).toLowerCase();
    if (v === "") throw new ConnectionConfigError(`${k} is empty`);
    const d = draft(name);
    if (isSecretSetting(setting)) {
      const s: Secret = isFile ? { kind: "file", path: v } : { kind: "env", name: k, value: v };
      if (s.kind === "file") readSecret(s);
      d.secrets[setting] = s;
    } else {
      d.text[setting] = v;
    }
  }

  const connections = new Map<string, AwsConnection>();
  for (const [name, d] of drafts) connections.set(name, build(name, d));

  const ambientEndpoint = checkEndpoint(
    env.AWS_ENDPOINT_URL_S3 || env.AWS_ENDPOINT_URL || undefined,
    "AWS_ENDPOINT_URL",
  );
  const ambientRegion = env.AWS_REGION || env.AWS_DEFAULT_REGION || undefined;
  let ambient: AwsConnection | undefined;
  const catalog = catalogPolicy(opts.catalog ?? {}, connections, ambientEndpoint, ambientRegion);
  return {
    catalog,
    get(name?: string): AwsConnection {
      if (name === undefined) {
        const def = connections.get("default");
        if (def !== undefined) return def;
        ambient ??= new AwsConnection("(default credentials)", {
          endpoint: ambientEndpoint,
          region: ambientRegion,
        });
        return ambient;
      }
      const exact = connections.get(name);
      if (exact !== undefined) return exact;
      const folded = [...connections.values()].filter((c) => c.name.toLowerCase() === name.toLowerCase());
      if (folded.length === 1) return folded[0]!;
      throw new PgError(SqlState.undefinedObject, `unknown catalog item '${name}'`, {
        hint:
          connections.size === 0
            ? 'No AWS connections are configured; see the "connections" config section or C2S_CONNECTION_<NAME>_* variables.'
            : // Never the names: a user must not learn of connections meant for others.
              "Ask the operator of this proxy which AWS connections you may use.",
      });
    },
    names: () => [...connections.keys()].sort(),
    close() {
      for (const c of connections.values()) c.close();
      ambient?.close();
      catalog.identity.close();
    },
  };
}

function checkEndpoint(v: string | undefined, where: string): string | undefined {
  if (v === undefined) return undefined;
  let u: URL;
  try {
    u = new URL(v);
  } catch {
    throw new ConnectionConfigError(`${where}: endpoint is not a URL`);
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") {
    throw new ConnectionConfigError(`${where}: endpoint must be an http:// or https:// URL`);
  }
  // Never echo the value: the point of this check is that it may hold a password.
  if (u.username !== "" || u.password !== "") {
    throw new ConnectionConfigError(
      `${where}: endpoint must not contain credentials; use accessKeyId/secretAccessKey`,
    );
  }
  if (u.search !== "" || u.hash !== "")
    throw new ConnectionConfigError(`${where}: endpoint must not have a query or fragment`);
  return v.replace(/\/+$/, "");
}

function build(name: string, d: Draft): AwsConnection {
  const where = `connection '${name}'`;
  const { accessKeyId, secretAccessKey, sessionToken } = d.secrets;
  if ((accessKeyId === undefined) !== (secretAccessKey === undefined)) {
    throw new ConnectionConfigError(`${where}: accessKeyId and secretAccessKey must be given together`);
  }
  if (sessionToken !== undefined && accessKeyId === undefined) {
    throw new ConnectionConfigError(`${where}: sessionToken needs accessKeyId and secretAccessKey`);
  }
  const { endpoint, region, assumeRoleArn, assumeRoleSessionName, externalId, requireRole } = d.text;
  if (assumeRoleSessionName !== undefined && assumeRoleArn === undefined) {
    throw new ConnectionConfigError(`${where}: assumeRoleSessionName needs assumeRoleArn`);
  }
  if (externalId !== undefined && assumeRoleArn === undefined) {
    throw new ConnectionConfigError(`${where}: externalId needs assumeRoleArn`);
  }
  if (externalId !== undefined && !EXTERNAL_ID.test(externalId)) {
    throw new ConnectionConfigError(`${where}: externalId must be 2–1224 of letters, digits and _+=,.@:/-`);
  }
  if (assumeRoleArn !== undefined && !assumeRoleArn.startsWith("arn:")) {
    throw new ConnectionConfigError(`${where}: assumeRoleArn must be an ARN (arn:…)`);
  }
  return new AwsConnection(name, {
    endpoint: checkEndpoint(endpoint, where),
    region,
    assumeRoleArn,
    assumeRoleSessionName,
    externalId,
    requireRole,
    secrets: d.secrets,
  });
}
