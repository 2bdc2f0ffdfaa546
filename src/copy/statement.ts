// Recognises `COPY <relation | (query)> TO <target> [WITH] (options)` where the target is an
// object-store URL or an expression, and takes it apart.
//
// The split is done on tokens of PostgreSQL's own scanner (libpg-query, WASM), so quotes,
// dollar quotes, comments, escapes and nested parentheses are handled exactly as the server
// handles them. The statement as a whole is *not* given to PostgreSQL's grammar: Materialize's
// option syntax (`MAX FILE SIZE = '100MB'`, `AWS CONNECTION = c`) is not PostgreSQL's. The inner
// query and the target expression are given to the real parser, which reports syntax errors
// with PostgreSQL's texts and positions.
import { parseSync } from "libpg-query";
import { PgError, SqlState } from "../errors.js";
import { parseOptionList } from "./option-syntax.js";
import { type CopyOptions, normalizeCopyOptions } from "./options.js";
import {
  assertLoaded,
  decodeStringLiteral,
  isKeyword,
  isPunct,
  matchingClose,
  matchingOpen,
  positionOf,
  splitTokens,
  syntaxErrorAt,
  type Token,
  tokenize,
} from "./sql-tokens.js";
import { checkQuery, checkTargetExpression, checkTargetTokens, highestParam } from "./statement-checks.js";
import { assertTargetUrl } from "./storage/target-url.js";

export type CopySource =
  /** `name` is as written (quoted identifiers stay quoted), so it can be spliced into SQL. */
  | { kind: "relation"; name: string }
  /** The inner query, without the surrounding parentheses or leading/trailing comments. */
  | { kind: "query"; sql: string };

export type CopyTarget =
  | { kind: "literal"; value: string }
  /**
   * Evaluate upstream, in the client's session, as `SELECT (<sql>)::text`; `params` is the highest
   * `$n` in it (0: none), bound by the client through the extended protocol.
   */
  | { kind: "expression"; sql: string; params: number };

export interface CopyToStatement {
  source: CopySource;
  target: CopyTarget;
  options: CopyOptions;
}

/**
 * `postgres`: the inner query must pass PostgreSQL's parser.
 * `materialize`: Materialize accepts query syntax PostgreSQL's grammar does not (`LIST[1,2]`,
 * `MAP['a' => 1]`, `SELECT ... OPTIONS (...)`), so a parse failure of the inner query is left
 * for the upstream to judge when the query is described; every other check still applies.
 */
export type SqlDialect = "postgres" | "materialize";

export interface ParseCopyToOptions {
  dialect?: SqlDialect;
}

interface Shape {
  toks: Token[];
  /** Query source: the parenthesis pair; relation source: the name's token range. */
  source: { kind: "query"; open: number; close: number } | { kind: "relation"; from: number; to: number };
  columns: { open: number; close: number } | undefined;
  targetFrom: number;
  targetTo: number;
  literal: string | undefined;
}

/** True when the URL starts with a scheme (`s3://`, `file://`, `gs://` ...). */
const hasScheme = (value: string): boolean => /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.test(value);

/**
 * Null = not ours: forward it untouched. Throws PgError when it is ours but invalid, or when it
 * shares its query text with other statements (which the proxy cannot run in one round trip).
 */
export function parseCopyTo(sql: string, opts: ParseCopyToOptions = {}): CopyToStatement | null {
  assertLoaded();
  const toks = tokenize(sql);
  if (toks === null) return null;
  const statements = splitTokens(toks);
  let shape: Shape | null = null;
  for (const stmt of statements) {
    shape = recognize(stmt);
    if (shape) break;
  }
  if (!shape) return null;
  if (statements.length > 1) {
    throw new PgError(
      SqlState.featureNotSupported,
      "COPY ... TO 's3://...' cannot be combined with other statements in one query",
      { hint: "Send the COPY statement on its own." },
    );
  }
  return build(sql, shape, opts.dialect ?? "postgres");
}

function isNameStart(t: Token | undefined): boolean {
  // ColId: identifiers and keywords that are not reserved.
  return t !== undefined && (t.kind === "ident" || (t.kind === "keyword" && t.keywordKind < 4));
}

function recognize(toks: Token[]): Shape | null {
  if (!isKeyword(toks[0], "COPY")) return null;
  let i = 1;
  let source: Shape["source"];
  let columns: Shape["columns"];
  if (isPunct(toks[i], "(")) {
    const close = matchingClose(toks, i);
    if (close < 0) return null;
    source = { kind: "query", open: i, close };
    i = close + 1;
  } else {
    if (!isNameStart(toks[i])) return null;
    const from = i;
    // After a dot any keyword is a valid name part (ColLabel), reserved ones included.
    while (isPunct(toks[i + 1], ".") && (toks[i + 2]?.kind === "ident" || toks[i + 2]?.kind === "keyword"))
      i += 2;
    source = { kind: "relation", from, to: i + 1 };
    i++;
    if (isPunct(toks[i], "(")) {
      const close = matchingClose(toks, i);
      if (close < 0) return null;
      columns = { open: i, close };
      i = close + 1;
    }
  }
  if (!isKeyword(toks[i], "TO")) return null; // COPY ... FROM, or something we do not know
  i++;
  const first = toks[i];
  if (first === undefined) return null;
  if (first.keyword === "STDOUT" || first.keyword === "STDIN" || first.keyword === "PROGRAM") return null;

  const targetFrom = i;
  const targetTo = targetEnd(toks, targetFrom);
  if (targetTo === targetFrom) return null; // no target at all: the upstream's syntax error

  let literal: string | undefined;
  const targetToks = toks.slice(targetFrom, targetTo);
  if (isStringLiteral(targetToks)) {
    literal = decodeStringLiteral(toks, targetFrom, targetTo);
    // A server-side file path: PostgreSQL's own COPY, not ours.
    if (literal === undefined || !hasScheme(literal)) return null;
  }
  return { toks, source, columns, targetFrom, targetTo, literal };
}

