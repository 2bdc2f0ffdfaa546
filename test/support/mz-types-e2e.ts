// Materialize's types in Parquet, after Materialize's own COPY TO tests: the scenarios run against
// the MaterializeWireDouble (mz-double-e2e.test.ts) and, with MZ_URL, a real Materialize
// (materialize-real.test.ts). Oracles: DuckDB reads the files back and every value is compared with
// what the upstream itself returns for the same query; the Arrow schema embedded in the file is
// compared with what Materialize's `src/arrow-util/src/builder.rs` writes for each type.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import * as arrow from "apache-arrow";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { freshPrefix, type MzEnv } from "./mz-e2e.js";

const EXT = "ARROW:extension:name";

/** A decimal's text without trailing fractional zeros (1234.5000 → 1234.5, 7.000 → 7). */
export function normDecimal(s: string | null): string | null {
  if (s === null || !s.includes(".")) return s;
  return s.replace(/0+$/, "").replace(/\.$/, "");
}

/** An Arrow type as builder.rs spells it where apache-arrow's toString is ambiguous (Decimal). */
function typeName(t: arrow.DataType): string {
  if (arrow.DataType.isDecimal(t)) return `Decimal${t.bitWidth}(${t.precision},${t.scale})`;
  return String(t);
}

/**
 * `kind` says which upstream runs them: scenarios for what the double cannot stage (named types
 * from CREATE TYPE) run against a real Materialize only.
 */
