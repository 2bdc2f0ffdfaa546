// Materialize-only types: mz_timestamp (decimal digits → UInt64), and list and map, which
// Materialize sends only as text (parsed by mz-text.ts, elements re-encoded as binary).

import { PgError, SqlState } from "../../../errors.js";
import * as arrow from "../arrow.js";
import { elementBinary, MzTextError, parseMzList, parseMzMap } from "../mz-text.js";
import type { TypeNode } from "../types.js";
import {
  BaseBuilder,
  type ColumnBuilder,
  type ColumnContext,
  extMeta,
  type MakeBuilder,
  OffsetsBuilder,
} from "./builder.js";
import { VarBuilder, VarKind } from "./variable-width.js";

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
export class MzTimestampBuilder extends BaseBuilder {
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
export class MzListBuilder extends OffsetsBuilder {
  readonly type: arrow.List;
  private readonly child: ColumnBuilder;

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    private readonly element: TypeNode,
    makeBuilder: MakeBuilder,
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
export class MzMapBuilder extends OffsetsBuilder {
  readonly type: arrow.Map_;
  private readonly entries: arrow.Struct;
  private readonly keys: ColumnBuilder;
  private readonly values: ColumnBuilder;

  constructor(
    ctx: ColumnContext,
    nullable: boolean,
    private readonly value: TypeNode,
    makeBuilder: MakeBuilder,
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
