// Materialize (SPEC §5): the snapshot is the first part of a SUBSCRIBE, read through a cursor on
// the client's own session:
//
//   BEGIN;
//   SET LOCAL idle_in_transaction_session_timeout = 0;
//   DECLARE c CURSOR FOR SUBSCRIBE (<q>) WITH (PROGRESS);
//   FETCH <n> c;   -- repeated
//   CLOSE c; ROLLBACK;
//
// Output columns are mz_timestamp (numeric), mz_progressed (bool), mz_diff (bigint), then the
// query's columns (docs: "SUBSCRIBE › Output", "PROGRESS"). The first row is a progress row whose
// mz_timestamp is the snapshot time T (the AS OF; Materialize `src/adapter/src/active_compute_sink.rs`
// `initialize`); snapshot rows all carry T. The snapshot is complete at the first row of any kind
// with a later timestamp, or when the SUBSCRIBE itself ends: a query without a timestamp
// dependency, or over inputs whose frontier has closed, gets T = u64::MAX
// (`src/adapter/src/coord/timestamp_selection.rs`), its data follows the first progress row and
// then its upper is empty, so no later row ever comes (`active_compute_sink.rs` `process_response`,
// `test/testdrive/fetch-tail-timestamp-zero.td`). FETCH without a timeout waits for the first rows
// and returns 0 rows only once the SUBSCRIBE has ended (`src/sql/src/plan/statement/scl.rs`
// "FETCH defaults to WaitOnce"; `src/pgwire/src/protocol.rs` `send_rows`: a closed channel ends
// the FETCH at once), so a FETCH of 0 rows is the end of the snapshot. A row with mz_diff = k > 1
// is k copies of the row; a negative diff in a snapshot means corrupt input and ends the export.
//
// A query SUBSCRIBE refuses because it calls now(), current_user, … (0A000 "cannot materialize
// call to …": `src/adapter/src/optimize/subscribe.rs` prepares it as a maintained dataflow) is what
// Materialize's own COPY TO resolves at its snapshot time (`src/adapter/src/optimize/copy_to.rs`).
// Such a query is read as a one-shot peek instead: `DECLARE c CURSOR FOR <q>` and FETCH until a
// short batch (docs/materialize.md says what that costs).
//
// The transaction turns idle_in_transaction_session_timeout off for itself (SET LOCAL; Materialize's
// default is 2 minutes, `src/sql/src/session/vars/definitions.rs`): while uploads are slow the
// proxy stops reading between FETCHes, and the timeout would terminate the client's own session
// (`src/pgwire/src/protocol.rs` `advance_ready`). The export bounds such waits itself
// (exports.stallTimeoutMs).
//
// Round trips: BEGIN, the SET LOCAL, the DECLARE, the cursor's description and the first FETCH go
// out in one write (UpstreamClient.pipeline), and the peek's ROLLBACK, BEGIN, SET LOCAL, DECLARE and
// description in one more when SUBSCRIBE refuses the query. Materialize answers each message in the
// state the ones before left (Materialize `src/pgwire/src/protocol.rs`): a simple Query's error
// does not skip the next Query (`query` ends with `ready()` after the failing statement), but once
// the explicit transaction has failed (`send_error_and_get_state` → `fail_transaction`) every later
// statement but COMMIT/ROLLBACK is answered 25P02 (`query`: `is_aborted_txn` →
// `aborted_txn_error`), and a Parse so refused skips its Describe up to its Sync (`parse`, then
// `advance_drain`). So nothing after a failure runs, and the first error is the one reported, as
// when each statement waited for the one before.
//
// For Parquet, what Materialize's catalog says of the columns is read first, before the
// transaction (materialize-catalog-columns.ts).
import { randomBytes } from "node:crypto";
import type { ColumnInfo } from "../../encoders/types.js";
import { PgError, SqlState } from "../../errors.js";
import { forEachDataRow } from "../../wire/backend.js";
import type { CopySource } from "../statement.js";
import type { FieldDesc, RowCallback, UpstreamClient } from "../upstream-client.js";
import { type CatalogColumn, describeFromCatalog } from "./materialize-catalog-columns.js";
import { binaryAllowed, mzColumnTypmod, mzScalarInfo, mzTypeName } from "./materialize-types.js";
import type { OpenedSnapshot, RowSink, SnapshotSource } from "./snapshot-source.js";

const CURSOR = "copy_to_s3_proxy_subscribe";
/** Statements the export prepares are unnamed: nothing of theirs outlives the export. */
const UNNAMED = "";

export interface MaterializeSnapshotOptions {
  /** Rows per FETCH. */
  fetchRows?: number;
}

