// Materialize's types as the export sees them (SPEC §4, §5).
//
// On the wire Materialize describes a column by OID and typmod only; for `list` and `map` that OID
// is the generic 16384/16385 whatever the element type, and records are 2249 without fields. The
// element types come from Materialize's own names for types, which `pg_typeof` returns
// (`integer list`, `map[text=>integer list]`, `record(a: integer?,b: text)`, `uint4[]` — its
// `humanize_scalar_type`), and nullability from `SHOW COLUMNS` (mz_catalog.mz_columns).
import type { TypeInfo } from "../../encoders/types.js";

/** Materialize's type OIDs (Materialize `src/pgrepr-consts/src/oid.rs`: TYPE_LIST_OID … TYPE_MZ_TIMESTAMP_ARRAY_OID). */
export const MzOid = {
  list: 16384,
  map: 16385,
  uint2: 16460,
  uint2Array: 16461,
  uint4: 16462,
  uint4Array: 16463,
  uint8: 16464,
  uint8Array: 16465,
  mzTimestamp: 16552,
  mzTimestampArray: 16553,
  record: 2249,
} as const;

/**
 * Materialize sends every numeric column as numeric(39, s) and an unconstrained one as
 * numeric(39,39): its wire type always carries NUMERIC_DATUM_MAX_PRECISION = 39 and, without a max
 * scale, 39 as the scale too (Materialize `src/pgrepr/src/types.rs`, `impl From<&SqlScalarType> for
 * Type`, `SqlScalarType::Numeric { max_scale }` arm; typmod packing in `NumericConstraints::into_typmod`).
 */
export const MZ_NUMERIC_MAX_PRECISION = 39;
export const MZ_UNCONSTRAINED_NUMERIC_TYPMOD =
  ((MZ_NUMERIC_MAX_PRECISION << 16) | MZ_NUMERIC_MAX_PRECISION) + 4;

/**
 * The typmod a Materialize result column means: numeric(39,39) is Materialize's unconstrained
 * numeric (no max scale), so -1, which the encoders read as "no typmod" (Parquet: Decimal128(38,10),
 * as Materialize's own COPY TO writes it, `src/arrow-util/src/builder.rs`). A numeric column
 * declared numeric(39,39) looks the same on the wire and in the catalog (mz_columns.type_mod).
 */
export function mzColumnTypmod(oid: number, typeMod: number): number {
  return oid === 1700 && typeMod === MZ_UNCONSTRAINED_NUMERIC_TYPMOD ? -1 : typeMod;
}

/**
 * Names Materialize's `pg_typeof`/`SHOW COLUMNS` print (Materialize `src/pgrepr/src/types.rs`
 * `Type::name`: `timestamp without time zone`, `character varying`, …), and aliases.
 */
const SCALARS = new Map<string, number>([
  ["boolean", 16],
  ["bool", 16],
  ["bytea", 17],
  ['"char"', 18],
  ["bigint", 20],
  ["int8", 20],
  ["smallint", 21],
  ["int2", 21],
  ["integer", 23],
  ["int4", 23],
  ["int", 23],
  ["text", 25],
  ["oid", 26],
  ["json", 114],
  ["real", 700],
  ["float4", 700],
  ["double precision", 701],
  ["float8", 701],
  ["character", 1042],
  ["bpchar", 1042],
  ["character varying", 1043],
  ["varchar", 1043],
  ["date", 1082],
  ["time", 1083],
  ["time without time zone", 1083],
  ["timestamp", 1114],
  ["timestamp without time zone", 1114],
  ["timestamp with time zone", 1184],
  ["timestamptz", 1184],
  ["interval", 1186],
  ["numeric", 1700],
  ["uuid", 2950],
  ["jsonb", 3802],
  ["int4range", 3904],
  ["int8range", 3926],
  ["numrange", 3906],
  ["tsrange", 3908],
  ["tstzrange", 3910],
  ["daterange", 3912],
  ["uint2", MzOid.uint2],
  ["uint4", MzOid.uint4],
  ["uint8", MzOid.uint8],
  ["mz_timestamp", MzOid.mzTimestamp],
]);

