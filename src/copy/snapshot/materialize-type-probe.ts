// What `pg_typeof` cannot say about a Materialize column, asked of the column's own sub-values.
//
// `pg_typeof` names a type without its typmod (`numeric list`, `record(a: numeric?)`: mz_pgrepr
// `Type::name`), and a named type (`CREATE TYPE t AS LIST (…)`) only by its name
// (humanize_scalar_type in Materialize `src/adapter/src/catalog.rs`). The wire, though, describes
// any expression with its element's own OID and typmod: `(c)[1]` is a list's or array's element,
// `(c) -> ''` a map's value, `(c)."f"` a record's field (Materialize `src/pgrepr/src/types.rs`:
// numeric(39, s) carries the max scale). So the probe describes such expressions — Parse and
// Describe only, nothing runs — level by level, one round trip per level:
//  - numeric leaves inside lists, maps, records and arrays get their scale;
//  - a named list or map (generic OID 16384/16385 on the wire, a name pg_typeof cannot take
//    apart) gets its element type from its first element's description.
import type { TypeInfo } from "../../encoders/types.js";
import { MzOid, type MzTypeInfo, mzColumnTypmod, parseMzTypeName } from "./materialize-types.js";

export interface ProbeIo {
  /** OID and typmod of each expression (over the view aliased `t`). */
  describe(exprs: readonly string[]): Promise<Array<{ oid: number; typeMod: number }>>;
  /** `pg_typeof` of each expression, as text (null when unknown). */
  typeOf(exprs: readonly string[]): Promise<Array<string | null>>;
}

export interface ProbeColumn {
  /** The column as an expression over the view, e.g. `t."c1"`. */
  expr: string;
  /** Wire OID and typmod of the column. */
  oid: number;
  typeMod: number;
  /** What pg_typeof's name says, when it could be parsed. */
  parsed?: MzTypeInfo | undefined;
}

/** Arrays whose element is worth a probe (numeric) — others carry nothing the name lacks. */
const NUMERIC_ARRAY = 1231;
const MAX_DEPTH = 8;

interface Task {
  expr: string;
  info: MzTypeInfo;
  depth: number;
}

/**
 * The refined type of each column, or undefined where nothing better than `parsed` is known (a
 * named type the probe could not take apart stays undefined: exported as text).
 */
export async function probeTypes(
  columns: readonly ProbeColumn[],
  io: ProbeIo,
): Promise<Array<MzTypeInfo | undefined>> {
  const out: Array<MzTypeInfo | undefined> = columns.map((c) => c.parsed);
  // Named lists and maps: rebuilt from the wire, element by element.
  const rebuild: Task[] = [];
  columns.forEach((c, i) => {
    if (c.parsed === undefined && (c.oid === MzOid.list || c.oid === MzOid.map)) {
      const info: MzTypeInfo = { name: "", kind: "b", oid: c.oid, typeMod: -1, materialize: true };
      out[i] = info;
      rebuild.push({ expr: c.expr, info, depth: 0 });
    }
  });
  await rebuildLevels(rebuild, io);
  // Numeric scales inside containers.
  const leaves: Array<{ expr: string; set: (typeMod: number) => void }> = [];
  columns.forEach((c, i) => {
    const t = out[i];
    if (t !== undefined && t.oid !== 1700) collectNumericLeaves(c.expr, t, 0, leaves);
  });
  if (leaves.length > 0) {
    const d = await io.describe(leaves.map((l) => l.expr));
    leaves.forEach((l, k) => {
      const got = d[k];
      if (got !== undefined && got.oid === 1700) l.set(mzColumnTypmod(1700, got.typeMod));
    });
  }
  // Unresolved named containers stay text.
  return out.map((t) => (t !== undefined && t.name === "?" ? undefined : t));
}

async function rebuildLevels(start: Task[], io: ProbeIo): Promise<void> {
  let level = start;
  while (level.length > 0) {
    const children: Array<{ expr: string; attach: (child: MzTypeInfo) => void; depth: number }> = [];
    for (const task of level) {
      const { info, expr } = task;
      if (task.depth > MAX_DEPTH) {
        info.name = "?";
        continue;
      }
      if (info.oid === MzOid.list) {
        info.name = "list";
        children.push({ expr: `(${expr})[1]`, attach: (c) => (info.element = c), depth: task.depth + 1 });
      } else if (info.oid === MzOid.map) {
        info.name = "map";
        children.push({ expr: `(${expr}) -> ''`, attach: (c) => (info.value = c), depth: task.depth + 1 });
      }
    }
    if (children.length === 0) return;
    const d = await io.describe(children.map((c) => c.expr));
    // Records and other named types among the elements: their pg_typeof name, when it parses.
    const names = await io.typeOf(children.map((c) => c.expr));
    const next: Task[] = [];
    children.forEach((c, k) => {
      const desc = d[k];
      if (desc === undefined) return;
      const parsed = names[k] == null ? undefined : parseMzTypeName(names[k]!);
      const typeMod = mzColumnTypmod(desc.oid, desc.typeMod);
      if (parsed !== undefined && parsed.oid === desc.oid) {
        c.attach({ ...parsed, typeMod: parsed.oid === 1700 ? typeMod : parsed.typeMod });
        return;
      }
      const info: MzTypeInfo = { name: names[k] ?? "", kind: "b", oid: desc.oid, typeMod, materialize: true };
      if (desc.oid === MzOid.list || desc.oid === MzOid.map)
        next.push({ expr: c.expr, info, depth: c.depth });
      else if (desc.oid === MzOid.record) info.name = "?";
      c.attach(info);
    });
    level = next;
  }
}

/** Accessors of the numeric values inside `t` (list/array element, map value, record field). */
function collectNumericLeaves(
  expr: string,
  t: TypeInfo & { oid: number; typeMod: number },
  depth: number,
  out: Array<{ expr: string; set: (typeMod: number) => void }>,
): void {
  if (depth > MAX_DEPTH) return;
  const visit = (sub: string, child: (TypeInfo & { oid: number; typeMod: number }) | undefined): void => {
    if (child === undefined) return;
    if (child.oid === 1700) {
      out.push({ expr: sub, set: (m) => (child.typeMod = m) });
    } else {
      collectNumericLeaves(sub, child, depth + 1, out);
    }
  };
  if (t.oid === MzOid.list || t.oid === NUMERIC_ARRAY || (t.kind === "b" && t.element !== undefined)) {
    visit(`(${expr})[1]`, t.element);
  } else if (t.oid === MzOid.map) {
    visit(`(${expr}) -> ''`, t.value);
  } else if (t.kind === "c" && t.fields !== undefined) {
    for (const f of t.fields) {
      const field = { ...(f.type as TypeInfo), oid: f.oid, typeMod: f.typeMod };
      if (f.oid === 1700) {
        out.push({ expr: `(${expr}).${quoteIdent(f.name)}`, set: (m) => (f.typeMod = m) });
      } else {
        collectNumericLeaves(`(${expr}).${quoteIdent(f.name)}`, field, depth + 1, out);
        f.type = field;
      }
    }
  }
}

function quoteIdent(s: string): string {
  return `"${s.replace(/"/g, '""')}"`;
}
