// Fixed-width binary values: integers, floats and times copied byte-reversed (big-endian wire →
// little-endian Arrow), booleans as bits, numerics as Decimal128, uuids as 16 bytes.

import { PgError, SqlState } from "../../../errors.js";
import * as arrow from "../arrow.js";
import type { PlainValues } from "../dictionary-choice.js";
import { DECIMAL_MAX_PRECISION, NumericStatus, numericToDecimal128, numericToText } from "../numeric.js";
import {
  BaseBuilder,
  type ColumnContext,
  FlatKind,
  type FlatTarget,
  flatTarget,
  grow,
  SHRINK_BYTES,
} from "./builder.js";

/** Fixed-width values copied byte-reversed (big-endian wire → little-endian Arrow). */
export class ReversedBytesBuilder extends BaseBuilder {
  private bytes: Uint8Array;

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    readonly type: arrow.DataType,
    private readonly width: 2 | 4 | 8,
  ) {
    super(ctx, nullable);
    this.bytes = new Uint8Array(1024 * width);
  }

  append(buf: Buffer, pos: number, len: number): void {
    const w = this.width;
    if (len !== w) this.invalid(`expected ${w} bytes, got ${len}`);
    const o = this.length * w;
    if (o + w > this.bytes.length) this.bytes = grow(this.bytes, o + w);
    const b = this.bytes;
    if (w === 8) {
      b[o] = buf[pos + 7]!;
      b[o + 1] = buf[pos + 6]!;
      b[o + 2] = buf[pos + 5]!;
      b[o + 3] = buf[pos + 4]!;
      b[o + 4] = buf[pos + 3]!;
      b[o + 5] = buf[pos + 2]!;
      b[o + 6] = buf[pos + 1]!;
      b[o + 7] = buf[pos]!;
    } else if (w === 4) {
      b[o] = buf[pos + 3]!;
      b[o + 1] = buf[pos + 2]!;
      b[o + 2] = buf[pos + 1]!;
      b[o + 3] = buf[pos]!;
    } else {
      b[o] = buf[pos + 1]!;
      b[o + 1] = buf[pos]!;
    }
    this.length++;
  }

  protected appendEmpty(): void {
    const o = this.length * this.width;
    if (o + this.width > this.bytes.length) this.bytes = grow(this.bytes, o + this.width);
    this.bytes.fill(0, o, o + this.width);
    this.length++;
  }

  override appendColumn(
    buf: Buffer,
    pos: Int32Array,
    len: Int32Array,
    from: number,
    n: number,
    step: number,
  ): void {
    const w = this.width;
    const need = (this.length + n) * w;
    if (need > this.bytes.length) this.bytes = grow(this.bytes, need);
    const b = this.bytes;
    // 4- and 8-byte values as 32-bit words: a big-endian read (one load and a byte swap once
    // optimised) and a native-order store, instead of a load and a store per byte. 8-byte values
    // are two words, low word first; their bits go through integers only, so a float's NaN
    // payload is kept.
    const src = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const words = new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
    // The row count in a local: one store per run instead of one per value.
    let i = this.length;
    for (let k = from, end = from + n * step; k < end; k += step) {
      const l = len[k]!;
      if (l !== w) {
        this.length = i;
        if (l < 0) this.appendNull();
        else this.append(buf, pos[k]!, l); // reports the bad length
        i = this.length;
        continue;
      }
      const p = pos[k]!;
      if (w === 8) {
        words[2 * i] = src.getInt32(p + 4);
        words[2 * i + 1] = src.getInt32(p);
      } else if (w === 4) {
        words[i] = src.getInt32(p);
      } else {
        const o = 2 * i;
        b[o] = buf[p + 1]!;
        b[o + 1] = buf[p]!;
      }
      i++;
    }
    this.length = i;
  }

  flatTarget(rows: number): FlatTarget {
    const w = this.width;
    const need = (this.length + rows) * w;
    if (need > this.bytes.length) this.bytes = grow(this.bytes, need);
    const b = this.bytes;
    const kind = w === 2 ? FlatKind.Int16 : w === 4 ? FlatKind.Int32 : FlatKind.Int64;
    const words = new Int32Array(b.buffer, b.byteOffset, b.byteLength >> 2);
    return flatTarget(kind, this.nullable, this.validity, { bytes: b, words });
  }

  flatCommit(length: number): void {
    this.length = length;
  }

  plainValues(): PlainValues {
    // Parquet stores 8- and 16-bit integers as INT32.
    const w = this.width;
    return { kind: "fixed", bytes: this.bytes, width: w, cost: Math.max(w, 4), n: this.length };
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type as arrow.Int32,
      length: this.length,
      ...this.nullBitmap(),
      data: new Uint8Array(this.bytes.buffer, 0, this.length * this.width) as unknown as Int32Array,
    });
  }

  override reset(): void {
    super.reset();
    if (this.bytes.byteLength > SHRINK_BYTES) this.bytes = new Uint8Array(1024 * this.width);
  }
}

