// Materialize's type names (pg_typeof / SHOW COLUMNS), its list/map text formats, element text →
// binary, and the upstream-kind decision — the pure parts of the Materialize path.
import { describe, expect, test } from "vitest";
import { probeTypes } from "../../src/copy/snapshot/materialize-type-probe.js";
import {
  MZ_UNCONSTRAINED_NUMERIC_TYPMOD,
  mzColumnTypmod,
  mzScalarInfo,
  mzTypeName,
  parseMzTypeName,
} from "../../src/copy/snapshot/materialize-types.js";
import { kindIsAmbiguous, resolveUpstreamKind, upstreamKindOf } from "../../src/copy/upstream-kind.js";
import { makeBuilder } from "../../src/encoders/parquet/columns/make-builder.js";
import {
  dateDays,
  elementBinary,
  numericBinary,
  parseMzList,
  parseMzMap,
  timestampMicros,
} from "../../src/encoders/parquet/mz-text.js";
import { resolveType } from "../../src/encoders/parquet/types.js";

describe("Materialize type names (src/sql humanize_scalar_type)", () => {
  test.each([
    ["integer", 23],
    ["uint8", 16464],
    ["mz_timestamp", 16552],
    ["timestamp with time zone", 1184],
    ["numeric(10,2)", 1700],
    ["integer[]", 1007],
  ])("%s → OID %d", (name, oid) => {
    expect(parseMzTypeName(name)?.oid).toBe(oid);
  });

  test("lists, nested lists, maps and records take their element types along", () => {
    const l = parseMzTypeName("integer list list")!;
    expect([l.oid, l.element?.oid, l.element?.element?.oid]).toEqual([16384, 16384, 23]);
    const m = parseMzTypeName("map[text=>map[text=>uint4]]")!;
    expect([m.oid, m.value?.oid, m.value?.value?.oid]).toEqual([16385, 16385, 16462]);
    const r = parseMzTypeName("record(a: integer?,b: text list)")!;
    expect(r.fields?.map((f) => [f.name, f.oid])).toEqual([
      ["a", 23],
      ["b", 16384],
    ]);
    expect(l.materialize).toBe(true);
  });

  test("custom and unknown names are not guessed", () => {
    expect(parseMzTypeName("my_list")).toBeUndefined();
    expect(parseMzTypeName("map[integer=>text]")).toBeUndefined();
  });

  test("manifest names keep the typmod", () => {
    expect(mzTypeName(1700, ((14 << 16) | 2) + 4)).toBe("numeric(14,2)");
    expect(mzTypeName(16384, -1, "integer list")).toBe("integer list");
    expect(mzTypeName(16462, -1)).toBe("uint4");
  });

  test("numeric(39,39) on Materialize's wire is its unconstrained numeric (src/pgrepr/src/types.rs)", () => {
    expect(MZ_UNCONSTRAINED_NUMERIC_TYPMOD).toBe(((39 << 16) | 39) + 4);
    expect(mzColumnTypmod(1700, MZ_UNCONSTRAINED_NUMERIC_TYPMOD)).toBe(-1);
    const s2 = ((39 << 16) | 2) + 4;
    expect(mzColumnTypmod(1700, s2)).toBe(s2);
    expect(mzColumnTypmod(23, -1)).toBe(-1);
    // Parquet: Decimal128(38,10) for the unconstrained one, the declared scale otherwise.
    expect(
      resolveType(1700, mzColumnTypmod(1700, MZ_UNCONSTRAINED_NUMERIC_TYPMOD), undefined, "c")?.scale,
    ).toBe(10);
    expect(resolveType(1700, s2, undefined, "c")?.scale).toBe(2);
    // A PostgreSQL numeric(39,39) is still refused: only Materialize's wire means "no typmod" by it.
    expect(() => resolveType(1700, MZ_UNCONSTRAINED_NUMERIC_TYPMOD, undefined, "c")).toThrow(/scale/);
  });

  test("manifest names never say numeric(39,s)", () => {
    expect(mzTypeName(1700, MZ_UNCONSTRAINED_NUMERIC_TYPMOD)).toBe("numeric");
    expect(mzTypeName(1700, ((39 << 16) | 2) + 4)).toBe("numeric(38,2)");
    expect(mzTypeName(1114, -1)).toBe("timestamp without time zone");
  });

  test("record fields keep their nullability (humanize_column_type: `?` marks nullable)", () => {
    const r = parseMzTypeName("record(a: integer,b: text?)")!;
    expect(r.fields?.map((f) => [f.name, f.nullable])).toEqual([
      ["a", false],
      ["b", true],
    ]);
    const node = resolveType(2249, -1, r, "c")!;
    const b = makeBuilder(node, { column: "c" }, true);
    const struct = b.type as import("apache-arrow").Struct;
    expect(struct.children.map((f) => [f.name, f.nullable])).toEqual([
      ["a", false],
      ["b", true],
    ]);
  });

  test("arrays of uint and mz_timestamp by Materialize's OIDs (src/pgrepr-consts/src/oid.rs)", () => {
    expect(parseMzTypeName("uint4[]")?.oid).toBe(16463);
    const info = mzScalarInfo(16465)!;
    expect([info.oid, info.element?.oid]).toEqual([16465, 16464]);
    const node = resolveType(16465, -1, info, "c")!;
    expect([node.codec, node.element?.codec]).toEqual(["array", "uint8"]);
  });

  test("oid is UInt32 (ext oid); ranges resolve to their bound type", () => {
    expect(resolveType(26, -1, undefined, "c")).toMatchObject({ codec: "uint4", ext: "oid" });
    const r = resolveType(3906, -1, undefined, "c")!;
    expect([r.codec, r.ext, r.element?.codec, r.element?.scale]).toEqual(["range", "range", "numeric", 10]);
    expect(parseMzTypeName("int4range")?.oid).toBe(3904);
  });

  test("Parquet resolution uses Materialize's OIDs only for columns marked as Materialize's", () => {
    const info = parseMzTypeName("integer list")!;
    expect(resolveType(16384, -1, info, "c")?.codec).toBe("list");
    // The same OID from PostgreSQL is a user type: without the mark it is not a list.
    expect(resolveType(16384, -1, { name: "whatever", kind: "e" }, "c")).toBeNull();
    expect(resolveType(16462, -1, { name: "uint4", kind: "b", materialize: true }, "c")?.codec).toBe("uint4");
    // A record with a list field cannot come in binary: text.
    expect(resolveType(2249, -1, parseMzTypeName("record(a: integer list)")!, "c")).toBeNull();
  });
});

