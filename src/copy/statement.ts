// Recognises `COPY <relation | (query)> TO <target> [WITH] (options)` where the target is an
// object-store URL or an expression, and takes it apart.
//
// The split is done on tokens of PostgreSQL's own scanner (libpg-query, WASM), so quotes,
// dollar quotes, comments, escapes and nested parentheses are handled exactly as the server
// handles them. The statement as a whole is *not* given to PostgreSQL's grammar: Materialize's
// option syntax (`MAX FILE SIZE = '100MB'`, `AWS CONNECTION = c`) is not PostgreSQL's. The inner
// query and the target expression are given to the real parser, which reports syntax errors
// with PostgreSQL's texts and positions.
import { loadModule, parseSync, scanSync } from "libpg-query";
import { PgError, SqlState } from "../errors.js";
import {
  COPY_OPTION_NAMES,
  type CopyOptions,
  normalizeCopyOptions,
  type RawCopyOption,
  type RawOptionValue,
} from "./options.js";
import { UNSUPPORTED_TARGET } from "./storage/target-url.js";

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

let loaded = false;

/** Loads the parser's WASM module; await once at startup before calling parseCopyTo. */
export async function initParser(): Promise<void> {
  if (loaded) return;
  await loadModule();
  loaded = true;
}

// ---------------------------------------------------------------------------------------------
// Tokens

interface Token {
  /** UTF-16 offsets into the original text (the scanner reports UTF-8 byte offsets). */
  start: number;
  end: number;
  text: string;
  /** Upper-cased text when the token is a keyword, else undefined. */
  keyword: string | undefined;
  /** 1 unreserved, 2 col_name, 3 type_func_name, 4 reserved; 0 not a keyword. */
  keywordKind: number;
  kind: "ident" | "string" | "number" | "param" | "punct" | "keyword" | "other";
}

/** PostgreSQL's scanner tokens without comments; null when the scanner rejects the text. */
function tokenize(sql: string): Token[] | null {
  let scanned: ReturnType<typeof scanSync>;
  try {
    scanned = scanSync(sql);
  } catch {
    // Unterminated quotes or comments, trailing junk after a number, ...: the upstream
    // reports these with its own wording when the text is forwarded.
    return null;
  }
  const toUtf16 = byteToUtf16(sql);
  const out: Token[] = [];
  for (const t of scanned.tokens) {
    if (t.tokenName === "C_COMMENT" || t.tokenName === "SQL_COMMENT") continue;
    const start = toUtf16(t.start);
    const end = toUtf16(t.end);
    const text = sql.slice(start, end);
    out.push({
      start,
      end,
      text,
      keyword: t.keywordKind > 0 ? text.toUpperCase() : undefined,
      keywordKind: t.keywordKind,
      kind: tokenKind(t.tokenName, t.keywordKind, text),
    });
  }
  return out;
}

