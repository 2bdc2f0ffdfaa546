// Materialize (SPEC §5): the snapshot is the first part of a SUBSCRIBE, read through a cursor on
// the client's own session:
//
//   BEGIN;
//   DECLARE c CURSOR FOR SUBSCRIBE (<q>) WITH (PROGRESS);
//   FETCH <n> c WITH (timeout = '…');   -- repeated
//   CLOSE c; ROLLBACK;
//
// Output columns are mz_timestamp (numeric), mz_progressed (bool), mz_diff (bigint), then the
// query's columns (docs: "SUBSCRIBE › Output", "PROGRESS"). The first row is a progress row whose
// mz_timestamp is the snapshot time T (the AS OF); snapshot rows all carry T; the snapshot is
// complete at the first row of any kind with a later timestamp. A row with mz_diff = k > 1 is k
// copies of the row; a negative diff in a snapshot means corrupt input and ends the export.
//
// For Parquet, nullability and the element types of list/map/record columns (which the wire
// describes with generic OIDs) come from the catalog, through a temporary view created and
// dropped before the transaction starts: `SHOW COLUMNS` (mz_catalog.mz_columns) and `pg_typeof`.
import { randomBytes } from "node:crypto";
import type { ColumnInfo } from "../../encoders/types.js";
import { PgError, SqlState } from "../../errors.js";
import { forEachDataRow } from "../../wire/backend.js";
import type { CopySource } from "../statement.js";
import type { FieldDesc, RowCallback, UpstreamClient } from "../upstream-client.js";
import {
  binaryAllowed,
  type MzTypeInfo,
  mzColumnTypmod,
  mzScalarInfo,
  mzTypeName,
  parseMzTypeName,
} from "./materialize-types.js";
import type { OpenedSnapshot, RowSink, SnapshotSource } from "./snapshot-source.js";

const CURSOR = "copy_to_s3_proxy_subscribe";
/** Statements the export prepares are unnamed: nothing of theirs outlives the export. */
const UNNAMED = "";

export interface MaterializeSnapshotOptions {
  /** Rows per FETCH. */
  fetchRows?: number;
  /** `FETCH … WITH (timeout = …)`: how long one FETCH waits for rows before returning what it has. */
  fetchTimeout?: string;
}

const FIXED = 3; // mz_timestamp, mz_progressed, mz_diff

export class MaterializeSnapshot implements SnapshotSource {
  private inTransaction = false;
  private tempView: string | null = null;
  private columns: ColumnInfo[] = [];
  /** T, as the text Materialize sends for the numeric mz_timestamp (digits only). */
  private asOf: Buffer = Buffer.alloc(0);
  private readonly fetchRows: number;
  private readonly fetchTimeout: string;

  constructor(
    private readonly client: UpstreamClient,
    private readonly source: CopySource,
    opts: MaterializeSnapshotOptions = {},
  ) {
    this.fetchRows = Math.max(1, Math.floor(opts.fetchRows ?? 10_000));
    // Short: a FETCH with a timeout waits for the whole timeout unless it fills its count, so
    // the last, partial batch of a snapshot costs one timeout (docs: FETCH; protocol.rs send_rows).
    this.fetchTimeout = opts.fetchTimeout ?? "0.1s";
    if (!/^[0-9a-z. ]+$/i.test(this.fetchTimeout)) {
      throw new PgError(SqlState.invalidParameterValue, `invalid FETCH timeout: ${this.fetchTimeout}`);
    }
  }

  private get sql(): string {
    return this.source.kind === "query" ? this.source.sql : `SELECT * FROM ${this.source.name}`;
  }

  async open(opts: { typeInfo: boolean }, signal: AbortSignal): Promise<OpenedSnapshot> {
    // Catalog work first: DDL (the temporary view) cannot run inside the SUBSCRIBE's transaction.
    const catalog = opts.typeInfo ? await this.describeFromCatalog(signal) : null;

    await this.client.query("BEGIN", signal);
    this.inTransaction = true;
    await this.client.query(`DECLARE ${CURSOR} CURSOR FOR SUBSCRIBE (${this.sql}\n) WITH (PROGRESS)`, signal);
    const fields = await this.dataFields(signal);
    this.columns = fields.map((f, i) => {
      const c: ColumnInfo = {
        name: f.name,
        typeOid: f.typeOid,
        typeMod: mzColumnTypmod(f.typeOid, f.typeMod),
      };
      const scalar = mzScalarInfo(f.typeOid);
      if (scalar !== undefined) c.type = scalar;
      const cat = catalog?.[i];
      if (cat !== undefined) {
        if (cat.nullable !== undefined) c.nullable = cat.nullable;
        if (cat.type !== undefined) c.type = cat.type;
      }
      return c;
    });

    // T: the first update is a progress message at the AS OF time (docs: SUBSCRIBE › PROGRESS).
    // FETCH 1, so that no snapshot row is read before the encoder says which formats it wants.
    let first: string | null = null;
    while (first === null) {
      const r = await this.client.query(`FETCH 1 ${CURSOR} WITH (timeout = '${this.fetchTimeout}')`, signal);
      const row = r.rows[0];
      if (row !== undefined) first = row[0] ?? null;
      if (row !== undefined && first === null) {
        throw new PgError(SqlState.protocolViolation, "SUBSCRIBE sent a row without mz_timestamp");
      }
      if (signal.aborted) throw PgError.from(signal.reason);
    }
    if (!/^\d+$/.test(first)) {
      throw new PgError(SqlState.protocolViolation, `unexpected mz_timestamp from SUBSCRIBE: ${first}`);
    }
    this.asOf = Buffer.from(first, "latin1");
    const ms = Number(first);
    return {
      columns: this.columns,
      typeNames: this.columns.map((c, i) => mzTypeName(c.typeOid, c.typeMod, catalog?.[i]?.typeName)),
      snapshot: {
        upstream: "materialize",
        // Materialize's timestamps are milliseconds since the Unix epoch (EpochMilliseconds timeline).
        at: Number.isSafeInteger(ms) ? new Date(ms).toISOString() : first,
        timestamp: first,
      },
    };
  }

