// Column builders: pgwire binary values decoded straight into typed-array buffers, turned into
// Arrow `Data` per batch without copying. One builder class per physical layout; buffers are
// reused across batches (grown by doubling, shrunk back after an unusually large batch).
//
// Every append is (buf, pos, len) over the DataRow the driver hands in, so the hot path makes no
// per-value objects: int8/float/time bytes are copied byte-reversed into the little-endian
// buffer, timestamps are shifted with 32-bit halves, numerics go through numericToDecimal128.
import * as arrow from "apache-arrow";
import { PgError, SqlState } from "../../errors.js";
import type { PlainValues } from "./dictionary-choice.js";
import { elementBinary, MzTextError, parseMzList, parseMzMap } from "./mz-text.js";
import { DECIMAL_MAX_PRECISION, NumericStatus, numericToDecimal128, numericToText } from "./numeric.js";
import type { TypeNode } from "./types.js";

export interface ColumnBuilder {
  readonly length: number;
  /** A non-null value: `buf[pos..pos+len)` in the column's result format. */
  append(buf: Buffer, pos: number, len: number): void;
  appendNull(): void;
  /**
   * Values `k = from … from+n-1` of one column, value k at `buf[pos[k] .. pos[k]+len[k])`, NULL
   * where `len[k] < 0`: what `append`/`appendNull` one by one do, in one call per column and run
   * of rows (a loop the JIT sees with one builder class, instead of a call per value).
   */
  appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void;
  /** Arrow data for what was appended since the last reset (views of the builder's buffers). */
  finish(): arrow.Data;
  /** Forget the values; keep (or shrink) the buffers. */
  reset(): void;
  /** The Arrow type this builder produces. */
  readonly type: arrow.DataType;
  /**
   * The values appended since the last reset as a Parquet dictionary would hold them; absent for
   * nested and boolean columns (their dictionaries stay as arrow-rs decides).
   */
  plainValues?(): PlainValues;
}

/** Where errors come from, for messages that name the column. */
export interface ColumnContext {
  column: string;
}

const SHRINK_BYTES = 32 << 20;
const EXT_KEY = "ARROW:extension:name";

export function extMeta(ext: string): Map<string, string> {
  return new Map([[EXT_KEY, `materialize.v1.${ext}`]]);
}

function grow<T extends Uint8Array | Int32Array | Uint32Array | Int16Array | Float32Array>(
  a: T,
  need: number,
): T {
  if (need <= a.length) return a;
  let n = Math.max(a.length * 2, 64);
  while (n < need) n *= 2;
  const b = new (a.constructor as new (n: number) => T)(n);
  b.set(a);
  return b;
}

/** Validity bitmap that only exists once the first null shows up. */
class Validity {
  bits: Uint8Array | null = null;
  nulls = 0;

  setValid(i: number): void {
    const b = this.bits;
    if (b !== null) {
      if (i >> 3 >= b.length) this.bits = grow(b, (i >> 3) + 1);
      this.bits![i >> 3]! |= 1 << (i & 7);
    }
  }

  setNull(i: number): void {
    if (this.bits === null) {
      // Everything before the first null was valid.
      const b = new Uint8Array(Math.max(64, ((i >> 3) + 1) * 2));
      b.fill(0xff, 0, i >> 3);
      for (let k = i & ~7; k < i; k++) b[k >> 3]! |= 1 << (k & 7);
      this.bits = b;
    } else if (i >> 3 >= this.bits.length) {
      this.bits = grow(this.bits, (i >> 3) + 1);
    }
    this.bits[i >> 3]! &= ~(1 << (i & 7));
    this.nulls++;
  }

  view(n: number): Uint8Array | undefined {
    return this.bits === null || this.nulls === 0 ? undefined : this.bits.subarray(0, (n + 7) >> 3);
  }

  /** Back to "no nulls yet", which is the fast path; a batch with nulls allocates afresh. */
  reset(): void {
    this.bits = null;
    this.nulls = 0;
  }
}

abstract class BaseBuilder implements ColumnBuilder {
  length = 0;
  protected readonly validity = new Validity();
  abstract readonly type: arrow.DataType;

  constructor(
    protected readonly ctx: ColumnContext,
    protected readonly nullable: boolean,
  ) {}