describe("list and map text (docs: sql/types/list 'Output format', sql/types/map)", () => {
  test("lists: quoting, escapes, NULL, nesting", () => {
    expect(parseMzList('{a,"white space",NULL,"","escape\\"m\\\\e",nUlL,"NULL"}')).toEqual([
      "a",
      "white space",
      null,
      "",
      'escape"m\\e',
      "nUlL",
      "NULL",
    ]);
    expect(parseMzList("{{1,2},{3},{}}")).toEqual(["{1,2}", "{3}", "{}"]);
    expect(parseMzList("{}")).toEqual([]);
    expect(() => parseMzList("{1,2")).toThrow();
  });

  test("maps: keys and values, nested maps as text", () => {
    expect(parseMzMap('{a=>1,"b c"=>NULL,"x=>y"=>"v,w"}')).toEqual([
      ["a", "1"],
      ["b c", null],
      ["x=>y", "v,w"],
    ]);
    expect(parseMzMap("{a=>{b=>c}}")).toEqual([["a", "{b=>c}"]]);
  });

  test("element text to binary", () => {
    expect([...elementBinary("uint2", "65535")]).toEqual([0xff, 0xff]);
    expect(() => elementBinary("uint2", "65536")).toThrow();
    expect([...elementBinary("bool", "t")]).toEqual([1]);
    expect(Buffer.from(elementBinary("int8", "-1")).readBigInt64BE(0)).toBe(-1n);
    expect(dateDays("2000-01-02")).toBe(1);
    expect(dateDays("1999-12-31")).toBe(-1);
    expect(timestampMicros("2000-01-01 00:00:01.5+00", true)).toBe(1_500_000n);
    expect(timestampMicros("2000-01-01 02:00:00+02", true)).toBe(0n);
  });

  test("numeric text to PostgreSQL's binary numeric", () => {
    const n = Buffer.from(numericBinary("-12345.678"));
    // ndigits 3 (1 2345 6780), weight 1, negative, dscale 3
    expect([n.readUInt16BE(0), n.readInt16BE(2), n.readUInt16BE(4), n.readUInt16BE(6)]).toEqual([
      3, 1, 0x4000, 3,
    ]);
    expect([n.readUInt16BE(8), n.readUInt16BE(10), n.readUInt16BE(12)]).toEqual([1, 2345, 6780]);
    const z = Buffer.from(numericBinary("0.00"));
    expect([z.readUInt16BE(0), z.readUInt16BE(6)]).toEqual([0, 2]);
    const e = Buffer.from(numericBinary("1.5e3"));
    expect([e.readUInt16BE(0), e.readInt16BE(2), e.readUInt16BE(8)]).toEqual([1, 0, 1500]);
  });
});

