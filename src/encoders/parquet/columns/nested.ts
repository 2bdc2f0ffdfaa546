// PostgreSQL's nested values in binary: arrays (List + dimensions), records (Struct) and ranges
// (Struct of bounds and flags). Element builders come from the MakeBuilder passed in.

import { PgError, SqlState } from "../../../errors.js";
import * as arrow from "../arrow.js";
import type { TypeNode } from "../types.js";
import {
  BaseBuilder,
  type ColumnBuilder,
  type ColumnContext,
  extMeta,
  grow,
  type MakeBuilder,
  OffsetsBuilder,
} from "./builder.js";
import { BoolBuilder } from "./fixed-width.js";

/** PostgreSQL arrays: Struct{ items: List<T>, dimensions: UInt8 } with elements row-major. */
export class ArrayBuilder extends OffsetsBuilder {
  readonly type: arrow.Struct;
  private readonly listType: arrow.List;
  private dims = new Uint8Array(1024);
  private readonly child: ColumnBuilder;

  constructor(ctx: ColumnContext, nullable: boolean, element: TypeNode, makeBuilder: MakeBuilder) {
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
export class RecordBuilder extends BaseBuilder {
  readonly type: arrow.Struct;
  private readonly children: ColumnBuilder[];
  /** Fields the upstream declares NOT NULL (Materialize's record types know; PostgreSQL's never). */
  private readonly required: boolean[];

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    fields: NonNullable<TypeNode["fields"]>,
    makeBuilder: MakeBuilder,
  ) {
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
export class RangeBuilder extends BaseBuilder {
  readonly type: arrow.Struct;
  private readonly lower: ColumnBuilder;
  private readonly upper: ColumnBuilder;
  private readonly flags: ColumnBuilder[];

  constructor(ctx: ColumnContext, nullable: boolean, element: TypeNode, makeBuilder: MakeBuilder) {
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
