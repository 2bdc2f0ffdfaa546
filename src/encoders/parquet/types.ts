// Resolution of result column types into the shapes the Parquet encoder writes (SPEC §4).
//
// One table maps a pg_type OID to a codec. A column whose type (or any type nested in it) has no
// binary codec is read in text format and written as Utf8 text; that is decided here, at plan
// time, from the type alone. Materialize's own types (uint2/4/8, mz_timestamp, list, map) are in
// MATERIALIZE, consulted only for columns the Materialize snapshot marked as its own (their OIDs
// are in PostgreSQL's user-type range). list and map arrive in text format (Materialize has no
// binary encoding for them) and are parsed by their builders (mz-text.ts).

import { PgError, SqlState } from "../../errors.js";
import type { ColumnInfo, TypeInfo } from "../types.js";
import { TEXT_ELEMENT_CODECS } from "./mz-text.js";
import { DECIMAL_MAX_PRECISION, numericTypmod } from "./numeric.js";

export const Oid = {
  bool: 16,
  bytea: 17,
  name: 19,
  int8: 20,
  int2: 21,
  int4: 23,
  text: 25,
  json: 114,
  float4: 700,
  float8: 701,
  bpchar: 1042,
  varchar: 1043,
  date: 1082,
  time: 1083,
  timestamp: 1114,
  timestamptz: 1184,
  numeric: 1700,
  uuid: 2950,
  jsonb: 3802,
  record: 2249,
  oid: 26,
} as const;

/** Range types → element type (PostgreSQL's OIDs, which Materialize uses: `src/pgrepr-consts/src/oid.rs`). */
const RANGES = new Map<number, number>([
  [3904, Oid.int4],
  [3926, Oid.int8],
  [3906, Oid.numeric],
  [3908, Oid.timestamp],
  [3910, Oid.timestamptz],
  [3912, Oid.date],
]);

/** How a value is decoded and which Arrow type it becomes. */
export type Codec =
  | "bool"
  | "int2"
  | "int4"
  | "int8"
  | "float4"
  | "float8"
  | "numeric"
  | "date"
  | "time"
  | "timestamp"
  | "timestamptz"
  | "text" // UTF-8 bytes, also the text-format fallback
  | "bytea"
  | "uuid"
  | "json"
  | "jsonb"
  | "array"
  | "record"
  | "range" // Struct{ lower, upper, lower_inclusive, upper_inclusive, empty }
  // Materialize
  | "uint2"
  | "uint4"
  | "uint8"
  | "mz_timestamp" // binary format is the decimal text (mz_pgrepr); Arrow UInt64
  | "list" // text input; Arrow List<element>
  | "map"; // text input; Arrow Map<Utf8, element>

export interface TypeNode {
  codec: Codec;
  /** Suffix of `ARROW:extension:name = materialize.v1.<ext>`. */
  ext: string;
  /** SQL type name for messages. */
  sqlName: string;
  /** Decimal scale (numeric). */
  scale?: number;
  /** Utf8 (32-bit offsets) instead of LargeUtf8: bounded varchar/char. */
  bounded?: boolean;
  /** Array, list element; map value; range bound. */
  element?: TypeNode;
  /** Composite fields, in attribute order; `nullable: false` only where the upstream says NOT NULL. */
  fields?: Array<{ name: string; node: TypeNode; nullable?: boolean }>;
}

interface Builtin {
  codec: Exclude<Codec, "array" | "record" | "range" | "numeric" | "text">;
  ext: string;
  sqlName: string;
}

const BUILTIN = new Map<number, Builtin | "text" | "numeric">([
  [Oid.bool, { codec: "bool", ext: "boolean", sqlName: "boolean" }],
  [Oid.int2, { codec: "int2", ext: "smallint", sqlName: "smallint" }],
  [Oid.int4, { codec: "int4", ext: "integer", sqlName: "integer" }],
  [Oid.int8, { codec: "int8", ext: "bigint", sqlName: "bigint" }],
  [Oid.float4, { codec: "float4", ext: "real", sqlName: "real" }],
  [Oid.float8, { codec: "float8", ext: "double", sqlName: "double precision" }],
  [Oid.date, { codec: "date", ext: "date", sqlName: "date" }],
  [Oid.time, { codec: "time", ext: "time", sqlName: "time" }],
  [Oid.timestamp, { codec: "timestamp", ext: "timestamp", sqlName: "timestamp" }],
  [Oid.timestamptz, { codec: "timestamptz", ext: "timestamptz", sqlName: "timestamptz" }],
  [Oid.bytea, { codec: "bytea", ext: "bytea", sqlName: "bytea" }],
  [Oid.uuid, { codec: "uuid", ext: "uuid", sqlName: "uuid" }],
  [Oid.json, { codec: "json", ext: "json", sqlName: "json" }],
  [Oid.jsonb, { codec: "jsonb", ext: "jsonb", sqlName: "jsonb" }],
  // oid → UInt32 "oid" (Materialize `src/arrow-util/src/builder.rs`: SqlScalarType::Oid).
  [Oid.oid, { codec: "uint4", ext: "oid", sqlName: "oid" }],
  [Oid.text, "text"],
  [Oid.varchar, "text"],
  [Oid.bpchar, "text"],
  [Oid.name, "text"],
  [Oid.numeric, "numeric"],
]);