export class BoolBuilder extends BaseBuilder {
  readonly type = new arrow.Bool();
  private bits = new Uint8Array(1024);

  // The base class's loop, repeated here so that its `append` call sees only this class.
  override appendColumn(
    buf: Buffer,
    pos: Int32Array,
    len: Int32Array,
    from: number,
    n: number,
    step: number,
  ): void {
    for (let k = from, end = from + n * step; k < end; k += step) {
      const l = len[k]!;
      if (l < 0) this.appendNull();
      else this.append(buf, pos[k]!, l);
    }
  }
  append(buf: Buffer, pos: number, len: number): void {
    if (len !== 1) this.invalid(`expected 1 byte for boolean, got ${len}`);
    const i = this.length;
    if (i >> 3 >= this.bits.length) this.bits = grow(this.bits, (i >> 3) + 1);
    if (buf[pos] !== 0) this.bits[i >> 3]! |= 1 << (i & 7);
    this.length++;
  }

  protected appendEmpty(): void {
    const i = this.length;
    if (i >> 3 >= this.bits.length) this.bits = grow(this.bits, (i >> 3) + 1);
    this.length++;
  }

  flatTarget(rows: number): FlatTarget {
    const need = ((this.length + rows) >> 3) + 1;
    if (need > this.bits.length) this.bits = grow(this.bits, need);
    return flatTarget(FlatKind.Bool, this.nullable, this.validity, { bytes: this.bits });
  }

  flatCommit(length: number): void {
    this.length = length;
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      data: this.bits.subarray(0, (this.length + 7) >> 3),
    });
  }

  override reset(): void {
    super.reset();
    this.bits.fill(0);
  }
}

