// Materialize's type names (pg_typeof / SHOW COLUMNS), its list/map text formats, element text →
// binary, and the upstream-kind decision — the pure parts of the Materialize path.
import { describe, expect, test } from "vitest";
import { mzTypeName, parseMzTypeName } from "../../src/copy/snapshot/materialize-types.js";
import { kindIsAmbiguous, resolveUpstreamKind, upstreamKindOf } from "../../src/copy/upstream-kind.js";
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
