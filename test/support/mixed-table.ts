// The bench table's column types (bench/lib/bench-table.ts) as a test table, and the check that a
// Parquet export of it reads back through DuckDB equal to PostgreSQL's own text of every value.
import type { DuckDBConnection } from "@duckdb/node-api";
import type pg from "pg";
import { expect } from "vitest";

/** `CREATE TABLE mixed …` with `rows` rows: every 17th label NULL, the bench table's types. */
export function createMixedTable(rows: number): string {
  return `CREATE TABLE mixed AS SELECT g AS id, g::bigint * 1000003 AS big,
      CASE WHEN g % 17 = 0 THEN NULL ELSE md5(g::text) END AS label, (g * 1.25)::numeric(12, 2) AS amount,
      timestamptz '2024-01-01 00:00+00' + g * interval '1 second' AS at, g % 3 = 0 AS flag,
      g / 7.0::float8 AS score, date '2020-01-01' + g % 1000 AS day
    FROM generate_series(1, ${rows}) g`;
}

/** Values as PostgreSQL prints them, unparsed by node-postgres. */
const RAW_TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

/** The Parquet files in `dir` hold exactly table `mixed` (read straight from PostgreSQL by `direct`). */
export async function expectMixedParquet(
  duck: DuckDBConnection,
  direct: pg.Client,
  dir: string,
): Promise<void> {
  const got = (
    await duck.runAndReadAll(
      `SELECT id, big, label, amount::VARCHAR, epoch_us("at"), flag, score, day::VARCHAR
       FROM read_parquet('${dir}/*.parquet') ORDER BY id`,
    )
  )
    .getRows()
    .map((r) => r.map((v) => (v === null ? null : String(v))));
  const want = (
    await direct.query({
      text: `SELECT id, big, label, amount::text, (extract(epoch FROM at) * 1000000)::bigint, flag::text, score, day::text
             FROM mixed ORDER BY id`,
      rowMode: "array",
      types: RAW_TEXT,
    })
  ).rows.map((r: Array<string | null>) =>
    r.map((v, i) => (v === null ? null : i === 6 ? String(Number(v)) : v)),
  );
  expect(got.length).toBe(want.length);
  expect(got).toEqual(want);
}