/** Materialize's types (materialize.com/docs/sql/types: uint, mz_timestamp, list, map OIDs). */
const MATERIALIZE = new Map<number, Builtin>([
  [16460, { codec: "uint2", ext: "uint2", sqlName: "uint2" }],
  [16462, { codec: "uint4", ext: "uint4", sqlName: "uint4" }],
  [16464, { codec: "uint8", ext: "uint8", sqlName: "uint8" }],
  [16552, { codec: "mz_timestamp", ext: "mz_timestamp", sqlName: "mz_timestamp" }],
]);
const MZ_LIST_OID = 16384;
const MZ_MAP_OID = 16385;

/** Built-in array types → element OID, so the planner need not describe them. */
const BUILTIN_ARRAYS = new Map<number, number>([
  [1000, Oid.bool],
  [1001, Oid.bytea],
  [1003, Oid.name],
  [1005, Oid.int2],
  [1007, Oid.int4],
  [1009, Oid.text],
  [1014, Oid.bpchar],
  [1015, Oid.varchar],
  [1016, Oid.int8],
  [1021, Oid.float4],
  [1022, Oid.float8],
  [1182, Oid.date],
  [1183, Oid.time],
  [1115, Oid.timestamp],
  [1185, Oid.timestamptz],
  [1231, Oid.numeric],
  [2951, Oid.uuid],
  [199, Oid.json],
  [3807, Oid.jsonb],
  [1028, Oid.oid],
]);

/** Nested composite/array/domain chains deeper than this are exported as text. */
const MAX_DEPTH = 16;

/**
 * The codec tree for a type, or null when some part of it has no binary codec (exported as text).
 * Throws PgError for types that cannot be exported at all (numeric scales Parquet cannot hold).
 */
export function resolveType(
  oid: number,
  typeMod: number,
  info: TypeInfo | undefined,
  column: string,
  depth = 0,
): TypeNode | null {
  if (depth > MAX_DEPTH) return null;
  const b = BUILTIN.get(oid);
  if (b === "text") {
    const bounded = (oid === Oid.varchar || oid === Oid.bpchar) && typeMod >= 4;
    return { codec: "text", ext: "text", sqlName: sqlTextName(oid), bounded };
  }
  if (b === "numeric") return numericNode(typeMod, column);
  if (b !== undefined) return { codec: b.codec, ext: b.ext, sqlName: b.sqlName };
  if (info?.materialize === true) {
    const mz = resolveMaterialize(oid, info, column, depth);
    if (mz !== undefined) return mz;
  }

  const rangeOf = RANGES.get(oid);
  if (rangeOf !== undefined) {
    // A range's bounds are its element type without a typmod: numrange bounds are unconstrained numeric.
    const element = resolveType(rangeOf, -1, undefined, column, depth + 1);
    return element && { codec: "range", ext: "range", sqlName: sqlRangeName(oid), element };
  }
  const elemOid = BUILTIN_ARRAYS.get(oid);
  if (elemOid !== undefined) {
    // An array column's typmod is its elements' typmod (numeric(10,2)[] carries (10,2)) in
    // PostgreSQL; Materialize sends -1 for arrays, and the element's own typmod comes from a probe.
    const elTypeMod =
      info?.element !== undefined && info.element.typeMod >= 0 ? info.element.typeMod : typeMod;
    const element = resolveType(elemOid, elTypeMod, info?.element, column, depth + 1);
    return element && arrayNode(element);
  }
  if (info === undefined) return null;
  if (info.kind === "d" && info.base) {
    return resolveType(info.base.oid, info.base.typeMod, info.base, column, depth + 1);
  }
  if (info.element && info.kind === "b") {
    const el = info.element;
    const element = resolveType(el.oid, el.typeMod >= 0 ? el.typeMod : typeMod, el, column, depth + 1);
    return element && arrayNode(element);
  }
  if (info.kind === "c" && info.fields && info.fields.length > 0) {
    const fields: NonNullable<TypeNode["fields"]> = [];
    for (const f of info.fields) {
      const node = resolveType(f.oid, f.typeMod, f.type, column, depth + 1);
      // A record arrives in binary, where Materialize has no encoding for list and map.
      if (node === null || node.codec === "list" || node.codec === "map") return null;
      fields.push(f.nullable === false ? { name: f.name, node, nullable: false } : { name: f.name, node });
    }
    return { codec: "record", ext: "record", sqlName: info.name, fields };
  }
  return null;
}

