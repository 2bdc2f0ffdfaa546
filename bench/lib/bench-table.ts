// The benchmarks' export table: 8 mixed columns, ~110 bytes of CSV a row.

/** `CREATE UNLOGGED TABLE t_<n>` of n rows: int, bigint, text (an md5; every 17th NULL, every 5th
 * needing CSV quotes), numeric(12,2), timestamptz, boolean, double, date. */
export function tableSql(n: number): string {
  return `CREATE UNLOGGED TABLE t_${n} AS SELECT
    g::int AS id,
    g::bigint * 2654435761 AS big,
    CASE WHEN g % 17 = 0 THEN NULL
         WHEN g % 5 = 0 THEN md5(g::text) || ', "q"'
         ELSE md5(g::text) END AS label,
    ((g % 10000000) / 100.0)::numeric(12,2) AS amount,
    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS at,
    g % 3 = 0 AS flag,
    g / 7.0::float8 AS score,
    date '2000-01-01' + g % 10000 AS day
  FROM generate_series(1, ${n}) g`;
}