export class DecimalBuilder extends BaseBuilder {
  readonly type: arrow.Decimal;
  private values = new Uint32Array(4096);

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    private readonly scale: number,
  ) {
    super(ctx, nullable);
    this.type = new arrow.Decimal(scale, DECIMAL_MAX_PRECISION, 128);
  }

  // The run's room is made once; NULLs, truncated values and values Parquet cannot hold leave the
  // loop for `appendNull`/`append`, which report them as one value at a time would.
  override appendColumn(
    buf: Buffer,
    pos: Int32Array,
    len: Int32Array,
    from: number,
    n: number,
    step: number,
  ): void {
    const need = (this.length + n) << 2;
    if (need > this.values.length) this.values = grow(this.values, need);
    const out = this.values;
    const scale = this.scale;
    let i = this.length;
    for (let k = from, end = from + n * step; k < end; k += step) {
      const l = len[k]!;
      const p = pos[k]!;
      if (l < 8 || l < 8 + 2 * ((buf[p]! << 8) | buf[p + 1]!)) {
        this.length = i;
        if (l < 0) this.appendNull();
        else this.append(buf, p, l); // reports the truncated value
        i = this.length;
        continue;
      }
      if (numericToDecimal128(buf, p, l, scale, out, i << 2) !== NumericStatus.Ok) {
        this.length = i;
        this.append(buf, p, l); // reports the value
      }
      i++;
    }
    this.length = i;
  }
  append(buf: Buffer, pos: number, len: number): void {
    if (len < 8 || len < 8 + 2 * buf.readUInt16BE(pos)) this.invalid(`truncated numeric (${len} bytes)`);
    const o = this.length << 2;
    if (o + 4 > this.values.length) this.values = grow(this.values, o + 4);
    const st = numericToDecimal128(buf, pos, len, this.scale, this.values, o);
    if (st !== NumericStatus.Ok) this.fail(st, numericToText(buf, pos, len));
    this.length++;
  }

  private fail(st: NumericStatus, text: string): never {
    const c = this.ctx.column;
    const s = this.scale;
    const hint = `Cast the column in the query, e.g. round(${c}, ${s})::numeric(38,${s}), or to text.`;
    if (st === NumericStatus.Special) {
      throw new PgError(
        SqlState.numericValueOutOfRange,
        `column "${c}": cannot represent special numeric value ${text} in Parquet`,
        {
          hint: "Filter or replace NaN and infinite values in the query, or cast the column to text.",
        },
      );
    }
    if (st === NumericStatus.Overflow) {
      throw new PgError(
        SqlState.numericValueOutOfRange,
        `column "${c}": numeric value ${text} is out of range for Parquet decimal(38,${s})`,
        { hint },
      );
    }
    throw new PgError(
      SqlState.numericValueOutOfRange,
      `column "${c}": numeric value ${text} has more fractional digits than Parquet decimal(38,${s}) holds`,
      { hint },
    );
  }

  protected appendEmpty(): void {
    const o = this.length << 2;
    if (o + 4 > this.values.length) this.values = grow(this.values, o + 4);
    this.values.fill(0, o, o + 4);
    this.length++;
  }

  flatTarget(rows: number): FlatTarget {
    const need = (this.length + rows) << 2;
    if (need > this.values.length) this.values = grow(this.values, need);
    return flatTarget(FlatKind.Decimal, this.nullable, this.validity, {
      decimals: this.values,
      scale: this.scale,
    });
  }

  flatCommit(length: number): void {
    this.length = length;
  }

  plainValues(): PlainValues {
    // Precision 38: FIXED_LEN_BYTE_ARRAY(16) in Parquet.
    const bytes = new Uint8Array(this.values.buffer, this.values.byteOffset, this.length * 16);
    return { kind: "fixed", bytes, width: 16, cost: 16, n: this.length };
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      data: this.values.subarray(0, this.length * 4),
    });
  }
}

export class UuidBuilder extends BaseBuilder {
  readonly type = new arrow.FixedSizeBinary(16);
  private bytes = new Uint8Array(16 * 1024);

  // The base class's loop, repeated here so that its `append` call sees only this class.
  override appendColumn(
    buf: Buffer,
    pos: Int32Array,
    len: Int32Array,
    from: number,
    n: number,
    step: number,
  ): void {
    for (let k = from, end = from + n * step; k < end; k += step) {
      const l = len[k]!;
      if (l < 0) this.appendNull();
      else this.append(buf, pos[k]!, l);
    }
  }
  append(buf: Buffer, pos: number, len: number): void {
    if (len !== 16) this.invalid(`expected 16 bytes for uuid, got ${len}`);
    const o = this.length << 4;
    if (o + 16 > this.bytes.length) this.bytes = grow(this.bytes, o + 16);
    this.bytes.set(buf.subarray(pos, pos + 16), o);
    this.length++;
  }

  protected appendEmpty(): void {
    const o = this.length << 4;
    if (o + 16 > this.bytes.length) this.bytes = grow(this.bytes, o + 16);
    this.bytes.fill(0, o, o + 16);
    this.length++;
  }

  plainValues(): PlainValues {
    return { kind: "fixed", bytes: this.bytes, width: 16, cost: 16, n: this.length };
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      data: this.bytes.subarray(0, this.length * 16),
    });
  }
}
