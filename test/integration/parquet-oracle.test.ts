// Oracle test for the Parquet encoder: rows come from the real PostgreSQL as binary DataRows,
// go through the encoder into files, and DuckDB (an independent reader) reads them back. Every
// value is compared with PostgreSQL's own rendering of the source, and the Parquet schema with
// SPEC §4.
import { closeSync, mkdtempSync, openSync, readdirSync, rmSync, statSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, inject, it } from "vitest";
import {
  oidsNeedingCatalog,
  type TypeCatalogRow,
  typeCatalogQuery,
  typeInfoFromCatalog,
} from "../../src/encoders/parquet/catalog.js";
import {
  createParquetEncoder,
  type ParquetEncoder,
  type ParquetOptions,
  planParquet,
} from "../../src/encoders/parquet-encoder.js";
import type { ColumnInfo, FileSink } from "../../src/encoders/types.js";
import { PgError } from "../../src/errors.js";
import { COLUMNS, compareEveryValue, SETUP_SQL } from "../support/parquet-fixture.js";
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

/**
 * Runs `sql` and hands its DataRows to `encoder.writeRows` in ~64 KiB runs of whole messages, the
 * way an export's encoder thread receives them (the row-at-a-time `writeRow` is the other path).
 */
async function feedInRuns(encoder: ParquetEncoder, sql: string, resultFormats: number[]): Promise<number> {
  const msgs: Buffer[] = [];
  const rows = await pg.execute(sql, resultFormats, (body) => {
    const m = Buffer.alloc(5 + body.length);
    m[0] = 0x44;
    m.writeInt32BE(body.length + 4, 1);
    body.copy(m, 5);
    msgs.push(m);
  });
  for (let i = 0; i < msgs.length; ) {
    let j = i;
    for (let size = 0; j < msgs.length && size < 64 << 10; j++) size += msgs[j]!.length;
    const run = Buffer.concat(msgs.slice(i, j));
    encoder.writeRows(run, 0, run.length);
    if (encoder.wantsFlush) await encoder.flush();
    i = j;
  }
  return rows;
}

async function exportQuery(
  sql: string,
  opts: Partial<Omit<ParquetOptions, "columns">> = {},
  name = "x",
  inRuns = false,
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
    const rows = inRuns
      ? await feedInRuns(encoder, sql, plan.resultFormats)
      : await pg.executeAsync(sql, plan.resultFormats, (buf, pos, n) => {
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
    expect(ex.textColumns).toEqual(["e", "iv", "ine", "cm", "am"]);
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
    compareEveryValue(pgRows, dRows);
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

describe("numerics at every scale (PostgreSQL → encoder → DuckDB)", () => {
  // numeric(38, s) for scales across 0..38; each row a value made of md5 digits with 0..38-s
  // integer and 0..s fractional digits (every fourth one near 14–17 digits, where the encoder's
  // one-double path ends), a third of them negative; then chosen values (2^32, 2^53 ± 1, 10^15,
  // 38 digits, 10^-38) rounded to each scale where they fit. DuckDB's text of each value must be
  // PostgreSQL's.
  const SCALES = [0, 1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 12, 13, 14, 15, 16, 17, 18, 20, 24, 30, 37, 38];
  const CHOSEN = [
    "0",
    "1",
    "-1",
    "0.5",
    "-0.01",
    "4294967295",
    "4294967296",
    "-4294967296",
    "999999999999999",
    "1000000000000000",
    "-999999999999999.9",
    "9007199254740991",
    "9007199254740993",
    "-9007199254740993",
    "12345678901234.5678",
    "18446744073709551616",
    "-79228162514264337593543950336",
    "99999999999999999999999999999999999999",
    "-99999999999999999999999999999999999999",
    "0.00000000000000000000000000000000000001",
    "-0.00000000000000000000000000000000000001",
  ];
  const generated = (s: number): string => {
    const k = `(CASE WHEN g % 4 = 0 THEN least(${38 - s}, greatest(0, ${14 - s} + (g / 4) % 4)) ELSE g % ${39 - s} END)`;
    const f = `(CASE WHEN g % 4 = 0 THEN ${s} ELSE (g * 7) % ${s + 1} END)`;
    return (
      `((CASE WHEN g % 3 = 0 THEN '-' ELSE '' END) || coalesce(nullif(substr(d, 1, ${k}), ''), '0')` +
      ` || (CASE WHEN ${f} > 0 THEN '.' || substr(d, 40, ${f}) ELSE '' END))::numeric`
    );
  };
  const chosen = (s: number): string =>
    `(CASE WHEN abs(round(t::numeric, ${s})) < 10::numeric ^ ${38 - s} THEN round(t::numeric, ${s}) END)`;
  const cols = SCALES.map((s) => `n${s}`);
  // The union drops typmods: the columns get theirs outside it.
  const SQL =
    `SELECT id, ${SCALES.map((s) => `n${s}::numeric(38,${s}) AS n${s}`).join(", ")} FROM (` +
    `SELECT g AS id, ${SCALES.map((s) => `${generated(s)} AS n${s}`).join(", ")} FROM (SELECT g, ` +
    `translate(md5(g::text) || md5((g + 7)::text) || md5((g + 13)::text), 'abcdef', '012345') AS d ` +
    `FROM generate_series(1, 4000) g) x UNION ALL ` +
    `SELECT 100000 + i AS id, ${SCALES.map((s) => `${chosen(s)} AS n${s}`).join(", ")} ` +
    `FROM unnest(ARRAY[${CHOSEN.map((v) => `'${v}'`).join(", ")}]) WITH ORDINALITY AS c(t, i)) u`;

  it.each([
    ["row by row", false],
    ["in runs of DataRows", true],
  ])(
    "reads back equal, value by value (%s)",
    async (_, inRuns) => {
      const ex = await exportQuery(`${SQL} ORDER BY id`, {}, "numerics", inRuns);
      const pgRows = await pg.query(
        `SELECT id, ${cols.map((c) => `${c}::text`).join(", ")} FROM (${SQL}) q ORDER BY id`,
      );
      const dRows = await duckRows(
        `SELECT id, ${cols.map((c) => `${c}::VARCHAR`).join(", ")} FROM read_parquet(${fileList(ex.files)}) ORDER BY id`,
      );
      expect(pgRows.length).toBe(4000 + CHOSEN.length);
      // DuckDB writes DECIMAL(38,38) without the leading zero (".5", "-.5").
      expect(dRows.map((r) => r.map((v) => v?.replace(/^(-?)\./, "$10.") ?? null))).toEqual(pgRows);
      const types = await duckRows(
        `SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet(${fileList(ex.files)})) WHERE column_name LIKE 'n%'`,
      );
      expect(types).toEqual(SCALES.map((s) => [`n${s}`, `DECIMAL(38,${s})`]));
    },
    120_000,
  );
});

describe("parquet values Parquet cannot hold (errors name the column and the value)", () => {
  // Both ways rows reach the encoder: one at a time, and in runs (whose loops report bad values
  // as the one-value path does).
  const expectError = async (sql: string, code: string, message: RegExp) => {
    for (const inRuns of [false, true]) {
      const err = await exportQuery(sql, {}, "err", inRuns).then(
        () => null,
        (e: unknown) => e,
      );
      expect(err, `inRuns=${inRuns}`).toBeInstanceOf(PgError);
      expect((err as PgError).code).toBe(code);
      expect((err as PgError).message).toMatch(message);
    }
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