  abstract append(buf: Buffer, pos: number, len: number): void;
  protected abstract appendEmpty(): void;

  appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    for (let k = from, end = from + n; k < end; k++) {
      const l = len[k]!;
      if (l < 0) this.appendNull();
      else this.append(buf, pos[k]!, l);
    }
  }

  appendNull(): void {
    if (!this.nullable) {
      throw new PgError(
        SqlState.nullValueNotAllowed,
        `null value in column "${this.ctx.column}" declared NOT NULL`,
      );
    }
    this.validity.setNull(this.length);
    this.appendEmpty();
  }

  abstract finish(): arrow.Data;

  reset(): void {
    this.length = 0;
    this.validity.reset();
  }

  protected nullBitmap(): { nullBitmap?: Uint8Array; nullCount: number } {
    const bm = this.validity.view(this.length);
    return bm === undefined ? { nullCount: 0 } : { nullBitmap: bm, nullCount: this.validity.nulls };
  }

  protected invalid(what: string): never {
    throw new PgError(SqlState.protocolViolation, `column "${this.ctx.column}": ${what}`);
  }
}

/** A builder whose rows are ranges of a child's entries (arrays, lists, maps): Arrow offsets. */
abstract class OffsetsBuilder extends BaseBuilder {
  private offsets = new Int32Array(1025);
  /** Entries in the child so far: where the current row ends. */
  protected abstract get childLength(): number;

  /** Ends the current row (valid or null) at the child's current length. */
  protected endRow(): void {
    const i = ++this.length;
    if (i >= this.offsets.length) this.offsets = grow(this.offsets, i + 1);
    this.offsets[i] = this.childLength;
  }

  protected appendEmpty(): void {
    this.endRow();
  }

  protected get valueOffsets(): Int32Array {
    return this.offsets.subarray(0, this.length + 1);
  }

  override reset(): void {
    super.reset();
    this.offsets[0] = 0;
  }
}

/** Fixed-width values copied byte-reversed (big-endian wire → little-endian Arrow). */
class ReversedBytesBuilder extends BaseBuilder {
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
    this.validity.setValid(this.length);
    this.length++;
  }

  protected appendEmpty(): void {
    const o = this.length * this.width;
    if (o + this.width > this.bytes.length) this.bytes = grow(this.bytes, o + this.width);
    this.bytes.fill(0, o, o + this.width);
    this.length++;
  }

  override appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    const w = this.width;
    const need = (this.length + n) * w;
    if (need > this.bytes.length) this.bytes = grow(this.bytes, need);
    const b = this.bytes;
    for (let k = from, end = from + n; k < end; k++) {
      const l = len[k]!;
      if (l !== w) {
        if (l < 0) this.appendNull();
        else this.append(buf, pos[k]!, l); // reports the bad length
        continue;
      }
      const p = pos[k]!;
      const o = this.length * w;
      if (w === 8) {
        b[o] = buf[p + 7]!;
        b[o + 1] = buf[p + 6]!;
        b[o + 2] = buf[p + 5]!;
        b[o + 3] = buf[p + 4]!;
        b[o + 4] = buf[p + 3]!;
        b[o + 5] = buf[p + 2]!;
        b[o + 6] = buf[p + 1]!;
        b[o + 7] = buf[p]!;
      } else if (w === 4) {
        b[o] = buf[p + 3]!;
        b[o + 1] = buf[p + 2]!;
        b[o + 2] = buf[p + 1]!;
        b[o + 3] = buf[p]!;
      } else {
        b[o] = buf[p + 1]!;
        b[o + 1] = buf[p]!;
      }
      this.validity.setValid(this.length);
      this.length++;
    }
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

class BoolBuilder extends BaseBuilder {
  readonly type = new arrow.Bool();
  private bits = new Uint8Array(1024);

  // The base class's loop, repeated here so that its `append` call sees only this class.
  override appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    for (let k = from, end = from + n; k < end; k++) {
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
    this.validity.setValid(i);
    this.length++;
  }

