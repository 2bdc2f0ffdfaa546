// The "every type" fixture of the Parquet oracle: a table covering every type of SPEC §4 with
// edge values, and how to compare PostgreSQL's rendering of each column with DuckDB's reading of
// the Parquet file. Used by the encoder oracle and the end-to-end export tests.
import { expect } from "vitest";

export const SETUP_SQL = `
CREATE TYPE mood AS ENUM ('sad', 'ok', 'happy');
CREATE DOMAIN posint AS int4 CHECK (VALUE > 0);
CREATE DOMAIN money2 AS numeric(12,2);
CREATE TYPE addr AS (street text, no int4, price numeric(10,2), tags text[], at timestamptz);
CREATE TYPE withmood AS (m mood, k int4);
CREATE TABLE every (
  id int PRIMARY KEY,
  b boolean, i2 int2, i4 int4, i8 int8, f4 real, f8 double precision,
  n numeric, n102 numeric(10,2), n380 numeric(38,0), n3838 numeric(38,38),
  d date, t time, ts timestamp, tstz timestamptz,
  tx text, vc varchar(20), ch char(5), nm name, by bytea, u uuid, j json, jb jsonb,
  ai int4[], at text[], an numeric(10,2)[], ab bool[], ats timestamptz[],
  comp addr, acomp addr[],
  dom posint, dnum money2, adom posint[],
  e mood, iv interval, ine inet, r int4range, cm withmood, am mood[]
);
INSERT INTO every (id) VALUES (1);
INSERT INTO every VALUES (2,
  false, -32768, -2147483648, -9223372036854775808, '-Infinity', '-Infinity',
  -1234567890123456789012345678.1234567890, -99999999.99, -99999999999999999999999999999999999999,
  -0.99999999999999999999999999999999999999,
  '4713-01-01 BC', '00:00:00', '4713-01-01 00:00:00 BC', '4713-01-01 00:00:00+00 BC',
  '', '', '', '', '\\x', '00000000-0000-0000-0000-000000000000', '[]', '{}',
  '{}', '{}', '{}', '{}', '{}',
  ROW(NULL, NULL, NULL, NULL, NULL), '{}',
  1, 0, '{}',
  'sad', '-1 days', '0.0.0.0/0', 'empty', ROW(NULL, NULL), '{}');
INSERT INTO every VALUES (3,
  true, 32767, 2147483647, 9223372036854775807, 'Infinity', 'Infinity',
  1234567890123456789012345678.123456789, 99999999.99, 99999999999999999999999999999999999999,
  0.99999999999999999999999999999999999999,
  '5874897-12-31', '24:00:00', '294246-12-31 23:59:59.999999', '294246-12-31 23:59:59.999999+00',
  E'👍 héllo 世界 \\n tab\\t "quoted" \\\\ back', 'ünïcødé ✓ twenty chr', 'ab', repeat('n', 63),
  '\\xdeadbeef00', 'ffffffff-ffff-ffff-ffff-ffffffffffff',
  '{"a": [1, 2.50, {"b" : null}],  "s": "x y\\t\\"z\\"", "a": 3}',
  '{"z": 1, "a": [true, false, null], "s": "spaced  out  \\"text\\"", "n": 1.50, "u": "ü 世"}',
  '{{{1,2},{3,4}},{{5,6},{7,NULL}}}', '{"a b","",NULL,"ü,{x}"}', '{1.50,NULL,-2.25}', '{t,f,NULL}',
  '{"2020-01-01 00:00:00+00","1900-06-30 12:00:00.5+00",NULL}',
  ROW('Main St', 42, 12.34, '{x,y}', '2020-01-01 12:00:00+00'),
  ARRAY[ROW('a', 1, 1.00, '{}', NULL)::addr, NULL, ROW(NULL, NULL, NULL, '{{p,q},{r,s}}', '1999-12-31 23:59:59+00')::addr],
  2147483647, 9999999999.99, '{1,2,3}',
  'happy', '1 year 2 mons 3 days 04:05:06.789', '::1/128', '[1,10)', ROW('ok', 7), '{sad,happy}');
INSERT INTO every VALUES (4,
  NULL, 0, 0, 0, 'NaN', 'NaN',
  0, 0, 0, 0,
  '1970-01-01', '12:34:56.789012', '1900-01-01 00:00:00.000001', '2263-01-01 00:00:00+00',
  'x', NULL, NULL, 'n', '\\x00', '123e4567-e89b-12d3-a456-426614174000', 'null', '"str"',
  '{NULL,NULL}', '{{NULL,NULL},{NULL,NULL}}', '{NULL}', NULL, '{}',
  NULL, ARRAY[NULL]::addr[],
  NULL, NULL, '{NULL}',
  NULL, NULL, NULL, NULL, NULL, '{NULL}');
INSERT INTO every (id, f4, f8, n, d, ts, tstz, t, jb, j) VALUES
  (5, '-0', '-0', 0.0000000001, '1969-12-31', '1969-12-31 23:59:59.999999', '1969-12-31 23:59:59.999999+00',
   '23:59:59.999999', '{"nested": {"k": [1, {"x": "y"}]}, "empty": {}, "arr": []}', ' { "a" :1 } '),
  (6, 3.4028235e38, 1.7976931348623157e308, -0.0000000001, '2000-01-01', '2000-01-01', '2000-01-01', '00:00:00.000001',
   '123.4500', '[1 , 2]'),
  (7, 1e-45, 5e-324, 1e27, '0001-01-01', '0001-01-01 00:00:00', '0001-01-01 00:00:00+00', '01:00:00', 'true', '"a b"'),
  (8, 0.1, 0.1, 123456789012345678.5, '2262-04-12', '2262-04-11 23:47:16.854775', '2262-04-11 23:47:16.854776+00',
   '13:00:00', '-1e-5', '{}');
INSERT INTO every (id, by) SELECT 9, string_agg(sha256(int4send(g)), ''::bytea ORDER BY g) FROM generate_series(1, 327680) g;
`;

