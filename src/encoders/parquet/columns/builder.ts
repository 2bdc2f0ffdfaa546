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
