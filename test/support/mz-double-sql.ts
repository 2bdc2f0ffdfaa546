// The MaterializeWireDouble's SQL translation: Materialize-only syntax that PostgreSQL's grammar
// cannot read, rewritten into what the double's PostgreSQL stand-ins (MZ_TYPES_SETUP's list and
// map domains, MZ_SQL_SETUP's functions) compute. It is NOT Materialize's planner; each rule
// names the Materialize file whose behaviour it reproduces, and what it leaves out.
//
//  S1 `LIST[e, …]` builds an `<element> list` (Materialize `test/sqllogictest/list.slt`
//     "SELECT (LIST[1,2,3])::text" → {1,2,3}) → `mz_catalog.mz_list(ARRAY[e, …])`, overloaded per
//     list domain, so `LIST[1, 2]` is an `int4_list` and `LIST['a']` a `text_list`. DOUBLE LIMIT:
//     one layer of scalars; nested and empty lists are left alone (PostgreSQL's syntax error).
//  S2 `MAP[k => v, …]` builds a `map[text=>…]` (Materialize `test/sqllogictest/map.slt`; a later
//     duplicate key wins, as `'{a=>2, a=>1}'` keeps a=>1 there) → `mz_catalog.mz_map(ARRAY[k, …],
//     ARRAY[v, …])`, overloaded per map domain. DOUBLE LIMIT: scalar values only.
//  S3 The type `map[text=>T]` (map.slt "'{a=>1}'::map[text=>int]") → `mz_catalog.<T>_map`; a
//     string literal cast to it is turned from Materialize's map text (`{a=>1,b=>NULL}`, map.slt)
//     into the JSON object the domain holds. DOUBLE LIMIT: no escapes, quotes or nested maps in
//     such literals; int, text and float8 values.
//  S4 `mz_now()` is the time the query reads at: Materialize's COPY TO resolves it at the export's
//     AS OF (Materialize `src/adapter/src/optimize/copy_to.rs`, "Resolve all unmaterializable function
//     calls including mz_now()"), SUBSCRIBE at each timestamp. In the double (MZ_SQL_SETUP) it is
//     `now()` as timestamptz, which compares with timestamp columns the way Materialize's implicit
//     casts to mz_timestamp do. DOUBLE LIMIT: its type is timestamptz, not mz_timestamp.
import { loadModule, scanSync } from "libpg-query";

/** Functions behind S1, S2 and S4, created next to MZ_TYPES_SETUP's domains. */
export const MZ_SQL_SETUP = [
  ...[
    ["int4", "int4_list"],
    ["int8", "int8_list"],
    ["text", "text_list"],
    ["numeric", "numeric_list"],
    ["float8", "float8_list"],
    ["bool", "bool_list"],
    ["date", "date_list"],
    ["timestamptz", "timestamptz_list"],
  ].map(
    ([elem, list]) =>
      `CREATE FUNCTION mz_catalog.mz_list(${elem}[]) RETURNS mz_catalog.${list} LANGUAGE sql IMMUTABLE AS $$ SELECT $1::mz_catalog.${list} $$`,
  ),
  ...[
    ["int4", "int4_map"],
    ["text", "text_map"],
    ["float8", "float8_map"],
  ].map(
    ([value, map]) =>
      `CREATE FUNCTION mz_catalog.mz_map(text[], ${value}[]) RETURNS mz_catalog.${map} LANGUAGE sql IMMUTABLE AS
         $$ SELECT coalesce(jsonb_object_agg(k, v ORDER BY i), '{}')::mz_catalog.${map}
            FROM unnest($1, $2) WITH ORDINALITY AS x(k, v, i) $$`,
  ),
  "CREATE FUNCTION mz_catalog.mz_now() RETURNS timestamptz LANGUAGE sql STABLE AS $$ SELECT now() $$",
];

interface Tok {
  start: number;
  end: number;
  text: string;
}

let loaded: Promise<void> | undefined;
/** The scanner's WASM module; await once before translate. */
export const loadTranslator = (): Promise<void> => (loaded ??= loadModule());

const MAP_VALUE: Record<string, string> = {
  int: "int4",
  integer: "int4",
  int4: "int4",
  text: "text",
  float8: "float8",
  double: "float8",
};