/** [column, PostgreSQL expression, DuckDB expression, how to compare]. */
export type Cmp = "text" | "bool" | "float4" | "float8" | "numeric" | "json" | "array" | "comp" | "acomp";
const arrayJson = (c: string): string =>
  `CASE WHEN ${c} IS NULL THEN NULL ELSE json_build_object('items', (SELECT coalesce(json_agg(x ORDER BY o), '[]'::json) FROM unnest(${c}) WITH ORDINALITY u(x, o)), 'dimensions', coalesce(array_ndims(${c}), 0))::text END`;
// Text-exported columns are compared with the raw text-format value (the type's output function);
// a ::text cast can differ from it (inet::text always shows the netmask).
export const COLUMNS: Array<[string, string, string, Cmp]> = [
  ["b", "b::text", "b::varchar", "bool"],
  ["i2", "i2::text", "i2::varchar", "text"],
  ["i4", "i4::text", "i4::varchar", "text"],
  ["i8", "i8::text", "i8::varchar", "text"],
  ["f4", "f4::text", "f4::varchar", "float4"],
  ["f8", "f8::text", "f8::varchar", "float8"],
  ["n", "n::text", "n::varchar", "numeric"],
  ["n102", "n102::text", "n102::varchar", "numeric"],
  ["n380", "n380::text", "n380::varchar", "numeric"],
  ["n3838", "n3838::text", "n3838::varchar", "numeric"],
  ["d", "(d - date '1970-01-01')::text", "(d - DATE '1970-01-01')::varchar", "text"],
  ["t", "t::text", "t::varchar", "text"],
  ["ts", "(extract(epoch from ts) * 1000000)::int8::text", "epoch_us(ts)::varchar", "text"],
  ["tstz", "(extract(epoch from tstz) * 1000000)::int8::text", "epoch_us(tstz)::varchar", "text"],
  ["tx", "tx", "tx", "text"],
  ["vc", "vc", "vc", "text"],
  ["ch", "ch", "ch", "text"], // char(n): the padded text output (a ::text cast would trim it)
  ["nm", "nm", "nm", "text"],
  ["by", "md5(by) || ':' || length(by)", `md5("by") || ':' || octet_length("by")`, "text"],
  ["u", "replace(u::text, '-', '')", "lower(hex(u))", "text"],
  ["j", "j::text", "j", "json"],
  ["jb", "jb::text", "jb", "json"],
  ["ai", arrayJson("ai"), "to_json(ai)::varchar", "array"],
  ["at", arrayJson("at"), 'to_json("at")::varchar', "array"],
  ["an", arrayJson("an"), "to_json(an)::varchar", "array"],
  ["ab", arrayJson("ab"), "to_json(ab)::varchar", "array"],
  [
    "ats",
    `CASE WHEN ats IS NULL THEN NULL ELSE (SELECT coalesce(string_agg(coalesce((extract(epoch from x) * 1000000)::int8::text, 'N'), ',' ORDER BY o), '') FROM unnest(ats) WITH ORDINALITY u(x, o)) END`,
    "array_to_string(list_transform(ats.items, x -> coalesce(epoch_us(x)::varchar, 'N')), ',')",
    "text",
  ],
  ["comp", "to_json(comp)::text", "to_json(comp)::varchar", "comp"],
  ["acomp", "to_json(acomp)::text", "to_json(acomp)::varchar", "acomp"],
  ["dom", "dom::text", "dom::varchar", "text"],
  ["dnum", "dnum::text", "dnum::varchar", "numeric"],
  ["adom", arrayJson("adom"), "to_json(adom)::varchar", "array"],
  ["e", "e", "e", "text"],
  ["iv", "iv", "iv", "text"],
  ["ine", "ine", "ine", "text"],
  // Ranges: Materialize's five-field struct (src/arrow-util/src/builder.rs, SqlScalarType::Range).
  [
    "r",
    "CASE WHEN r IS NULL THEN NULL ELSE concat_ws('|', coalesce(lower(r)::text, 'N'), coalesce(upper(r)::text, 'N'), lower_inc(r)::text, upper_inc(r)::text, isempty(r)::text) END",
    "CASE WHEN r IS NULL THEN NULL ELSE concat_ws('|', coalesce(r.lower::varchar, 'N'), coalesce(r.upper::varchar, 'N'), r.lower_inclusive::varchar, r.upper_inclusive::varchar, r.empty::varchar) END",
    "text",
  ],
  ["cm", "cm", "cm", "text"],
  ["am", "am", "am", "text"],
];

