// Binary decoders, one wire value at a time, read back through apache-arrow's own vectors.
import * as arrow from "apache-arrow";
import { describe, expect, it } from "vitest";
import { type TypeCatalogRow, typeInfoFromCatalog } from "../../src/encoders/parquet/catalog.js";
import { makeBuilder } from "../../src/encoders/parquet/columns/make-builder.js";
import { compactJson } from "../../src/encoders/parquet/columns/variable-width.js";
import { Oid, planColumns, resolveType, uniqueNames } from "../../src/encoders/parquet/types.js";
import { planParquet } from "../../src/encoders/parquet-encoder.js";
import type { TypeInfo } from "../../src/encoders/types.js";
import { PgError } from "../../src/errors.js";

type Val = Buffer | null;

/**
 * Decodes `values` one by one (append/appendNull) and as column runs (appendColumn, as the
 * encoder's writeRows does), checks both give the same Arrow bytes or the same error, and
 * returns the vector (or throws the error).
 */
function decode(oid: number, values: Val[], typeMod = -1, info?: TypeInfo): arrow.Vector {
  const node = resolveType(oid, typeMod, info, "c");
  const attempt = (fill: (b: ReturnType<typeof makeBuilder>) => void): arrow.Vector | Error => {
    const b = makeBuilder(node, { column: "c" }, true);
    try {
      fill(b);
    } catch (e) {
      return e as Error;
    }
    return arrow.makeVector(b.finish());
  };
  const one = attempt((b) => {
    for (const v of values) {
      if (v === null) b.appendNull();
      else b.append(v, 0, v.length);
    }
  });
  const runs = attempt((b) => {
    // The values inside one buffer, behind some other bytes, indexed from entry 3 on every
    // third entry (as a row-major index of three columns holds one column), in two runs.
    const skip = 3;
    const step = 3;
    const buf = Buffer.concat([Buffer.alloc(5, 0xee), ...values.map((v) => v ?? Buffer.alloc(0))]);
    const pos = new Int32Array(skip + step * values.length).fill(-7);
    const len = new Int32Array(skip + step * values.length).fill(-7);
    let p = 5;
    values.forEach((v, i) => {
      pos[skip + step * i] = p;
      len[skip + step * i] = v === null ? -1 : v.length;
      p += v?.length ?? 0;
    });
    const half = values.length >> 1;
    b.appendColumn(buf, pos, len, skip, half, step);
    b.appendColumn(buf, pos, len, skip + step * half, values.length - half, step);
  });
  if (one instanceof Error || runs instanceof Error) {
    expect(runs).toBeInstanceOf(Error);
    expect((runs as PgError).code).toBe((one as PgError).code);
    expect((runs as Error).message).toBe((one as Error).message);
    throw one;
  }
  const ipc = (v: arrow.Vector) => arrow.tableToIPC(new arrow.Table({ c: v }), "stream");
  expect(Buffer.from(ipc(runs))).toEqual(Buffer.from(ipc(one)));
  return one;
}

const i16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n);
  return b;
};
const i32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n);
  return b;
};
const i64 = (n: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(n);
  return b;
};
const f32 = (n: number) => {
  const b = Buffer.alloc(4);
  b.writeFloatBE(n);
  return b;
};
const f64 = (n: number) => {
  const b = Buffer.alloc(8);
  b.writeDoubleBE(n);
  return b;
};
const utf8 = (s: string) => Buffer.from(s, "utf8");
/** array_send layout: ndim, has-null flag, element OID, (size, lower bound) per dim, elements. */
function pgArray(elemOid: number, dims: number[], elems: Val[]): Buffer {
  const parts: Buffer[] = [i32(dims.length), i32(elems.some((e) => e === null) ? 1 : 0), i32(elemOid)];
  for (const d of dims) parts.push(i32(d), i32(1));
  for (const e of elems) parts.push(e === null ? i32(-1) : Buffer.concat([i32(e.length), e]));
  return Buffer.concat(parts);
}
/** record_send layout: field count, then per field OID, length, bytes. */
function pgRecord(fields: Array<[number, Val]>): Buffer {
  const parts: Buffer[] = [i32(fields.length)];
  for (const [oid, v] of fields)
    parts.push(i32(oid), v === null ? i32(-1) : Buffer.concat([i32(v.length), v]));
  return Buffer.concat(parts);
}