  /** The data columns of the cursor (FETCH's description minus the three SUBSCRIBE columns). */
  private async dataFields(signal: AbortSignal): Promise<FieldDesc[]> {
    // Described, never executed (FETCH 0 is "no rows" in Materialize, "the current row" in PostgreSQL).
    const fields = await this.client.prepare(UNNAMED, `FETCH 0 ${CURSOR}`, signal);
    if (fields.length >= FIXED && fields[0]!.name === "mz_timestamp") return fields.slice(FIXED);
    // A server that does not describe FETCH: describe the query itself.
    return this.client.prepare(UNNAMED, this.sql, signal);
  }

  /**
   * Nullability from SHOW COLUMNS and, for columns the wire describes generically, the type as
   * Materialize names it (pg_typeof), of a temporary view over the query.
   */
  private async describeFromCatalog(
    signal: AbortSignal,
  ): Promise<Array<{ nullable?: boolean; type?: MzTypeInfo; typeName?: string }>> {
    const view = `copy_to_s3_proxy_${randomBytes(6).toString("hex")}`;
    // Remembered before it exists: abandon() drops it IF EXISTS, whatever a cancel interrupted.
    this.tempView = view;
    await this.client.query(`CREATE TEMPORARY VIEW ${view} AS ${this.sql}\n`, signal);
    const shown = await this.client.query(`SHOW COLUMNS FROM ${view}`, signal);
    const col = (name: string): number => shown.fields.findIndex((f) => f.name === name);
    const iNullable = col("nullable");
    const iType = col("type");
    const out = shown.rows.map((r) => {
      const n = iNullable < 0 ? null : r[iNullable];
      const entry: { nullable?: boolean; type?: MzTypeInfo; typeName?: string; shownType?: string } = {};
      if (n === "t" || n === "f") entry.nullable = n === "t";
      if (iType >= 0 && r[iType] != null) entry.shownType = r[iType]!;
      return entry;
    });
    // Which columns need their full type name: generic list/map/record, by the name SHOW COLUMNS
    // gives (`list`, `map`, `record`, or a custom type's name — pg_typeof tells them apart).
    const want = out
      .map((e, i) => ({ e, i }))
      .filter(({ e }) => e.shownType !== undefined && !SIMPLE.has(e.shownType.replace(/\(.*\)$/, "")));
    if (want.length > 0) {
      const aliases = out.map((_, i) => `"c${i + 1}"`).join(", ");
      const exprs = want
        .map(
          ({ i }) => `pg_typeof((SELECT t."c${i + 1}" FROM ${view} AS t(${aliases}) LIMIT 1)) AS "c${i + 1}"`,
        )
        .join(", ");
      const r = await this.client.query(`SELECT ${exprs}`, signal);
      const row = r.rows[0] ?? [];
      want.forEach(({ e }, k) => {
        const name = row[k];
        if (name == null) return;
        e.typeName = name;
        const t = parseMzTypeName(name);
        if (t !== undefined) e.type = t;
      });
    }
    await this.client.query(`DROP VIEW ${view}`, signal);
    this.tempView = null;
    return out.map(({ nullable, type, typeName }) => {
      const o: { nullable?: boolean; type?: MzTypeInfo; typeName?: string } = {};
      if (nullable !== undefined) o.nullable = nullable;
      if (type !== undefined) o.type = type;
      if (typeName !== undefined) o.typeName = typeName;
      return o;
    });
  }