describe("upstream kind", () => {
  test("mz_version decides, the override wins", () => {
    const mz = new Map([["mz_version", "v0.1"]]);
    expect(upstreamKindOf("auto", mz)).toBe("materialize");
    expect(upstreamKindOf("auto", new Map([["server_version", "15.4"]]))).toBe("postgres");
    expect(upstreamKindOf("postgres", mz)).toBe("postgres");
    expect(upstreamKindOf("materialize", new Map())).toBe("materialize");
  });

  test("SELECT mz_version() is asked only when the parameters leave it open, once per session", async () => {
    expect(kindIsAmbiguous("auto", new Map([["server_version", "15.4"]]))).toBe(false);
    const params = new Map([["server_version", "9.5.0"]]);
    let asked = 0;
    const probe = async () => {
      asked++;
      return true;
    };
    expect(await resolveUpstreamKind("auto", params, probe)).toBe("materialize");
    expect(await resolveUpstreamKind("auto", params, probe)).toBe("materialize");
    expect(asked).toBe(1);
  });
});

describe("sub-value probes (materialize-type-probe.ts)", () => {
  const tm = (s: number) => ((39 << 16) | s) + 4;
  /** A fake Materialize: each expression's description and pg_typeof, as its wire would say. */
  function io(types: Record<string, { oid: number; typeMod: number; name: string }>) {
    const asked: string[][] = [];
    return {
      asked,
      describe: async (exprs: readonly string[]) => {
        asked.push([...exprs]);
        return exprs.map((e) => types[e] ?? { oid: 25, typeMod: -1 });
      },
      typeOf: async (exprs: readonly string[]) => exprs.map((e) => types[e]?.name ?? null),
    };
  }

  test("numeric scales inside lists, arrays and records come from the elements' typmods", async () => {
    const fake = io({
      '(t."c1")[1]': { oid: 1700, typeMod: tm(2), name: "numeric" },
      '(t."c2")[1]': { oid: 1700, typeMod: tm(39), name: "numeric" },
      '(t."c3")."p"': { oid: 1700, typeMod: tm(4), name: "numeric" },
    });
    const [l, a, r] = await probeTypes(
      [
        { expr: 't."c1"', oid: 16384, typeMod: -1, parsed: parseMzTypeName("numeric list") },
        { expr: 't."c2"', oid: 1231, typeMod: -1, parsed: parseMzTypeName("numeric[]") },
        { expr: 't."c3"', oid: 2249, typeMod: -1, parsed: parseMzTypeName("record(p: numeric,q: integer?)") },
      ],
      fake,
    );
    expect(resolveType(16384, -1, l, "c1")?.element?.scale).toBe(2);
    expect(resolveType(1231, -1, a, "c2")?.element?.scale).toBe(10);
    const rec = resolveType(2249, -1, r, "c3")!;
    expect(rec.fields?.map((f) => [f.name, f.node.scale, f.nullable])).toEqual([
      ["p", 4, false],
      ["q", undefined, undefined],
    ]);
    expect(fake.asked).toHaveLength(1); // one round trip for every leaf
  });

  test("a named list or map (CREATE TYPE … AS LIST/MAP) is rebuilt from its element's description", async () => {
    const fake = io({
      '(t."c1")[1]': { oid: 23, typeMod: -1, name: "integer" },
      "(t.\"c2\") -> ''": { oid: 16384, typeMod: -1, name: "int4_list_c" },
      "((t.\"c2\") -> '')[1]": { oid: 1700, typeMod: tm(3), name: "numeric" },
    });
    const [l, m] = await probeTypes(
      [
        { expr: 't."c1"', oid: 16384, typeMod: -1 },
        { expr: 't."c2"', oid: 16385, typeMod: -1 },
      ],
      fake,
    );
    expect(resolveType(16384, -1, l, "c1")).toMatchObject({ codec: "list", element: { codec: "int4" } });
    expect(resolveType(16385, -1, m, "c2")).toMatchObject({
      codec: "map",
      element: { codec: "list", element: { codec: "numeric", scale: 3 } },
    });
  });

  test("a named record stays text: its field names are nowhere on the wire", async () => {
    const fake = io({ '(t."c1")[1]': { oid: 2249, typeMod: -1, name: "my_rec" } });
    const [l] = await probeTypes([{ expr: 't."c1"', oid: 16384, typeMod: -1 }], fake);
    expect(resolveType(16384, -1, l, "c1")).toBeNull();
  });
});
