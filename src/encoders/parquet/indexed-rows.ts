// The Parquet encoder's general path over a run of DataRows (any column types; the flat ones take
// ./flat-rows.ts first): two passes, first where every value of the run lies, then each column's
// values in one call to its builder, so the per-value work runs in loops of one class.
import { PgError, SqlState } from "../../errors.js";
import type { ColumnBuilder } from "./columns/builder.js";

const fieldsMismatch = (): PgError =>
  new PgError(SqlState.protocolViolation, "DataRow length does not match its fields");

export class IndexedRows {
  /** Where decode found each value of its run (row-major): positions and lengths. */
  private pos: Int32Array;
  private len: Int32Array;

  constructor(columns: number) {
    this.pos = new Int32Array(Math.max(1, 256 * columns));
    this.len = new Int32Array(this.pos.length);
  }

  /** Appends the whole DataRow messages of `buf[start..end)` to `b`; returns how many rows. */
  decode(buf: Buffer, start: number, end: number, b: readonly ColumnBuilder[]): number {
    const nCols = b.length;
    // The index is row-major: a row's stores go to consecutive slots. Column-major, with a
    // power-of-two row count per column, they went to slots a multiple of 4 KiB apart, which the
    // CPU serves slower (decode of the bench table 151 → 136 ms per 1M rows, docs/benchmarks.md,
    // session 12).
    let pos = this.pos;
    let len = this.len;
    let k = 0;
    let rows = 0;
    let p = start;
    // Big-endian int32 reads through a DataView: one load and a byte swap once optimised.
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    while (p < end) {
      // Message header: 'D', int32 length (from here), int16 field count.
      const next = p + 1 + dv.getInt32(p + 1);
      const nFields = dv.getUint16(p + 5);
      if (nFields !== nCols) {
        throw new PgError(SqlState.protocolViolation, `DataRow has ${nFields} fields, expected ${nCols}`);
      }
      if (k + nCols > pos.length) {
        this.grow(pos.length * 2);
        pos = this.pos;
        len = this.len;
      }
      p += 7;
      for (let i = 0; i < nCols; i++, k++) {
        // A field running past its message would have the DataView read past the batch.
        if (p + 4 > next) throw fieldsMismatch();
        const l = dv.getInt32(p);
        p += 4;
        pos[k] = p;
        len[k] = l;
        if (l > 0) p += l;
      }
      if (p !== next) throw fieldsMismatch();
      rows++;
    }
    for (let i = 0; i < nCols; i++) b[i]!.appendColumn(buf, pos, len, i, rows, nCols);
    return rows;
  }

  /** Room in the index for `slots` values (row r, column i at r·columns + i). */
  private grow(slots: number): void {
    const pos = new Int32Array(slots);
    const len = new Int32Array(slots);
    pos.set(this.pos);
    len.set(this.len);
    this.pos = pos;
    this.len = len;
  }
}