  protected appendEmpty(): void {
    const i = this.length;
    if (i >> 3 >= this.bits.length) this.bits = grow(this.bits, (i >> 3) + 1);
    this.length++;
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

// PostgreSQL counts days and microseconds from 2000-01-01, Arrow from 1970-01-01.
const EPOCH_SHIFT_DAYS = 10957;
const EPOCH_SHIFT_US = 946684800000000;
const TWO32 = 4294967296;
const SHIFT_US_HI = Math.floor(EPOCH_SHIFT_US / TWO32);
const SHIFT_US_LO = EPOCH_SHIFT_US - SHIFT_US_HI * TWO32;
const DATE_PINF = 0x7fffffff;
const DATE_NINF = -0x80000000;

class DateBuilder extends BaseBuilder {
  readonly type = new arrow.DateDay();
  private values = new Int32Array(1024);

  // The base class's loop, repeated here so that its `append` call sees only this class.
  override appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    for (let k = from, end = from + n; k < end; k++) {
      const l = len[k]!;
      if (l < 0) this.appendNull();
      else this.append(buf, pos[k]!, l);
    }
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
    this.validity.setValid(i);
    this.length++;
  }

  protected appendEmpty(): void {
    const i = this.length;
    if (i >= this.values.length) this.values = grow(this.values, i + 1);
    this.values[i] = 0;
    this.length++;
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

class TimestampBuilder extends BaseBuilder {
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

  // The base class's loop, repeated here so that its `append` call sees only this class.
  override appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    for (let k = from, end = from + n; k < end; k++) {
      const l = len[k]!;
      if (l < 0) this.appendNull();
      else this.append(buf, pos[k]!, l);
    }
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
    this.validity.setValid(this.length);
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

class DecimalBuilder extends BaseBuilder {
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

  // The base class's loop, repeated here so that its `append` call sees only this class.
  override appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    for (let k = from, end = from + n; k < end; k++) {
      const l = len[k]!;
      if (l < 0) this.appendNull();
      else this.append(buf, pos[k]!, l);
    }
  }
  append(buf: Buffer, pos: number, len: number): void {
    if (len < 8 || len < 8 + 2 * buf.readUInt16BE(pos)) this.invalid(`truncated numeric (${len} bytes)`);
    const o = this.length << 2;
    if (o + 4 > this.values.length) this.values = grow(this.values, o + 4);
    const st = numericToDecimal128(buf, pos, len, this.scale, this.values, o);
    if (st !== NumericStatus.Ok) this.fail(st, numericToText(buf, pos, len));
    this.validity.setValid(this.length);
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

class UuidBuilder extends BaseBuilder {
  readonly type = new arrow.FixedSizeBinary(16);
  private bytes = new Uint8Array(16 * 1024);

  // The base class's loop, repeated here so that its `append` call sees only this class.
  override appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    for (let k = from, end = from + n; k < end; k++) {
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
    this.validity.setValid(this.length);
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

export enum VarKind {
  Bytes = 0,
  /** json: the text with insignificant whitespace removed. */
  Json = 1,
  /** jsonb binary: a version byte (1), then the text. */
  Jsonb = 2,
}

/** Utf8 / LargeUtf8 / LargeBinary: an offsets buffer and a data buffer. */
class VarBuilder extends BaseBuilder {
  private data = new Uint8Array(64 * 1024);
  private dataLen = 0;
  // Large types take int64 offsets, stored as [lo, hi] pairs; a batch never reaches 2 GiB.
  private offsets: Int32Array;
  private readonly stride: 1 | 2;

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    readonly type: arrow.Utf8 | arrow.LargeUtf8 | arrow.LargeBinary,
    private readonly kind: VarKind,
  ) {
    super(ctx, nullable);
    this.stride = arrow.DataType.isUtf8(type) ? 1 : 2;
    this.offsets = new Int32Array(1025 * this.stride);
  }

  override appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number): void {
    if (this.kind !== VarKind.Bytes) {
      for (let k = from, end = from + n; k < end; k++) {
        const l = len[k]!;
        if (l < 0) this.appendNull();
        else this.append(buf, pos[k]!, l);
      }
      return;
    }
    // Plain bytes, the common case: room for the whole run first, then one loop.
    let total = this.dataLen;
    for (let k = from, end = from + n; k < end; k++) if (len[k]! > 0) total += len[k]!;
    if (total >= 0x7fffffff) {
      throw new PgError(SqlState.internalError, `column "${this.ctx.column}": more than 2 GiB in one batch`);
    }
    if (total > this.data.length) this.data = grow(this.data, total);
    const stride = this.stride;
    const last = (this.length + n + 1) * stride;
    if (last > this.offsets.length) this.offsets = grow(this.offsets, last);
    const data = this.data;
    const offsets = this.offsets;
    let d = this.dataLen;
    for (let k = from, end = from + n; k < end; k++) {
      const l = len[k]!;
      if (l < 0) {
        this.dataLen = d;
        this.appendNull();
        continue;
      }
      const p = pos[k]!;
      if (l > 64) data.set(buf.subarray(p, p + l), d);
      else for (let j = 0; j < l; j++) data[d + j] = buf[p + j]!;
      d += l;
      this.validity.setValid(this.length);
      offsets[++this.length * stride] = d;
    }
    this.dataLen = d;
  }

  append(buf: Buffer, pos: number, len: number): void {
    if (this.kind === VarKind.Jsonb) {
      if (len < 1 || buf[pos] !== 1) this.invalid(`unsupported jsonb binary version ${buf[pos]}`);
      pos++;
      len--;
    }
    let d = this.dataLen;
    if (d + len > this.data.length) this.data = grow(this.data, d + len);
    const data = this.data;
    if (this.kind === VarKind.Bytes) {
      // Short values byte by byte: a native copy would first allocate a view of the source.
      if (len > 64) data.set(buf.subarray(pos, pos + len), d);
      else for (let k = 0; k < len; k++) data[d + k] = buf[pos + k]!;
      d += len;
    } else {
      d = compactJson(buf, pos, len, data, d);
    }
    if (d >= 0x7fffffff) {
      throw new PgError(SqlState.internalError, `column "${this.ctx.column}": more than 2 GiB in one batch`);
    }
    this.dataLen = d;
    this.validity.setValid(this.length);
    this.length++;
    this.setOffset();
  }

  private setOffset(): void {
    const i = this.length * this.stride;
    if (i + this.stride > this.offsets.length) this.offsets = grow(this.offsets, i + this.stride);
    this.offsets[i] = this.dataLen;
  }

  protected appendEmpty(): void {
    this.length++;
    this.setOffset();
  }

  plainValues(): PlainValues {
    return { kind: "var", data: this.data, offsets: this.offsets, stride: this.stride, n: this.length };
  }

  finish(): arrow.Data {
    const n = this.length;
    return arrow.makeData({
      type: this.type as arrow.Utf8,
      length: n,
      ...this.nullBitmap(),
      valueOffsets: this.offsets.subarray(0, (n + 1) * this.stride),
      data: this.data.subarray(0, this.dataLen),
    });
  }

  override reset(): void {
    super.reset();
    this.dataLen = 0;
    if (this.data.length > SHRINK_BYTES) this.data = new Uint8Array(64 * 1024);
    if (this.offsets.byteLength > SHRINK_BYTES) this.offsets = new Int32Array(1025 * this.stride);
    else this.offsets.fill(0);
  }
}

/**
 * Copies JSON text without whitespace outside strings: the compact form Materialize writes.
 * PostgreSQL's jsonb output already normalizes keys and numbers but puts a space after `:` and
 * `,`; json keeps the input text verbatim. Inside strings every byte is kept.
 */
export function compactJson(src: Uint8Array, pos: number, len: number, dst: Uint8Array, d: number): number {
  const end = pos + len;
  let inString = false;
  for (let p = pos; p < end; p++) {
    const c = src[p]!;
    if (inString) {
      dst[d++] = c;
      if (c === 0x5c /* \ */) {
        p++;
        if (p < end) dst[d++] = src[p]!;
      } else if (c === 0x22 /* " */) {
        inString = false;
      }
    } else if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09) {
      // insignificant whitespace
    } else {
      if (c === 0x22) inString = true;
      dst[d++] = c;
    }
  }
  return d;
}

/** PostgreSQL arrays: Struct{ items: List<T>, dimensions: UInt8 } with elements row-major. */
class ArrayBuilder extends OffsetsBuilder {
  readonly type: arrow.Struct;
  private readonly listType: arrow.List;
  private dims = new Uint8Array(1024);
  private readonly child: ColumnBuilder;

  constructor(ctx: ColumnContext, nullable: boolean, element: TypeNode) {
    super(ctx, nullable);
    this.child = makeBuilder(element, ctx, true);
    const itemField = new arrow.Field("item", this.child.type, true, extMeta(element.ext));
    this.listType = new arrow.List(itemField);
    this.type = new arrow.Struct([
      new arrow.Field("items", this.listType, false, extMeta("array_items")),
      new arrow.Field("dimensions", new arrow.Uint8(), false, extMeta("array_dimensions")),
    ]);
  }

  append(buf: Buffer, pos: number, len: number): void {
    if (len < 12) this.invalid("array value too short");
    const ndim = buf.readInt32BE(pos);
    if (ndim < 0 || ndim > 255) this.invalid(`array with ${ndim} dimensions`);
    let count = ndim === 0 ? 0 : 1;
    let p = pos + 12;
    for (let k = 0; k < ndim; k++) {
      count *= buf.readInt32BE(p);
      p += 8;
    }
    const end = pos + len;
    const child = this.child;
    for (let k = 0; k < count; k++) {
      if (p + 4 > end) this.invalid("array value truncated");
      const l = buf.readInt32BE(p);
      p += 4;
      if (l < 0) child.appendNull();
      else {
        if (p + l > end) this.invalid("array value truncated");
        child.append(buf, p, l);
        p += l;
      }
    }
    const i = this.length;
    if (i >= this.dims.length) this.dims = grow(this.dims, i + 1);
    this.dims[i] = ndim;
    this.validity.setValid(i);
    this.endRow();
  }

  protected get childLength(): number {
    return this.child.length;
  }

  protected override appendEmpty(): void {
    const i = this.length;
    if (i >= this.dims.length) this.dims = grow(this.dims, i + 1);
    this.dims[i] = 0;
    this.endRow();
  }

  finish(): arrow.Data {
    const n = this.length;
    const items = arrow.makeData({
      type: this.listType,
      length: n,
      nullCount: 0,
      valueOffsets: this.valueOffsets,
      child: this.child.finish(),
    });
    const dims = arrow.makeData({
      type: new arrow.Uint8(),
      length: n,
      nullCount: 0,
      data: this.dims.subarray(0, n),
    });
    return arrow.makeData({ type: this.type, length: n, ...this.nullBitmap(), children: [items, dims] });
  }

  override reset(): void {
    super.reset();
    this.child.reset();
  }
}

/** Composite values: int32 field count, then per field oid, int32 length (-1 NULL), bytes. */
class RecordBuilder extends BaseBuilder {
  readonly type: arrow.Struct;
  private readonly children: ColumnBuilder[];
  /** Fields the upstream declares NOT NULL (Materialize's record types know; PostgreSQL's never). */
  private readonly required: boolean[];

  constructor(ctx: ColumnContext, nullable: boolean, fields: NonNullable<TypeNode["fields"]>) {
    super(ctx, nullable);
    // Children take nulls even for NOT NULL fields: under a NULL record every field is a (masked)
    // null, as in Materialize's StructBuilder::append_null (`src/arrow-util/src/builder.rs`).
    this.children = fields.map((f) => makeBuilder(f.node, ctx, true));
    this.required = fields.map((f) => f.nullable === false);
    this.type = new arrow.Struct(
      fields.map(
        (f, i) => new arrow.Field(f.name, this.children[i]!.type, f.nullable !== false, extMeta(f.node.ext)),
      ),
    );
  }

  append(buf: Buffer, pos: number, len: number): void {
    if (len < 4) this.invalid("record value too short");
    const n = buf.readInt32BE(pos);
    const children = this.children;
    if (n !== children.length) this.invalid(`record has ${n} fields, expected ${children.length}`);
    let p = pos + 4;
    const end = pos + len;
    for (let k = 0; k < n; k++) {
      if (p + 8 > end) this.invalid("record value truncated");
      const l = buf.readInt32BE(p + 4);
      p += 8;
      if (l < 0) {
        if (this.required[k]) {
          throw new PgError(
            SqlState.nullValueNotAllowed,
            `null value in field ${k + 1} of column "${this.ctx.column}", which its record type declares NOT NULL`,
          );
        }
        children[k]!.appendNull();
      } else {
        if (p + l > end) this.invalid("record value truncated");
        children[k]!.append(buf, p, l);
        p += l;
      }
    }
    this.validity.setValid(this.length);
    this.length++;
  }

  protected appendEmpty(): void {
    for (const c of this.children) c.appendNull();
    this.length++;
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      children: this.children.map((c) => c.finish()),
    });
  }

  override reset(): void {
    super.reset();
    for (const c of this.children) c.reset();
  }
}

// Range flag bits (PostgreSQL rangetypes.h RANGE_EMPTY … RANGE_UB_INF; Materialize's
// `Range::pg_flag_bits` sends the same, `src/pgrepr/src/value.rs` encode_binary).
const RANGE_EMPTY = 0x01;
const RANGE_LB_INC = 0x02;
const RANGE_UB_INC = 0x04;
const RANGE_LB_INF = 0x08;
const RANGE_UB_INF = 0x10;
const FALSE_BYTE = Buffer.from([0]);
const TRUE_BYTE = Buffer.from([1]);

/**
 * Ranges: Struct{ lower, upper (nullable, the bound's type; null = infinite), lower_inclusive,
 * upper_inclusive, empty (Boolean, NOT NULL) }, an empty range as null bounds, false, false, true
 * — Materialize `src/arrow-util/src/builder.rs` (SqlScalarType::Range, Datum::Range). Binary: one
 * flag byte, then each finite bound as int32 length + the element's binary.
 */
class RangeBuilder extends BaseBuilder {
  readonly type: arrow.Struct;
  private readonly lower: ColumnBuilder;
  private readonly upper: ColumnBuilder;
  private readonly flags: ColumnBuilder[];

  constructor(ctx: ColumnContext, nullable: boolean, element: TypeNode) {
    super(ctx, nullable);
    this.lower = makeBuilder(element, ctx, true);
    this.upper = makeBuilder(element, ctx, true);
    this.flags = [0, 1, 2].map(() => new BoolBuilder(ctx, false));
    const bool = (name: string): arrow.Field =>
      new arrow.Field(name, new arrow.Bool(), false, extMeta("boolean"));
    this.type = new arrow.Struct([
      new arrow.Field("lower", this.lower.type, true, extMeta(element.ext)),
      new arrow.Field("upper", this.upper.type, true, extMeta(element.ext)),
      bool("lower_inclusive"),
      bool("upper_inclusive"),
      bool("empty"),
    ]);
  }

  append(buf: Buffer, pos: number, len: number): void {
    if (len < 1) this.invalid("range value too short");
    const f = buf[pos]!;
    const end = pos + len;
    let p = pos + 1;
    const bound = (b: ColumnBuilder, infinite: boolean): void => {
      if ((f & RANGE_EMPTY) !== 0 || infinite) {
        b.appendNull();
        return;
      }
      if (p + 4 > end) this.invalid("range value truncated");
      const l = buf.readInt32BE(p);
      p += 4;
      if (l < 0 || p + l > end) this.invalid("range value truncated");
      b.append(buf, p, l);
      p += l;
    };
    bound(this.lower, (f & RANGE_LB_INF) !== 0);
    bound(this.upper, (f & RANGE_UB_INF) !== 0);
    const empty = (f & RANGE_EMPTY) !== 0;
    this.flags[0]!.append(!empty && (f & RANGE_LB_INC) !== 0 ? TRUE_BYTE : FALSE_BYTE, 0, 1);
    this.flags[1]!.append(!empty && (f & RANGE_UB_INC) !== 0 ? TRUE_BYTE : FALSE_BYTE, 0, 1);
    this.flags[2]!.append(empty ? TRUE_BYTE : FALSE_BYTE, 0, 1);
    this.validity.setValid(this.length);
    this.length++;
  }

  protected appendEmpty(): void {
    this.lower.appendNull();
    this.upper.appendNull();
    // Under a NULL range the NOT NULL flags hold a placeholder `false` that no reader sees.
    for (const b of this.flags) b.append(FALSE_BYTE, 0, 1);
    this.length++;
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      children: [this.lower.finish(), this.upper.finish(), ...this.flags.map((b) => b.finish())],
    });
  }