/** A string constant, optionally with a UESCAPE clause, as PostgreSQL's copy_file_name allows. */
function isStringLiteral(t: readonly Token[]): boolean {
  if (t.length === 1) return t[0]!.kind === "string" && !/^[bBxX]'/.test(t[0]!.text);
  return (
    t.length === 3 && /^[uU]&'/.test(t[0]!.text) && isKeyword(t[1], "UESCAPE") && t[2]!.kind === "string"
  );
}

/**
 * Where the target expression ends: at a top-level WITH, or at a top-level `(` that cannot
 * continue the expression because what precedes it is a complete operand (`'s3://x' (FORMAT
 * csv)`). After an identifier `(` may open a call or a type modifier (`'s3://x'::text (FORMAT
 * csv)`, `upper('s3://x')`): when the statement ends in such a group, the parser decides
 * whether it belongs to the expression.
 */
function targetEnd(toks: readonly Token[], from: number): number {
  const end = scanTargetEnd(toks, from);
  if (end !== toks.length || !isPunct(toks[end - 1], ")")) return end;
  const open = matchingOpen(toks, end - 1, from);
  if (open <= from || !isPunct(toks[open], "(")) return end;
  if (parsesAsExpression(toks, from, end) || !parsesAsExpression(toks, from, open)) return end;
  return open;
}

function parsesAsExpression(toks: readonly Token[], from: number, to: number): boolean {
  if (to <= from) return false;
  const expr = toks
    .slice(from, to)
    .map((t) => t.text)
    .join(" ");
  try {
    parseSync(`SELECT (${expr})::text`);
    return true;
  } catch {
    return false;
  }
}

function scanTargetEnd(toks: readonly Token[], from: number): number {
  let depth = 0;
  for (let i = from; i < toks.length; i++) {
    const t = toks[i]!;
    if (depth === 0 && isKeyword(t, "WITH")) return i;
    if (t.kind !== "punct") continue;
    if (t.text === "(" || t.text === "[") {
      if (depth === 0 && t.text === "(" && i > from && endsOperand(toks[i - 1]!)) return i;
      depth++;
    } else if (t.text === ")" || t.text === "]") {
      depth--;
      if (depth < 0) return i; // reported as a syntax error once we know it is ours
    }
  }
  return toks.length;
}

function endsOperand(t: Token): boolean {
  if (t.kind === "string" || t.kind === "number") return true;
  if (t.kind === "punct") return t.text === ")" || t.text === "]";
  return t.keyword === "NULL" || t.keyword === "TRUE" || t.keyword === "FALSE";
}

function build(sql: string, shape: Shape, dialect: SqlDialect): CopyToStatement {
  const { toks } = shape;

  // Target structure: unbalanced brackets and top-level commas would change the meaning of
  // `SELECT (<target>)::text` once the expression is spliced into it.
  checkTargetTokens(sql, toks, shape.targetFrom, shape.targetTo);
  const rawOptions = parseOptionList(sql, toks, shape.targetTo);

  let source: CopySource;
  if (shape.source.kind === "query") {
    source = { kind: "query", sql: checkQuery(sql, toks, shape.source.open, shape.source.close, dialect) };
  } else {
    const { from, to } = shape.source;
    source = {
      kind: "relation",
      name: toks
        .slice(from, to)
        .map((t) => t.text)
        .join(""),
    };
    if (shape.columns) {
      const { open, close } = shape.columns;
      if (close === open + 1) throw syntaxErrorAt(sql, toks[close]);
      throw new PgError(
        SqlState.featureNotSupported,
        "specifying columns for COPY <table_name> TO commands not yet supported; use COPY (SELECT...) TO ... instead",
        { position: positionOf(sql, toks[open]!.start) },
      );
    }
  }

  let target: CopyTarget;
  if (shape.literal !== undefined) {
    assertTargetUrl(shape.literal, positionOf(sql, toks[shape.targetFrom]!.start));
    target = { kind: "literal", value: shape.literal };
  } else {
    target = {
      kind: "expression",
      sql: checkTargetExpression(sql, toks, shape.targetFrom, shape.targetTo),
      params: highestParam(toks, shape.targetFrom, shape.targetTo),
    };
  }

  return { source, target, options: normalizeCopyOptions(rawOptions) };
}
