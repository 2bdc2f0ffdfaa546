// Named AWS connections (SPEC §6) for `COPY … WITH (AWS CONNECTION = name)`. The settings are
// Materialize's `CREATE CONNECTION … TO AWS` options: ENDPOINT, REGION, ACCESS KEY ID, SECRET ACCESS
// KEY, SESSION TOKEN, ASSUME ROLE ARN, ASSUME ROLE SESSION NAME — spelled camelCase in the config
// file ("accessKeyId"; "ACCESS KEY ID" and "access_key_id" are accepted too) and as
// C2S_CONNECTION_<NAME>_ACCESS_KEY_ID in the environment (environment wins per setting).
//
// Secrets are kept as *where to read them* ({"env": "VAR"}, {"file": "/path"}, or inline for
// development), live only in private fields, and are read when the SDK asks for credentials, so
// toJSON/inspect/logging of a connection can never show them, and a rotated secret file is picked up
// without a restart.

import { readFileSync } from "node:fs";
import { join } from "node:path";
import type { S3Client } from "@aws-sdk/client-s3";
import { fromTemporaryCredentials } from "@aws-sdk/credential-providers";
import { PgError, SqlState } from "../errors.js";
import { FileStore } from "./storage/file-store.js";
import { type ObjectStore, resolveStoreOptions, type StoreOptions } from "./storage/object-store.js";
import { createS3Client, type S3ClientSettings } from "./storage/s3-client.js";
import { S3Store } from "./storage/s3-store.js";
import type { TargetUrl } from "./storage/target-url.js";

/** Configuration errors are found at start, before the proxy listens. */
export class ConnectionConfigError extends Error {
  override name = "ConnectionConfigError";
}

export type SecretSource = string | { env: string } | { file: string };

export interface AwsConnectionSettings {
  endpoint?: string;
  region?: string;
  accessKeyId?: SecretSource;
  secretAccessKey?: SecretSource;
  sessionToken?: SecretSource;
  assumeRoleArn?: string;
  assumeRoleSessionName?: string;
  /** Not a Materialize option (Materialize derives it): the ExternalId the role's trust policy asks for. */
  externalId?: string;
  /**
   * Not an AWS setting: an upstream role a user must be a member of to export with this
   * connection, checked in the user's own session (connection-authorization.ts).
   */
  requireRole?: string;
}

type Setting = keyof AwsConnectionSettings;
const SECRET_SETTINGS = ["accessKeyId", "secretAccessKey", "sessionToken"] as const;
type SecretSetting = (typeof SECRET_SETTINGS)[number];
const TEXT_SETTINGS = [
  "endpoint",
  "region",
  "assumeRoleArn",
  "assumeRoleSessionName",
  "externalId",
  "requireRole",
] as const;
const ALL_SETTINGS: readonly Setting[] = [...TEXT_SETTINGS, ...SECRET_SETTINGS];
/** "ACCESS KEY ID", "access_key_id", "accessKeyId" → "accesskeyid". */
const normal = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, "");
const BY_NORMAL = new Map(ALL_SETTINGS.map((s) => [normal(s), s]));
const ENV_PREFIX = "C2S_CONNECTION_";
/** C2S_CONNECTION_<NAME>_<SUFFIX>; longest first so "_SESSION_TOKEN" never eats a name. */
const ENV_SUFFIXES: Array<[suffix: string, setting: Setting, file: boolean]> = ALL_SETTINGS.flatMap(
  (s): Array<[string, Setting, boolean]> => {
    const snake = s.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
    const forms: Array<[string, Setting, boolean]> = [[`_${snake}`, s, false]];
    if ((SECRET_SETTINGS as readonly string[]).includes(s)) forms.push([`_${snake}_FILE`, s, true]);
    return forms;
  },
).sort((a, b) => b[0].length - a[0].length);

type Secret =
  | { kind: "inline"; value: string }
  | { kind: "env"; name: string; value: string }
  | { kind: "file"; path: string };