  override reset(): void {
    super.reset();
    this.lower.reset();
    this.upper.reset();
    for (const b of this.flags) b.reset();
  }
}

/** A builder for a resolved type; `node === null` means the text-format fallback (Utf8). */
export function makeBuilder(node: TypeNode | null, ctx: ColumnContext, nullable: boolean): ColumnBuilder {
  if (node === null) return new VarBuilder(ctx, nullable, new arrow.Utf8(), VarKind.Bytes);
  switch (node.codec) {
    case "bool":
      return new BoolBuilder(ctx, nullable);
    case "int2":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Int16(), 2);
    case "int4":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Int32(), 4);
    case "int8":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Int64(), 8);
    case "float4":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Float32(), 4);
    case "float8":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Float64(), 8);
    case "time":
      // Microseconds since midnight in both worlds, 24:00:00 included.
      return new ReversedBytesBuilder(ctx, nullable, new arrow.TimeMicrosecond(), 8);
    case "numeric":
      return new DecimalBuilder(ctx, nullable, node.scale ?? 10);
    case "date":
      return new DateBuilder(ctx, nullable);
    case "timestamp":
      return new TimestampBuilder(ctx, nullable, false);
    case "timestamptz":
      return new TimestampBuilder(ctx, nullable, true);
    case "text":
      return new VarBuilder(
        ctx,
        nullable,
        node.bounded ? new arrow.Utf8() : new arrow.LargeUtf8(),
        VarKind.Bytes,
      );
    case "bytea":
      return new VarBuilder(ctx, nullable, new arrow.LargeBinary(), VarKind.Bytes);
    case "json":
      return new VarBuilder(ctx, nullable, new arrow.LargeUtf8(), VarKind.Json);
    case "jsonb":
      return new VarBuilder(ctx, nullable, new arrow.LargeUtf8(), VarKind.Jsonb);
    case "uuid":
      return new UuidBuilder(ctx, nullable);
    case "array":
      return new ArrayBuilder(ctx, nullable, node.element!);
    case "record":
      return new RecordBuilder(ctx, nullable, node.fields!);
    case "range":
      return new RangeBuilder(ctx, nullable, node.element!);
    case "uint2":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Uint16(), 2);
    case "uint4":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Uint32(), 4);
    case "uint8":
      return new ReversedBytesBuilder(ctx, nullable, new arrow.Uint64(), 8);
    case "mz_timestamp":
      return new MzTimestampBuilder(ctx, nullable);
    case "list":
      return new MzListBuilder(ctx, nullable, node.element!);
    case "map":
      return new MzMapBuilder(ctx, nullable, node.element!);
  }
}