/** The export's transaction, with no idle-in-transaction timeout for it only (see the top). */
const BEGIN = [{ sql: "BEGIN" }, { sql: "SET LOCAL idle_in_transaction_session_timeout = 0" }] as const;

const FIXED = 3; // mz_timestamp, mz_progressed, mz_diff
/** The AS OF of a SUBSCRIBE without a timestamp dependency (timestamp_selection.rs). */
const U64_MAX = "18446744073709551615";

export class MaterializeSnapshot implements SnapshotSource {
  private inTransaction = false;
  private tempView: string | null = null;
  private columns: ColumnInfo[] = [];
  /** T, as the text Materialize sends for the numeric mz_timestamp (digits only). */
  private asOf: Buffer = Buffer.alloc(0);
  /** How the rows are read: the SUBSCRIBE, or a one-shot peek for what SUBSCRIBE refuses. */
  private mode: "subscribe" | "peek" = "subscribe";
  private readonly fetchRows: number;

  constructor(
    private readonly client: UpstreamClient,
    private readonly source: CopySource,
    opts: MaterializeSnapshotOptions = {},
  ) {
    this.fetchRows = Math.max(1, Math.floor(opts.fetchRows ?? 10_000));
  }

  private get sql(): string {
    return this.source.kind === "query" ? this.source.sql : `SELECT * FROM ${this.source.name}`;
  }

  async open(opts: { typeInfo: boolean }, signal: AbortSignal): Promise<OpenedSnapshot> {
    // Catalog work first: DDL (the temporary view) cannot run inside the SUBSCRIBE's transaction.
    const catalog = opts.typeInfo ? await this.catalogColumns(signal) : null;

    // One round trip: the transaction, its setting, the cursor, its description and T, in one
    // write (see "Round trips" at the top). Whatever of it ran, abandon() rolls it back.
    this.inTransaction = true;
    let fields: FieldDesc[];
    let first: string | null = null;
    try {
      const r = await this.client.pipeline(
        [
          ...BEGIN,
          { sql: `DECLARE ${CURSOR} CURSOR FOR SUBSCRIBE (${this.sql}\n) WITH (PROGRESS)` },
          // Described, never executed (FETCH 0 is "no rows" in Materialize, "the current row" in
          // PostgreSQL): the cursor's columns.
          { sql: `FETCH 0 ${CURSOR}`, prepare: UNNAMED },
          // T: the first update is a progress message at the AS OF time (docs: SUBSCRIBE ›
          // PROGRESS). FETCH 1, so that no snapshot row is read before the encoder says which
          // formats it wants. Materialize plans the SUBSCRIBE here, at its first FETCH
          // (test/testdrive/fetch-tail-as-of.td).
          { sql: `FETCH 1 ${CURSOR}` },
        ],
        signal,
      );
      fields = await this.dataFields(r[3]!.fields, signal);
      const row = r[4]!.rows[0];
      if (row === undefined) {
        throw new PgError(SqlState.protocolViolation, "SUBSCRIBE ended before its first progress row");
      }
      first = row[0] ?? null;
    } catch (e) {
      if (!refusedBySubscribe(e)) throw e;
      // now(), current_user, …: what COPY TO evaluates once, at its snapshot time. The failed
      // transaction ends and the peek's begins, in one write again.
      const r = await this.client.pipeline(
        [
          { sql: "ROLLBACK" },
          ...BEGIN,
          { sql: `DECLARE ${CURSOR} CURSOR FOR ${this.sql}\n` },
          { sql: this.sql, prepare: UNNAMED },
        ],
        signal,
      );
      this.mode = "peek";
      fields = r[4]!.fields;
    }
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
    const typeNames = this.columns.map((c, i) => mzTypeName(c.typeOid, c.typeMod, catalog?.[i]?.typeName));
    const readAt = new Date().toISOString();
    if (this.mode === "peek") {
      // The peek's timestamp is not on the wire; when the read began is what we know.
      return { columns: this.columns, typeNames, snapshot: { upstream: "materialize", at: readAt } };
    }
    if (first === null) {
      throw new PgError(SqlState.protocolViolation, "SUBSCRIBE sent a row without mz_timestamp");
    }
    if (!/^\d+$/.test(first)) {
      throw new PgError(SqlState.protocolViolation, `unexpected mz_timestamp from SUBSCRIBE: ${first}`);
    }
    this.asOf = Buffer.from(first, "latin1");
    const ms = Number(first);
    return {
      columns: this.columns,
      typeNames,
      snapshot: {
        upstream: "materialize",
        // Materialize's timestamps are milliseconds since the Unix epoch (EpochMilliseconds
        // timeline); u64::MAX means "valid at any time", so the wall clock says when it was read.
        at: first !== U64_MAX && Number.isSafeInteger(ms) ? new Date(ms).toISOString() : readAt,
        timestamp: first,
      },
    };
  }

