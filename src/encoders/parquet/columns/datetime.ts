// Dates and timestamps: PostgreSQL's 2000-01-01 epoch shifted to Arrow's 1970-01-01, infinities
// refused (Parquet has no such values).

import { PgError, SqlState } from "../../../errors.js";
import * as arrow from "../arrow.js";
import type { PlainValues } from "../dictionary-choice.js";
import { BaseBuilder, type ColumnContext, FlatKind, type FlatTarget, flatTarget, grow } from "./builder.js";

// PostgreSQL counts days and microseconds from 2000-01-01, Arrow from 1970-01-01.
export const EPOCH_SHIFT_DAYS = 10957;
const EPOCH_SHIFT_US = 946684800000000;
const TWO32 = 4294967296;
export const SHIFT_US_HI = Math.floor(EPOCH_SHIFT_US / TWO32);
export const SHIFT_US_LO = EPOCH_SHIFT_US - SHIFT_US_HI * TWO32;
export const DATE_PINF = 0x7fffffff;
export const DATE_NINF = -0x80000000;

export class DateBuilder extends BaseBuilder {
  readonly type = new arrow.DateDay();
  private values = new Int32Array(1024);

  override appendColumn(
    buf: Buffer,
    pos: Int32Array,
    len: Int32Array,
    from: number,
    n: number,
    step: number,
  ): void {
    if (this.length + n > this.values.length) this.values = grow(this.values, this.length + n);
    const values = this.values;
    const src = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let i = this.length;
    for (let k = from, end = from + n * step; k < end; k += step) {
      const l = len[k]!;
      const d = l === 4 ? src.getInt32(pos[k]!) : DATE_PINF;
      if (d === DATE_PINF || d === DATE_NINF) {
        // NULLs, bad lengths and infinities: the one-value path says what is wrong.
        this.length = i;
        if (l < 0) this.appendNull();
        else this.append(buf, pos[k]!, l);
        i = this.length;
        continue;
      }
      values[i] = d + EPOCH_SHIFT_DAYS;
      i++;
    }
    this.length = i;
  }
  append(buf: Buffer, pos: number, len: number): void {
    if (len !== 4) this.invalid(`expected 4 bytes for date, got ${len}`);
    const d = buf.readInt32BE(pos);
    if (d === DATE_PINF || d === DATE_NINF) {
      throw new PgError(
        SqlState.datetimeFieldOverflow,
        `column "${this.ctx.column}": date ${d > 0 ? "infinity" : "-infinity"} cannot be represented in Parquet`,
        { hint: "Filter or replace infinite dates in the query, e.g. with NULLIF or CASE." },
      );
    }
    const i = this.length;
    if (i >= this.values.length) this.values = grow(this.values, i + 1);
    this.values[i] = d + EPOCH_SHIFT_DAYS;
    this.length++;
  }

  protected appendEmpty(): void {
    const i = this.length;
    if (i >= this.values.length) this.values = grow(this.values, i + 1);
    this.values[i] = 0;
    this.length++;
  }

  flatTarget(rows: number): FlatTarget {
    if (this.length + rows > this.values.length) this.values = grow(this.values, this.length + rows);
    return flatTarget(FlatKind.Date, this.nullable, this.validity, { words: this.values });
  }

  flatCommit(length: number): void {
    this.length = length;
  }

  plainValues(): PlainValues {
    const bytes = new Uint8Array(this.values.buffer, this.values.byteOffset, this.length * 4);
    return { kind: "fixed", bytes, width: 4, cost: 4, n: this.length };
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      data: this.values.subarray(0, this.length),
    });
  }
}

export class TimestampBuilder extends BaseBuilder {
  readonly type: arrow.TimestampMicrosecond;
  // int64 as [lo, hi] pairs: avoids a BigInt per value.
  private values = new Int32Array(2048);

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    private readonly tz: boolean,
  ) {
    super(ctx, nullable);
    this.type = new arrow.TimestampMicrosecond(tz ? "+00:00" : null);
  }

  override appendColumn(
    buf: Buffer,
    pos: Int32Array,
    len: Int32Array,
    from: number,
    n: number,
    step: number,
  ): void {
    const need = (this.length + n) << 1;
    if (need > this.values.length) this.values = grow(this.values, need);
    const values = this.values;
    const src = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let i = this.length;
    for (let k = from, end = from + n * step; k < end; k += step) {
      const l = len[k]!;
      if (l === 8) {
        const p = pos[k]!;
        const hi = src.getInt32(p);
        const lo = src.getUint32(p + 4);
        let lw = lo + SHIFT_US_LO;
        let h = hi + SHIFT_US_HI;
        if (lw >= TWO32) {
          lw -= TWO32;
          h++;
        }
        // Infinities (±2^63 before the shift) and years past 294000 overflow the high word:
        // the one-value path below names them.
        if (h <= 0x7fffffff && !(hi === -0x80000000 && lo === 0)) {
          values[2 * i] = lw | 0;
          values[2 * i + 1] = h;
          i++;
          continue;
        }
      }
      this.length = i;
      if (l < 0) this.appendNull();
      else this.append(buf, pos[k]!, l);
      i = this.length;
    }
    this.length = i;
  }
  append(buf: Buffer, pos: number, len: number): void {
    if (len !== 8) this.invalid(`expected 8 bytes for timestamp, got ${len}`);
    const hi = buf.readInt32BE(pos);
    const lo = buf.readUInt32BE(pos + 4);
    if ((hi === 0x7fffffff && lo === 0xffffffff) || (hi === -0x80000000 && lo === 0)) {
      this.outOfRange(hi > 0 ? "infinity" : "-infinity");
    }
    let l = lo + SHIFT_US_LO;
    let h = hi + SHIFT_US_HI;
    if (l >= TWO32) {
      l -= TWO32;
      h++;
    }
    if (h > 0x7fffffff) this.outOfRange("a value after year 294000");
    const i = this.length << 1;
    if (i + 2 > this.values.length) this.values = grow(this.values, i + 2);
    this.values[i] = l | 0;
    this.values[i + 1] = h;
    this.length++;
  }

  private outOfRange(what: string): never {
    throw new PgError(
      SqlState.datetimeFieldOverflow,
      `column "${this.ctx.column}": ${this.tz ? "timestamptz" : "timestamp"} ${what} cannot be represented in Parquet`,
      { hint: "Filter or replace infinite timestamps in the query, e.g. with NULLIF or CASE." },
    );
  }

  protected appendEmpty(): void {
    const i = this.length << 1;
    if (i + 2 > this.values.length) this.values = grow(this.values, i + 2);
    this.values[i] = 0;
    this.values[i + 1] = 0;
    this.length++;
  }

  flatTarget(rows: number): FlatTarget {
    const need = (this.length + rows) << 1;
    if (need > this.values.length) this.values = grow(this.values, need);
    return flatTarget(FlatKind.Timestamp, this.nullable, this.validity, { words: this.values });
  }

  flatCommit(length: number): void {
    this.length = length;
  }

  plainValues(): PlainValues {
    const bytes = new Uint8Array(this.values.buffer, this.values.byteOffset, this.length * 8);
    return { kind: "fixed", bytes, width: 8, cost: 8, n: this.length };
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      data: this.values.subarray(0, this.length * 2) as unknown as BigInt64Array,
    });
  }
}
