// One pass over a run of DataRows for tables of flat columns (integers, floats, booleans, dates,
// timestamps, numerics, text and bytea): each row's values go straight into their builders'
// buffers as the row is read. The encoder's general path (ParquetEncoder.writeRows) makes two:
// an index of where every value lies, then one loop per column over it. On the bench table this
// pass decodes in ~75–80% of the two-pass time (docs/benchmarks.md, session 14): no index is
// written and read back, and every row's bytes are read once, in order.
//
// It takes only the regular case. At the first value it would not write as the column's builder
// would — a wrong length, a NULL in a NOT NULL column, an infinite date or timestamp, a numeric
// Parquet cannot hold, a message whose lengths do not add up — it stops before that row, and the
// encoder hands that row and the rest of the run to the general path, which writes them or reports
// them exactly as before. Values of the row it stopped in are rewritten there (the same bytes, so
// the same values and NULLs).
import type { ColumnBuilder, Validity } from "./columns/builder.js";
import { FlatKind } from "./columns/builder.js";
import { DATE_NINF, DATE_PINF, EPOCH_SHIFT_DAYS, SHIFT_US_HI, SHIFT_US_LO } from "./columns/datetime.js";
import { NumericStatus, numericToDecimal128 } from "./numeric.js";

// The FlatKinds as module constants: a switch over enum members loads them from the enum object
// at every comparison, where constants compile to a jump table (~25% of this pass).
const INT16: number = FlatKind.Int16;
const INT32: number = FlatKind.Int32;
const INT64: number = FlatKind.Int64;
const DATE: number = FlatKind.Date;
const TIMESTAMP: number = FlatKind.Timestamp;
const BOOL: number = FlatKind.Bool;
const DECIMAL: number = FlatKind.Decimal;
const BYTES: number = FlatKind.Bytes;
const TWO32 = 4294967296;
/** Values over this many bytes are copied with one native copy; shorter ones a word at a time. */
const NATIVE_COPY_BYTES = 256;

export class FlatRows {
  /** Rows written by the last `decode`. */
  rows = 0;
  private readonly kinds: Int32Array;
  private readonly words: Int32Array[] = [];
  private readonly bytes: Uint8Array[] = [];
  private readonly views: DataView[] = [];
  private readonly decimals: Uint32Array[] = [];
  private readonly validity: Validity[] = [];
  private readonly dataLen: Int32Array;
  private readonly stride: Int32Array;
  private readonly scale: Int32Array;
  private readonly nullable: Uint8Array;

  private constructor(
    private readonly builders: readonly ColumnBuilder[],
    kinds: FlatKind[],
  ) {
    const n = builders.length;
    this.kinds = Int32Array.from(kinds);
    this.dataLen = new Int32Array(n);
    this.stride = new Int32Array(n);
    this.scale = new Int32Array(n);
    this.nullable = new Uint8Array(n);
  }

  /** A decoder for these builders, or null when one of them is not of a FlatKind layout. */
  static of(builders: readonly ColumnBuilder[]): FlatRows | null {
    const kinds: FlatKind[] = [];
    for (const b of builders) {
      const t = b.flatTarget?.(0, 0) ?? null;
      if (t === null || b.flatCommit === undefined) return null;
      kinds.push(t.kind);
    }
    return builders.length > 0 ? new FlatRows(builders, kinds) : null;
  }

  /**
   * Writes the whole DataRow messages of `buf[start..end)` to the builders, value r of the run at
   * index `base + r` (`base`: the builders' length now). Returns where it stopped: `end`, or the
   * start of the first row it leaves to the general path. `rows` says how many it wrote.
   */
  decode(buf: Buffer, start: number, end: number, base: number): number {
    this.rows = 0;
    const nCols = this.kinds.length;
    // Room for as many rows as the run could hold (a row is at least its header and a length
    // word per value), and for all of its bytes in each text column.
    const maxRows = Math.floor((end - start) / (7 + 4 * nCols)) + 1;
    for (let i = 0; i < nCols; i++) {
      const t = this.builders[i]!.flatTarget!(maxRows, end - start);
      if (t === null) return start;
      this.words[i] = t.words;
      this.bytes[i] = t.bytes;
      this.views[i] = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
      this.decimals[i] = t.decimals;
      this.validity[i] = t.validity;
      this.dataLen[i] = t.dataLen;
      this.stride[i] = t.stride;
      this.scale[i] = t.scale;
      this.nullable[i] = t.nullable ? 1 : 0;
    }
    const stop = this.run(buf, start, end, base);
    const length = base + this.rows;
    for (let i = 0; i < nCols; i++) {
      // A text column's data ends where its last whole row's value ends (not a row begun).
      const dataLen = this.kinds[i] === BYTES ? this.words[i]![length * this.stride[i]!]! : 0;
      this.builders[i]!.flatCommit!(length, dataLen);
    }
    return stop;
  }