  /** The data columns of the cursor: `described` (FETCH's description) minus the three SUBSCRIBE columns. */
  private async dataFields(described: FieldDesc[], signal: AbortSignal): Promise<FieldDesc[]> {
    if (described.length >= FIXED && described[0]!.name === "mz_timestamp") return described.slice(FIXED);
    // A server that does not describe FETCH: describe the query itself.
    return this.client.prepare(UNNAMED, this.sql, signal);
  }

  /** What the catalog says of the columns (materialize-catalog-columns.ts). */
  private async catalogColumns(signal: AbortSignal): Promise<CatalogColumn[]> {
    const view = `copy_to_s3_proxy_${randomBytes(6).toString("hex")}`;
    // Remembered before it exists: abandon() drops it IF EXISTS, whatever a cancel interrupted.
    this.tempView = view;
    const columns = await describeFromCatalog(this.client, this.sql, view, signal);
    this.tempView = null;
    return columns;
  }

  async read(resultFormats: readonly number[], sink: RowSink, signal: AbortSignal): Promise<void> {
    if (this.mode === "peek") await this.readPeek(resultFormats, sink, signal);
    else await this.readSubscribe(resultFormats, sink, signal);
    // Every row is read: end the transaction, so the read does not hold back compaction while
    // the uploads finish.
    await this.client.query(`CLOSE ${CURSOR}`, signal);
    this.inTransaction = false;
    await this.client.query("ROLLBACK");
  }

  /** The list and map columns only ever in text: Materialize has no binary encoding for them. */
  private dataFormats(resultFormats: readonly number[]): number[] {
    return this.columns.map((c, i) => (binaryAllowed(c.typeOid) ? (resultFormats[i] ?? 0) : 0));
  }

  /** A plain cursor: FETCH until a batch comes back short. */
  private async readPeek(
    resultFormats: readonly number[],
    sink: RowSink,
    signal: AbortSignal,
  ): Promise<void> {
    const formats = this.dataFormats(resultFormats);
    const fetchSql = `FETCH ${this.fetchRows} ${CURSOR}`;
    for (;;) {
      if (signal.aborted) throw PgError.from(signal.reason);
      let got = 0;
      await this.client.prepare(UNNAMED, fetchSql, signal);
      await this.client.execute(
        UNNAMED,
        formats,
        (buf, start, end, count) => {
          got += count;
          sink.rows(buf, start, end, count);
        },
        signal,
      );
      if (got < this.fetchRows) return;
    }
  }

  private async readSubscribe(
    resultFormats: readonly number[],
    sink: RowSink,
    signal: AbortSignal,
  ): Promise<void> {
    const onRow = sink.row;
    // The three SUBSCRIBE columns in text; list and map only ever in text (Materialize refuses
    // the Bind: "binary encoding of list types is not implemented").
    const formats = [0, 0, 0, ...this.dataFormats(resultFormats)];
    const asOf = this.asOf;
    let done = false;
    let fetched = 0;
    let failure: PgError | null = null;
    const handle: RowCallback = (buf, pos, n) => {
      fetched++;
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
    // No timeout: FETCH waits for rows, and returns none only when the SUBSCRIBE has ended.
    const fetchSql = `FETCH ${this.fetchRows} ${CURSOR}`;
    while (!done) {
      if (signal.aborted) throw PgError.from(signal.reason);
      fetched = 0;
      await this.client.prepare(UNNAMED, fetchSql, signal);
      await this.client.execute(
        UNNAMED,
        formats,
        (buf, start, end) => forEachDataRow(buf, start, end, handle),
        signal,
      );
      if (fetched === 0) done = true; // the SUBSCRIBE is complete: its data is all in
    }
    if (failure !== null) throw failure;
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

/**
 * SUBSCRIBE's refusal of a function that only a one-shot read can evaluate: 0A000 "cannot
 * materialize call to current_timestamp" (`src/adapter/src/optimize/subscribe.rs` prepares the
 * query with ExprPrepMaintained; the text and code are OptimizerError::UnmaterializableFunction's).
 */
function refusedBySubscribe(e: unknown): boolean {
  return (
    e instanceof PgError &&
    e.code === SqlState.featureNotSupported &&
    e.message.startsWith("cannot materialize call to ")
  );
}

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