describe("fixed-width decoders", () => {
  it("integers at their limits", () => {
    expect(() => decode(Oid.int4, [i32(1), i16(2)])).toThrow(/column "c": expected 4 bytes, got 2/);
    expect([...decode(Oid.int2, [i16(-32768), i16(32767), null, i16(0)])]).toEqual([-32768, 32767, null, 0]);
    expect([...decode(Oid.int4, [i32(-2147483648), i32(2147483647), null])]).toEqual([
      -2147483648,
      2147483647,
      null,
    ]);
    const v = decode(Oid.int8, [i64(-9223372036854775808n), i64(9223372036854775807n), i64(-1n), null]);
    expect([...v]).toEqual([-9223372036854775808n, 9223372036854775807n, -1n, null]);
  });

  it("floats keep NaN, ±Infinity and -0", () => {
    const v = [...decode(Oid.float8, [f64(Number.NaN), f64(Infinity), f64(-Infinity), f64(-0), f64(5e-324)])];
    expect(Number.isNaN(v[0])).toBe(true);
    expect(v.slice(1, 3)).toEqual([Infinity, -Infinity]);
    expect(Object.is(v[3], -0)).toBe(true);
    expect(v[4]).toBe(5e-324);
    const w = [...decode(Oid.float4, [f32(-0), f32(3.4028234663852886e38), f32(Number.NaN)])];
    expect(Object.is(w[0], -0)).toBe(true);
    expect(w[1]).toBe(3.4028234663852886e38);
    expect(Number.isNaN(w[2])).toBe(true);
  });

  it("booleans", () => {
    expect([...decode(Oid.bool, [Buffer.from([1]), Buffer.from([0]), null, Buffer.from([1])])]).toEqual([
      true,
      false,
      null,
      true,
    ]);
  });

  it("dates shift from 2000-01-01 to 1970-01-01; infinity is an error naming the column", () => {
    const v = decode(Oid.date, [i32(0), i32(-10957), i32(-2451545)]);
    expect(v.data[0]!.values.subarray(0, 3)).toEqual(new Int32Array([10957, 0, -2440588]));
    expect(() => decode(Oid.date, [i32(0x7fffffff)])).toThrow(/column "c": date infinity/);
    expect(() => decode(Oid.date, [i32(-0x80000000)])).toThrow(/-infinity/);
  });

  it("timestamps shift by 946684800 s across the 32-bit carry; out of range is 22008", () => {
    const us = [0n, -946684800000000n, -1n, 4294967295n, 1n << 40n, -(1n << 45n)];
    const v = decode(Oid.timestamptz, us.map(i64));
    const got = Array.from(v.data[0]!.values as unknown as BigInt64Array);
    expect(got).toEqual(us.map((u) => u + 946684800000000n));
    expect(String(v.type)).toMatch(/\+00:00/);
    expect(String(decode(Oid.timestamp, [i64(0n)]).type)).not.toMatch(/\+00:00/);
    const err = (() => {
      try {
        decode(Oid.timestamp, [i64(9223372036854775807n)]);
      } catch (e) {
        return e as PgError;
      }
    })();
    expect(err?.code).toBe("22008");
    expect(err?.message).toMatch(/column "c": timestamp infinity/);
    // The largest PostgreSQL timestamp (294276 AD) does not fit int64 µs since 1970.
    expect(() => decode(Oid.timestamp, [i64(9223371331200000000n - 1n)])).toThrow(/after year/);
  });

  it("column runs of fixed-width, date and timestamp values with NULLs first, between and last match one-by-one appends", () => {
    // decode() checks the run path (32-bit big-endian reads) against append(); NULLs before the
    // first value, after it and at the end exercise the validity bitmap in both.
    const withNulls = (vals: Buffer[]): Val[] => [null, vals[0]!, null, null, ...vals.slice(1), null];
    const ints = decode(
      Oid.int8,
      withNulls([i64(-1n), i64(-(1n << 63n)), i64((1n << 63n) - 1n), i64(0x0102030405060708n)]),
    );
    expect(Array.from(ints.toArray() as BigInt64Array)).toEqual([
      0n,
      -1n,
      0n,
      0n,
      -(1n << 63n),
      (1n << 63n) - 1n,
      0x0102030405060708n,
      0n,
    ]);
    expect([...ints].slice(0, 4)).toEqual([null, -1n, null, null]);
    expect([...decode(Oid.int4, withNulls([i32(-2), i32(0x7fffffff), i32(-0x80000000)]))]).toEqual([
      null,
      -2,
      null,
      null,
      0x7fffffff,
      -0x80000000,
      null,
    ]);
    expect([...decode(Oid.int2, withNulls([i16(-2), i16(258)]))]).toEqual([null, -2, null, null, 258, null]);
    expect([...decode(Oid.float4, withNulls([f32(1.5), f32(-0)]))]).toEqual([
      null,
      1.5,
      null,
      null,
      -0,
      null,
    ]);
    // A NaN with a payload keeps its bits: 8-byte values go through two integer words.
    const nan = Buffer.from("7ff8000000000001", "hex");
    const floats = decode(Oid.float8, withNulls([nan, f64(-1e300), f64(Number.POSITIVE_INFINITY)]));
    const bytes = Buffer.from(floats.data[0]!.values.buffer, floats.data[0]!.values.byteOffset, 8 * 6);
    expect(bytes.subarray(8, 16)).toEqual(Buffer.from(nan).reverse());
    expect([...floats].slice(4)).toEqual([-1e300, Number.POSITIVE_INFINITY, null]);
    expect(
      [...decode(Oid.date, withNulls([i32(1), i32(-10957)]))].map((d) => (d === null ? null : Number(d))),
    ).toEqual([null, Date.UTC(2000, 0, 2), null, null, 0, null]);
    const ts = decode(Oid.timestamptz, withNulls([i64(-1n), i64(4294967295n)]));
    expect(Array.from(ts.data[0]!.values as unknown as BigInt64Array)).toEqual([
      0n,
      946684799999999n,
      0n,
      0n,
      946689094967295n,
      0n,
    ]);
    expect(ts.nullCount).toBe(4);
    // Errors inside a run name the value as the one-value path does (decode() compares them).
    expect(() => decode(Oid.timestamp, withNulls([i64(0n), i64(-(1n << 63n))]))).toThrow(/-infinity/);
    expect(() => decode(Oid.date, withNulls([i32(0), i32(0x7fffffff)]))).toThrow(/date infinity/);
    expect(() => decode(Oid.int8, withNulls([i64(0n), i32(1)]))).toThrow(/expected 8 bytes, got 4/);
    expect(() => decode(Oid.date, withNulls([i32(0), i64(1n)]))).toThrow(/expected 4 bytes for date, got 8/);
    expect(() => decode(Oid.timestamp, withNulls([i64(0n), i32(1)]))).toThrow(
      /expected 8 bytes for timestamp, got 4/,
    );
  });

  it("time is microseconds since midnight, 24:00:00 included", () => {
    const v = decode(Oid.time, [i64(0n), i64(86400000000n), i64(45296789012n)]);
    expect(Array.from(v.data[0]!.values as unknown as BigInt64Array)).toEqual([
      0n,
      86400000000n,
      45296789012n,
    ]);
  });

  it("uuid is 16 bytes as sent", () => {
    const u = Buffer.from("123e4567e89b12d3a456426614174000", "hex");
    const v = decode(Oid.uuid, [u, null]);
    expect(Buffer.from(v.get(0) as Uint8Array).toString("hex")).toBe("123e4567e89b12d3a456426614174000");
    expect(v.get(1)).toBeNull();
  });

  it("numeric goes to Decimal128(38, scale) and names column and value on error", () => {
    const n = Buffer.from([0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88]); // 12.5
    const v = decode(Oid.numeric, [n], ((10 << 16) | 2) + 4);
    expect(v.type).toBeInstanceOf(arrow.Decimal);
    expect((v.type as arrow.Decimal).scale).toBe(2);
    expect((v.type as arrow.Decimal).precision).toBe(38);
    expect(Array.from(v.data[0]!.values.subarray(0, 4))).toEqual([1250, 0, 0, 0]);
    const nan = Buffer.from([0, 0, 0, 0, 0xc0, 0, 0, 0]);
    expect(() => decode(Oid.numeric, [nan])).toThrow(
      /column "c": cannot represent special numeric value NaN/,
    );
  });
});

