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
  /** One Execute's DataRows, to the end (no FETCH loop): a loan to the encoder host may read them. */
  readonly rowsAsSent = true;
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
    // Two round trips: the transaction, the snapshot and the prepare in one write (each runs in
    // the state the one before left: the snapshot is fixed by the first SELECT, the prepare runs in
    // it); then what the described columns need to know of their types. An error in the first
    // write fails the ones after it in the aborted transaction, and the first error is reported.
    const begin = this.clientTransaction
      ? `SAVEPOINT ${SAVEPOINT}; SET LOCAL idle_in_transaction_session_timeout = 0; SET TRANSACTION READ ONLY`
      : "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SET LOCAL idle_in_transaction_session_timeout = 0";
    if (this.clientTransaction) this.inSavepoint = true;
    else this.inTransaction = true;
    const sql = this.source.kind === "query" ? this.source.sql : `SELECT * FROM ${this.source.name}`;
    this.prepared = true;
    const { result: snap, fields } = await this.client.queryAndPrepare(
      `${begin}; SELECT now()::text, pg_catalog.pg_current_snapshot()::text`,
      STMT,
      sql,
      signal,
    );
    const columns: ColumnInfo[] = fields.map((f) => ({
      name: f.name,
      typeOid: f.typeOid,
      typeMod: f.typeMod,
    }));
    return {
      columns,
      typeNames: await this.describeTypes(fields, opts.typeInfo ? columns : [], signal),
      snapshot: {
        upstream: "postgres",
        at: snap.rows[0]?.[0] ?? "",
        timestamp: snap.rows[0]?.[1] ?? undefined,
      },
    };
  }

  /**
   * The SQL type names of `fields` (for the manifest), and the catalog's description of the types
   * of `columns` the wire does not fully describe (ColumnInfo.type), in one round trip.
   */
  private async describeTypes(
    fields: readonly FieldDesc[],
    columns: ColumnInfo[],
    signal: AbortSignal,
  ): Promise<string[]> {
    if (fields.length === 0) return [];
    const oids = fields.map((f) => f.typeOid).join(",");
    const mods = fields.map((f) => f.typeMod).join(",");
    const catalogOids = oidsNeedingCatalog(columns);
    const [names, catalog] = await this.client.queries(
      [
        `SELECT pg_catalog.format_type(t.o, NULLIF(t.m, -1)) FROM unnest('{${oids}}'::oid[], '{${mods}}'::int4[]) WITH ORDINALITY AS t(o, m, n) ORDER BY t.n`,
        ...(catalogOids.length === 0 ? [] : [typeCatalogQuery(catalogOids)]),
      ],
      signal,
    );
    if (catalog !== undefined) {
      const keys = catalog.fields.map((f) => f.name);
      const rows = catalog.rows.map(
        (row) => Object.fromEntries(keys.map((n, i) => [n, row[i]])) as unknown as TypeCatalogRow,
      );
      for (const c of columns) c.type = typeInfoFromCatalog(rows, c.typeOid);
    }
    return names!.rows.map((row) => row[0] ?? "unknown");
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