function normNumeric(s: string): string {
  // DuckDB prints decimal(38,38) without the leading zero ("-.99…").
  const t = s.replace(/^(-?)\./, "$10.");
  return t.includes(".") ? t.replace(/0+$/, "").replace(/\.$/, "") : t;
}
function parseFloatText(s: string): number {
  const m: Record<string, number> = {
    inf: Infinity,
    "-inf": -Infinity,
    nan: NaN,
    Infinity,
    "-Infinity": -Infinity,
    NaN,
  };
  return s in m ? m[s]! : Number(s);
}
/** PostgreSQL's nested JSON arrays → the Parquet array shape { items (row-major), dimensions }. */
function pgArrayToParquet(v: unknown): unknown {
  if (v === null) return null;
  let dims = 0;
  let cur: unknown = v;
  while (Array.isArray(cur) && cur.length > 0) {
    dims++;
    cur = cur[0];
  }
  const items = (v as unknown[]).flat(Infinity);
  return { items, dimensions: dims };
}
function pgAddrToParquet(a: Record<string, unknown> | null): unknown {
  if (a === null) return null;
  const { at: _at, ...rest } = a;
  return { ...rest, tags: pgArrayToParquet(rest.tags ?? null) };
}
function duckAddr(a: Record<string, unknown> | null): unknown {
  if (a === null) return null;
  const { at: _at, ...rest } = a;
  return rest;
}
/** JSON outside string literals must carry no whitespace ("compact"). */
function isCompact(s: string): boolean {
  return !/\s/.test(s.replace(/"(?:\\.|[^"\\])*"/g, '""'));
}

/**
 * Compares rows of `SELECT id, <COLUMNS pg exprs> FROM every ORDER BY id` (PostgreSQL) with
 * `SELECT id, <COLUMNS duck exprs> FROM read_parquet(...) ORDER BY id` (DuckDB), value by value.
 */
export function compareEveryValue(
  pgRows: Array<Array<string | null>>,
  dRows: Array<Array<string | null>>,
): void {
  expect(dRows.length).toBe(pgRows.length);
  let compared = 0;
  let nonNull = 0;
  for (let r = 0; r < pgRows.length; r++) {
    const pr = pgRows[r]!;
    const dr = dRows[r]!;
    expect(dr[0]).toBe(pr[0]);
    COLUMNS.forEach(([col, , , cmp], k) => {
      const p = pr[k + 1] ?? null;
      const d = dr[k + 1] ?? null;
      const where = `row id=${pr[0]} column ${col}: pg=${p?.slice(0, 200)} duck=${d?.slice(0, 200)}`;
      compared++;
      if (p !== null) nonNull++;
      if (p === null || d === null) {
        expect(d, where).toBe(p);
        return;
      }
      switch (cmp) {
        case "text":
          expect(d, where).toBe(p);
          break;
        case "bool":
          expect(d, where).toBe(p === "t" || p === "true" ? "true" : "false");
          break;
        case "float4":
          expect(Object.is(Math.fround(parseFloatText(d)), Math.fround(parseFloatText(p))), where).toBe(true);
          break;
        case "float8":
          expect(Object.is(parseFloatText(d), parseFloatText(p)), where).toBe(true);
          break;
        case "numeric":
          expect(normNumeric(d), where).toBe(normNumeric(p));
          break;
        case "json":
          expect(JSON.parse(d), where).toEqual(JSON.parse(p));
          expect(isCompact(d), where).toBe(true);
          break;
        case "array":
          expect(JSON.parse(d), where).toEqual(JSON.parse(p));
          break;
        case "comp":
          expect(duckAddr(JSON.parse(d)), where).toEqual(pgAddrToParquet(JSON.parse(p)));
          break;
        case "acomp": {
          const pa = JSON.parse(p) as Array<Record<string, unknown> | null>;
          const da = JSON.parse(d) as { items: Array<Record<string, unknown> | null>; dimensions: number };
          expect({ items: da.items.map(duckAddr), dimensions: da.dimensions }, where).toEqual({
            items: pa.map(pgAddrToParquet),
            dimensions: pa.length > 0 ? 1 : 0,
          });
          break;
        }
      }
    });
  }
  expect(compared).toBe(pgRows.length * COLUMNS.length);
  expect(nonNull).toBeGreaterThan(130);
}