describe("variable-width decoders", () => {
  it("text is LargeUtf8, bounded varchar/char Utf8, bytea LargeBinary", () => {
    const t = decode(Oid.text, [utf8("héllo 世界 👍"), utf8(""), null]);
    expect(String(t.type)).toBe("LargeUtf8");
    expect([...t]).toEqual(["héllo 世界 👍", "", null]);
    // A NULL first (the validity bitmap starts late), values over and under the byte-loop cut-off.
    const long = ["x".repeat(100), "é".repeat(40), 'a,"\n'];
    const u = decode(Oid.text, [null, utf8(long[0]!), utf8(long[1]!), null, utf8(""), utf8(long[2]!)]);
    expect([...u]).toEqual([null, long[0], long[1], null, "", long[2]]);
    expect([...decode(Oid.varchar, [null, utf8("ab"), null], 24)]).toEqual([null, "ab", null]);
    expect(String(decode(Oid.varchar, [utf8("x")], 24).type)).toBe("Utf8");
    expect(String(decode(Oid.varchar, [utf8("x")], -1).type)).toBe("LargeUtf8");
    expect(String(decode(Oid.bpchar, [utf8("x  ")], 7).type)).toBe("Utf8");
    const b = decode(Oid.bytea, [Buffer.from([0, 255, 1]), Buffer.alloc(0)]);
    expect(String(b.type)).toBe("LargeBinary");
    expect(Array.from(b.get(0) as Uint8Array)).toEqual([0, 255, 1]);
    expect(Array.from(b.get(1) as Uint8Array)).toEqual([]);
  });

  it("jsonb drops the version byte and is compacted like json", () => {
    const jb = Buffer.concat([Buffer.from([1]), utf8('{"a": [1, 2], "s": "x  y \\" z"}')]);
    expect([...decode(Oid.jsonb, [jb])]).toEqual(['{"a":[1,2],"s":"x  y \\" z"}']);
    expect([...decode(Oid.json, [utf8(' { "a" :\n\t1 } ')])]).toEqual(['{"a":1}']);
    expect(() => decode(Oid.jsonb, [Buffer.from([2, 0x7b, 0x7d])])).toThrow(/jsonb binary version 2/);
  });

  it("compactJson keeps escaped quotes and backslashes inside strings", () => {
    const src = utf8('["a\\\\", "b\\"c d", " e "]');
    const dst = new Uint8Array(src.length);
    const n = compactJson(src, 0, src.length, dst, 0);
    expect(Buffer.from(dst.subarray(0, n)).toString()).toBe('["a\\\\","b\\"c d"," e "]');
  });
});

