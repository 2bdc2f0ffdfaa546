// AWS connections from Materialize's catalog (SPEC §6): when `AWS CONNECTION = name` names no
// connection configured in the proxy but the upstream is a Materialize holding a
// `CREATE CONNECTION name TO AWS (…)` object, the proxy does what Materialize does with it, as far
// as an identity the proxy holds allows (docs/materialize.md, "AWS connections from the catalog"):
//  - ASSUME ROLE ARN: the proxy's catalog identity (ConnectionRegistry.catalog) asks STS — at the
//    identity's own endpoint, never the catalog's — for the role, with ExternalId
//    `mz_<prefix>_<connection id>` as Materialize sends it (Materialize
//    `src/storage-types/src/connections/aws.rs`, AwsAssumeRole::external_id) and the connection's
//    session name, else `copy-to-s3-proxy-<connection id>`.
//  - ACCESS KEY ID / SECRET ACCESS KEY: refused; Materialize's secrets cannot be read from SQL.
//  - ENDPOINT: used only when the proxy's own configuration names it (a configured connection's
//    endpoint), so CREATE CONNECTION cannot aim credentials at a host of its choosing.
// The user needs USAGE on the connection, as Materialize requires for COPY TO (superusers bypass).
//
// Catalog (Materialize `test/aws-localstack/aws-connection/aws-connection.td`, doc/user/content/sql/
// create-connection.md): mz_catalog.mz_connections (id, oid, schema_id, name, type),
// mz_internal.mz_aws_connections (id, endpoint, region, assume_role_arn, assume_role_session_name,
// external_id, …), mz_catalog.mz_schemas, mz_catalog.mz_databases; functions
// has_connection_privilege(connection oid, privilege) and mz_is_superuser() (docs: sql/functions).
import { PgError, SqlState } from "../../errors.js";
import { AwsConnection } from "../aws-connection.js";
import type { ConnectionRegistry } from "../connections.js";
import type { UpstreamClient } from "../upstream-client.js";

/** Connections built from the catalog, by registry and settings: reused across exports (their S3 clients). */
const caches = new WeakMap<ConnectionRegistry, Map<string, AwsConnection>>();
const CACHE_MAX = 64;

export async function resolveAwsConnection(
  registry: ConnectionRegistry,
  name: string | undefined,
  opts: { materialize: boolean; client: UpstreamClient; signal: AbortSignal },
): Promise<AwsConnection> {
  try {
    return registry.get(name);
  } catch (e) {
    if (
      name === undefined ||
      !opts.materialize ||
      !(e instanceof PgError) ||
      e.code !== SqlState.undefinedObject
    ) {
      throw e;
    }
    const found = await lookup(registry, opts.client, name, opts.signal);
    if (found === null) throw e;
    return found;
  }
}

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

/** `name`, `schema.name` or `db.schema.name`, as an identifier list (quotes honoured, else folded). */
function nameParts(name: string): string[] | null {
  const parts: string[] = [];
  const re = /\s*(?:"((?:[^"]|"")*)"|([A-Za-z_][A-Za-z0-9_$]*))\s*(\.|$)/gy;
  let end = false;
  while (!end) {
    const m = re.exec(name);
    if (m === null) break;
    parts.push(m[1] !== undefined ? m[1].replace(/""/g, '"') : m[2]!.toLowerCase());
    end = m[3] === "";
  }
  return end && parts.length >= 1 && parts.length <= 3 ? parts : null;
}