/** Built-in array OIDs by element OID (PostgreSQL's; Materialize uses the same). */
const ARRAY_OF = new Map<number, number>([
  [16, 1000],
  [17, 1001],
  [21, 1005],
  [23, 1007],
  [25, 1009],
  [1042, 1014],
  [1043, 1015],
  [20, 1016],
  [700, 1021],
  [701, 1022],
  [26, 1028],
  [1186, 1187],
  [1082, 1182],
  [1083, 1183],
  [1114, 1115],
  [1184, 1185],
  [1700, 1231],
  [2950, 2951],
  [114, 199],
  [3802, 3807],
  [MzOid.uint2, MzOid.uint2Array],
  [MzOid.uint4, MzOid.uint4Array],
  [MzOid.uint8, MzOid.uint8Array],
  [MzOid.mzTimestamp, MzOid.mzTimestampArray],
]);

export type MzTypeInfo = TypeInfo & { oid: number; typeMod: number };

/**
 * Parses a type name as Materialize prints it. Returns undefined for names it cannot take apart
 * (custom type names, types without a Parquet mapping); such columns are exported as text.
 */
export function parseMzTypeName(name: string): MzTypeInfo | undefined {
  return parse(name.trim(), 0);
}

/** TypeInfo for a column of one of Materialize's own scalar types (uint*, mz_timestamp) or an array of one. */
export function mzScalarInfo(oid: number): MzTypeInfo | undefined {
  for (const [el, arr] of ARRAY_OF) {
    if (arr === oid && el >= MzOid.uint2) {
      const element = mzScalarInfo(el)!;
      return { name: `${element.name}[]`, kind: "b", oid, typeMod: -1, element, materialize: true };
    }
  }
  const name = NAMES.get(oid);
  if (oid !== MzOid.uint2 && oid !== MzOid.uint4 && oid !== MzOid.uint8 && oid !== MzOid.mzTimestamp)
    return undefined;
  return { name: name ?? String(oid), kind: "b", oid, typeMod: -1, materialize: true };
}

function parse(s: string, depth: number): MzTypeInfo | undefined {
  if (depth > 32 || s === "") return undefined;
  if (s.endsWith("[]")) {
    const el = parse(s.slice(0, -2).trim(), depth + 1);
    const arrayOid = el === undefined ? undefined : ARRAY_OF.get(el.oid);
    if (el === undefined || arrayOid === undefined) return undefined;
    return { name: s, kind: "b", oid: arrayOid, typeMod: -1, element: el, materialize: true };
  }
  if (s.endsWith(" list")) {
    const el = parse(s.slice(0, -5).trim(), depth + 1);
    if (el === undefined) return undefined;
    return { name: s, kind: "b", oid: MzOid.list, typeMod: -1, element: el, materialize: true };
  }
  if (s.startsWith("map[") && s.endsWith("]")) {
    const inner = s.slice(4, -1);
    const arrow = topLevelIndex(inner, "=>");
    if (arrow < 0 || inner.slice(0, arrow).trim() !== "text") return undefined;
    const value = parse(inner.slice(arrow + 2).trim(), depth + 1);
    if (value === undefined) return undefined;
    return { name: s, kind: "b", oid: MzOid.map, typeMod: -1, value, materialize: true };
  }
  if (s.startsWith("record(") && s.endsWith(")")) {
    const inner = s.slice(7, -1);
    const fields: NonNullable<TypeInfo["fields"]> = [];
    for (const part of splitTopLevel(inner, ",")) {
      const colon = part.indexOf(": ");
      if (colon < 0) return undefined;
      // humanize_column_type: `name: type?` for a nullable field, `name: type` for NOT NULL.
      let t = part.slice(colon + 2).trim();
      const nullable = t.endsWith("?");
      if (nullable) t = t.slice(0, -1);
      const ft = parse(t, depth + 1);
      if (ft === undefined) return undefined;
      fields.push({ name: part.slice(0, colon), oid: ft.oid, typeMod: -1, type: ft, nullable });
    }
    if (fields.length === 0) return undefined;
    return { name: s, kind: "c", oid: MzOid.record, typeMod: -1, fields, materialize: true };
  }
  // `numeric(10,2)`, `character varying(20)`: the modifier only matters for numeric's scale.
  const m = /^(.*?)\s*\((\d+)(?:\s*,\s*(\d+))?\)$/.exec(s);
  const base = (m ? m[1]! : s).toLowerCase();
  const oid = SCALARS.get(base);
  if (oid === undefined) return undefined;
  let typeMod = -1;
  if (m && oid === 1700) typeMod = ((Number(m[2]) << 16) | Number(m[3] ?? 0)) + 4;
  return { name: s, kind: "b", oid, typeMod, materialize: true };
}