describe("arrays and records", () => {
  it("arrays become Struct{items, dimensions} with elements row-major, NULL elements, empty arrays", () => {
    const v = decode(1007 /* int4[] */, [
      pgArray(
        23,
        [2, 2, 2],
        [1, 2, 3, 4, 5, 6, 7, null].map((n) => (n === null ? null : i32(n))),
      ),
      pgArray(23, [], []),
      null,
      pgArray(23, [2], [null, null]),
    ]);
    const rows = [...v].map((r) =>
      r === null ? null : { items: [...(r as { items: arrow.Vector }).items], dimensions: r.dimensions },
    );
    expect(rows).toEqual([
      { items: [1, 2, 3, 4, 5, 6, 7, null], dimensions: 3 },
      { items: [], dimensions: 0 },
      null,
      { items: [null, null], dimensions: 1 },
    ]);
    const t = v.type as arrow.Struct;
    expect(t.children.map((f) => [f.name, f.nullable])).toEqual([
      ["items", false],
      ["dimensions", false],
    ]);
  });

  it("arrays of numerics take the column typmod for their elements", () => {
    const node = resolveType(1231, ((10 << 16) | 3) + 4, undefined, "c");
    expect(node?.element?.scale).toBe(3);
  });

  it("records become Structs of their fields; a NULL record nulls every field", () => {
    const info: TypeInfo = {
      name: "pair",
      kind: "c",
      fields: [
        { name: "k", oid: 23, typeMod: -1, type: { name: "int4", kind: "b" } },
        { name: "v", oid: 25, typeMod: -1, type: { name: "text", kind: "b" } },
      ],
    };
    const v = decode(
      50000,
      [
        pgRecord([
          [23, i32(7)],
          [25, utf8("x")],
        ]),
        null,
        pgRecord([
          [23, null],
          [25, null],
        ]),
      ],
      -1,
      info,
    );
    expect([...v].map((r) => (r === null ? null : { k: r.k, v: r.v }))).toEqual([
      { k: 7, v: "x" },
      null,
      { k: null, v: null },
    ]);
    expect(() => decode(50000, [pgRecord([[23, i32(7)]])], -1, info)).toThrow(
      /record has 1 fields, expected 2/,
    );
  });
});

