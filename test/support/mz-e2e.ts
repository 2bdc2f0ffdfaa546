// COPY … TO 's3://…' through the proxy in front of a Materialize: the scenarios of issue 5, written
// once and run against the MaterializeWireDouble (mz-double-e2e.test.ts) and against a real
// Materialize when MZ_URL is set (materialize-real.test.ts). Oracles are independent of the
// project: the CSV text Materialize documents for its types, DuckDB reading the Parquet files, an
// independent S3 client listing what landed.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { S3Check } from "./copy-proxy.js";

export interface MzEnv {
  /** A client connected through the proxy. */
  client: pg.Client;
  check: S3Check;
  bucket: string;
  /** Runs setup SQL straight on the upstream's data (PostgreSQL for the double, Materialize). */
  setup(sql: string): Promise<void>;
  /** How this upstream spells Materialize's types (the double: PostgreSQL domains). */
  kind: "double" | "real";
  /** The AS OF of the last SUBSCRIBE, when the upstream can tell (the double). */
  lastAsOf?: () => string | undefined;
}

/** The Materialize-types table, in the upstream's own SQL. */
export function typesSetup(kind: "double" | "real"): string[] {
  if (kind === "double") {
    return [
      `CREATE TABLE mzt (id int, u2 uint2, u4 uint4, u8 uint8, ts mz_timestamp, li int4_list, lt text_list,
        ll int4_list_list, mi int4_map, mt text_map, ln numeric_list)`,
      `INSERT INTO mzt VALUES
        (1, 65535, 4294967295, 18446744073709551615, 1700000000000, '{1,2,NULL}', '{"a b","",NULL,x}',
         '[[1,2],[3]]', '{"b":2,"a":null}', '{"z":"NULL","k":"v w"}', '{1.5,NULL,-2.25}'),
        (2, 0, 0, 0, 0, '{}', '{}', '[]', '{}', '{}', '{}'),
        (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
    ];
  }
  return [
    `CREATE TABLE mzt (id int, u2 uint2, u4 uint4, u8 uint8, ts mz_timestamp, li int4 list, lt text list,
      ll int4 list list, mi map[text=>int4], mt map[text=>text], ln numeric list)`,
    `INSERT INTO mzt VALUES
      (1, 65535, 4294967295, 18446744073709551615, 1700000000000, '{1,2,NULL}'::int4 list,
       '{"a b","",NULL,x}'::text list, '{{1,2},{3}}'::int4 list list, '{b=>2,a=>NULL}'::map[text=>int4],
       '{z=>"NULL",k=>"v w"}'::map[text=>text], '{1.5,NULL,-2.25}'::numeric list),
      (2, 0, 0, 0, 0, '{}'::int4 list, '{}'::text list, '{}'::int4 list list, '{}'::map[text=>int4],
       '{}'::map[text=>text], '{}'::numeric list),
      (3, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)`,
  ];
}

export function basicSetup(): string[] {
  return [
    "CREATE TABLE dup (a int, b text)",
    "INSERT INTO dup VALUES (1, 'x'), (1, 'x'), (1, 'x'), (2, 'y'), (3, 'a,\"b\"')",
    "CREATE VIEW empty_v AS SELECT a, b FROM dup WHERE false",
    "CREATE TABLE nums (n int)",
    "INSERT INTO nums SELECT generate_series(1, 2000)",
    "CREATE TABLE ev (ts timestamptz, v int)",
    "INSERT INTO ev VALUES ('2000-01-01 00:00:00+00', 1), ('2999-01-01 00:00:00+00', 2)",
    // A view without a timestamp dependency, as in Materialize's test/testdrive/fetch-tail-timestamp-zero.td.
    "CREATE VIEW const_v AS VALUES (123, 'x')",
  ];
}

/** CSV records (RFC 4180 with `"` quote and escape); an unquoted empty field is NULL. */
export function parseCsv(text: string): Array<Array<string | null>> {
  const rows: Array<Array<string | null>> = [];
  let row: Array<string | null> = [];
  let i = 0;
  while (i < text.length) {
    let field: string | null;
    if (text[i] === '"') {
      let v = "";
      i++;
      for (;;) {
        if (text[i] === '"' && text[i + 1] === '"') {
          v += '"';
          i += 2;
        } else if (text[i] === '"') {
          i++;
          break;
        } else v += text[i++];
      }
      field = v;
    } else {
      let j = i;
      while (j < text.length && text[j] !== "," && text[j] !== "\n") j++;
      field = j === i ? null : text.slice(i, j);
      i = j;
    }
    row.push(field);
    if (text[i] === ",") i++;
    else if (text[i] === "\n") {
      rows.push(row);
      row = [];
      i++;
    }
  }
  if (row.length > 0) rows.push(row);
  return rows;
}

const sortRows = (rows: Array<Array<string | null>>): string[] => rows.map((r) => JSON.stringify(r)).sort();

let prefixN = 0;
export const freshPrefix = (): string => `mz${Date.now().toString(36)}${++prefixN}`;

async function dataKeys(env: MzEnv, prefix: string, ext: string): Promise<string[]> {
  return (await env.check.keys(env.bucket, `${prefix}/`)).filter((k) => k.endsWith(`.${ext}`));
}

async function csvOf(env: MzEnv, prefix: string): Promise<string> {
  const keys = await dataKeys(env, prefix, "csv");
  return Buffer.concat(await Promise.all(keys.map((k) => env.check.get(env.bucket, k)))).toString("utf8");
}

async function manifestTextOf(env: MzEnv, prefix: string): Promise<string> {
  const key = (await env.check.keys(env.bucket, `${prefix}/`)).find((k) => k.endsWith("-manifest.json"))!;
  return (await env.check.get(env.bucket, key)).toString();
}

async function manifestOf(
  env: MzEnv,
  prefix: string,
): Promise<Record<string, unknown> & { snapshot: { upstream: string; at: string; mzTimestamp: number } }> {
  return JSON.parse(await manifestTextOf(env, prefix));
}

/** The scenarios every Materialize upstream must pass. */
export function materializeScenarios(env: () => MzEnv): void {
  let duck: DuckDBConnection;
  let tmp: string;

  beforeAll(async () => {
    duck = await (await DuckDBInstance.create(":memory:")).connect();
    tmp = mkdtempSync(join(tmpdir(), "mz-e2e-"));
  });
  afterAll(() => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  });

  async function parquetFiles(prefix: string): Promise<string> {
    const e = env();
    const keys = await dataKeys(e, prefix, "parquet");
    const paths = [];
    for (const k of keys) {
      const p = join(tmp, k.replaceAll("/", "_"));
      writeFileSync(p, await e.check.get(e.bucket, k));
      paths.push(`'${p}'`);
    }
    return `read_parquet([${paths.join(",")}])`;
  }

  async function duckRows(sql: string): Promise<Array<Array<string | null>>> {
    const r = await duck.runAndReadAll(sql);
    return r.getRows().map((row) => row.map((v) => (v === null ? null : String(v))));
  }

  describe("snapshot semantics", () => {
    test("duplicate rows (mz_diff > 1) are written that many times; COPY n counts them", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(`COPY dup TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'csv')`);
      expect(r.command).toBe("COPY");
      expect(r.rowCount).toBe(5);
      expect(sortRows(parseCsv(await csvOf(e, prefix)))).toEqual(
        sortRows([
          ["1", "x"],
          ["1", "x"],
          ["1", "x"],
          ["2", "y"],
          ["3", 'a,"b"'],
        ]),
      );
    });

    test("COPY (SELECT …) TO works like COPY <name> TO", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(
        `COPY (SELECT a * 10 AS a10, b FROM dup WHERE a > 1) TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'csv', HEADER)`,
      );
      expect(r.rowCount).toBe(2);
      const rows = parseCsv(await csvOf(e, prefix));
      expect(rows[0]).toEqual(["a10", "b"]);
      expect(sortRows(rows.slice(1))).toEqual(
        sortRows([
          ["20", "y"],
          ["30", 'a,"b"'],
        ]),
      );
    });

    test("an empty view gives one file: the header (CSV), the schema (Parquet)", async () => {
      const e = env();
      const p1 = freshPrefix();
      expect(
        (await e.client.query(`COPY empty_v TO 's3://${e.bucket}/${p1}' WITH (FORMAT = 'csv', HEADER)`))
          .rowCount,
      ).toBe(0);
      const keys = await dataKeys(e, p1, "csv");
      expect(keys).toHaveLength(1);
      expect((await e.check.get(e.bucket, keys[0]!)).toString()).toBe("a,b\n");
      const p2 = freshPrefix();
      expect(
        (await e.client.query(`COPY empty_v TO 's3://${e.bucket}/${p2}' WITH (FORMAT = 'parquet')`)).rowCount,
      ).toBe(0);
      const src = await parquetFiles(p2);
      expect(await duckRows(`SELECT count(*) FROM ${src}`)).toEqual([["0"]]);
      expect(await duckRows(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM ${src})`)).toEqual([
        ["a", "INTEGER"],
        ["b", "VARCHAR"],
      ]);
    });

    test("the snapshot timestamp T is in the manifest", async () => {
      const e = env();
      const prefix = freshPrefix();
      const before = Date.now();
      await e.client.query(`COPY nums TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'csv')`);
      const m = await manifestOf(e, prefix);
      expect(m.snapshot.upstream).toBe("materialize");
      // Materialize's timeline is milliseconds since the epoch; the manifest carries it as a number.
      expect(Number.isSafeInteger(m.snapshot.mzTimestamp)).toBe(true);
      const t = m.snapshot.mzTimestamp;
      expect(t).toBeGreaterThan(before - 600_000);
      expect(t).toBeLessThanOrEqual(Date.now() + 60_000);
      expect(m.snapshot.at).toBe(new Date(t).toISOString());
      if (e.lastAsOf) expect(String(m.snapshot.mzTimestamp)).toBe(e.lastAsOf());
      expect(m.rows).toBe(2000);
    });

    test("mz_now() in the target is refused, before anything is written", async () => {
      const e = env();
      await expect(
        e.client.query(`COPY dup TO 's3://${e.bucket}/nowtest-' || mz_now()::text WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({ code: "0A000", message: "cannot call mz_now in this context" });
      expect(await e.check.keys(e.bucket, "nowtest-")).toEqual([]);
    });

    test("the session is the client's again: no transaction, no cursor, no temporary view", async () => {
      const e = env();
      await e.client.query(`COPY mzt TO 's3://${e.bucket}/${freshPrefix()}' WITH (FORMAT = 'parquet')`);
      // A new transaction can start (none is open) and the export's cursor is gone.
      await e.client.query("BEGIN");
      await expect(e.client.query("FETCH 1 copy_to_s3_proxy_subscribe")).rejects.toMatchObject({});
      await e.client.query("ROLLBACK");
      expect((await e.client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
      const leftover = await e.client.query(
        e.kind === "double"
          ? "SELECT count(*)::int AS n FROM pg_class WHERE relname LIKE 'copy_to_s3_proxy_%'"
          : "SELECT count(*)::int AS n FROM mz_catalog.mz_views WHERE name LIKE 'copy_to_s3_proxy_%'",
      );
      expect(Number(leftover.rows[0].n)).toBe(0);
    });
  });

  // Materialize's own COPY TO tests export constant queries: test/aws-localstack/copy-to-s3/copy-to-s3.td
  // (`COPY (SELECT 1000)`, `COPY (SELECT generate_series(1, 1000000))`) and
  // test/testdrive/copy-to-s3-minio.td (`COPY (SELECT * FROM generate_series(1, 1000000))`,
  // `COPY (SELECT 1 WHERE FALSE)` in CSV and Parquet). A SUBSCRIBE of such a query has AS OF
  // u64::MAX and ends after its data (test/testdrive/fetch-tail-timestamp-zero.td): the export
  // must end with it.
  describe("constant queries end (AS OF 18446744073709551615)", () => {
    test("COPY (SELECT 1000): one row; the manifest carries Materialize's AS OF (after copy-to-s3.td)", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(
        `COPY (SELECT 1000) TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'csv')`,
      );
      expect(r.rowCount).toBe(1);
      expect(parseCsv(await csvOf(e, prefix))).toEqual([["1000"]]);
      // u64::MAX, digit for digit (beyond a JS number's precision, so checked in the JSON text).
      expect(await manifestTextOf(e, prefix)).toMatch(/"mzTimestamp": 18446744073709551615\b/);
      expect(Number.isNaN(Date.parse((await manifestOf(e, prefix)).snapshot.at))).toBe(false);
    });

    test("COPY (SELECT generate_series(1, 1000000)): every number once (after copy-to-s3.td)", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(
        `COPY (SELECT generate_series(1, 1000000)) TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'csv')`,
      );
      expect(r.rowCount).toBe(1_000_000);
      const nums = (await csvOf(e, prefix))
        .split("\n")
        .filter((l) => l !== "")
        .map(Number)
        .sort((a, b) => a - b);
      expect(nums).toHaveLength(1_000_000);
      expect(nums.every((n, i) => n === i + 1)).toBe(true);
    }, 120_000);

    test("COPY (SELECT 1 WHERE FALSE): CSV and Parquet, 0 rows (after copy-to-s3-minio.td)", async () => {
      const e = env();
      const p1 = freshPrefix();
      const csv = await e.client.query(
        `COPY (SELECT 1 AS one WHERE FALSE) TO 's3://${e.bucket}/${p1}' WITH (FORMAT = 'csv', HEADER)`,
      );
      expect(csv.rowCount).toBe(0);
      expect(await csvOf(e, p1)).toBe("one\n");
      const p2 = freshPrefix();
      const pq = await e.client.query(
        `COPY (SELECT 1::int AS one WHERE FALSE) TO 's3://${e.bucket}/${p2}' WITH (FORMAT = 'parquet')`,
      );
      expect(pq.rowCount).toBe(0);
      expect(await duckRows(`SELECT count(*) FROM ${await parquetFiles(p2)}`)).toEqual([["0"]]);
    });

    test("VALUES and a view over VALUES (after fetch-tail-timestamp-zero.td)", async () => {
      const e = env();
      const p1 = freshPrefix();
      const r1 = await e.client.query(
        `COPY (VALUES (1, 'a'), (2, 'b')) TO 's3://${e.bucket}/${p1}' WITH (FORMAT = 'csv')`,
      );
      expect(r1.rowCount).toBe(2);
      expect(sortRows(parseCsv(await csvOf(e, p1)))).toEqual(
        sortRows([
          ["1", "a"],
          ["2", "b"],
        ]),
      );
      const p2 = freshPrefix();
      expect(
        (await e.client.query(`COPY const_v TO 's3://${e.bucket}/${p2}' WITH (FORMAT = 'csv')`)).rowCount,
      ).toBe(1);
      expect(parseCsv(await csvOf(e, p2))).toEqual([["123", "x"]]);
    });
  });

  // What SUBSCRIBE refuses (0A000 "cannot materialize call to current_timestamp",
  // src/adapter/src/optimize/subscribe.rs) Materialize's COPY TO evaluates once, at its snapshot
  // time (src/adapter/src/optimize/copy_to.rs); copy-to-s3.td uses now() in the target the same way.
  describe("now(), current_user … in the query, as Materialize's COPY TO allows", () => {
    test("WHERE ts > now() - INTERVAL '1 day'", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(
        `COPY (SELECT v FROM ev WHERE ts > now() - INTERVAL '1 day') TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'csv')`,
      );
      expect(r.rowCount).toBe(1);
      expect(parseCsv(await csvOf(e, prefix))).toEqual([["2"]]);
      const m = await manifestOf(e, prefix);
      expect(m.snapshot.upstream).toBe("materialize");
      // A peek: its timestamp is not on the wire, so only when the read began is known.
      expect(m.snapshot.mzTimestamp).toBeNull();
      expect(Number.isNaN(Date.parse(m.snapshot.at))).toBe(false);
    });

    test("current_user and now() in the select list, Parquet", async () => {
      const e = env();
      const prefix = freshPrefix();
      const me = (await e.client.query("SELECT current_user AS u")).rows[0].u as string;
      const r = await e.client.query(
        `COPY (SELECT current_user::text AS u, now() > '2000-01-01'::timestamptz AS later, a FROM dup WHERE a = 2)
           TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`,
      );
      expect(r.rowCount).toBe(1);
      expect(await duckRows(`SELECT u, later::VARCHAR, a FROM ${await parquetFiles(prefix)}`)).toEqual([
        [me, "true", "2"],
      ]);
    });
  });

  describe("Materialize's types", () => {
    test("CSV carries Materialize's text output for uint, mz_timestamp, list and map", async () => {
      const e = env();
      const prefix = freshPrefix();
      await e.client.query(`COPY mzt TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'csv')`);
      // materialize.com/docs/sql/types/list "Output format", …/map, …/uint, …/mz_timestamp.
      expect(sortRows(parseCsv(await csvOf(e, prefix)))).toEqual(
        sortRows([
          [
            "1",
            "65535",
            "4294967295",
            "18446744073709551615",
            "1700000000000",
            "{1,2,NULL}",
            '{"a b","",NULL,x}',
            "{{1,2},{3}}",
            "{a=>NULL,b=>2}",
            '{k=>"v w",z=>"NULL"}',
            "{1.5,NULL,-2.25}",
          ],
          ["2", "0", "0", "0", "0", "{}", "{}", "{}", "{}", "{}", "{}"],
          ["3", null, null, null, null, null, null, null, null, null, null],
        ]),
      );
    });

    test("Parquet: UInt16/32/64, mz_timestamp as UInt64, List and Map with their element types (DuckDB)", async () => {
      const e = env();
      const prefix = freshPrefix();
      const r = await e.client.query(`COPY mzt TO 's3://${e.bucket}/${prefix}' WITH (FORMAT = 'parquet')`);
      expect(r.rowCount).toBe(3);
      const src = await parquetFiles(prefix);
      expect(await duckRows(`SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM ${src})`)).toEqual([
        ["id", "INTEGER"],
        ["u2", "USMALLINT"],
        ["u4", "UINTEGER"],
        ["u8", "UBIGINT"],
        ["ts", "UBIGINT"],
        ["li", "INTEGER[]"],
        ["lt", "VARCHAR[]"],
        ["ll", "INTEGER[][]"],
        ["mi", "MAP(VARCHAR, INTEGER)"],
        ["mt", "MAP(VARCHAR, VARCHAR)"],
        ["ln", "DECIMAL(38,10)[]"],
      ]);
      const rows = await duckRows(
        `SELECT id, u2::VARCHAR, u4::VARCHAR, u8::VARCHAR, ts::VARCHAR, li::VARCHAR, to_json(lt)::VARCHAR,
           ll::VARCHAR, mi::VARCHAR, to_json(mt)::VARCHAR, ln::VARCHAR FROM ${src} ORDER BY id`,
      );
      expect(rows).toEqual([
        [
          "1",
          "65535",
          "4294967295",
          "18446744073709551615",
          "1700000000000",
          "[1, 2, NULL]",
          '["a b","",null,"x"]',
          "[[1, 2], [3]]",
          "{a=NULL, b=2}",
          '{"k":"v w","z":"NULL"}',
          "[1.5000000000, NULL, -2.2500000000]",
        ],
        ["2", "0", "0", "0", "0", "[]", "[]", "[]", "{}", "{}", "[]"],
        ["3", null, null, null, null, null, null, null, null, null, null],
      ]);
    });
  });
}
