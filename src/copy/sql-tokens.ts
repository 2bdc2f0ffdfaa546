// PostgreSQL's own scanner (libpg-query, WASM) for the COPY recognition: tokens without comments,
// with UTF-16 offsets and PostgreSQL's error positions; bracket matching; the split at top-level
// semicolons; string literals decoded by the real parser.
import { loadModule, parseSync, scanSync } from "libpg-query";
import { PgError, SqlState } from "../errors.js";

let loaded = false;
/** What the start-up's warm-up did (a seam for tests): tokens scanned, statements parsed, refused. */
let warmedUp = { tokens: 0, parsed: 0, refused: 0 };

/**
 * Loads the parser's WASM module and warms it up; await once at startup before calling
 * parseCopyTo. V8 compiles a WASM function on its first call, on the calling thread: without the
 * warm-up, the proxy's first COPY statement compiled PostgreSQL's scanner and grammar (~45 ms of
 * CPU, 100+ ms of wall time on a loaded machine) on the relay's thread, stalling every session.
 */
export async function initParser(opts: { warmUp?: boolean } = {}): Promise<void> {
  if (loaded) return;
  await loadModule();
  loaded = true;
  // `warmUp: false`: exports.warmUp "none" (the copy hook), bench/first-statement.ts's baseline.
  if (opts.warmUp !== false) warmedUp = warmUpParser();
}

/**
 * A COPY ... TO as the recognition scans it: quotes, escapes, dollar quotes, comments, numbers,
 * parameters, casts, an expression target, an option list.
 */
const WARM_UP_SCAN = `COPY (SELECT a, 'it''s', E'x\\n', U&'d\\0061', $q$x$q$, 1.5e3, -2, b::int /* c */ FROM "S".t -- c
  WHERE c > $1) TO 's3://bucket/prefix/' || to_char(now(), 'YYYYMMDD') WITH (FORMAT = 'parquet', MAX FILE SIZE = '100MB')`;
/** What the recognition parses: an inner query, a target expression, a literal; one syntax error (the error path). */
const WARM_UP_PARSE = [
  `SELECT a, 'it''s', $q$x$q$, b::numeric(10, 2), f(c) AS d FROM s.t JOIN u USING (k) WHERE c > 1 AND d IN (1, 2) GROUP BY 1 ORDER BY 2 LIMIT 3`,
  `SELECT ('s3://bucket/prefix/' || to_char(now(), 'YYYYMMDD'))::text`,
  `SELECT E'x\\n'`,
  `SELECT (1 2)::text`,
];

function warmUpParser(): typeof warmedUp {
  const tokens = tokenize(WARM_UP_SCAN)?.length ?? 0;
  let parsed = 0;
  let refused = 0;
  for (const sql of WARM_UP_PARSE) {
    try {
      parseSync(sql);
      parsed++;
    } catch {
      // The syntax error is meant: it compiles the error path.
      refused++;
    }
  }
  return { tokens, parsed, refused };
}

/** The start-up warm-up's counts (tests: the parser is warm once the proxy's start resolves). */
export function parserWarmUp(): Readonly<typeof warmedUp> {
  return warmedUp;
}

export function assertLoaded(): void {
  if (!loaded) {
    throw new PgError(SqlState.internalError, "SQL parser not initialised: await initParser() at startup");
  }
}

export interface Token {
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
export function tokenize(sql: string): Token[] | null {
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
export function positionOf(sql: string, utf16Offset: number): number {
  let n = 1;
  for (let i = 0; i < utf16Offset; i++) {
    const c = sql.charCodeAt(i);
    if (c >= 0xd800 && c <= 0xdbff && i + 1 < utf16Offset) i++;
    n++;
  }
  return n;
}

export const isPunct = (t: Token | undefined, p: string): boolean =>
  t !== undefined && t.kind === "punct" && t.text === p;
export const isKeyword = (t: Token | undefined, kw: string): boolean => t !== undefined && t.keyword === kw;

/**
 * Brackets by the direction of a walk: those that nest one level deeper, and those that end a level.
 * (Punct tokens are single characters, so `includes` tests one bracket.)
 */
const FORWARD = { step: 1, deeper: "([", ends: ")]" } as const;
const BACKWARD = { step: -1, deeper: ")]", ends: "([" } as const;

/** Index of the bracket closing the one at `open`, or -1 when unbalanced. */
export function matchingClose(toks: readonly Token[], open: number): number {
  return matchingBracket(toks, open, toks.length - 1, FORWARD);
}

/** Index of the bracket opening the one at `close`, looking no further back than `from`; or -1. */
export function matchingOpen(toks: readonly Token[], close: number, from: number): number {
  return matchingBracket(toks, close, from, BACKWARD);
}

/** Walks from `at` to `last` (the way `brackets` says) to where the bracket at `at` ends its level; -1 if nowhere. */
function matchingBracket(
  toks: readonly Token[],
  at: number,
  last: number,
  brackets: typeof FORWARD | typeof BACKWARD,
): number {
  const { step } = brackets;
  let depth = 0;
  for (let i = at; step * (last - i) >= 0; i += step) {
    const t = toks[i]!;
    if (t.kind !== "punct") continue;
    if (brackets.deeper.includes(t.text)) depth++;
    else if (brackets.ends.includes(t.text)) {
      depth--;
      if (depth === 0) return i;
      if (depth < 0) return -1;
    }
  }
  return -1;
}

/** Splits at top-level semicolons; empty statements are dropped. */
export function splitTokens(toks: readonly Token[]): Token[][] {
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

export interface ParseTree {
  stmts?: { stmt?: Record<string, Record<string, unknown> | undefined> }[];
}

export function syntaxErrorAt(sql: string, t: Token | undefined): PgError {
  if (t === undefined) {
    return new PgError(SqlState.syntaxError, "syntax error at end of input", {
      position: positionOf(sql, sql.length),
    });
  }
  return new PgError(SqlState.syntaxError, `syntax error at or near "${t.text}"`, {
    position: positionOf(sql, t.start),
  });
}

export function foldIdent(text: string): string {
  if (text.startsWith('"')) return text.slice(1, -1).replace(/""/g, '"');
  // PostgreSQL folds only ASCII letters in unquoted identifiers.
  return text.replace(/[A-Z]+/g, (s) => s.toLowerCase());
}

/** Decodes a literal with the real parser, so E'', U&'', $$ and continuation lines all work. */
export function decodeStringLiteral(toks: readonly Token[], from: number, to: number): string | undefined {
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
