// Oracle test for the Parquet encoder: rows come from the real PostgreSQL as binary DataRows,
// go through the encoder into files, and DuckDB (an independent reader) reads them back. Every
// value is compared with PostgreSQL's own rendering of the source, and the Parquet schema with
// SPEC §4.
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import { PgError } from "../../src/errors.js";
import {
  createParquetEncoder,
  type ParquetEncoder,
  type ParquetOptions,
  planParquet,
} from "../../src/encoders/parquet-encoder.js";
import {
  oidsNeedingCatalog,
  type TypeCatalogRow,
  typeCatalogQuery,
  typeInfoFromCatalog,
} from "../../src/encoders/parquet/catalog.js";
import type { ColumnInfo, FileSink } from "../../src/encoders/types.js";
import { RawPg } from "../support/raw-pg-binary.js";

const DB = "parquet_oracle";
let pg: RawPg;
let duck: DuckDBConnection;
let tmp: string;

interface Export {
  files: string[];
  rowsPerFile: number[];
  encoder: ParquetEncoder;
  textColumns: string[];
  rows: number;
}

/** Describes `sql` like the planner will: RowDescription plus one catalog query for user types. */
async function describeColumns(sql: string): Promise<ColumnInfo[]> {
  const cols = await pg.describe(sql);
  const infos: ColumnInfo[] = cols.map((c) => ({ name: c.name, typeOid: c.typeOid, typeMod: c.typeMod }));
  const oids = oidsNeedingCatalog(infos);
  if (oids.length > 0) {
    const raw = await pg.query(typeCatalogQuery(oids));
    const rows: TypeCatalogRow[] = raw.map((r) => ({
      oid: r[0]!,
      typname: r[1]!,
      typtype: r[2]!,
      typcategory: r[3]!,
      typelem: r[4]!,
      typbasetype: r[5]!,
      typtypmod: r[6]!,
      fields: r[7] ?? null,
    }));
    for (const c of infos) if (c.typeOid >= 16384) c.type = typeInfoFromCatalog(rows, c.typeOid);
  }
  return infos;
}

async function exportQuery(
  sql: string,
  opts: Partial<Omit<ParquetOptions, "columns">> = {},
  name = "x",
): Promise<Export> {
  const dir = mkdtempSync(join(tmp, `${name}-`));
  const columns = await describeColumns(sql);
  const plan = planParquet(columns);
  const files: string[] = [];
  const rowsPerFile: number[] = [];
  let fd = -1;
  const sink: FileSink = {
    openFile(index) {
      const f = join(dir, `part-${String(index).padStart(4, "0")}.parquet`);
      files.push(f);
      fd = openSync(f, "w");
    },
    write(chunk) {
      writeSync(fd, chunk);
    },
    closeFile(rows) {
      closeSync(fd);
      fd = -1;
      rowsPerFile.push(rows);
    },
  };
  const encoder = await createParquetEncoder(
    { compression: "snappy", maxFileSize: 256 << 20, ...opts, columns },
    sink,
  );
  try {
    const rows = await pg.executeAsync(sql, plan.resultFormats, (buf, pos, n) => {
      encoder.writeRow(buf, pos, n);
      if (encoder.wantsFlush) return encoder.flush();
    });
    await encoder.finish();
    return { files, rowsPerFile, encoder, textColumns: plan.textColumns, rows };
  } finally {
    encoder.dispose();
    if (fd >= 0) closeSync(fd);
  }
}

async function duckRows(sql: string): Promise<Array<Array<string | null>>> {
  const r = await duck.runAndReadAll(sql);
  return r.getRows().map((row) => row.map((v) => (v === null ? null : String(v))));
}

const fileList = (files: string[]): string => `[${files.map((f) => `'${f}'`).join(",")}]`;