// ---- Materialize ------------------------------------------------------------------------------

function textError(ctx: ColumnContext, e: unknown): never {
  if (e instanceof MzTextError) {
    throw new PgError(SqlState.invalidTextRepresentation, `column "${ctx.column}": ${e.message}`);
  }
  throw e;
}

/** The bytes an element's builder takes, from the element's text. */
/** Appends one list/map element given as its text output (null: a NULL element) to `target`. */
function appendElement(target: ColumnBuilder, ctx: ColumnContext, codec: string, text: string | null): void {
  if (text === null) {
    target.appendNull();
    return;
  }
  let b: Uint8Array;
  try {
    b = elementBinary(codec, text);
  } catch (e) {
    textError(ctx, e);
  }
  target.append(Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength), 0, b.byteLength);
}

/** mz_timestamp: Materialize sends it as decimal digits in both formats; Arrow UInt64. */
class MzTimestampBuilder extends BaseBuilder {
  readonly type = new arrow.Uint64();
  private values: Buffer = Buffer.alloc(8 * 1024);

  private ensure(need: number): void {
    if (need <= this.values.length) return;
    const b = Buffer.alloc(Math.max(need, this.values.length * 2));
    this.values.copy(b);
    this.values = b;
  }

  append(buf: Buffer, pos: number, len: number): void {
    let v = 0n;
    if (len < 1 || len > 20) this.invalid(`invalid mz_timestamp (${len} bytes)`);
    for (let i = 0; i < len; i++) {
      const c = buf[pos + i]! - 0x30;
      if (c < 0 || c > 9) this.invalid(`invalid mz_timestamp ${buf.toString("latin1", pos, pos + len)}`);
      v = v * 10n + BigInt(c);
    }
    if (v >= 1n << 64n) this.invalid(`mz_timestamp out of range: ${v}`);
    const o = this.length * 8;
    this.ensure(o + 8);
    this.values.writeBigUInt64LE(v, o);
    this.validity.setValid(this.length);
    this.length++;
  }

