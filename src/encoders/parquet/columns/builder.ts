// What every column builder shares: the ColumnBuilder contract, growable buffers, the validity
// bitmap, and the base classes for flat values and for offset-based (list-like) values.
//
// Every append is (buf, pos, len) over the DataRow the driver hands in, so the hot path makes no
// per-value objects; buffers are reused across batches (grown by doubling, shrunk back after an
// unusually large batch).

import { PgError, SqlState } from "../../../errors.js";
import type * as arrow from "../arrow.js";
import type { PlainValues } from "../dictionary-choice.js";
import type { TypeNode } from "../types.js";

export interface ColumnBuilder {
  readonly length: number;
  /** A non-null value: `buf[pos..pos+len)` in the column's result format. */
  append(buf: Buffer, pos: number, len: number): void;
  appendNull(): void;
  /**
   * Values `k = from, from+step, … from+(n-1)·step` of one column, value k at
   * `buf[pos[k] .. pos[k]+len[k])`, NULL where `len[k] < 0`: what `append`/`appendNull` one by
   * one do, in one call per column and run of rows (a loop the JIT sees with one builder class,
   * instead of a call per value). The encoder's index is row-major, so `step` is its column count.
   */
  appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number, step: number): void;
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
  /**
   * For builders of a FlatKind layout: room for `rows` more values holding at most `bytes` data
   * bytes in all, and the buffers to write them into (see FlatTarget); null when this one's
   * values are not plain (json).
   */
  flatTarget?(rows: number, bytes: number): FlatTarget | null;
  /** FlatRows wrote values up to `length` (and data bytes up to `dataLen`). */
  flatCommit?(length: number, dataLen: number): void;
}

/** The layouts that FlatRows (../flat-rows.ts) decodes itself, straight into a builder's buffers. */
export enum FlatKind {
  /** 2-byte integers, byte-reversed into `bytes`. */
  Int16 = 0,
  /** 4-byte values (int4, float4, uint4) as one word of `words`. */
  Int32 = 1,
  /** 8-byte values (int8, float8, time, uint8) as two words of `words`, low word first. */
  Int64 = 2,
  /** date: days, shifted to 1970, into `words`. */
  Date = 3,
  /** timestamp(tz): microseconds, shifted to 1970, as two words of `words`. */
  Timestamp = 4,
  /** boolean: bits of `bytes`. */
  Bool = 5,
  /** numeric: Decimal128 limbs into `decimals`, at `scale`. */
  Decimal = 6,
  /** text, varchar, bytea: data into `bytes` from `dataLen` on, offsets into `words` (`stride` words each). */
  Bytes = 7,
}

/**
 * A builder's buffers as FlatRows writes into them, with room made for a run of rows: FlatRows
 * writes value r of the run at the builder's length + r, then sets the new length (`flatCommit`).
 */
export interface FlatTarget {
  kind: FlatKind;
  nullable: boolean;
  validity: Validity;
  words: Int32Array;
  bytes: Uint8Array;
  decimals: Uint32Array;
  dataLen: number;
  stride: number;
  scale: number;
}

const NO_WORDS = new Int32Array(0);
const NO_BYTES = new Uint8Array(0);
const NO_DECIMALS = new Uint32Array(0);

/** A FlatTarget (one shape for all, so FlatRows' reads of them stay monomorphic). */
export function flatTarget(
  kind: FlatKind,
  nullable: boolean,
  validity: Validity,
  parts: {
    words?: Int32Array;
    bytes?: Uint8Array;
    decimals?: Uint32Array;
    dataLen?: number;
    stride?: number;
    scale?: number;
  },
): FlatTarget {
  return {
    kind,
    nullable,
    validity,
    words: parts.words ?? NO_WORDS,
    bytes: parts.bytes ?? NO_BYTES,
    decimals: parts.decimals ?? NO_DECIMALS,
    dataLen: parts.dataLen ?? 0,
    stride: parts.stride ?? 1,
    scale: parts.scale ?? 0,
  };
}

/** Where errors come from, for messages that name the column. */
export interface ColumnContext {
  column: string;
}

/** Makes the builder of a nested value's element (passed in so nested builders need not import the factory). */
export type MakeBuilder = (node: TypeNode | null, ctx: ColumnContext, nullable: boolean) => ColumnBuilder;

export const SHRINK_BYTES = 32 << 20;
const EXT_KEY = "ARROW:extension:name";

export function extMeta(ext: string): Map<string, string> {
  return new Map([[EXT_KEY, `materialize.v1.${ext}`]]);
}

export function grow<T extends Uint8Array | Int32Array | Uint32Array | Int16Array | Float32Array>(
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

/**
 * Which values are NULL, as a bitmap that only exists once the first null shows up. Its bits mark
 * the NULLs (1 = NULL), so a valid value costs nothing, in any loop: the Arrow validity bitmap (1 =
 * valid) is made from it once per batch (`view`).
 */
export class Validity {
  private nullBits: Uint8Array | null = null;
  /** The Arrow bitmap of the last `view`, reused. */
  private out: Uint8Array | null = null;
  nulls = 0;

  setNull(i: number): void {
    let b = this.nullBits;
    if (b === null) b = this.nullBits = new Uint8Array(Math.max(64, ((i >> 3) + 1) * 2));
    else if (i >> 3 >= b.length) b = this.nullBits = grow(b, (i >> 3) + 1);
    const m = 1 << (i & 7);
    // A value rewritten after a fall-back (FlatRows) may be NULL twice: count it once.
    if ((b[i >> 3]! & m) === 0) {
      b[i >> 3]! |= m;
      this.nulls++;
    }
  }

  /** Arrow's validity bitmap of the first `n` values (1 = valid), or undefined without NULLs. */
  view(n: number): Uint8Array | undefined {
    const b = this.nullBits;
    if (b === null || this.nulls === 0) return undefined;
    const bytes = (n + 7) >> 3;
    if (this.out === null || this.out.length < bytes) this.out = new Uint8Array(Math.max(bytes, b.length));
    const out = this.out;
    const have = Math.min(bytes, b.length);
    for (let k = 0; k < have; k++) out[k] = ~b[k]! & 0xff;
    out.fill(0xff, have, bytes);
    // Bits past the last value stay 0, as Arrow's own builders leave them.
    if ((n & 7) !== 0) out[bytes - 1]! &= (1 << (n & 7)) - 1;
    return out.subarray(0, bytes);
  }

  /** Back to "no nulls yet", which is the fast path; the bitmap is kept, cleared. */
  reset(): void {
    if (this.nulls > 0) this.nullBits!.fill(0);
    this.nulls = 0;
  }
}

export abstract class BaseBuilder implements ColumnBuilder {
  length = 0;
  protected readonly validity = new Validity();
  abstract readonly type: arrow.DataType;

  constructor(
    protected readonly ctx: ColumnContext,
    protected readonly nullable: boolean,
  ) {}

  abstract append(buf: Buffer, pos: number, len: number): void;
  protected abstract appendEmpty(): void;

  appendColumn(buf: Buffer, pos: Int32Array, len: Int32Array, from: number, n: number, step: number): void {
    for (let k = from, end = from + n * step; k < end; k += step) {
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
export abstract class OffsetsBuilder extends BaseBuilder {
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
