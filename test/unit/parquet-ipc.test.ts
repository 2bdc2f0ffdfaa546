// The encoder's IPC stream writer against apache-arrow's own (`tableToIPC`): same bytes for every
// layout the column builders produce, nulls and empty batches included.
import * as arrow from "apache-arrow";
import { describe, expect, it } from "vitest";
import { IpcStreamWriter } from "../../src/encoders/parquet/ipc.js";

function viaWriter(batch: arrow.RecordBatch, slack = 0): Uint8Array {
  const s = new IpcStreamWriter(batch.schema).prepare(batch);
  // A dirty, oversized buffer, as a reused one is: padding must still come out as zeros.
  const out = new Uint8Array(s.size + slack).fill(0xab);
  s.write(out);
  return out.subarray(0, s.size);
}

function check(table: arrow.Table): void {
  for (const batch of table.batches) {
    const expected = arrow.tableToIPC(new arrow.Table([batch]), "stream");
    expect(Buffer.from(viaWriter(batch, 100))).toEqual(Buffer.from(expected));
    // And it reads back.
    const back = arrow.tableFromIPC(viaWriter(batch));
    expect(back.numRows).toBe(batch.numRows);
  }
}

describe("IpcStreamWriter", () => {
  it("writes the bytes tableToIPC writes: flat types with and without nulls", () => {
    const meta = new Map([["ARROW:extension:name", "materialize.v1.text"]]);
    const n = 1000;
    const ints = Int32Array.from({ length: n }, (_, i) => i * 7 - 300);
    const table = new arrow.Table({
      i: arrow.makeVector(ints),
      f: arrow.makeVector(Float64Array.from({ length: n }, (_, i) => (i % 3 === 0 ? Number.NaN : i / 3))),
      s: arrow.vectorFromArray(
        Array.from({ length: n }, (_, i) => (i % 17 === 0 ? null : i % 5 === 0 ? "" : `väl "${i}",\n`)),
        new arrow.LargeUtf8(),
      ),
      u: arrow.vectorFromArray(
        Array.from({ length: n }, (_, i) => (i % 2 ? `x${i}` : null)),
        new arrow.Utf8(),
      ),
      b: arrow.vectorFromArray(
        Array.from({ length: n }, (_, i) => (i % 11 === 0 ? null : i % 3 === 0)),
        new arrow.Bool(),
      ),
      big: arrow.vectorFromArray(
        Array.from({ length: n }, (_, i) => BigInt(i) * 1234567890123n),
        new arrow.Int64(),
      ),
    });
    const schema = new arrow.Schema(
      table.schema.fields.map((f) => new arrow.Field(f.name, f.type, f.nullable, meta)),
    );
    const data = arrow.makeData({
      type: new arrow.Struct(schema.fields),
      length: n,
      nullCount: 0,
      children: table.batches[0]!.data.children,
    });
    check(new arrow.Table([new arrow.RecordBatch(schema, data)]));
    check(table);
  });

  it("nested layouts: struct, list, map, fixed-size binary, decimal", () => {
    const n = 300;
    const list = arrow.vectorFromArray(
      Array.from({ length: n }, (_, i) =>
        i % 7 === 0 ? null : Array.from({ length: i % 4 }, (_, k) => k + i),
      ),
      new arrow.List(new arrow.Field("item", new arrow.Int32(), true)),
    );
    const struct = arrow.vectorFromArray(
      Array.from({ length: n }, (_, i) => (i % 9 === 0 ? null : { a: i, b: i % 2 ? `s${i}` : null })),
      new arrow.Struct([
        new arrow.Field("a", new arrow.Int16(), false),
        new arrow.Field("b", new arrow.Utf8(), true),
      ]),
    );
    const map = arrow.vectorFromArray(
      Array.from({ length: n }, (_, i) => (i % 5 === 0 ? null : new Map([[`k${i}`, i]]))),
      new arrow.Map_(
        new arrow.Field(
          "entries",
          new arrow.Struct<{ key: arrow.Utf8; value: arrow.Int32 }>([
            new arrow.Field("keys", new arrow.Utf8(), false),
            new arrow.Field("values", new arrow.Int32(), true),
          ]),
          false,
        ),
      ),
    );
    const fsb = arrow.makeVector(
      arrow.makeData({
        type: new arrow.FixedSizeBinary(16),
        length: n,
        nullCount: 0,
        data: Uint8Array.from({ length: 16 * n }, (_, i) => i & 0xff),
      }),
    );
    const dec = arrow.makeVector(
      arrow.makeData({
        type: new arrow.Decimal(2, 38, 128),
        length: n,
        nullCount: 0,
        data: Uint32Array.from({ length: 4 * n }, (_, i) => (i % 4 === 0 ? i : 0)),
      }),
    );
    check(new arrow.Table({ list, struct, map, fsb, dec }));
  });

  // Arrow writes no validity buffer for a column without nulls even when the column has a bitmap,
  // and zeros for the values of an all-null Bool whatever its values bitmap holds: builders may
  // leave either behind (a bitmap allocated before any null came, values under nulls).
  const n = 77;
  const ones = (bytes: number): Uint8Array => new Uint8Array(bytes).fill(0xff);
  /** One batch of `columns`, checked whole and sliced at an offset that is not a whole byte. */
  const checkColumns = (columns: Record<string, arrow.Data>): void => {
    const fields = Object.entries(columns).map(([name, d]) => new arrow.Field(name, d.type, true));
    const data = arrow.makeData({
      type: new arrow.Struct(fields),
      length: n,
      nullCount: 0,
      children: Object.values(columns),
    });
    const batch = new arrow.RecordBatch(new arrow.Schema(fields), data);
    check(new arrow.Table([batch]));
    check(new arrow.Table([batch.slice(5, 60)]));
  };

  it("a null bitmap without nulls: no validity buffer", () => {
    checkColumns({
      i: arrow.makeData({
        type: new arrow.Int32(),
        length: n,
        nullCount: 0,
        nullBitmap: ones((n + 7) >> 3),
        data: Int32Array.from({ length: n }, (_, i) => i * 3),
      }),
      // The null count left for Arrow to count from the bitmap.
      s: arrow.makeData({
        type: new arrow.Utf8(),
        length: n,
        nullBitmap: ones((n + 7) >> 3),
        valueOffsets: Int32Array.from({ length: n + 1 }, (_, i) => i),
        data: Uint8Array.from({ length: n }, (_, i) => 0x61 + (i % 26)),
      }),
    });
  });

  it("an all-null Bool whose values bitmap has bits set: zeros for its values", () => {
    checkColumns({
      b: arrow.makeData({
        type: new arrow.Bool(),
        length: n,
        nullCount: n,
        nullBitmap: new Uint8Array((n + 7) >> 3),
        data: ones((n + 7) >> 3),
      }),
    });
  });

  it("an empty batch (the schema-only file)", () => {
    const schema = new arrow.Schema([new arrow.Field("s", new arrow.LargeUtf8(), true)]);
    const data = arrow.makeData({
      type: new arrow.Struct(schema.fields),
      length: 0,
      nullCount: 0,
      children: [arrow.makeData({ type: new arrow.LargeUtf8(), length: 0, nullCount: 0 })],
    });
    check(new arrow.Table([new arrow.RecordBatch(schema, data)]));
  });
});
