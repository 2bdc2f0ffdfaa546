// The seam between the export driver (src/copy) and the encoders. Encoders are pure: they turn
// pgwire row values into file bytes and decide where one file ends and the next begins; they do
// no I/O of their own.

/** One result column, as the upstream's RowDescription (plus catalog facts) describes it. */
export interface ColumnInfo {
  name: string;
  /** pg_type OID of the column. */
  typeOid: number;
  /** Type modifier from RowDescription (-1 when none): numeric precision/scale, varchar length... */
  typeMod: number;
  /** Nullability when the upstream knows it (Materialize's catalog); undefined = nullable. */
  nullable?: boolean;
  /**
   * Extra type facts the encoder may need and the wire does not carry (element type of arrays,
   * fields of composite types, Materialize list/map element types). Filled in by the planner.
   */
  type?: TypeInfo;
}

export interface TypeInfo {
  /** pg_type.typname, e.g. "int4", "_text", "my_composite". */
  name: string;
  /** 'b' base, 'c' composite, 'd' domain, 'e' enum, 'p' pseudo, 'r' range, 'm' multirange. */
  kind: string;
  /** For arrays (and Materialize lists): the element type. */
  element?: TypeInfo & { oid: number; typeMod: number };
  /** For composite types: the fields in order. */
  fields?: Array<{ name: string; oid: number; typeMod: number; type: TypeInfo; nullable?: boolean }>;
  /** For domains: the base type. */
  base?: TypeInfo & { oid: number; typeMod: number };
  /** For Materialize maps: the value type (keys are text). */
  value?: TypeInfo & { oid: number; typeMod: number };
  /**
   * Set by the Materialize snapshot: the OID is Materialize's (uint2/4/8, mz_timestamp, list, map
   * live at 16384+, where PostgreSQL puts user types).
   */
  materialize?: boolean;
}

/**
 * Where encoded bytes go. The export driver implements it: each file becomes one multipart upload.
 * Calls are synchronous; the driver applies backpressure between rows batches (see RowEncoder).
 */
export interface FileSink {
  /** A new file starts; `index` counts from 0. */
  openFile(index: number): void;
  /**
   * Bytes of the current file, in order. Unless the sink `copies`, it may keep the chunk: the
   * caller must not change its bytes until the sink calls `release` — once it no longer reads
   * them, if the caller gave one — or ever, if not.
   */
  write(chunk: Uint8Array, release?: () => void): void;
  /** The current file is complete and holds `rows` rows. */
  closeFile(rows: number): void;
  /** write() copies what it keeps before it returns: the caller may reuse the bytes at once. */
  readonly copies?: boolean;
}

export interface RowEncoder {
  /** File name extension without the dot: "csv", "csv.gz", "parquet". */
  readonly extension: string;
  /** Result format code to request per column: 0 text, 1 binary. */
  readonly resultFormats: readonly number[];
  /**
   * One row. `buf[pos..]` holds `nFields` values in DataRow layout: for each field an int32 length
   * (-1 = NULL) followed by that many bytes. The encoder must not keep a reference to `buf`.
   */
  writeRow(buf: Buffer, pos: number, nFields: number): void;
  /**
   * Whole DataRow messages (type byte, int32 length, int16 field count, fields) lying back to back
   * in `buf[start..end)`: the export's hot path, one call per socket read.
   */
  writeRows(buf: Buffer, start: number, end: number): void;
  /** True when the encoder holds enough rows that the driver should await flush() now. */
  readonly wantsFlush: boolean;
  /** Encodes what is buffered (e.g. a Parquet row group) and hands it to the sink. */
  flush(): Promise<void>;
  /** Ends the export: flushes and closes the last file. Always leaves at least one file. */
  finish(): Promise<void>;
  /** Frees whatever the encoder holds (WASM memory, workers) after success or failure. */
  dispose(): void;
}
