// PostgreSQL: one REPEATABLE READ, READ ONLY transaction; the first statement in it fixes the
// snapshot every later read sees. Rows come from a prepared statement in the requested formats.
//
// Inside the client's own transaction block the export reads in that transaction instead (what it
// sees, its own uncommitted writes included), under a savepoint: the savepoint scopes READ ONLY
// and the timeout below to the export, and rolling back to it leaves the client's transaction as
// it was. It is held until the export ends (end()/abandon()), not just until the last row: the
// client's transaction stays open while the uploads finish.
//
// idle_in_transaction_session_timeout is off (SET LOCAL) for the export: between its statements
// the session waits on S3 (the preflight, and in a client's transaction the uploads), and a
// client's own timeout must not terminate it meanwhile. SET LOCAL ends with the export's
// transaction, or is undone by ROLLBACK TO SAVEPOINT (PostgreSQL docs, SET: "The effects of SET
// or SET LOCAL are also canceled by rolling back to a savepoint that is earlier than the
// command"), so the client's value is back afterwards.
import {
  oidsNeedingCatalog,
  type TypeCatalogRow,
  typeCatalogQuery,
  typeInfoFromCatalog,
} from "../../encoders/parquet/catalog.js";
import type { ColumnInfo } from "../../encoders/types.js";
import type { CopySource } from "../statement.js";
import type { FieldDesc, UpstreamClient } from "../upstream-client.js";
import type { OpenedSnapshot, RowSink, SnapshotSource } from "./snapshot-source.js";

/** Name of the prepared statement (and portal) the export uses on the client's session. */
const STMT = "copy_to_s3_proxy_export";
const SAVEPOINT = "copy_to_s3_proxy_export";

export class PostgresSnapshot implements SnapshotSource {
  /** The export's own transaction is open. */
  private inTransaction = false;
  /** The export's savepoint in the client's transaction is set. */
  private inSavepoint = false;
  private prepared = false;

  constructor(
    private readonly client: UpstreamClient,
    private readonly source: CopySource,
    /** The client is in a transaction block: read in it (see the top). */
    private readonly clientTransaction = false,
  ) {}

  async open(opts: { typeInfo: boolean }, signal: AbortSignal): Promise<OpenedSnapshot> {
    if (this.clientTransaction) {
      this.inSavepoint = true;
      await this.client.query(
        `SAVEPOINT ${SAVEPOINT}; SET LOCAL idle_in_transaction_session_timeout = 0; SET TRANSACTION READ ONLY`,
        signal,
      );
    } else {
      this.inTransaction = true;
      await this.client.query(
        "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL idle_in_transaction_session_timeout = 0",
        signal,
      );
    }
    const snap = await this.client.query(
      "SELECT now()::text, pg_catalog.pg_current_snapshot()::text",
      signal,
    );
    const sql = this.source.kind === "query" ? this.source.sql : `SELECT * FROM ${this.source.name}`;
    this.prepared = true;
    const fields = await this.client.prepare(STMT, sql, signal);
    const columns: ColumnInfo[] = fields.map((f) => ({
      name: f.name,
      typeOid: f.typeOid,
      typeMod: f.typeMod,
    }));
    if (opts.typeInfo) await this.describeTypes(columns, signal);
    return {
      columns,
      typeNames: await this.typeNames(fields, signal),
      snapshot: {
        upstream: "postgres",
        at: snap.rows[0]?.[0] ?? "",
        timestamp: snap.rows[0]?.[1] ?? undefined,
      },
    };
  }

  private async describeTypes(columns: ColumnInfo[], signal: AbortSignal): Promise<void> {
    const oids = oidsNeedingCatalog(columns);
    if (oids.length === 0) return;
    const r = await this.client.query(typeCatalogQuery(oids), signal);
    const names = r.fields.map((f) => f.name);
    const rows = r.rows.map(
      (row) => Object.fromEntries(names.map((n, i) => [n, row[i]])) as unknown as TypeCatalogRow,
    );
    for (const c of columns) c.type = typeInfoFromCatalog(rows, c.typeOid);
  }

  private async typeNames(fields: readonly FieldDesc[], signal: AbortSignal): Promise<string[]> {
    if (fields.length === 0) return [];
    const oids = fields.map((f) => f.typeOid).join(",");
    const mods = fields.map((f) => f.typeMod).join(",");
    const r = await this.client.query(
      `SELECT pg_catalog.format_type(t.o, NULLIF(t.m, -1)) FROM unnest('{${oids}}'::oid[], '{${mods}}'::int4[]) WITH ORDINALITY AS t(o, m, n) ORDER BY t.n`,
      signal,
    );
    return r.rows.map((row) => row[0] ?? "unknown");
  }

  async read(resultFormats: readonly number[], sink: RowSink, signal: AbortSignal): Promise<void> {
    await this.client.execute(STMT, resultFormats, sink.rows, signal);
    this.prepared = false; // a successful execute closed the statement
    // Every row is read: end the transaction now, so the snapshot is not held during the uploads.
    // (The client's transaction holds its snapshot anyway; its savepoint goes at end().)
    if (!this.inTransaction) return;
    this.inTransaction = false;
    await this.client.query("ROLLBACK");
  }

  async end(): Promise<void> {
    if (!this.inSavepoint) return;
    this.inSavepoint = false;
    await this.client.query(`ROLLBACK TO SAVEPOINT ${SAVEPOINT}; RELEASE SAVEPOINT ${SAVEPOINT}`);
  }

  async abandon(): Promise<void> {
    try {
      if (this.inTransaction) {
        this.inTransaction = false;
        await this.client.query("ROLLBACK");
      }
      // Allowed in a failed transaction too; the transaction is failed again after (export.ts).
      if (this.inSavepoint) await this.end();
      if (this.prepared) {
        this.prepared = false;
        await this.client.query(`DEALLOCATE ${STMT}`);
      }
    } catch {
      // The upstream is gone, and the session with it.
    }
  }
}
