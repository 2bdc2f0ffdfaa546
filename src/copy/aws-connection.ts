// One named AWS connection (SPEC §6): its settings, how its requests authenticate, and its S3
// clients. Secrets live only in private fields and are read when the SDK asks for credentials, so
// toJSON/inspect/logging of a connection can never show them.

import type { S3Client } from "@aws-sdk/client-s3";
import { fromTemporaryCredentials } from "@aws-sdk/credential-providers";
import { describeSecret, readSecret, type Secret } from "./connection-secrets.js";
import type { SecretSetting } from "./connection-settings.js";
import { createS3Client, type S3ClientSettings } from "./storage/s3-client.js";

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