  private run(buf: Buffer, start: number, end: number, base: number): number {
    const nCols = this.kinds.length;
    const kinds = this.kinds;
    const words = this.words;
    const bytes = this.bytes;
    const views = this.views;
    const decimals = this.decimals;
    const dataLen = this.dataLen;
    const stride = this.stride;
    const scale = this.scale;
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let p = start;
    let r = base;
    while (p < end) {
      const rowAt = p;
      if (end - p < 7) return rowAt;
      const next = p + 1 + dv.getInt32(p + 1);
      if (next > end || next < p + 7 || dv.getUint16(p + 5) !== nCols) return rowAt;
      p += 7;
      for (let i = 0; i < nCols; i++) {
        if (p + 4 > next) return rowAt;
        const l = dv.getInt32(p);
        p += 4;
        if (l > next - p) return rowAt;
        if (l < 0) {
          if (this.nullable[i] === 0) return rowAt;
          this.writeNull(i, r);
          continue;
        }
        switch (kinds[i]) {
          case INT32:
            if (l !== 4) return rowAt;
            words[i]![r] = dv.getInt32(p);
            break;
          case INT64: {
            if (l !== 8) return rowAt;
            const w = words[i]!;
            w[2 * r] = dv.getInt32(p + 4);
            w[2 * r + 1] = dv.getInt32(p);
            break;
          }
          case BYTES: {
            let d = dataLen[i]!;
            if (l > NATIVE_COPY_BYTES) bytes[i]!.set(buf.subarray(p, p + l), d);
            else {
              // 4 bytes at a time through DataViews (same byte order on both sides).
              const dst = views[i]!;
              const data = bytes[i]!;
              let j = 0;
              for (; j + 4 <= l; j += 4) dst.setInt32(d + j, dv.getInt32(p + j));
              for (; j < l; j++) data[d + j] = buf[p + j]!;
            }
            d += l;
            dataLen[i] = d;
            words[i]![(r + 1) * stride[i]!] = d;
            break;
          }
          case DECIMAL:
            if (l < 8 || l < 8 + 2 * ((buf[p]! << 8) | buf[p + 1]!)) return rowAt;
            if (numericToDecimal128(buf, p, l, scale[i]!, decimals[i]!, r << 2) !== NumericStatus.Ok)
              return rowAt;
            break;
          case TIMESTAMP: {
            if (l !== 8) return rowAt;
            const hi = dv.getInt32(p);
            const lo = dv.getUint32(p + 4);
            let lw = lo + SHIFT_US_LO;
            let h = hi + SHIFT_US_HI;
            if (lw >= TWO32) {
              lw -= TWO32;
              h++;
            }
            // Infinities and years past 294000: the builder names them.
            if (h > 0x7fffffff || (hi === -0x80000000 && lo === 0)) return rowAt;
            const w = words[i]!;
            w[2 * r] = lw | 0;
            w[2 * r + 1] = h;
            break;
          }
          case DATE: {
            if (l !== 4) return rowAt;
            const d = dv.getInt32(p);
            if (d === DATE_PINF || d === DATE_NINF) return rowAt;
            words[i]![r] = d + EPOCH_SHIFT_DAYS;
            break;
          }
          case BOOL: {
            if (l !== 1) return rowAt;
            const b = bytes[i]!;
            const m = 1 << (r & 7);
            // Set or cleared: a row written again after a fall-back must not keep an old bit.
            b[r >> 3] = buf[p] !== 0 ? b[r >> 3]! | m : b[r >> 3]! & ~m;
            break;
          }
          case INT16: {
            if (l !== 2) return rowAt;
            const b = bytes[i]!;
            b[2 * r] = buf[p + 1]!;
            b[2 * r + 1] = buf[p]!;
            break;
          }
          default:
            return rowAt;
        }
        p += l;
      }
      if (p !== next) return rowAt;
      r++;
      this.rows++;
    }
    return p;
  }

  /** A NULL at index r of column i: marked, and its slot holds what the builder's would (zeros, an empty value). */
  private writeNull(i: number, r: number): void {
    this.validity[i]!.setNull(r);
    const w = this.words[i]!;
    switch (this.kinds[i]) {
      case INT32:
      case DATE:
        w[r] = 0;
        break;
      case INT64:
      case TIMESTAMP:
        w[2 * r] = 0;
        w[2 * r + 1] = 0;
        break;
      case BYTES:
        w[(r + 1) * this.stride[i]!] = this.dataLen[i]!;
        break;
      case DECIMAL:
        this.decimals[i]!.fill(0, r << 2, (r << 2) + 4);
        break;
      case BOOL:
        this.bytes[i]![r >> 3]! &= ~(1 << (r & 7));
        break;
      case INT16:
        this.bytes[i]![2 * r] = 0;
        this.bytes[i]![2 * r + 1] = 0;
        break;
    }
  }
}