/** Materialize's own types; undefined when `oid` is none of them. */
function resolveMaterialize(
  oid: number,
  info: TypeInfo,
  column: string,
  depth: number,
): TypeNode | null | undefined {
  const m = MATERIALIZE.get(oid);
  if (m !== undefined) return { codec: m.codec, ext: m.ext, sqlName: m.sqlName };
  if (oid !== MZ_LIST_OID && oid !== MZ_MAP_OID) return undefined;
  const el = oid === MZ_LIST_OID ? info.element : info.value;
  if (el === undefined) return null; // element type unknown: the text output
  const element = resolveType(el.oid, el.typeMod, el, column, depth + 1);
  // Elements come out of the container's text, so their type needs a text decoder.
  if (element === null || !TEXT_ELEMENT_CODECS.has(element.codec)) return null;
  return oid === MZ_LIST_OID
    ? { codec: "list", ext: "list", sqlName: `${element.sqlName} list`, element }
    : { codec: "map", ext: "map", sqlName: `map[text=>${element.sqlName}]`, element };
}

function arrayNode(element: TypeNode): TypeNode {
  return { codec: "array", ext: "array", sqlName: `${element.sqlName}[]`, element };
}

function sqlRangeName(oid: number): string {
  const names: Record<number, string> = {
    3904: "int4range",
    3926: "int8range",
    3906: "numrange",
    3908: "tsrange",
    3910: "tstzrange",
    3912: "daterange",
  };
  return names[oid] ?? "range";
}

function sqlTextName(oid: number): string {
  return oid === Oid.varchar ? "varchar" : oid === Oid.bpchar ? "char" : oid === Oid.name ? "name" : "text";
}

function numericNode(typeMod: number, column: string): TypeNode {
  const tm = numericTypmod(typeMod);
  if (tm === null) return { codec: "numeric", ext: "numeric", sqlName: "numeric", scale: 10 };
  const sqlName = `numeric(${tm.precision},${tm.scale})`;
  if (tm.scale < 0 || tm.scale > DECIMAL_MAX_PRECISION) {
    throw new PgError(
      SqlState.featureNotSupported,
      `column "${column}" has type ${sqlName}, which Parquet cannot represent: the scale must be between 0 and ${DECIMAL_MAX_PRECISION}`,
      { hint: `Cast the column in the query, e.g. ${quoteIdent(column)}::numeric(38,0) or ::text.` },
    );
  }
  return { codec: "numeric", ext: "numeric", sqlName, scale: tm.scale };
}

function quoteIdent(s: string): string {
  return /^[a-z_][a-z0-9_]*$/.test(s) ? s : `"${s.replace(/"/g, '""')}"`;
}

/** Parquet column names: duplicates get a counter suffix (`a`, `a2`, `a3`), as Materialize does. */
export function uniqueNames(names: readonly string[]): string[] {
  const used = new Set<string>();
  const seen = new Map<string, number>();
  const out: string[] = [];
  for (const name of names) {
    let n = seen.get(name) ?? 0;
    let candidate = name;
    if (n > 0 || used.has(name)) {
      do {
        n++;
        candidate = n === 1 ? name : `${name}${n}`;
      } while (used.has(candidate));
    } else {
      n = 1;
    }
    seen.set(name, n);
    used.add(candidate);
    out.push(candidate);
  }
  return out;
}

export interface ColumnPlan {
  name: string;
  /** Name in the Parquet schema (made unique). */
  fieldName: string;
  /** Null: exported as its text output (result format 0). */
  node: TypeNode | null;
  nullable: boolean;
}

export function planColumns(columns: readonly ColumnInfo[]): ColumnPlan[] {
  const fieldNames = uniqueNames(columns.map((c) => c.name));
  return columns.map((c, i) => ({
    name: c.name,
    fieldName: fieldNames[i]!,
    node: resolveType(c.typeOid, c.typeMod, c.type, c.name),
    nullable: c.nullable !== false,
  }));
}
