// Who may export with a configured AWS connection: decided by the upstream, in the user's own
// session. A connection with `requireRole` is usable only by members of that upstream role
// (PostgreSQL's pg_has_role(current_user, role, 'MEMBER'): direct or indirect membership, and
// every superuser); a connection without it by every user who can log in through the proxy
// (docs/security.md). The refusal names only the connection the user asked for.
import { PgError, SqlState } from "../errors.js";
import type { AwsConnection } from "./aws-connection.js";
import type { UpstreamClient } from "./upstream-client.js";

const lit = (s: string): string => `'${s.replace(/'/g, "''")}'`;

export async function authorizeConnection(
  conn: AwsConnection,
  client: UpstreamClient,
  signal: AbortSignal,
): Promise<void> {
  const role = conn.requireRole;
  if (role === undefined) return;
  // A role that does not exist makes pg_has_role fail (42704, naming it): ask for it first, so the
  // answer is the same refusal either way. CASE evaluates the branch only when the role exists.
  const r = await client.query(
    `SELECT CASE WHEN EXISTS (SELECT 1 FROM pg_catalog.pg_roles WHERE rolname = ${lit(role)}) ` +
      `THEN pg_catalog.pg_has_role(current_user, ${lit(role)}, 'MEMBER') ELSE false END`,
    signal,
  );
  const allowed = r.rows[0]?.[0];
  if (allowed === "t" || allowed === "true") return;
  throw new PgError(SqlState.insufficientPrivilege, `permission denied for AWS connection "${conn.name}"`);
}