export function materializeTypeScenarios(env: () => MzEnv, kind: MzEnv["kind"]): void {
  let duck: DuckDBConnection;
  let tmp: string;

  beforeAll(async () => {
    duck = await (await DuckDBInstance.create(":memory:")).connect();
    tmp = mkdtempSync(join(tmpdir(), "mz-types-"));
    const e = env();
    // Materialize `test/testdrive/copy-to-s3-minio.td`, "Tests for decimal / numeric type" (table t2).
    for (const sql of [
      "CREATE TABLE mzt_num (a NUMERIC, b NUMERIC(38, 15), c NUMERIC(38, 0), d NUMERIC(38, 5))",
      "INSERT INTO mzt_num VALUES (1234, -1234, 1234, 1234)",
      "INSERT INTO mzt_num VALUES (123456789.123456789, -123456789.12345678912345, 1234567890000, 123456789.12345)",
      "INSERT INTO mzt_num VALUES (10000000000000000001, 100000000000000.0000001, -100000000, 100000000000000000000000000000000.00001)",
      "CREATE TABLE mzt_misc (id int, o oid, r int4range, nr numrange, dr daterange)",
      `INSERT INTO mzt_misc VALUES
        (1, '4294967295'::oid, '[1,5)'::int4range, '[1.5,2.25]'::numrange, '[2024-01-01,2024-02-01)'::daterange),
        (2, '0'::oid, 'empty'::int4range, '(,3.5)'::numrange, '[2024-03-01,)'::daterange),
        (3, '26'::oid, '(,10]'::int4range, '(-1,)'::numrange, '(,)'::daterange),
        (4, NULL, NULL, NULL, NULL)`,
      // numeric(10,2) inside a list and an array (the double: a list stand-in over numeric(10,2)[]).
      ...(kind === "double"
        ? [
            "CREATE DOMAIN mz_catalog.num2_list AS numeric(10,2)[]",
            "CREATE TABLE mzt_nl (id int, l num2_list, a numeric(10,2)[])",
            "INSERT INTO mzt_nl VALUES (1, '{1.5,NULL,-2.25}', '{1.5,NULL,-2.25}'), (2, '{}', '{}'), (3, NULL, NULL)",
          ]
        : [
            "CREATE TABLE mzt_nl (id int, l numeric(10,2) list, a numeric(10,2)[])",
            `INSERT INTO mzt_nl VALUES (1, '{1.5,NULL,-2.25}'::numeric(10,2) list, ARRAY[1.5,NULL,-2.25]::numeric(10,2)[]),
              (2, '{}'::numeric(10,2) list, '{}'::numeric(10,2)[]), (3, NULL, NULL)`,
            // Named types (Materialize test/sqllogictest/list.slt, map.slt: CREATE TYPE … AS LIST/MAP).
            "CREATE TYPE c2s_int_list AS LIST (ELEMENT TYPE = int4)",
            "CREATE TYPE c2s_int_map AS MAP (KEY TYPE = text, VALUE TYPE = int4)",
            "CREATE TABLE mzt_named (id int, l c2s_int_list, m c2s_int_map)",
            "CREATE TABLE mzt_rec (id int NOT NULL, t text, n numeric(10,2))",
            "INSERT INTO mzt_rec VALUES (1, 'a', 1.5), (2, NULL, NULL)",
            `INSERT INTO mzt_named VALUES (1, '{1,NULL,3}'::c2s_int_list, '{a=>1,b=>NULL}'::c2s_int_map),
              (2, NULL, NULL)`,
          ]),
    ]) {
      await e.setup(sql);
    }
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function files(prefix: string): Promise<string[]> {
    const e = env();
    const keys = (await e.check.keys(e.bucket, `${prefix}/`)).filter((k) => k.endsWith(".parquet"));
    const paths: string[] = [];
    for (const k of keys) {
      const p = join(tmp, k.replaceAll("/", "_"));
      writeFileSync(p, await e.check.get(e.bucket, k));
      paths.push(p);
    }
    return paths;
  }

  async function duckRows(sql: string): Promise<Array<Array<string | null>>> {
    const r = await duck.runAndReadAll(sql);
    return r.getRows().map((row) => row.map((v) => (v === null ? null : String(v))));
  }

  /** The Arrow schema the file embeds (ARROW:schema, an IPC schema message). */
  async function arrowSchema(file: string): Promise<arrow.Schema> {
    const [[b64]] = (await duckRows(
      `SELECT value::varchar FROM parquet_kv_metadata('${file}') WHERE key::varchar = 'ARROW:schema'`,
    )) as [[string]];
    const msg = Buffer.from(b64, "base64");
    return arrow.tableFromIPC(Buffer.concat([msg, Buffer.from([0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0])])).schema;
  }

  async function manifestColumns(prefix: string): Promise<Array<{ name: string; type: string }>> {
    const e = env();
    const key = (await e.check.keys(e.bucket, `${prefix}/`)).find((k) => k.endsWith("-manifest.json"))!;
    return JSON.parse((await e.check.get(e.bucket, key)).toString()).columns;
  }

  /** The upstream's own answer to `sql`, every value as text, rows sorted. */
  async function source(sql: string): Promise<Array<Array<string | null>>> {
    const r = await env().client.query({ text: sql, rowMode: "array" });
    return (r.rows as unknown[][])
      .map((row) => row.map((v) => (v === null ? null : String(v))))
      .sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
  }

  describe("Parquet types as Materialize's COPY TO writes them (src/arrow-util/src/builder.rs)", () => {
    test("numeric without a typmod is Decimal128(38,10), declared scales are kept; every value equals the source (copy-to-s3-minio.td, parquet_test/9)", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(
        `COPY mzt_num TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`,
      );
      expect(r.rowCount).toBe(3);
      const [file] = await files(prefix);
      expect(
        await duckRows(
          `SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${file}'))`,
        ),
      ).toEqual([
        ["a", "DECIMAL(38,10)"],
        ["b", "DECIMAL(38,15)"],
        ["c", "DECIMAL(38,0)"],
        ["d", "DECIMAL(38,5)"],
      ]);
      // The td's expected rows: "padded with 0s after the decimal point to fit the column scale".
      expect(
        await duckRows(
          `SELECT a::VARCHAR, b::VARCHAR, c::VARCHAR, d::VARCHAR FROM read_parquet('${file}') ORDER BY c`,
        ),
      ).toEqual([
        [
          "10000000000000000001.0000000000",
          "100000000000000.000000100000000",
          "-100000000",
          "100000000000000000000000000000000.00001",
        ],
        ["1234.0000000000", "-1234.000000000000000", "1234", "1234.00000"],
        ["123456789.1234567890", "-123456789.123456789123450", "1234567890000", "123456789.12345"],
      ]);
      const back = await duckRows(
        `SELECT a::VARCHAR, b::VARCHAR, c::VARCHAR, d::VARCHAR FROM read_parquet('${file}')`,
      );
      const src = await source("SELECT a::text, b::text, c::text, d::text FROM mzt_num");
      const norm = (rows: Array<Array<string | null>>) =>
        rows
          .map((row) => row.map(normDecimal))
          .sort((x, y) => JSON.stringify(x).localeCompare(JSON.stringify(y)));
      expect(norm(back)).toEqual(norm(src));
      // Arrow: Decimal128(38, s), extension materialize.v1.numeric.
      const schema = await arrowSchema(file!);
      expect(schema.fields.map((f) => [f.name, typeName(f.type), f.metadata.get(EXT)])).toEqual([
        ["a", "Decimal128(38,10)", "materialize.v1.numeric"],
        ["b", "Decimal128(38,15)", "materialize.v1.numeric"],
        ["c", "Decimal128(38,0)", "materialize.v1.numeric"],
        ["d", "Decimal128(38,5)", "materialize.v1.numeric"],
      ]);
      // The manifest never names Materialize's wire precision 39.
      expect(await manifestColumns(prefix)).toEqual([
        { name: "a", type: "numeric" },
        { name: "b", type: "numeric(38,15)" },
        { name: "c", type: "numeric(38,0)" },
        { name: "d", type: "numeric(38,5)" },
      ]);
    });

    test("SUM and AVG over numeric (unconstrained numeric results) export as Decimal128(38,10) with the source's values", async () => {
      const e = env();
      const prefix = freshPrefix();
      const q = "SELECT sum(a) AS sa, sum(c) AS sc, avg(c) AS ac, count(*) AS n FROM mzt_num";
      const r = await e.client.query(`COPY (${q}) TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`);
      expect(r.rowCount).toBe(1);
      const [file] = await files(prefix);
      expect(
        await duckRows(
          `SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${file}'))`,
        ),
      ).toEqual([
        ["sa", "DECIMAL(38,10)"],
        ["sc", "DECIMAL(38,10)"],
        ["ac", "DECIMAL(38,10)"],
        ["n", "BIGINT"],
      ]);
      const back = await duckRows(
        `SELECT sa::VARCHAR, sc::VARCHAR, ac::VARCHAR, n::VARCHAR FROM read_parquet('${file}')`,
      );
      const src = await source(`SELECT sa::text, sc::text, ac::text, n::text FROM (${q}) AS q`);
      expect(back.map((row) => row.map(normDecimal))).toEqual(src.map((row) => row.map(normDecimal)));
      const types = (await manifestColumns(prefix)).map((c) => c.type);
      expect(types).toEqual(["numeric", "numeric", "numeric", "bigint"]);
    });

    test("oid is UInt32; ranges are Struct{lower, upper, lower_inclusive, upper_inclusive, empty}; values equal the source", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(
        `COPY mzt_misc TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`,
      );
      expect(r.rowCount).toBe(4);
      const [file] = await files(prefix);
      const schema = await arrowSchema(file!);
      const field = (n: string) => schema.fields.find((f) => f.name === n)!;
      expect(String(field("o").type)).toBe("Uint32");
      expect(field("o").metadata.get(EXT)).toBe("materialize.v1.oid");
      // builder.rs, SqlScalarType::Range: lower/upper nullable with the element's extension name,
      // the three flags Boolean NOT NULL ("materialize.v1.boolean"), the struct "materialize.v1.range".
      for (const [name, elemType, elemExt] of [
        ["r", "Int32", "integer"],
        ["nr", "Decimal128(38,10)", "numeric"],
        ["dr", "Date32<DAY>", "date"],
      ] as const) {
        const f = field(name);
        expect(f.metadata.get(EXT), name).toBe("materialize.v1.range");
        expect(
          (f.type.children as arrow.Field[]).map((c) => [
            c.name,
            typeName(c.type),
            c.nullable,
            c.metadata.get(EXT),
          ]),
          name,
        ).toEqual([
          ["lower", elemType, true, `materialize.v1.${elemExt}`],
          ["upper", elemType, true, `materialize.v1.${elemExt}`],
          ["lower_inclusive", "Bool", false, "materialize.v1.boolean"],
          ["upper_inclusive", "Bool", false, "materialize.v1.boolean"],
          ["empty", "Bool", false, "materialize.v1.boolean"],
        ]);
      }
      const parts = (c: string, cast: string) =>
        [
          `lower(${c})${cast}`,
          `upper(${c})${cast}`,
          `lower_inc(${c})`,
          `upper_inc(${c})`,
          `isempty(${c})`,
        ].join(", ");
      const back = await duckRows(
        `SELECT id::VARCHAR, o::VARCHAR,
           r.lower::VARCHAR, r.upper::VARCHAR, r.lower_inclusive::VARCHAR, r.upper_inclusive::VARCHAR, r.empty::VARCHAR,
           nr.lower::VARCHAR, nr.upper::VARCHAR, nr.lower_inclusive::VARCHAR, nr.upper_inclusive::VARCHAR, nr.empty::VARCHAR,
           dr.lower::VARCHAR, dr.upper::VARCHAR, dr.lower_inclusive::VARCHAR, dr.upper_inclusive::VARCHAR, dr.empty::VARCHAR
         FROM read_parquet('${file}') ORDER BY id`,
      );
      const src = await source(
        `SELECT id::text, o::text, ${parts("r", "::text")}, ${parts("nr", "::text")}, ${parts("dr", "::text")}
         FROM mzt_misc ORDER BY id`,
      );
      // Booleans: DuckDB prints true/false, the upstream t/f (or true/false through the driver).
      const canon = (v: string | null) =>
        v === "t" || v === "true" ? "true" : v === "f" || v === "false" ? "false" : normDecimal(v);
      const srcRows = src.map((row) => row.map(canon));
      // A NULL range: the upstream's lower_inc(NULL) is NULL; the file's flags under a NULL struct are too.
      expect(back.map((row) => row.map(canon))).toEqual(srcRows);
    });

    test("numeric inside a list and an array keeps its scale: Decimal128(38,2), values equal the source", async () => {
      const e = env();
      const prefix = freshPrefix();
      await e.client.query(`COPY mzt_nl TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`);
      const [file] = await files(prefix);
      const schema = await arrowSchema(file!);
      const l = schema.fields.find((f) => f.name === "l")!;
      const a = schema.fields.find((f) => f.name === "a")!;
      expect(typeName((l.type.children[0] as arrow.Field).type)).toBe("Decimal128(38,2)");
      const items = (a.type.children[0] as arrow.Field).type.children[0] as arrow.Field;
      expect(typeName(items.type)).toBe("Decimal128(38,2)");
      const back = await duckRows(
        `SELECT id::VARCHAR, l::VARCHAR, a.items::VARCHAR FROM read_parquet('${file}') ORDER BY id`,
      );
      const src = await source("SELECT id::text, l::text, a::text FROM mzt_nl ORDER BY id");
      const elems = (v: string | null) =>
        v === null
          ? null
          : v
              .replace(/^[[{]|[\]}]$/g, "")
              .split(",")
              .map((x) => x.trim())
              .filter((x) => x !== "")
              .map((x) => (x === "NULL" ? null : normDecimal(x)));
      expect(back.map((r) => [r[0], elems(r[1]!), elems(r[2]!)])).toEqual(
        src.map((r) => [r[0], elems(r[1]!), elems(r[2]!)]),
      );
    });

    test.skipIf(kind === "double")(
      "a record keeps each field's own nullability and a numeric field its scale (builder.rs SqlScalarType::Record)",
      async () => {
        const e = env();
        const prefix = freshPrefix();
        await e.client.query(
          `COPY (SELECT id, ROW(id, t, n) AS r FROM mzt_rec) TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`,
        );
        const [file] = await files(prefix);
        const r = (await arrowSchema(file!)).fields.find((f) => f.name === "r")!;
        expect(r.metadata.get(EXT)).toBe("materialize.v1.record");
        expect(
          (r.type.children as arrow.Field[]).map((f) => [
            f.name,
            typeName(f.type),
            f.nullable,
            f.metadata.get(EXT),
          ]),
        ).toEqual([
          ["f1", "Int32", false, "materialize.v1.integer"],
          ["f2", "LargeUtf8", true, "materialize.v1.text"],
          ["f3", "Decimal128(38,2)", true, "materialize.v1.numeric"],
        ]);
        expect(
          await duckRows(
            `SELECT id, r.f1::VARCHAR, r.f2, r.f3::VARCHAR FROM read_parquet('${file}') ORDER BY id`,
          ),
        ).toEqual([
          ["1", "1", "a", "1.50"],
          ["2", "2", null, null],
        ]);
      },
    );

    test.skipIf(kind === "double")(
      "named list and map types (CREATE TYPE … AS LIST/MAP) are List and Map, not text",
      async () => {
        const e = env();
        const prefix = freshPrefix();
        await e.client.query(`COPY mzt_named TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`);
        const [file] = await files(prefix);
        expect(
          await duckRows(
            `SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM read_parquet('${file}'))`,
          ),
        ).toEqual([
          ["id", "INTEGER"],
          ["l", "INTEGER[]"],
          ["m", "MAP(VARCHAR, INTEGER)"],
        ]);
        expect(
          await duckRows(`SELECT id, l::VARCHAR, m::VARCHAR FROM read_parquet('${file}') ORDER BY id`),
        ).toEqual([
          ["1", "[1, NULL, 3]", "{a=1, b=NULL}"],
          ["2", null, null],
        ]);
      },
    );
  });
}
