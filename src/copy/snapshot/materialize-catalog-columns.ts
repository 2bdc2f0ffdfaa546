// What Materialize's catalog says of a query's columns that its wire description does not: for
// Parquet, nullability and the element types of list/map/record columns (which the wire
// describes with generic OIDs), through a temporary view created and dropped before the snapshot's
// transaction starts: `SHOW COLUMNS` (mz_catalog.mz_columns) and `pg_typeof`.
import type { UpstreamClient } from "../upstream-client.js";
import { probeTypes } from "./materialize-type-probe.js";
import { MzOid, type MzTypeInfo, parseMzTypeName } from "./materialize-types.js";

/** Prepared statements here are unnamed: nothing of theirs outlives the export. */
const UNNAMED = "";

export interface CatalogColumn {
  nullable?: boolean;
  type?: MzTypeInfo;
  typeName?: string;
}

/**
 * Nullability from SHOW COLUMNS and, for columns the wire describes generically, the type as
 * Materialize names it (pg_typeof), of a temporary view `view` over the query `sql`, dropped
 * before this returns. The caller remembers `view` first: if this is interrupted, it is the
 * caller's to drop (IF EXISTS).
 */
export async function describeFromCatalog(
  client: UpstreamClient,
  sql: string,
  view: string,
  signal: AbortSignal,
): Promise<CatalogColumn[]> {
  await client.query(`CREATE TEMPORARY VIEW ${view} AS ${sql}\n`, signal);
  const shown = await client.query(`SHOW COLUMNS FROM ${view}`, signal);
  const col = (name: string): number => shown.fields.findIndex((f) => f.name === name);
  const iNullable = col("nullable");
  const iType = col("type");
  const out = shown.rows.map((r) => {
    const n = iNullable < 0 ? null : r[iNullable];
    const entry: { nullable?: boolean; type?: MzTypeInfo; typeName?: string; shownType?: string } = {};
    if (n === "t" || n === "f") entry.nullable = n === "t";
    if (iType >= 0 && r[iType] != null) entry.shownType = r[iType]!;
    return entry;
  });
  // Which columns need their full type name: generic list/map/record, by the name SHOW COLUMNS
  // gives (`list`, `map`, `record`, or a custom type's name — pg_typeof tells them apart).
  const want = out
    .map((e, i) => ({ e, i }))
    .filter(({ e }) => e.shownType !== undefined && !SIMPLE.has(e.shownType.replace(/\(.*\)$/, "")));
  if (want.length > 0) {
    const aliases = out.map((_, i) => `"c${i + 1}"`).join(", ");
    const exprs = want
      .map(
        ({ i }) => `pg_typeof((SELECT t."c${i + 1}" FROM ${view} AS t(${aliases}) LIMIT 1)) AS "c${i + 1}"`,
      )
      .join(", ");
    const r = await client.query(`SELECT ${exprs}`, signal);
    const row = r.rows[0] ?? [];
    want.forEach(({ e }, k) => {
      const name = row[k];
      if (name == null) return;
      e.typeName = name;
      const t = parseMzTypeName(name);
      if (t !== undefined) e.type = t;
    });
  }
  await refineTypes(client, view, out, signal);
  await client.query(`DROP VIEW ${view}`, signal);
  return out.map(({ nullable, type, typeName }) => {
    const o: CatalogColumn = {};
    if (nullable !== undefined) o.nullable = nullable;
    if (type !== undefined) o.type = type;
    if (typeName !== undefined) o.typeName = typeName;
    return o;
  });
}

/**
 * Numeric scales inside lists, maps, records and arrays, and named list/map types, from the
 * descriptions of the columns' sub-values (materialize-type-probe.ts). Only when some column
 * is a container; a probe Materialize refuses leaves the names' reading as it was.
 */
async function refineTypes(
  client: UpstreamClient,
  view: string,
  out: Array<{ type?: MzTypeInfo }>,
  signal: AbortSignal,
): Promise<void> {
  if (out.length === 0) return;
  const from = `FROM ${view} AS t(${out.map((_, i) => `"c${i + 1}"`).join(", ")})`;
  try {
    const fields = await client.prepare(UNNAMED, `SELECT * ${from}`, signal);
    const columns = fields.map((f, i) => ({
      expr: `t."c${i + 1}"`,
      oid: f.typeOid,
      typeMod: f.typeMod,
      parsed: out[i]?.type,
    }));
    if (
      !columns.some((c) => isContainer(c.oid) || c.parsed?.element || c.parsed?.value || c.parsed?.fields)
    ) {
      return;
    }
    const refined = await probeTypes(columns, {
      describe: async (exprs) =>
        (await client.prepare(UNNAMED, `SELECT ${exprs.join(", ")} ${from}`, signal)).map((f) => ({
          oid: f.typeOid,
          typeMod: f.typeMod,
        })),
      typeOf: async (exprs) =>
        (
          await client.query(
            `SELECT ${exprs.map((e) => `pg_typeof((SELECT ${e} ${from} LIMIT 1))`).join(", ")}`,
            signal,
          )
        ).rows[0] ?? [],
    });
    refined.forEach((t, i) => {
      if (t !== undefined && out[i] !== undefined) out[i]!.type = t;
    });
  } catch (e) {
    if (signal.aborted) throw e;
    // A probe Materialize cannot plan: the types as their names say.
  }
}

/** Lists, maps, records and arrays (Materialize's and PostgreSQL's built-in array OIDs). */
function isContainer(oid: number): boolean {
  return oid === MzOid.list || oid === MzOid.map || oid === MzOid.record || ARRAY_OIDS.has(oid);
}
const ARRAY_OIDS = new Set([
  1000,
  1001,
  1005,
  1007,
  1009,
  1014,
  1015,
  1016,
  1021,
  1022,
  1028,
  1115,
  1182,
  1183,
  1185,
  1187,
  1231,
  2951,
  3807,
  MzOid.uint2Array,
  MzOid.uint4Array,
  MzOid.uint8Array,
  MzOid.mzTimestampArray,
]);

/** SHOW COLUMNS type names that need no further description. */
const SIMPLE = new Set([
  "boolean",
  "bytea",
  "character",
  "character varying",
  "date",
  "real",
  "double precision",
  "smallint",
  "integer",
  "bigint",
  "uint2",
  "uint4",
  "uint8",
  "interval",
  "jsonb",
  "json",
  "numeric",
  "oid",
  "text",
  "time",
  "timestamp",
  "timestamp without time zone",
  "timestamp with time zone",
  "uuid",
  "mz_timestamp",
]);