describe("type resolution and planning", () => {
  const domainOfInt: TypeInfo = {
    name: "posint",
    kind: "d",
    base: { name: "int4", kind: "b", oid: 23, typeMod: -1 },
  };

  it("domains resolve to their base type, also inside arrays and records", () => {
    expect(resolveType(60000, -1, domainOfInt, "c")?.codec).toBe("int4");
    const arr: TypeInfo = {
      name: "_posint",
      kind: "b",
      element: { ...domainOfInt, oid: 60000, typeMod: -1 },
    };
    expect(resolveType(60001, -1, arr, "c")?.element?.codec).toBe("int4");
  });

  it("enums, unknown types, anonymous records and records with a text-only field are text", () => {
    expect(resolveType(70000, -1, { name: "mood", kind: "e" }, "c")).toBeNull();
    expect(resolveType(1186 /* interval */, -1, undefined, "c")).toBeNull();
    expect(resolveType(Oid.record, -1, undefined, "c")).toBeNull();
    const withEnum: TypeInfo = {
      name: "wm",
      kind: "c",
      fields: [{ name: "m", oid: 70000, typeMod: -1, type: { name: "mood", kind: "e" } }],
    };
    expect(resolveType(70001, -1, withEnum, "c")).toBeNull();
    expect(resolveType(80000, -1, undefined, "c")).toBeNull(); // user type the planner did not describe
  });

  it("planParquet asks for binary where it decodes and lists the text columns", () => {
    const plan = planParquet([
      { name: "a", typeOid: 23, typeMod: -1 },
      { name: "iv", typeOid: 1186, typeMod: -1 },
      { name: "m", typeOid: 70000, typeMod: -1, type: { name: "mood", kind: "e" } },
      { name: "d", typeOid: 60000, typeMod: -1, type: domainOfInt },
    ]);
    expect(plan).toEqual({ resultFormats: [1, 0, 0, 1], textColumns: ["iv", "m"] });
  });

  it("numeric scales Parquet cannot hold fail at plan time with 0A000, also nested", () => {
    const neg = ((5 << 16) | (-2 & 0x7ff)) + 4;
    const wide = ((60 << 16) | 40) + 4;
    for (const [oid, mod] of [
      [1700, neg],
      [1700, wide],
      [1231, wide],
    ] as const) {
      try {
        planParquet([{ name: "x", typeOid: oid, typeMod: mod }]);
        expect.unreachable();
      } catch (e) {
        expect(e).toBeInstanceOf(PgError);
        expect((e as PgError).code).toBe("0A000");
        expect((e as PgError).message).toMatch(/column "x" has type numeric\(/);
      }
    }
  });

  it("NOT NULL columns reject a NULL", () => {
    const [p] = planColumns([{ name: "k", typeOid: 23, typeMod: -1, nullable: false }]);
    const b = makeBuilder(p!.node, { column: "k" }, p!.nullable);
    expect(() => b.appendNull()).toThrow(/null value in column "k"/);
  });

  it("duplicate names get a counter, skipping names already taken", () => {
    expect(uniqueNames(["a", "a", "a", "b"])).toEqual(["a", "a2", "a3", "b"]);
    expect(uniqueNames(["a", "a2", "a"])).toEqual(["a", "a2", "a3"]);
    expect(uniqueNames(["a", "a", "a2"])).toEqual(["a", "a2", "a22"]);
  });
});

describe("typeInfoFromCatalog", () => {
  const rows: TypeCatalogRow[] = [
    {
      oid: "900",
      typname: "addr",
      typtype: "c",
      typcategory: "C",
      typelem: "0",
      typbasetype: "0",
      typtypmod: "-1",
      fields: '[["street",25,-1],["price",902,-1],["tags",1009,-1]]',
    },
    {
      oid: "901",
      typname: "_addr",
      typtype: "b",
      typcategory: "A",
      typelem: "900",
      typbasetype: "0",
      typtypmod: "-1",
      fields: null,
    },
    {
      oid: "902",
      typname: "money2",
      typtype: "d",
      typcategory: "N",
      typelem: "0",
      typbasetype: "1700",
      typtypmod: String(((12 << 16) | 2) + 4),
      fields: null,
    },
    {
      oid: "25",
      typname: "text",
      typtype: "b",
      typcategory: "S",
      typelem: "0",
      typbasetype: "0",
      typtypmod: "-1",
      fields: null,
    },
    {
      oid: "1700",
      typname: "numeric",
      typtype: "b",
      typcategory: "N",
      typelem: "0",
      typbasetype: "0",
      typtypmod: "-1",
      fields: null,
    },
    {
      oid: "1009",
      typname: "_text",
      typtype: "b",
      typcategory: "A",
      typelem: "25",
      typbasetype: "0",
      typtypmod: "-1",
      fields: null,
    },
  ];

  it("builds arrays of composites with domain fields", () => {
    const info = typeInfoFromCatalog(rows, 901)!;
    const node = resolveType(901, -1, info, "c")!;
    expect(node.codec).toBe("array");
    expect(node.element?.codec).toBe("record");
    expect(node.element?.fields?.map((f) => [f.name, f.node.codec, f.node.scale])).toEqual([
      ["street", "text", undefined],
      ["price", "numeric", 2],
      ["tags", "array", undefined],
    ]);
  });

  it("returns undefined for a type it was not given", () => {
    expect(typeInfoFromCatalog(rows, 12345)).toBeUndefined();
  });
});