function tokenKind(name: string, keywordKind: number, text: string): Token["kind"] {
  if (keywordKind > 0) return "keyword";
  switch (name) {
    case "IDENT":
      return "ident";
    case "SCONST":
      return "string";
    case "ICONST":
    case "FCONST":
      return "number";
    case "PARAM":
      return "param";
  }
  // The token-name table of libpg-query misses a few token types; recognise them by shape.
  if (/^[uU]&"/.test(text)) return "ident";
  if (/^(?:[uU]&|[bBxX])'/.test(text)) return "string";
  if (text.length === 1 && "(),;.[]=".includes(text)) return "punct";
  return "other";
}

function byteToUtf16(sql: string): (byteOffset: number) => number {
  if (Buffer.byteLength(sql, "utf8") === sql.length) return (b) => b;
  const map = new Map<number, number>();
  let byte = 0;
  let unit = 0;
  for (const ch of sql) {
    map.set(byte, unit);
    byte += Buffer.byteLength(ch, "utf8");
    unit += ch.length;
  }
  map.set(byte, unit);
  return (b) => map.get(b) ?? b;
}

/** PostgreSQL's error positions count characters (code points), 1-based. */
function positionOf(sql: string, utf16Offset: number): number {
  let n = 1;
  for (let i = 0; i < utf16Offset; i++) {
    const c = sql.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < utf16Offset) i++;
    n++;
  }
  return n;
}

const isPunct = (t: Token | undefined, p: string): boolean =>
  t !== undefined && t.kind === "punct" && t.text === p;
const isKeyword = (t: Token | undefined, kw: string): boolean => t !== undefined && t.keyword === kw;

/** Index of the bracket closing the one at `open`, or -1 when unbalanced. */
function matchingClose(toks: readonly Token[], open: number): number {
  let depth = 0;
  for (let i = open; i < toks.length; i++) {
    const t = toks[i]!;
    if (t.kind !== "punct") continue;
    if (t.text === "(" || t.text === "[") depth++;
    else if (t.text === ")" || t.text === "]") {
      depth--;
      if (depth === 0) return i;
      if (depth < 0) return -1;
    }
  }
  return -1;
}

/** Splits at top-level semicolons; empty statements are dropped. */
function splitTokens(toks: readonly Token[]): Token[][] {
  const out: Token[][] = [];
  let cur: Token[] = [];
  let depth = 0;
  for (const t of toks) {
    if (t.kind === "punct") {
      if (t.text === "(" || t.text === "[") depth++;
      else if (t.text === ")" || t.text === "]") depth = Math.max(0, depth - 1);
      else if (t.text === ";" && depth === 0) {
        if (cur.length > 0) out.push(cur);
        cur = [];
        continue;
      }
    }
    cur.push(t);
  }
  if (cur.length > 0) out.push(cur);
  return out;
}

export interface StatementSpan {
  /** UTF-16 offsets into the text; `sql` runs from the first to the last token. */
  start: number;
  end: number;
  sql: string;
}

/**
 * The statements of a simple-Query text, split the way the server splits them (top-level
 * semicolons, ignoring those in quotes, dollar quotes and comments). Texts the scanner rejects
 * count as one statement: the upstream will refuse them anyway. `BEGIN ATOMIC ... END`
 * function bodies are not recognised and count as several.
 */
export function splitStatements(sql: string): StatementSpan[] {
  assertLoaded();
  const toks = tokenize(sql);
  if (toks === null) return sql.trim() === "" ? [] : [{ start: 0, end: sql.length, sql }];
  return splitTokens(toks).map((s) => {
    const start = s[0]!.start;
    const end = s[s.length - 1]!.end;
    return { start, end, sql: sql.slice(start, end) };
  });
}

export function countStatements(sql: string): number {
  return splitStatements(sql).length;
}

function assertLoaded(): void {
  if (!loaded) {
    throw new PgError(SqlState.internalError, "SQL parser not initialised: await initParser() at startup");
  }
}

// ---------------------------------------------------------------------------------------------
// Recognition

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

/** Decodes a literal with the real parser, so E'', U&'', $$ and continuation lines all work. */
function decodeStringLiteral(toks: readonly Token[], from: number, to: number): string | undefined {
  const first = toks[from]!;
  const single = /^'((?:[^']|'')*)'$/.exec(first.text);
  if (to - from === 1 && single) return single[1]!.replace(/''/g, "'");
  const text = toks
    .slice(from, to)
    .map((t) => t.text)
    .join(" ");
  try {
    const res = parseSync(`SELECT ${text}`) as unknown as ParseTree;
    const targetList = res.stmts?.[0]?.stmt?.SelectStmt?.targetList as
      | { ResTarget?: { val?: { A_Const?: { sval?: { sval?: string } } } } }[]
      | undefined;
    if (targetList?.length !== 1) return undefined;
    const sval = targetList[0]?.ResTarget?.val?.A_Const?.sval;
    return sval === undefined ? undefined : (sval.sval ?? "");
  } catch {
    return undefined;
  }
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

