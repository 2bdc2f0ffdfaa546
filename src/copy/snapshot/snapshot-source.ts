// One interface, one implementation per kind of upstream (SPEC §5). Both run on the client's own
// upstream session, so the database checks the client's privileges and its settings apply.
import type { ColumnInfo } from "../../encoders/types.js";
import type { RowCallback, RowsCallback } from "../upstream-client.js";

export interface SnapshotInfo {
  upstream: "postgres" | "materialize";
  /** When the snapshot was taken: PostgreSQL's transaction start, or Materialize's mz_timestamp. */
  at: string;
  /** Materialize: the snapshot timestamp T. PostgreSQL: the transaction snapshot (xmin:xmax:xips). */
  timestamp?: string;
}

export interface OpenedSnapshot {
  columns: ColumnInfo[];
  /** SQL type names for the manifest, e.g. "numeric(14,2)". */
  typeNames: string[];
  snapshot: SnapshotInfo;
}

/** Where a snapshot's rows go: whole DataRow messages as they arrive, or rows one by one. */
export interface RowSink {
  rows: RowsCallback;
  /** A row whose fields the source had to pick out itself (Materialize's SUBSCRIBE columns). */
  row: RowCallback;
}

export interface SnapshotSource {
  /**
   * Starts the snapshot and describes the result. With `typeInfo`, fills ColumnInfo.type for the
   * columns whose type the wire does not fully describe (Parquet needs it; CSV does not).
   */
  open(opts: { typeInfo: boolean }, signal: AbortSignal): Promise<OpenedSnapshot>;
  /**
   * Streams every row of the snapshot to `sink`, in the given result formats (one per column),
   * and ends the snapshot's hold on the upstream (transaction, cursor) once the last row is read.
   */
  read(resultFormats: readonly number[], sink: RowSink, signal: AbortSignal): Promise<void>;
  /**
   * read()'s `rows` are the statement's DataRows as the upstream sent them, so the encoder host
   * may read them off the upstream socket itself (row-relay.ts). Absent: the rows are the
   * source's to pick (Materialize's SUBSCRIBE and FETCH).
   */
  readonly rowsAsSent?: boolean;
  /**
   * After a successful export: gives back what the snapshot still holds (in a client's
   * transaction, the export's savepoint). Absent: nothing is held after read().
   */
  end?(): Promise<void>;
  /** Leaves the session as it was found, after a failure or cancel. Never throws. */
  abandon(): Promise<void>;
}