  protected appendEmpty(): void {
    const o = this.length * 8;
    this.ensure(o + 8);
    this.values.fill(0, o, o + 8);
    this.length++;
  }

  finish(): arrow.Data {
    return arrow.makeData({
      type: this.type,
      length: this.length,
      ...this.nullBitmap(),
      data: new Uint8Array(
        this.values.buffer,
        this.values.byteOffset,
        this.length * 8,
      ) as unknown as BigUint64Array,
    });
  }
}

/** Materialize `list` (text input): Arrow List<item>, nested lists included. */
class MzListBuilder extends OffsetsBuilder {
  readonly type: arrow.List;
  private readonly child: ColumnBuilder;

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    private readonly element: TypeNode,
  ) {
    super(ctx, nullable);
    this.child = makeBuilder(element, ctx, true);
    this.type = new arrow.List(new arrow.Field("item", this.child.type, true, extMeta(element.ext)));
  }

  append(buf: Buffer, pos: number, len: number): void {
    let elems: Array<string | null>;
    try {
      elems = parseMzList(buf.toString("utf8", pos, pos + len));
    } catch (e) {
      textError(this.ctx, e);
    }
    const codec = this.element.codec;
    for (const e of elems) appendElement(this.child, this.ctx, codec, e);
    this.validity.setValid(this.length);
    this.endRow();
  }

  protected get childLength(): number {
    return this.child.length;
  }

  finish(): arrow.Data {
    const n = this.length;
    return arrow.makeData({
      type: this.type,
      length: n,
      ...this.nullBitmap(),
      valueOffsets: this.valueOffsets,
      child: this.child.finish(),
    });
  }

  override reset(): void {
    super.reset();
    this.child.reset();
  }
}