  async read(resultFormats: readonly number[], sink: RowSink, signal: AbortSignal): Promise<void> {
    const onRow = sink.row;
    const cols = this.columns;
    // The three SUBSCRIBE columns in text; list and map only ever in text (Materialize has no
    // binary encoding for them and refuses the Bind: "binary encoding of list types is not
    // implemented").
    const formats = [
      0,
      0,
      0,
      ...cols.map((c, i) => (binaryAllowed(c.typeOid) ? (resultFormats[i] ?? 0) : 0)),
    ];
    const asOf = this.asOf;
    let done = false;
    let failure: PgError | null = null;
    const handle: RowCallback = (buf, pos, n) => {
      if (done) return;
      if (n < FIXED) {
        failure = new PgError(SqlState.protocolViolation, `SUBSCRIBE row with ${n} columns`);
        done = true;
        return;
      }
      // mz_timestamp
      const tsLen = buf.readInt32BE(pos);
      const tsAt = pos + 4;
      let p = tsAt + Math.max(tsLen, 0);
      if (tsLen < 0 || compareDigits(buf, tsAt, tsLen, asOf) > 0) {
        done = true; // the first update after T: the snapshot is complete
        return;
      }
      // mz_progressed
      const prLen = buf.readInt32BE(p);
      const progressed = prLen === 1 && buf[p + 4] === 0x74; /* t */
      p += 4 + Math.max(prLen, 0);
      // mz_diff
      const dLen = buf.readInt32BE(p);
      const diffText = dLen < 0 ? null : buf.toString("latin1", p + 4, p + 4 + dLen);
      p += 4 + Math.max(dLen, 0);
      if (progressed) return;
      const diff = diffText === null ? Number.NaN : Number(diffText);
      if (!Number.isSafeInteger(diff)) {
        failure = new PgError(SqlState.protocolViolation, `unexpected mz_diff from SUBSCRIBE: ${diffText}`);
        done = true;
        return;
      }
      if (diff < 0) {
        failure = new PgError(
          SqlState.internalError,
          `Invalid data in source, saw retractions (${-diff}) for row that does not exist: ${renderRow(buf, p, n - FIXED, formats)}`,
        );
        done = true;
        return;
      }
      for (let k = 0; k < diff; k++) onRow(buf, p, n - FIXED);
    };
    const fetchSql = `FETCH ${this.fetchRows} ${CURSOR} WITH (timeout = '${this.fetchTimeout}')`;
    while (!done) {
      if (signal.aborted) throw PgError.from(signal.reason);
      await this.client.prepare(UNNAMED, fetchSql, signal);
      await this.client.execute(
        UNNAMED,
        formats,
        (buf, start, end) => forEachDataRow(buf, start, end, handle),
        signal,
      );
    }
    if (failure !== null) throw failure;
    // Every row is read: end the transaction, so the SUBSCRIBE does not hold back compaction
    // while the uploads finish.
    await this.client.query(`CLOSE ${CURSOR}`, signal);
    this.inTransaction = false;
    await this.client.query("ROLLBACK");
  }

  async abandon(): Promise<void> {
    try {
      if (this.inTransaction) {
        this.inTransaction = false;
        await this.client.query("ROLLBACK");
      }
      if (this.tempView !== null) {
        const v = this.tempView;
        this.tempView = null;
        await this.client.query(`DROP VIEW IF EXISTS ${v}`);
      }
    } catch {
      // The upstream is gone, and the session with it.
    }
  }
}

/** SHOW COLUMNS type names that need no further description. */
const SIMPLE = new Set([
  "boolean",
  "bytea",
  "character",
  "character varying",
  "date",
  "real",
  "double precision",
  "smallint",
  "integer",
  "bigint",
  "uint2",
  "uint4",
  "uint8",
  "interval",
  "jsonb",
  "json",
  "numeric",
  "oid",
  "text",
  "time",
  "timestamp",
  "timestamp without time zone",
  "timestamp with time zone",
  "uuid",
  "mz_timestamp",
]);

/** Compares a non-negative integer in ASCII digits with `ref` (also digits, no leading zeros). */
function compareDigits(buf: Buffer, at: number, len: number, ref: Buffer): number {
  // Materialize sends numerics without leading zeros; a fraction would only follow the integer part.
  let intLen = 0;
  while (intLen < len && buf[at + intLen] !== 0x2e /* . */) intLen++;
  if (intLen !== ref.length) return intLen - ref.length;
  const c = buf.compare(ref, 0, ref.length, at, at + intLen); // >0: buf's digits sort after ref's
  if (c !== 0) return c;
  for (let i = intLen + 1; i < len; i++) if (buf[at + i] !== 0x30) return 1;
  return 0;
}

/** The row for the retraction error: text values as Materialize prints a row, binary ones in hex. */
function renderRow(buf: Buffer, pos: number, n: number, formats: readonly number[]): string {
  const parts: string[] = [];
  let p = pos;
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(p);
    p += 4;
    if (len < 0) parts.push("NULL");
    else {
      parts.push(
        formats[FIXED + i] === 1
          ? `\\x${buf.toString("hex", p, p + len)}`
          : JSON.stringify(buf.toString("utf8", p, p + len)),
      );
      p += len;
    }
  }
  return `(${parts.join(", ")})`;
}