function topLevelIndex(s: string, needle: string): number {
  let depth = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "[" || c === "(") depth++;
    else if (c === "]" || c === ")") depth--;
    else if (depth === 0 && s.startsWith(needle, i)) return i;
  }
  return -1;
}

function splitTopLevel(s: string, sep: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (c === "[" || c === "(") depth++;
    else if (c === "]" || c === ")") depth--;
    else if (depth === 0 && c === sep) {
      out.push(s.slice(start, i));
      start = i + 1;
    }
  }
  out.push(s.slice(start));
  return out.map((p) => p.trim()).filter((p) => p !== "");
}

/** Whether a result column's type needs `pg_typeof` to be known (generic OIDs, records). */
export function needsTypeName(oid: number): boolean {
  return oid === MzOid.list || oid === MzOid.map || oid === MzOid.record;
}

/** Whether Materialize can send the column in binary format at all (it cannot for list, map). */
export function binaryAllowed(oid: number): boolean {
  return oid !== MzOid.list && oid !== MzOid.map;
}

const NAMES = new Map<number, string>([
  [16, "boolean"],
  [17, "bytea"],
  [18, '"char"'],
  [20, "bigint"],
  [21, "smallint"],
  [23, "integer"],
  [25, "text"],
  [26, "oid"],
  [114, "json"],
  [700, "real"],
  [701, "double precision"],
  [1082, "date"],
  [1083, "time"],
  [1114, "timestamp without time zone"],
  [1184, "timestamp with time zone"],
  [1186, "interval"],
  [2950, "uuid"],
  [3802, "jsonb"],
  [3904, "int4range"],
  [3926, "int8range"],
  [3906, "numrange"],
  [3908, "tsrange"],
  [3910, "tstzrange"],
  [3912, "daterange"],
  [MzOid.uint2, "uint2"],
  [MzOid.uint4, "uint4"],
  [MzOid.uint8, "uint8"],
  [MzOid.mzTimestamp, "mz_timestamp"],
  [MzOid.list, "list"],
  [MzOid.map, "map"],
  [MzOid.record, "record"],
]);

/**
 * A type name for the manifest: Materialize's own name when known (from `pg_typeof`), else one
 * from the OID, with the typmod PostgreSQL-style (`character varying(20)`). Numeric: Materialize's
 * wire forgets the declared precision (always 39, see MZ_NUMERIC_MAX_PRECISION), so a scale-bound
 * numeric is named numeric(38,s) — what the Parquet file holds (Decimal128(38,s)) and what
 * warehouses accept — and an unconstrained one `numeric`, as Materialize's catalog names it.
 */
export function mzTypeName(oid: number, typeMod: number, humanized?: string): string {
  const tm = mzColumnTypmod(oid, typeMod);
  if (oid === 1700 && tm >= 4) {
    const t = tm - 4;
    const precision = (t >> 16) & 0xffff;
    return `numeric(${Math.min(precision, 38)},${t & 0xffff})`;
  }
  if ((oid === 1043 || oid === 1042) && typeMod >= 4) {
    return `${oid === 1043 ? "character varying" : "character"}(${typeMod - 4})`;
  }
  if (humanized !== undefined && humanized !== "") return humanized;
  if (oid === 1700) return "numeric";
  if (oid === 1043) return "character varying";
  if (oid === 1042) return "character";
  return NAMES.get(oid) ?? `oid ${oid}`;
}
