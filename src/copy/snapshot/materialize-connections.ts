// AWS connections from Materialize's catalog (SPEC §6): when `AWS CONNECTION = name` names no
// connection configured in the proxy but the upstream is a Materialize holding a
// `CREATE CONNECTION name TO AWS (…)` object, its non-secret settings (ENDPOINT, REGION, ASSUME
// ROLE ARN, ASSUME ROLE SESSION NAME) are used with the proxy's own credentials (the AWS SDK's
// default chain), which is what Materialize itself does with an assume-role connection. The
// user needs USAGE on the connection, as Materialize requires for COPY TO (superusers bypass).
//
// Catalog (materialize.com/docs/sql/system-catalog): mz_catalog.mz_connections (id, oid,
// schema_id, name, type), mz_internal.mz_aws_connections (id, endpoint, region, assume_role_arn,
// assume_role_session_name), mz_catalog.mz_schemas, mz_catalog.mz_databases; functions
// has_connection_privilege(connection oid, privilege) and mz_is_superuser() (docs: sql/functions).
import { PgError, SqlState } from "../../errors.js";
import { AwsConnection, type ConnectionRegistry } from "../connections.js";
import type { UpstreamClient } from "../upstream-client.js";

/** Connections built from the catalog, by their settings: reused across exports (their S3 clients). */
const cache = new Map<string, AwsConnection>();
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
    const found = await lookup(opts.client, name, opts.signal);
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
      `SELECT d.name, s.name, c.name, a.endpoint, a.region, a.assume_role_arn, a.assume_role_session_name,
         (has_connection_privilege(c.oid, 'USAGE') OR mz_is_superuser())::text
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
  const [dbName, schemaName, itemName, endpoint, region, roleArn, sessionName, usage] = row;
  const full = [dbName, schemaName, itemName].filter((x) => x != null).join(".");
  if (usage !== "true") {
    throw new PgError(SqlState.insufficientPrivilege, `permission denied for CONNECTION "${full}"`, {
      hint: "COPY TO with AWS CONNECTION needs USAGE on the connection.",
    });
  }
  const settings = {
    endpoint: endpoint ?? undefined,
    region: region ?? undefined,
    assumeRoleArn: roleArn ?? undefined,
    assumeRoleSessionName: sessionName ?? undefined,
  };
  const key = JSON.stringify([full, settings]);
  let conn = cache.get(key);
  if (conn === undefined) {
    if (cache.size >= CACHE_MAX) {
      const [oldKey, old] = cache.entries().next().value as [string, AwsConnection];
      cache.delete(oldKey);
      old.close();
    }
    conn = new AwsConnection(full, settings);
    cache.set(key, conn);
  }
  return conn;
}