async function lookup(
  registry: ConnectionRegistry,
  client: UpstreamClient,
  name: string,
  signal: AbortSignal,
): Promise<AwsConnection | null> {
  const parts = nameParts(name);
  if (parts === null) return null;
  const item = parts.at(-1)!;
  const schema = parts.length >= 2 ? parts.at(-2)! : null;
  const db = parts.length === 3 ? parts[0]! : null;
  // Unqualified names resolve along the search path, as Materialize resolves them.
  const where = [
    `c.name = ${lit(item)}`,
    "c.type = 'aws'",
    schema === null ? "s.name = ANY (current_schemas(true)::text[])" : `s.name = ${lit(schema)}`,
    db === null ? "(d.name = current_database() OR d.name IS NULL)" : `d.name = ${lit(db)}`,
  ].join(" AND ");
  let r: Awaited<ReturnType<UpstreamClient["query"]>>;
  try {
    r = await client.query(
      `SELECT d.name, s.name, c.name, c.id, a.endpoint, a.region, a.assume_role_arn, a.assume_role_session_name,
         a.external_id, (has_connection_privilege(c.oid, 'USAGE') OR mz_is_superuser())::text
       FROM mz_catalog.mz_connections c
       JOIN mz_internal.mz_aws_connections a ON a.id = c.id
       JOIN mz_catalog.mz_schemas s ON s.id = c.schema_id
       LEFT JOIN mz_catalog.mz_databases d ON d.id = s.database_id
       WHERE ${where}
       LIMIT 1`,
      signal,
    );
  } catch (e) {
    if (signal.aborted) throw e;
    return null; // no such catalog (an older Materialize): as if the name were unknown
  }
  const row = r.rows[0];
  if (row === undefined) return null;
  const [dbName, schemaName, itemName, id, endpoint, region, roleArn, sessionName, catalogExternalId, usage] =
    row;
  const full = [dbName, schemaName, itemName].filter((x) => x != null).join(".");
  if (usage !== "true") {
    throw new PgError(SqlState.insufficientPrivilege, `permission denied for CONNECTION "${full}"`, {
      hint: "COPY TO with AWS CONNECTION needs USAGE on the connection.",
    });
  }
  if (roleArn == null) {
    throw new PgError(
      SqlState.featureNotSupported,
      `AWS CONNECTION "${full}" authenticates with ACCESS KEY ID and SECRET ACCESS KEY, which the proxy cannot read`,
      {
        hint: `Configure a connection named "${itemName}" in the proxy ("connections" in its config file or C2S_CONNECTION_<NAME>_* variables), or use a connection with ASSUME ROLE ARN.`,
      },
    );
  }
  const policy = registry.catalog;
  // The endpoint is not echoed: whoever created the connection may have put credentials in it.
  if (endpoint != null && !policy.allowsEndpoint(endpoint)) {
    throw new PgError(
      SqlState.insufficientPrivilege,
      `AWS CONNECTION "${full}" names an ENDPOINT this proxy does not send credentials to`,
      {
        hint: "The proxy sends credentials only to the endpoints of the connections in its own configuration.",
      },
    );
  }
  // Without an endpoint the region becomes part of an AWS host name.
  if (region != null && !/^[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*$/.test(region)) {
    throw new PgError(SqlState.invalidParameterValue, `AWS CONNECTION "${full}" has an invalid REGION`);
  }
  const externalId =
    policy.externalIdPrefix !== undefined && id != null
      ? `mz_${policy.externalIdPrefix}_${id}`
      : (catalogExternalId ?? undefined);
  if (externalId === undefined) {
    throw new PgError(SqlState.featureNotSupported, `AWS CONNECTION "${full}" has no external ID`, {
      hint: "Materialize forms it as mz_<prefix>_<connection id>; give the proxy the prefix with catalogExternalIdPrefix (C2S_CATALOG_EXTERNAL_ID_PREFIX).",
    });
  }
  const settings = {
    endpoint: endpoint ?? undefined,
    region: region ?? undefined,
    assumeRoleArn: roleArn,
    assumeRoleSessionName: sessionName ?? `copy-to-s3-proxy-${id ?? "catalog"}`,
    externalId,
  };
  const key = JSON.stringify([full, settings]);
  let cache = caches.get(registry);
  if (cache === undefined) {
    cache = new Map();
    caches.set(registry, cache);
  }
  let conn = cache.get(key);
  if (conn === undefined) {
    if (cache.size >= CACHE_MAX) {
      const [oldKey, old] = cache.entries().next().value as [string, AwsConnection];
      cache.delete(oldKey);
      old.close();
    }
    conn = new AwsConnection(full, { ...settings, via: policy.identity });
    cache.set(key, conn);
  }
  return conn;
}
