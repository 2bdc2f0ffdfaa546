// COPY TO S3 inside the client's own transaction block. Drivers open one implicitly (psycopg 3 and
// SQLAlchemy with autocommit off, postgres.js's sql.begin, JDBC with autoCommit false), so the
// export runs in it where the upstream allows, and behaves there like any statement of the
// transaction: a failure leaves the transaction failed (ReadyForQuery 'E', then 25P02 until
// ROLLBACK), as PostgreSQL does for every failing statement in a block.
import type { UpstreamKind } from "../config.js";
import { PgError, SqlState } from "../errors.js";
import type { UpstreamClient } from "./upstream-client.js";
import { kindIsAmbiguous, upstreamKindOf } from "./upstream-kind.js";

export const AUTOCOMMIT_HINT =
  "Run COPY ... TO 's3://...' outside a transaction block: set autocommit on (psycopg: conn.autocommit = True; SQLAlchemy: isolation_level=\"AUTOCOMMIT\"; postgres.js: sql`...` instead of sql.begin; JDBC: setAutoCommit(true)).";

/**
 * Materialize: refused before anything runs, the client's transaction left as it was. The export
 * reads before its SUBSCRIBE (the target, the catalog, the column types, a temporary view for
 * Parquet) and ends with its own ROLLBACK; in a transaction a SUBSCRIBE must be the only read
 * (Materialize `src/adapter/src/coord/sequencer/inner/subscribe.rs` adds
 * `TransactionOps::Subscribe`; `src/adapter/src/session.rs` `add_transaction_ops` refuses a
 * SUBSCRIBE after a read with 25006 and a read after it with 25000), so not even an empty
 * transaction could hold the export, and the client's transaction could do nothing after it.
 * An upstream whose kind is unknown is refused too: probing it with `SELECT mz_version()` would
 * fail the client's transaction on PostgreSQL.
 */
export function checkTransactionAllowed(
  override: UpstreamKind,
  parameters: ReadonlyMap<string, string>,
): void {
  if (upstreamKindOf(override, parameters) === "postgres" && !kindIsAmbiguous(override, parameters)) return;
  throw new PgError(
    SqlState.activeSqlTransaction,
    "COPY ... TO 's3://...' cannot run inside a transaction block",
    {
      detail: "On Materialize the export runs a SUBSCRIBE in a transaction of its own.",
      hint: AUTOCOMMIT_HINT,
    },
  );
}

/**
 * After a failed export in the client's transaction: if the transaction is not failed yet (the
 * failure was the proxy's, e.g. S3, not the upstream's), one statement that fails makes it so.
 * Its text is what the server log shows. Never throws.
 */
export async function failClientTransaction(client: UpstreamClient): Promise<void> {
  if (client.txStatus !== "T") return;
  try {
    await client.query(
      "SELECT 'copy-to-s3-proxy: COPY TO failed, the transaction is aborted'::pg_catalog.int4",
    );
  } catch {
    // The expected error (or a lost upstream, which ends the session anyway).
  }
}