function readSecret(s: Secret): string {
  if (s.kind === "file") {
    let v: string;
    try {
      v = readFileSync(s.path, "utf8").trim();
    } catch (err) {
      throw new ConnectionConfigError(
        `could not read secret file ${s.path}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
    if (v === "") throw new ConnectionConfigError(`secret file ${s.path} is empty`);
    return v;
  }
  return s.value;
}

function describeSecret(s: Secret | undefined): unknown {
  if (s === undefined) return undefined;
  if (s.kind === "env") return { env: s.name };
  if (s.kind === "file") return { file: s.path };
  return "[redacted]";
}

interface StaticCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
  expiration?: Date;
}

interface ClientOptions {
  maxAttempts: number;
  retryMode?: "standard" | "adaptive";
  requestTimeoutMs: number;
}

export class AwsConnection {
  readonly name: string;
  readonly endpoint: string | undefined;
  readonly region: string | undefined;
  readonly assumeRoleArn: string | undefined;
  readonly assumeRoleSessionName: string | undefined;
  /** Sent with AssumeRole (not a secret: it tells the role's trust policy which connection asks). */
  readonly externalId: string | undefined;
  /** An upstream role its users must be members of; undefined: every user may export with it. */
  readonly requireRole: string | undefined;
  /**
   * Who asks STS for the role, and where: a connection of the proxy's own configuration (its
   * credentials, its endpoint and region). Unset: this connection's own keys at its own endpoint.
   */
  readonly #via: AwsConnection | undefined;
  readonly #secrets: Partial<Record<SecretSetting, Secret>>;
  readonly #clients = new Map<string, S3Client>();

  constructor(
    name: string,
    s: {
      endpoint?: string | undefined;
      region?: string | undefined;
      assumeRoleArn?: string | undefined;
      assumeRoleSessionName?: string | undefined;
      externalId?: string | undefined;
      requireRole?: string | undefined;
      via?: AwsConnection | undefined;
      secrets?: Partial<Record<SecretSetting, Secret>>;
    },
  ) {
    this.name = name;
    this.endpoint = s.endpoint;
    this.region = s.region;
    this.assumeRoleArn = s.assumeRoleArn;
    this.assumeRoleSessionName = s.assumeRoleSessionName;
    this.externalId = s.externalId;
    this.requireRole = s.requireRole;
    this.#via = s.via;
    this.#secrets = { ...s.secrets };
  }

  /** How requests authenticate: static keys, an assumed role, or the SDK's default chain. */
  get authentication(): "static" | "assume-role" | "default-chain" {
    if (this.assumeRoleArn !== undefined) return "assume-role";
    return this.#secrets.accessKeyId !== undefined ? "static" : "default-chain";
  }

  /** Settings with every secret replaced by where it comes from. */
  toJSON(): Record<string, unknown> {
    return {
      name: this.name,
      endpoint: this.endpoint,
      region: this.region,
      accessKeyId: describeSecret(this.#secrets.accessKeyId),
      secretAccessKey: describeSecret(this.#secrets.secretAccessKey),
      sessionToken: describeSecret(this.#secrets.sessionToken),
      assumeRoleArn: this.assumeRoleArn,
      assumeRoleSessionName: this.assumeRoleSessionName,
      externalId: this.externalId,
      assumeRoleVia: this.#via?.name,
      authentication: this.authentication,
    };
  }

  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return `AwsConnection ${JSON.stringify(this.toJSON())}`;
  }

  toString(): string {
    return `AWS connection '${this.name}'`;
  }

  #staticCredentials(): (() => Promise<StaticCredentials>) | undefined {
    const { accessKeyId, secretAccessKey, sessionToken } = this.#secrets;
    if (accessKeyId === undefined || secretAccessKey === undefined) return undefined;
    return async () => ({
      accessKeyId: readSecret(accessKeyId),
      secretAccessKey: readSecret(secretAccessKey),
      ...(sessionToken === undefined ? {} : { sessionToken: readSecret(sessionToken) }),
      // The SDK caches credentials until ~5 min before expiration: files are re-read every ~10 min.
      expiration: new Date(Date.now() + 15 * 60_000),
    });
  }

  /** What signs this connection's requests; undefined = the SDK's default chain. */
  credentials(maxAttempts: number): S3ClientSettings["credentials"] {
    const via = this.#via;
    const base = via === undefined ? this.#staticCredentials() : via.credentials(maxAttempts);
    if (this.assumeRoleArn === undefined) return base;
    // S3-compatible servers with STS (MinIO, Ceph RGW, moto) serve it at the S3 endpoint; with
    // `via`, STS is reached where the proxy's own connection points, never where this one does.
    const sts = via ?? this;
    return fromTemporaryCredentials({
      params: {
        RoleArn: this.assumeRoleArn,
        RoleSessionName: this.assumeRoleSessionName ?? "copy-to-s3-proxy",
        ...(this.externalId === undefined ? {} : { ExternalId: this.externalId }),
      },
      ...(base === undefined ? {} : { masterCredentials: base }),
      clientConfig: {
        region: sts.region ?? "us-east-1",
        maxAttempts,
        ...(sts.endpoint === undefined ? {} : { endpoint: sts.endpoint }),
      },
    });
  }

  /** One client per connection and settings, so exports share its keep-alive sockets. */
  s3Client(o: ClientOptions): S3Client {
    const k = `${o.maxAttempts}/${o.retryMode ?? "standard"}/${o.requestTimeoutMs}`;
    let c = this.#clients.get(k);
    if (c === undefined) {
      c = createS3Client({
        endpoint: this.endpoint,
        region: this.region,
        credentials: this.credentials(o.maxAttempts),
        maxAttempts: o.maxAttempts,
        retryMode: o.retryMode,
        requestTimeoutMs: o.requestTimeoutMs,
      });
      this.#clients.set(k, c);
    }
    return c;
  }

  close(): void {
    for (const c of this.#clients.values()) c.destroy();
    this.#clients.clear();
  }
}

/**
 * How connections from Materialize's catalog (`CREATE CONNECTION … TO AWS`, which the proxy finds
 * but cannot read the secrets of) map to an identity the proxy holds. See docs/materialize.md.
 */
export interface CatalogConnectionSettings {
  /**
   * A configured connection whose credentials ask STS for a catalog connection's role, at that
   * connection's endpoint and region; its own ASSUME ROLE ARN, if any, is the jump role hopped
   * through first (Materialize's `aws_connection_role_arn`). Unset: the SDK's default chain at
   * AWS's STS, as Materialize's own environment does.
   */
  identity?: string | undefined;
  /** ExternalId = `mz_<prefix>_<connection id>`; unset: the catalog's own `external_id`. */
  externalIdPrefix?: string | undefined;
}

export interface CatalogPolicy {
  identity: AwsConnection;
  externalIdPrefix: string | undefined;
  /** True when the proxy's own configuration names this S3 endpoint (a configured connection's). */
  allowsEndpoint(endpoint: string): boolean;
}

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

/** STS's ExternalId characters and length (AWS STS API Reference, AssumeRole: ExternalId). */
const EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;

function catalogPolicy(
  s: CatalogConnectionSettings,
  connections: ReadonlyMap<string, AwsConnection>,
  ambientEndpoint: string | undefined,
  ambientRegion: string | undefined,
): CatalogPolicy {
  let identity: AwsConnection;
  if (s.identity === undefined) {
    // Materialize assumes roles with its environment's ambient credentials at the default STS
    // endpoint (Materialize `src/storage-types/src/connections/aws.rs`, `mz_aws_util::defaults()`).
    identity = new AwsConnection("(default credentials)", { region: ambientRegion });
  } else {
    const named = connections.get(s.identity);
    if (named === undefined) {
      throw new ConnectionConfigError(
        `catalogIdentity: no configured connection is named '${s.identity}' (configured: ${[...connections.keys()].sort().join(", ") || "none"})`,
      );
    }
    identity = named;
  }
  if (s.externalIdPrefix !== undefined && !EXTERNAL_ID.test(`mz_${s.externalIdPrefix}_u1`)) {
    throw new ConnectionConfigError(
      "catalogExternalIdPrefix: only letters, digits and _+=,.@:/- may appear in an ExternalId",
    );
  }
  const allowed = new Set<string>();
  for (const c of connections.values()) if (c.endpoint !== undefined) allowed.add(endpointKey(c.endpoint)!);
  if (ambientEndpoint !== undefined) allowed.add(endpointKey(ambientEndpoint)!);
  return {
    identity,
    externalIdPrefix: s.externalIdPrefix,
    allowsEndpoint: (endpoint) => {
      const k = endpointKey(endpoint);
      return k !== undefined && allowed.has(k);
    },
  };
}

/** scheme://host:port/path with the default port spelled out and no trailing '/'; undefined if unusable. */
function endpointKey(endpoint: string): string | undefined {
  let u: URL;
  try {
    u = new URL(endpoint);
  } catch {
    return undefined;
  }
  if (u.protocol !== "http:" && u.protocol !== "https:") return undefined;
  if (u.username !== "" || u.password !== "" || u.search !== "" || u.hash !== "") return undefined;
  const port = u.port || (u.protocol === "https:" ? "443" : "80");
  return `${u.protocol}//${u.hostname}:${port}${u.pathname.replace(/\/+$/, "")}`;
}

function isSecretSetting(s: Setting): s is SecretSetting {
  return (SECRET_SETTINGS as readonly string[]).includes(s);
}

function fileSecret(v: unknown, where: string, env: NodeJS.ProcessEnv): Secret {
  if (typeof v === "string") {
    if (v === "") throw new ConnectionConfigError(`${where} must not be empty`);
    return { kind: "inline", value: v };
  }
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && typeof o.env === "string" && o.env !== "") {
      const value = env[o.env];
      if (value === undefined || value === "") {
        throw new ConnectionConfigError(`${where}: environment variable ${o.env} is not set`);
      }
      return { kind: "env", name: o.env, value };
    }
    if (keys.length === 1 && typeof o.file === "string" && o.file !== "") {
      const s: Secret = { kind: "file", path: o.file };
      readSecret(s); // fail at start, not on the first export
      return s;
    }
  }
  throw new ConnectionConfigError(`${where} must be {"env": "VAR"}, {"file": "/path"} or a string`);
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

/**
 * The object store for a COPY target. `conn` is ignored for file:// targets. Keys given to the
 * store are relative to the target directory.
 */
export function createStore(
  conn: AwsConnection | undefined,
  target: TargetUrl,
  options?: StoreOptions,
  /** file:// only: every path must resolve below this directory (--file-root). */
  fileRoot?: string,
): ObjectStore {
  const o = resolveStoreOptions(options);
  if (target.scheme === "file") {
    return new FileStore({ dir: join(target.dir, target.prefix), bufferBytes: o.partSize, root: fileRoot });
  }
  if (conn === undefined)
    throw new PgError(SqlState.internalError, "an s3:// target needs an AWS connection");
  return new S3Store({
    client: conn.s3Client(o),
    bucket: target.bucket,
    prefix: target.prefix,
    partSize: o.partSize,
    partsInFlight: o.partsInFlight,
  });
}