function matchingOpen(toks: readonly Token[], close: number, from: number): number {
  let depth = 0;
  for (let i = close; i >= from; i--) {
    const t = toks[i]!;
    if (t.kind !== "punct") continue;
    if (t.text === ")" || t.text === "]") depth++;
    else if (t.text === "(" || t.text === "[") {
      depth--;
      if (depth === 0) return i;
    }
  }
  return -1;
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

// ---------------------------------------------------------------------------------------------
// Validation

interface ParseTree {
  stmts?: { stmt?: Record<string, Record<string, unknown> | undefined> }[];
}

function syntaxErrorAt(sql: string, t: Token | undefined): PgError {
  if (t === undefined) {
    return new PgError(SqlState.syntaxError, "syntax error at end of input", {
      position: positionOf(sql, sql.length),
    });
  }
  return new PgError(SqlState.syntaxError, `syntax error at or near "${t.text}"`, {
    position: positionOf(sql, t.start),
  });
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

function checkTargetTokens(sql: string, toks: readonly Token[], from: number, to: number): void {
  let depth = 0;
  for (let i = from; i < to; i++) {
    const t = toks[i]!;
    if (t.kind !== "punct") continue;
    if (t.text === "(" || t.text === "[") depth++;
    else if (t.text === ")" || t.text === "]") depth--;
    else if (t.text === "," && depth === 0) throw syntaxErrorAt(sql, t);
  }
  if (depth < 0 || (to < toks.length && isPunct(toks[to], ")"))) throw syntaxErrorAt(sql, toks[to]);
  if (depth > 0) throw syntaxErrorAt(sql, toks[to]);
}

function checkTargetExpression(sql: string, toks: readonly Token[], from: number, to: number): string {
  for (let i = from; i < to; i++) {
    const t = toks[i]!;
    // The target is evaluated once, before the snapshot exists, so mz_now() has no value yet
    // (Materialize: OptimizerError::UncallableFunction, context "this").
    const bare = t.kind === "ident" ? foldIdent(t.text) : t.keyword?.toLowerCase();
    if (bare === "mz_now" && isPunct(toks[i + 1], "(")) {
      throw new PgError(SqlState.featureNotSupported, "cannot call mz_now in this context", {
        position: positionOf(sql, t.start),
        hint: "The COPY TO target is evaluated once, before the export starts; use now() instead.",
      });
    }
    // Materialize plans the target with allow_subqueries = false. (And allow_parameters = false;
    // here parameters are bound like any statement's, see highestParam.)
    if (t.keyword === "SELECT" || t.keyword === "VALUES" || t.keyword === "TABLE" || t.keyword === "WITH") {
      throw new PgError(SqlState.featureNotSupported, "COPY TO target does not allow subqueries", {
        position: positionOf(sql, t.start),
      });
    }
  }
  const start = toks[from]!.start;
  const end = toks[to - 1]!.end;
  const expr = sql.slice(start, end);
  // Parsed in both dialects: a target is a string expression, which Materialize writes the way
  // PostgreSQL does, and an unparsable one usually means misplaced options (`TO 's3://x' CSV`).
  const prefix = "SELECT (";
  try {
    parseSync(`${prefix}${expr})::text`);
  } catch (err) {
    throw parseError(sql, err, start, end, prefix.length, toks[to]);
  }
  return expr;
}

/** The highest `$n` among the tokens in [from, to); 0 when there is none. */
function highestParam(toks: readonly Token[], from: number, to: number): number {
  let n = 0;
  for (let i = from; i < to; i++) {
    const t = toks[i]!;
    if (t.kind === "param") n = Math.max(n, Number(t.text.slice(1)));
  }
  return n;
}

/**
 * Maps a libpg-query parse error on a piece of the statement (parsed alone, possibly wrapped in
 * `prefixChars` characters of our own) back to the statement. An error past the end of the
 * piece is reported at the token that follows the piece, as the server would for the whole
 * statement.
 */
function parseError(
  sql: string,
  err: unknown,
  pieceStart: number,
  pieceEnd: number,
  prefixChars: number,
  next: Token | undefined,
): PgError {
  const e = err as { message?: string; sqlDetails?: { cursorPosition?: number } };
  const message = e.message ?? String(err);
  const cursor = e.sqlDetails?.cursorPosition;
  if (cursor === undefined || cursor < prefixChars) {
    return new PgError(SqlState.syntaxError, message, { cause: err });
  }
  const base = positionOf(sql, pieceStart);
  const offset = cursor - prefixChars;
  if (offset >= positionOf(sql, pieceEnd) - base && message.startsWith("syntax error")) {
    return syntaxErrorAt(sql, next);
  }
  return new PgError(SqlState.syntaxError, message, { position: base + offset, cause: err });
}

function checkQuery(
  sql: string,
  toks: readonly Token[],
  open: number,
  close: number,
  dialect: SqlDialect,
): string {
  if (close === open + 1) throw syntaxErrorAt(sql, toks[close]);
  const start = toks[open + 1]!.start;
  const end = toks[close - 1]!.end;
  const query = sql.slice(start, end);

  // The rows are read through a statement of the proxy's own, to which nothing is bound.
  const param = toks.slice(open + 1, close).find((t) => t.kind === "param");
  if (param !== undefined) {
    throw new PgError(
      SqlState.featureNotSupported,
      "COPY ... TO 's3://...' does not support parameters in its query",
      {
        position: positionOf(sql, param.start),
        hint: "Parameters ($1, ...) are accepted in the target only; write the value into the query, or export a view.",
      },
    );
  }

  // Materialize rejects ORDER BY on the outermost query only (`stmt.query.order_by`); ORDER BY
  // inside parentheses (subqueries, window and aggregate clauses) is depth > 0 here.
  let depth = 0;
  for (let i = open + 1; i < close; i++) {
    const t = toks[i]!;
    if (isPunct(t, "(") || isPunct(t, "[")) depth++;
    else if (isPunct(t, ")") || isPunct(t, "]")) depth--;
    else if (depth === 0 && isKeyword(t, "ORDER") && isKeyword(toks[i + 1], "BY")) {
      throw new PgError(
        SqlState.featureNotSupported,
        "ORDER BY is not supported in SELECT query for COPY statements",
        { position: positionOf(sql, t.start) },
      );
    }
  }

  // The export reads through a cursor or SUBSCRIBE in a read-only snapshot: DML ... RETURNING
  // and SUBSCRIBE cannot run there (Materialize's grammar allows only SELECT here, too).
  const notSelect = () =>
    new PgError(
      SqlState.featureNotSupported,
      "COPY ... TO 's3://...' supports only SELECT, VALUES and TABLE queries",
      {
        position: positionOf(sql, start),
      },
    );
  let tree: ParseTree;
  try {
    tree = parseSync(query) as unknown as ParseTree;
  } catch (err) {
    if (dialect === "materialize") {
      const first = toks[open + 1]!;
      const opensQuery =
        ["SELECT", "WITH", "VALUES", "TABLE"].includes(first.keyword ?? "") || isPunct(first, "(");
      if (!opensQuery) throw notSelect();
      // `SELECT … AS OF t` is Materialize's (its SelectStatement carries as_of; dml.rs), but the
      // export reads through `SUBSCRIBE (<query>)`, where AS OF inside the parentheses is a syntax
      // error at a position the user never wrote. (PostgreSQL's grammar reads `AS of` only as an
      // alias, so a query that reaches here with a top-level AS OF means Materialize's.)
      const asOf = topLevel(toks, open + 1, close).find(
        (i) => isKeyword(toks[i], "AS") && toks[i + 1]?.text.toUpperCase() === "OF",
      );
      if (asOf !== undefined) {
        throw new PgError(
          SqlState.featureNotSupported,
          "AS OF is not supported in the query of COPY ... TO 's3://...'",
          {
            position: positionOf(sql, toks[asOf]!.start),
            hint: "Remove AS OF: the export reads the current snapshot.",
          },
        );
      }
      return query;
    }
    throw parseError(sql, err, start, end, 0, toks[close]);
  }
  const stmts = tree.stmts ?? [];
  if (stmts.length !== 1) {
    // Only reachable through a semicolon inside the parentheses.
    const semi = toks.slice(open + 1, close).find((t) => isPunct(t, ";"));
    throw syntaxErrorAt(sql, semi ?? toks[close]);
  }
  const node = stmts[0]!.stmt ?? {};
  const select = node.SelectStmt;
  if (!select) throw notSelect();
  if (select.intoClause) {
    throw new PgError(SqlState.featureNotSupported, "COPY (SELECT INTO) is not supported", {
      position: positionOf(sql, start),
    });
  }
  return query;
}

/** Indexes of the tokens in [from, to) outside any bracket. */
function topLevel(toks: readonly Token[], from: number, to: number): number[] {
  const out: number[] = [];
  let depth = 0;
  for (let i = from; i < to; i++) {
    const t = toks[i]!;
    if (isPunct(t, "(") || isPunct(t, "[")) depth++;
    else if (isPunct(t, ")") || isPunct(t, "]")) depth--;
    else if (depth === 0) out.push(i);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Options

const OPTION_WORDS: readonly (readonly string[])[] = COPY_OPTION_NAMES.map((n) => n.split(" ")).sort(
  (a, b) => b.length - a.length,
);

function parseOptionList(sql: string, toks: readonly Token[], from: number): RawCopyOption[] {
  let i = from;
  if (i >= toks.length) return [];
  if (isKeyword(toks[i], "WITH")) i++;
  if (!isPunct(toks[i], "(")) throw syntaxErrorAt(sql, toks[i]);
  const close = matchingClose(toks, i);
  if (close < 0) throw syntaxErrorAt(sql, undefined);
  if (close + 1 < toks.length) throw syntaxErrorAt(sql, toks[close + 1]);

  const items: Token[][] = [];
  let cur: Token[] = [];
  let depth = 0;
  for (let k = i + 1; k < close; k++) {
    const t = toks[k]!;
    if (isPunct(t, "(") || isPunct(t, "[")) depth++;
    else if (isPunct(t, ")") || isPunct(t, "]")) depth--;
    else if (depth === 0 && isPunct(t, ",")) {
      if (cur.length === 0) throw syntaxErrorAt(sql, t);
      items.push(cur);
      cur = [];
      continue;
    }
    cur.push(t);
  }
  if (cur.length === 0) throw syntaxErrorAt(sql, toks[close]);
  items.push(cur);
  return items.map((item) => parseOptionItem(sql, item, toks[close]!));
}

/** Case-folded word for matching option names: quoted identifiers keep their spelling. */
function word(t: Token): string | undefined {
  if (t.kind === "keyword") return t.text.toUpperCase();
  if (t.kind === "ident") {
    if (t.text.startsWith('"')) return t.text.slice(1, -1).replace(/""/g, '"').toUpperCase();
    return t.text.toUpperCase();
  }
  return undefined;
}

function parseOptionItem(sql: string, item: Token[], closeParen: Token): RawCopyOption {
  const position = positionOf(sql, item[0]!.start);
  const words = item.map(word);
  const match = OPTION_WORDS.find((w) => w.every((part, k) => words[k] === part));
  let rest: Token[];
  let name: string;
  if (match) {
    name = match.join(" ");
    rest = item.slice(match.length);
  } else {
    // Unknown: report the words before `=` (or the first word) the way PostgreSQL names them.
    const eq = item.findIndex((t) => isPunct(t, "="));
    const nameToks = eq > 0 ? item.slice(0, eq) : item.slice(0, 1);
    return { name: nameToks.map((t) => foldIdent(t.text)).join(" "), position };
  }
  if (isPunct(rest[0], "=")) {
    rest = rest.slice(1);
    if (rest.length === 0) throw syntaxErrorAt(sql, closeParen);
  }
  if (rest.length === 0) return { name, position };
  // A sequence value (Materialize's `FILES = ('a', 'b')`): kept whole, it is only ever ignored.
  if (name === "FILES" && (isPunct(rest[0], "(") || isPunct(rest[0], "["))) {
    const close = matchingClose(rest, 0);
    if (close < 0) throw syntaxErrorAt(sql, closeParen);
    if (close + 1 < rest.length) throw syntaxErrorAt(sql, rest[close + 1]);
    const text = sql.slice(rest[0]!.start, rest[close]!.end);
    return { name, value: { kind: "list", text }, position };
  }
  const { value, used } = parseOptionValue(sql, rest);
  if (used < rest.length) throw syntaxErrorAt(sql, rest[used]);
  return { name, value, position };
}

function foldIdent(text: string): string {
  if (text.startsWith('"')) return text.slice(1, -1).replace(/""/g, '"');
  // PostgreSQL folds only ASCII letters in unquoted identifiers.
  return text.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

function parseOptionValue(sql: string, t: Token[]): { value: RawOptionValue; used: number } {
  const first = t[0]!;
  if ((first.text === "-" || first.text === "+") && t[1]?.kind === "number") {
    return { value: { kind: "number", text: `${first.text}${t[1].text}` }, used: 2 };
  }
  if (first.kind === "number") return { value: { kind: "number", text: first.text }, used: 1 };
  if (first.kind === "string") {
    const used = /^[uU]&'/.test(first.text) && isKeyword(t[1], "UESCAPE") && t[2]?.kind === "string" ? 3 : 1;
    const text = decodeStringLiteral(t, 0, used);
    if (text === undefined || /^[bBxX]'/.test(first.text)) throw syntaxErrorAt(sql, first);
    return { value: { kind: "string", text }, used };
  }
  // Identifiers, non-reserved keywords, and the reserved words PostgreSQL accepts as option
  // values (opt_boolean_or_string); a qualified name for AWS CONNECTION.
  const wordish = (x: Token | undefined, afterDot: boolean): boolean =>
    x !== undefined &&
    (x.kind === "ident" ||
      (x.kind === "keyword" &&
        (afterDot ||
          x.keywordKind < 4 ||
          x.keyword === "TRUE" ||
          x.keyword === "FALSE" ||
          x.keyword === "ON")));
  if (!wordish(first, false) || /^[uU]&"/.test(first.text)) throw syntaxErrorAt(sql, first);
  const parts = [foldIdent(first.text)];
  let used = 1;
  while (isPunct(t[used], ".") && wordish(t[used + 1], true) && !/^[uU]&"/.test(t[used + 1]!.text)) {
    parts.push(foldIdent(t[used + 1]!.text));
    used += 2;
  }
  return { value: { kind: "word", text: parts.join(".") }, used };
}

// ---------------------------------------------------------------------------------------------
// Targets

/**
 * Checks an evaluated (or literal) target the way Materialize does after evaluating it: NULL and
 * anything but `s3://`, `gs://` (and our `file://`) are refused. Returns the URL.
 */
export function assertTargetUrl(value: string | null, position?: number): string {
  if (value === null) {
    throw new PgError(SqlState.nullValueNotAllowed, "COPY TO target value can not be null", { position });
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(value)?.[1]?.toLowerCase();
  if (scheme !== "s3" && scheme !== "gs" && scheme !== "file") {
    throw new PgError(SqlState.featureNotSupported, UNSUPPORTED_TARGET, {
      position,
      hint: scheme === undefined ? undefined : "file:///absolute/dir is also accepted, for local exports.",
    });
  }
  return value;
}