beforeAll(async () => {
  const port = inject("pgPort");
  const admin = await RawPg.connect({ port });
  await admin.query(`DROP DATABASE IF EXISTS ${DB}`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  pg = await RawPg.connect({ port, database: DB });
  // Fixed session settings: the text-exported columns carry PostgreSQL's text output.
  await pg.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'");
  tmp = mkdtempSync(join(tmpdir(), "parquet-oracle-"));
  const instance = await DuckDBInstance.create(":memory:");
  duck = await instance.connect();
  await pg.query(SETUP_SQL);
}, 120_000);

afterAll(async () => {
  await pg?.end();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

const SETUP_SQL = `
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
type Cmp = "text" | "bool" | "float4" | "float8" | "numeric" | "json" | "array" | "comp" | "acomp";
const arrayJson = (c: string): string =>
  `CASE WHEN ${c} IS NULL THEN NULL ELSE json_build_object('items', (SELECT coalesce(json_agg(x ORDER BY o), '[]'::json) FROM unnest(${c}) WITH ORDINALITY u(x, o)), 'dimensions', coalesce(array_ndims(${c}), 0))::text END`;
// Text-exported columns are compared with the raw text-format value (the type's output function);
// a ::text cast can differ from it (inet::text always shows the netmask).
const COLUMNS: Array<[string, string, string, Cmp]> = [
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
  ["r", "r", "r", "text"],
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

describe("parquet oracle (PostgreSQL → encoder → DuckDB)", () => {
  let ex: Export;
  const SQL = "SELECT *, i4 AS i4, tx AS tx, i4 AS i42 FROM every ORDER BY id";

  beforeAll(async () => {
    ex = await exportQuery(SQL, {}, "every");
  }, 120_000);

  it("exports every row into one file and reports the text-exported columns", async () => {
    expect(ex.rows).toBe(9);
    expect(ex.files).toHaveLength(1);
    expect(ex.rowsPerFile).toEqual([9]);
    expect(ex.textColumns).toEqual(["e", "iv", "ine", "r", "cm", "am"]);
    const [[count]] = (await duckRows(`SELECT count(*) FROM read_parquet(${fileList(ex.files)})`)) as [
      [string],
    ];
    expect(count).toBe("9");
  });

  it("makes duplicate column names unique (a, a2, …) without clobbering a column named a2", async () => {
    const names = await duckRows(
      `SELECT name FROM parquet_schema(${fileList(ex.files)}) WHERE name LIKE 'i4%' OR name LIKE 'tx%'`,
    );
    expect(names.map((r) => r[0])).toEqual(["i4", "tx", "i42", "tx2", "i422"]);
    const vals = await duckRows(
      `SELECT i4 = i42 AND i42 = i422, tx IS NOT DISTINCT FROM tx2 FROM read_parquet(${fileList(ex.files)})`,
    );
    for (const [a, b] of vals) {
      expect(a === null || a === "true").toBe(true);
      expect(b).toBe("true");
    }
  });

  it("round-trips every value of every type", async () => {
    const pgRows = await pg.query(`SELECT id, ${COLUMNS.map((c) => c[1]).join(", ")} FROM every ORDER BY id`);
    const dRows = await duckRows(
      `SELECT id, ${COLUMNS.map((c) => c[2]).join(", ")} FROM read_parquet(${fileList(ex.files)}) ORDER BY id`,
    );
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
            expect(Object.is(Math.fround(parseFloatText(d)), Math.fround(parseFloatText(p))), where).toBe(
              true,
            );
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
  });

  it("writes json/jsonb as compact text, keeping string contents byte for byte", async () => {
    const rows = await duckRows(
      `SELECT id, j, jb FROM read_parquet(${fileList(ex.files)}) WHERE id IN (3, 5, 6) ORDER BY id`,
    );
    expect(rows).toEqual([
      [
        "3",
        '{"a":[1,2.50,{"b":null}],"s":"x y\\t\\"z\\"","a":3}',
        '{"a":[true,false,null],"n":1.50,"s":"spaced  out  \\"text\\"","u":"ü 世","z":1}',
      ],
      ["5", '{"a":1}', '{"arr":[],"empty":{},"nested":{"k":[1,{"x":"y"}]}}'],
      ["6", "[1,2]", "123.4500"],
    ]);
  });

  it("compares the timestamps inside composites", async () => {
    const p = await pg.query(
      "SELECT id, (extract(epoch from (comp).at) * 1000000)::int8::text FROM every ORDER BY id",
    );
    const d = await duckRows(
      `SELECT id, epoch_us(comp."at")::varchar FROM read_parquet(${fileList(ex.files)}) ORDER BY id`,
    );
    expect(d).toEqual(p);
  });

  it("has the Parquet schema SPEC §4 describes", async () => {
    const rows = await duck.runAndReadAll(
      `SELECT name, type, type_length, repetition_type, converted_type, scale, precision, logical_type
         FROM parquet_schema('${ex.files[0]}')`,
    );
    const schema = new Map<string, Record<string, string | null>>();
    for (const r of rows.getRowObjects()) {
      const o: Record<string, string | null> = {};
      for (const [k, v] of Object.entries(r)) o[k] = v === null ? null : String(v);
      if (!schema.has(o.name!)) schema.set(o.name!, o);
    }
    const leaf = (name: string) => schema.get(name)!;
    const expectLeaf = (
      name: string,
      type: string,
      logical: RegExp | null,
      extra: Record<string, string> = {},
    ) => {
      const l = leaf(name);
      expect(l, name).toBeDefined();
      expect(l.type, name).toBe(type);
      if (logical) expect(l.logical_type ?? l.converted_type ?? "", name).toMatch(logical);
      for (const [k, v] of Object.entries(extra)) expect(l[k], `${name}.${k}`).toBe(v);
    };
    expectLeaf("b", "BOOLEAN", null);
    expectLeaf("i2", "INT32", null, { converted_type: "INT_16" });
    expectLeaf("i4", "INT32", null);
    expectLeaf("i8", "INT64", null);
    expectLeaf("f4", "FLOAT", null);
    expectLeaf("f8", "DOUBLE", null);
    expectLeaf("n", "FIXED_LEN_BYTE_ARRAY", /Decimal/, { precision: "38", scale: "10", type_length: "16" });
    expectLeaf("n102", "FIXED_LEN_BYTE_ARRAY", /Decimal/, { precision: "38", scale: "2" });
    expectLeaf("n380", "FIXED_LEN_BYTE_ARRAY", /Decimal/, { precision: "38", scale: "0" });
    expectLeaf("n3838", "FIXED_LEN_BYTE_ARRAY", /Decimal/, { precision: "38", scale: "38" });
    expectLeaf("d", "INT32", /DateType|DATE/);
    expectLeaf("t", "INT64", /TimeType\(.*MICROS=MicroSeconds\(\)/);
    expectLeaf("ts", "INT64", /TimestampType\(isAdjustedToUTC=0, .*MICROS=MicroSeconds\(\)/);
    expectLeaf("tstz", "INT64", /TimestampType\(isAdjustedToUTC=1, .*MICROS=MicroSeconds\(\)/);
    expectLeaf("tx", "BYTE_ARRAY", /StringType|UTF8/);
    expectLeaf("vc", "BYTE_ARRAY", /StringType|UTF8/);
    expectLeaf("by", "BYTE_ARRAY", null);
    expect(leaf("by").logical_type).toBeNull();
    expectLeaf("u", "FIXED_LEN_BYTE_ARRAY", null, { type_length: "16" });
    expectLeaf("jb", "BYTE_ARRAY", /StringType|UTF8/);
    expectLeaf("e", "BYTE_ARRAY", /StringType|UTF8/);
    expectLeaf("dimensions", "INT32", null, { converted_type: "UINT_8" });
    // Arrays: a group (the struct) holding a LIST and the dimensions.
    expect(leaf("ai").repetition_type).toBe("OPTIONAL");
    expect(leaf("items").converted_type ?? leaf("items").logical_type).toMatch(/LIST/i);
    // Everything from PostgreSQL is nullable.
    for (const c of ["b", "i4", "n", "tx", "comp", "ai"]) expect(leaf(c).repetition_type, c).toBe("OPTIONAL");
  });

  it("embeds the Arrow schema with materialize.v1 extension names", async () => {
    const [[b64]] = (await duckRows(
      `SELECT value::varchar FROM parquet_kv_metadata('${ex.files[0]}') WHERE key::varchar = 'ARROW:schema'`,
    )) as [[string]];
    const { tableFromIPC } = await import("apache-arrow");
    // The value is an IPC schema message (base64) with no batches; add the end-of-stream marker.
    const msg = Buffer.from(b64, "base64");
    const schema = tableFromIPC(
      Buffer.concat([msg, Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])]),
    ).schema;
    const ext = (name: string) =>
      schema.fields.find((f) => f.name === name)?.metadata.get("ARROW:extension:name");
    const expected: Record<string, string> = {
      b: "boolean",
      i2: "smallint",
      i4: "integer",
      i8: "bigint",
      f4: "real",
      f8: "double",
      n: "numeric",
      d: "date",
      t: "time",
      ts: "timestamp",
      tstz: "timestamptz",
      tx: "text",
      vc: "text",
      by: "bytea",
      u: "uuid",
      j: "json",
      jb: "jsonb",
      ai: "array",
      comp: "record",
      dom: "integer",
      e: "text",
    };
    for (const [name, e] of Object.entries(expected)) expect(ext(name), name).toBe(`materialize.v1.${e}`);
    const ai = schema.fields.find((f) => f.name === "ai")!;
    const [items, dims] = ai.type.children as import("apache-arrow").Field[];
    expect(items!.name).toBe("items");
    expect(items!.nullable).toBe(false);
    expect(items!.metadata.get("ARROW:extension:name")).toBe("materialize.v1.array_items");
    expect(items!.type.children[0]!.metadata.get("ARROW:extension:name")).toBe("materialize.v1.integer");
    expect(dims!.name).toBe("dimensions");
    expect(dims!.metadata.get("ARROW:extension:name")).toBe("materialize.v1.array_dimensions");
    expect(String(schema.fields.find((f) => f.name === "vc")!.type)).toBe("Utf8");
    expect(String(schema.fields.find((f) => f.name === "tx")!.type)).toBe("LargeUtf8");
    expect(String(schema.fields.find((f) => f.name === "tstz")!.type)).toMatch(
      /Timestamp.*MICROSECOND.*\+00:00/i,
    );
  });
});

describe("parquet values Parquet cannot hold (errors name the column and the value)", () => {
  const expectError = async (sql: string, code: string, message: RegExp) => {
    const err = await exportQuery(sql, {}, "err").then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(PgError);
    expect((err as PgError).code).toBe(code);
    expect((err as PgError).message).toMatch(message);
  };

  it("NaN and ±Infinity numerics", async () => {
    await expectError(
      "SELECT g, CASE WHEN g = 3 THEN 'NaN'::numeric ELSE g END AS amount FROM generate_series(1, 5) g",
      "22003",
      /column "amount".*NaN/,
    );
    await expectError("SELECT 'Infinity'::numeric AS amount", "22003", /column "amount".*Infinity/);
    await expectError("SELECT '-Infinity'::numeric AS amount", "22003", /column "amount".*-Infinity/);
  });

  it("numerics with more than 38 digits or more fractional digits than the scale", async () => {
    await expectError(
      "SELECT 1e28::numeric AS big",
      "22003",
      /column "big".*10000000000000000000000000000.*out of range.*decimal\(38,10\)/,
    );
    await expectError(
      "SELECT 0.12345678901 AS frac",
      "22003",
      /column "frac".*0\.12345678901.*fractional digits/,
    );
    await expectError("SELECT ARRAY[1.5, 1e30]::numeric[] AS arr", "22003", /column "arr".*out of range/);
  });

  it("numeric scales outside 0..38 are refused at plan time", async () => {
    const cols = await describeColumns("SELECT 1::numeric(5,-2) AS neg, 1::numeric(60,40) AS wide");
    expect(() => planParquet([cols[0]!])).toThrow(/column "neg" has type numeric\(5,-2\)/);
    expect(() => planParquet([cols[1]!])).toThrow(/column "wide" has type numeric\(60,40\)/);
    try {
      planParquet([cols[0]!]);
    } catch (e) {
      expect((e as PgError).code).toBe("0A000");
    }
  });

  it("infinite dates and timestamps, and timestamps past the int64 microsecond range", async () => {
    await expectError("SELECT 'infinity'::date AS day", "22008", /column "day".*date infinity/);
    await expectError("SELECT '-infinity'::timestamp AS at", "22008", /column "at".*-infinity/);
    await expectError("SELECT 'infinity'::timestamptz AS at", "22008", /column "at".*infinity/);
    await expectError("SELECT '294276-12-31 23:59:59'::timestamp AS at", "22008", /column "at"/);
  });

  it("an error mid-export leaves the encoder disposable and the WASM writer reusable", async () => {
    await expectError(
      "SELECT g, md5(g::text) AS h, CASE WHEN g = 150000 THEN 'NaN'::numeric ELSE g END AS amount FROM generate_series(1, 200000) g",
      "22003",
      /amount.*NaN/,
    );
    const ok = await exportQuery("SELECT g FROM generate_series(1, 1000) g", {}, "after-error");
    const [[n]] = (await duckRows(`SELECT count(*) FROM read_parquet(${fileList(ok.files)})`)) as [[string]];
    expect(n).toBe("1000");
  });
});

describe("parquet edge shapes", () => {
  it("an empty result still writes one valid file with the schema", async () => {
    const ex = await exportQuery("SELECT 1::int AS a, 'x'::text AS b WHERE false", {}, "empty");
    expect(ex.files).toHaveLength(1);
    expect(ex.rowsPerFile).toEqual([0]);
    const rows = await duckRows(`SELECT count(*) FROM read_parquet('${ex.files[0]}')`);
    expect(rows).toEqual([["0"]]);
    const names = await duckRows(
      `SELECT name, type FROM parquet_schema('${ex.files[0]}') WHERE name <> 'arrow_schema'`,
    );
    expect(names).toEqual([
      ["a", "INT32"],
      ["b", "BYTE_ARRAY"],
    ]);
  });

  it("ROW GROUP SIZE bounds the rows per row group", async () => {
    const ex = await exportQuery("SELECT g FROM generate_series(1, 10000) g", { rowGroupSize: 3000 }, "rg");
    const rgs = await duckRows(
      `SELECT row_group_id, row_group_num_rows FROM parquet_metadata('${ex.files[0]}') ORDER BY row_group_id`,
    );
    expect(rgs.map((r) => Number(r[1]))).toEqual([3000, 3000, 3000, 1000]);
  });

  for (const compression of ["snappy", "zstd", "gzip", "none"] as const) {
    it(`COMPRESSION ${compression}`, async () => {
      const ex = await exportQuery(
        "SELECT g, md5(g::text) AS h FROM generate_series(1, 5000) g",
        { compression },
        compression,
      );
      const c = await duckRows(`SELECT DISTINCT compression FROM parquet_metadata('${ex.files[0]}')`);
      expect(c).toEqual([[compression === "none" ? "UNCOMPRESSED" : compression.toUpperCase()]]);
      const [[sum]] = (await duckRows(`SELECT sum(g) FROM read_parquet('${ex.files[0]}')`)) as [[string]];
      expect(sum).toBe(String((5000 * 5001) / 2));
    });
  }

  it("writes no column statistics and Parquet format version 1", async () => {
    const ex = await exportQuery("SELECT g, g::text AS s FROM generate_series(1, 100) g", {}, "stats");
    const st = await duckRows(
      `SELECT DISTINCT stats_min, stats_max, stats_null_count FROM parquet_metadata('${ex.files[0]}')`,
    );
    expect(st).toEqual([[null, null, null]]);
    const [[version]] = (await duckRows(
      `SELECT format_version FROM parquet_file_metadata('${ex.files[0]}')`,
    )) as [[string]];
    expect(version).toBe("1");
  });
});

describe("parquet file size control", () => {
  it("splits into ≥ 3 files under MAX FILE SIZE 16MB, each within the limit + 5%, row counts right", async () => {
    const limit = 16 << 20;
    const N = 1_200_000;
    const ex = await exportQuery(
      `SELECT g AS id, md5(g::text) AS h, g * 1.5 AS n, now() - g * interval '1 second' AS at, (g % 7 = 0) AS flag
         FROM generate_series(1, ${N}) g`,
      { maxFileSize: limit },
      "multi",
    );
    const sizes = ex.files.map((f) => statSync(f).size);
    expect(ex.files.length).toBeGreaterThanOrEqual(3);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(limit * 1.05);
    // Every file but the last is reasonably full: cutting early would make needless files.
    for (const s of sizes.slice(0, -1)) expect(s).toBeGreaterThan(limit * 0.85);
    const counts = await Promise.all(
      ex.files.map(async (f) => Number((await duckRows(`SELECT count(*) FROM read_parquet('${f}')`))[0]![0])),
    );
    expect(counts).toEqual(ex.rowsPerFile);
    expect(counts.reduce((a, b) => a + b, 0)).toBe(N);
    expect(ex.encoder.files.map((f) => f.bytes)).toEqual(sizes);
    const [[sum, distinct]] = (await duckRows(
      `SELECT sum(id)::varchar, count(DISTINCT id)::varchar FROM read_parquet(${fileList(ex.files)})`,
    )) as [[string, string]];
    expect(sum).toBe(String((N * (N + 1)) / 2));
    expect(distinct).toBe(String(N));
    const overshoot = sizes.map((s) => ((s / limit - 1) * 100).toFixed(2));
    console.log(
      `parquet files (limit ${limit}): sizes ${sizes.join(", ")}; vs limit %: ${overshoot.join(", ")}; rows ${counts.join(", ")}`,
    );
    expect(readdirSync(join(ex.files[0]!, "..")).length).toBe(ex.files.length);
  }, 180_000);
});