/** Materialize `map[text=>T]` (text input): Arrow Map<entries: Struct<keys: Utf8, values: T>>. */
class MzMapBuilder extends OffsetsBuilder {
  readonly type: arrow.Map_;
  private readonly entries: arrow.Struct;
  private readonly keys: ColumnBuilder;
  private readonly values: ColumnBuilder;

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    private readonly value: TypeNode,
  ) {
    super(ctx, nullable);
    this.keys = new VarBuilder(ctx, false, new arrow.Utf8(), VarKind.Bytes);
    this.values = makeBuilder(value, ctx, true);
    // Field names as Materialize's arrow-util writes them (arrow's MapFieldNames::default()).
    this.entries = new arrow.Struct([
      new arrow.Field("keys", this.keys.type, false),
      new arrow.Field("values", this.values.type, true, extMeta(value.ext)),
    ]);
    this.type = new arrow.Map_(new arrow.Field("entries", this.entries, false), false);
  }

  append(buf: Buffer, pos: number, len: number): void {
    let pairs: Array<[string, string | null]>;
    try {
      pairs = parseMzMap(buf.toString("utf8", pos, pos + len));
    } catch (e) {
      textError(this.ctx, e);
    }
    const codec = this.value.codec;
    for (const [k, v] of pairs) {
      const kb = Buffer.from(k, "utf8");
      this.keys.append(kb, 0, kb.length);
      appendElement(this.values, this.ctx, codec, v);
    }
    this.validity.setValid(this.length);
    this.endRow();
  }

  protected get childLength(): number {
    return this.keys.length;
  }

  finish(): arrow.Data {
    const n = this.length;
    const child = arrow.makeData({
      type: this.entries,
      length: this.keys.length,
      nullCount: 0,
      children: [this.keys.finish(), this.values.finish()],
    });
    return arrow.makeData({
      type: this.type,
      length: n,
      ...this.nullBitmap(),
      valueOffsets: this.valueOffsets,
      child,
    } as never);
  }

  override reset(): void {
    super.reset();
    this.keys.reset();
    this.values.reset();
  }
}
