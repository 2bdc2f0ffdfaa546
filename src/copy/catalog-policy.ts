// What connections from Materialize's catalog may use: the identity that assumes their roles, their
// ExternalId, and the S3 endpoints the proxy's own configuration names (docs/materialize.md).

import { AwsConnection } from "./aws-connection.js";
import { ConnectionConfigError, EXTERNAL_ID } from "./connection-settings.js";

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

export function catalogPolicy(
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
