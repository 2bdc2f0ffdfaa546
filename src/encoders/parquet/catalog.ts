// What the planner must tell the Parquet encoder about column types, and how to find it out.
//
// Built-in scalar and array types need nothing beyond RowDescription's OID and typmod. User
// types (composites, arrays of anything non-built-in, domains nested inside composites or arrays,
// enums) need `ColumnInfo.type`, built from one catalog query (PostgreSQL; Materialize's
// list/map element types come from its own catalog, SPEC §5). The query is pure text and the
// conversion pure data, so the encoder stays free of I/O: the planner runs the query on the
// client's upstream session and passes the rows to `typeInfoFromCatalog`.
import type { ColumnInfo, TypeInfo } from "../types.js";

/** OIDs below this are PostgreSQL built-ins (FirstNormalObjectId). */
export const FIRST_NORMAL_OID = 16384;

/**
 * One query for every type reachable from `oids`: array elements, domain bases and composite
 * fields, recursively. Result columns: oid, typname, typtype, typcategory, typelem, typbasetype,
 * typtypmod, fields (JSON array of [attname, atttypid, atttypmod], composites only).
 */
export function typeCatalogQuery(oids: readonly number[]): string {
  const list = [...new Set(oids)].filter((o) => Number.isInteger(o) && o > 0).join(",");
  return `WITH RECURSIVE reach(oid) AS (
  SELECT unnest('{${list}}'::oid[])
  UNION
  SELECT x.oid
  FROM reach r
  JOIN pg_catalog.pg_type t ON t.oid = r.oid
  CROSS JOIN LATERAL (
    SELECT t.typelem AS oid WHERE t.typcategory = 'A' AND t.typelem <> 0
    UNION ALL SELECT t.typbasetype WHERE t.typtype = 'd'
    UNION ALL SELECT a.atttypid FROM pg_catalog.pg_attribute a
      WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped
  ) x
)
SELECT t.oid::int8 AS oid, t.typname::text AS typname, t.typtype::text AS typtype,
  t.typcategory::text AS typcategory, t.typelem::int8 AS typelem, t.typbasetype::int8 AS typbasetype,
  t.typtypmod AS typtypmod,
  (SELECT json_agg(json_build_array(a.attname, a.atttypid::int8, a.atttypmod) ORDER BY a.attnum)
     FROM pg_catalog.pg_attribute a
    WHERE t.typtype = 'c' AND a.attrelid = t.typrelid AND a.attnum > 0 AND NOT a.attisdropped)::text AS fields
FROM pg_catalog.pg_type t
WHERE t.oid IN (SELECT oid FROM reach)`;
}

/** One row of `typeCatalogQuery`, values as text (what a text-format result carries). */
export interface TypeCatalogRow {
  oid: string | number;
  typname: string;
  typtype: string;
  typcategory: string;
  typelem: string | number;
  typbasetype: string | number;
  typtypmod: string | number;
  fields: string | null;
}

/** Which columns need `ColumnInfo.type` at all (the rest are described by OID alone). */
export function oidsNeedingCatalog(columns: readonly ColumnInfo[]): number[] {
  return columns.map((c) => c.typeOid).filter((o) => o >= FIRST_NORMAL_OID);
}

/**
 * TypeInfo for `oid` from the catalog rows; undefined if the type is not among them. Cycles
 * (impossible in PostgreSQL, but cheap to guard) end in an undescribed type, i.e. text.
 */
export function typeInfoFromCatalog(rows: readonly TypeCatalogRow[], oid: number): TypeInfo | undefined {
  const byOid = new Map<number, TypeCatalogRow>();
  for (const r of rows) byOid.set(Number(r.oid), r);
  const build = (o: number, seen: Set<number>): TypeInfo | undefined => {
    const r = byOid.get(o);
    if (r === undefined || seen.has(o)) return undefined;
    const next = new Set(seen).add(o);
    const info: TypeInfo = { name: r.typname, kind: r.typtype };
    const elem = Number(r.typelem);
    if (r.typcategory === "A" && elem !== 0) {
      const e = build(elem, next) ?? { name: "", kind: "b" };
      info.element = { ...e, oid: elem, typeMod: -1 };
    }
    const base = Number(r.typbasetype);
    if (r.typtype === "d" && base !== 0) {
      const b = build(base, next) ?? { name: "", kind: "b" };
      info.base = { ...b, oid: base, typeMod: Number(r.typtypmod) };
    }
    if (r.typtype === "c" && r.fields) {
      const fields = JSON.parse(r.fields) as Array<[string, number, number]>;
      info.fields = fields.map(([name, foid, fmod]) => ({
        name,
        oid: Number(foid),
        typeMod: Number(fmod),
        type: build(Number(foid), next) ?? { name: "", kind: "b" },
      }));
    }
    return info;
  };
  return build(oid, new Set());
}