/** Rewrites S1–S3 in `sql`; text without them comes back unchanged (same string). */
export function translateMzSql(sql: string): string {
  if (!/\b(?:list|map)\s*\[/i.test(sql)) return sql;
  let toks: Tok[];
  try {
    // Byte offsets equal string offsets only for ASCII; other texts are left to PostgreSQL.
    if (Buffer.byteLength(sql) !== sql.length) return sql;
    toks = scanSync(sql)
      .tokens.filter((t) => t.tokenName !== "C_COMMENT" && t.tokenName !== "SQL_COMMENT")
      .map((t) => ({ start: t.start, end: t.end, text: sql.slice(t.start, t.end) }));
  } catch {
    return sql;
  }
  const edits: Array<{ start: number; end: number; text: string }> = [];
  const lower = (i: number) => toks[i]?.text.toLowerCase();
  for (let i = 0; i < toks.length; i++) {
    const word = lower(i);
    if ((word === "list" || word === "map") && toks[i + 1]?.text === "[") {
      const close = closing(toks, i + 1);
      if (close < 0) continue;
      // S3: map[text=>T] as a type (a cast, a column definition): a type name, not a key, after `=>`.
      const inner = toks.slice(i + 2, close).map((t) => t.text.toLowerCase());
      const value =
        word === "map" && inner[0] === "text" && inner[1] === "=>" && inner.length <= 4
          ? MAP_VALUE[inner[2]!]
          : undefined;
      if (value !== undefined) {
        edits.push({ start: toks[i]!.start, end: toks[close]!.end, text: `mz_catalog.${value}_map` });
        const lit = toks[i - 2];
        if (toks[i - 1]!.text === "::" && lit !== undefined && /^'(?:[^']|'')*'$/.test(lit.text)) {
          const json = mapTextToJson(lit.text.slice(1, -1).replace(/''/g, "'"), value);
          if (json !== undefined)
            edits.push({ start: lit.start, end: lit.end, text: `'${json.replace(/'/g, "''")}'` });
        }
        i = close;
        continue;
      }
      if (toks[close - 1] === toks[i + 1]) continue; // LIST[] / MAP[]: no type to infer
      const items = splitTop(toks, i + 2, close);
      if (word === "list") {
        // One layer of scalars only: a nested `[` or LIST means S1 does not apply.
        if (toks.slice(i + 2, close).some((t) => t.text === "[")) continue;
        edits.push({ start: toks[i]!.start, end: toks[i + 1]!.end, text: "mz_catalog.mz_list(ARRAY[" });
        edits.push({ start: toks[close]!.start, end: toks[close]!.end, text: "])" });
      } else {
        const pairs = items.map(([a, b]) => {
          const arrow = toks.slice(a, b).findIndex((t) => t.text === "=>");
          return arrow < 0 ? null : { key: [a, a + arrow], value: [a + arrow + 1, b] };
        });
        if (pairs.some((p) => p === null || p.key[0] === p.key[1] || p.value[0] === p.value[1])) continue;
        const text = (r: number[]) => sql.slice(toks[r[0]!]!.start, toks[r[1]! - 1]!.end);
        const keys = pairs.map((p) => text(p!.key)).join(", ");
        const values = pairs.map((p) => text(p!.value)).join(", ");
        edits.push({
          start: toks[i]!.start,
          end: toks[close]!.end,
          text: `mz_catalog.mz_map(ARRAY[${keys}]::text[], ARRAY[${values}])`,
        });
      }
      i = close;
    }
  }
  if (edits.length === 0) return sql;
  let out = "";
  let at = 0;
  for (const e of edits.sort((a, b) => a.start - b.start)) {
    out += sql.slice(at, e.start) + e.text;
    at = e.end;
  }
  return out + sql.slice(at);
}

function closing(toks: readonly Tok[], open: number): number {
  let depth = 0;
  for (let i = open; i < toks.length; i++) {
    const t = toks[i]!.text;
    if (t === "[" || t === "(") depth++;
    else if (t === "]" || t === ")") {
      depth--;
      if (depth === 0) return t === "]" ? i : -1;
    }
  }
  return -1;
}

/** Token ranges of the top-level comma-separated items in [from, to). */
function splitTop(toks: readonly Tok[], from: number, to: number): Array<[number, number]> {
  const out: Array<[number, number]> = [];
  let depth = 0;
  let start = from;
  for (let i = from; i < to; i++) {
    const t = toks[i]!.text;
    if (t === "[" || t === "(") depth++;
    else if (t === "]" || t === ")") depth--;
    else if (t === "," && depth === 0) {
      out.push([start, i]);
      start = i + 1;
    }
  }
  out.push([start, to]);
  return out;
}

/** `{a=>1, b=>NULL}` → `{"a":1,"b":null}` for the simple literals S3 covers; undefined otherwise. */
function mapTextToJson(text: string, value: string): string | undefined {
  const m = /^\s*\{([\s\S]*)\}\s*$/.exec(text);
  if (m === null || /["\\{}]/.test(m[1]!)) return undefined;
  const obj: Record<string, unknown> = {};
  if (m[1]!.trim() === "") return "{}";
  for (const part of m[1]!.split(",")) {
    const kv = part.split("=>");
    if (kv.length !== 2) return undefined;
    const k = kv[0]!.trim();
    const v = kv[1]!.trim();
    if (k === "") return undefined;
    if (v.toUpperCase() === "NULL") obj[k] = null;
    else if (value === "text") obj[k] = v;
    else if (Number.isFinite(Number(v)) && v !== "") obj[k] = Number(v);
    else return undefined;
  }
  return JSON.stringify(obj);
}
