// The checks of a recognised COPY ... TO's pieces the way Materialize and PostgreSQL would refuse
// them: the target's token structure and expression (no subqueries, no mz_now()), the inner
// query (SELECT only, no parameters, no top-level ORDER BY) through the real parser, whose errors
// are mapped back to positions in the whole statement.
import { parseSync } from "libpg-query";
import { PgError, SqlState } from "../errors.js";
import {
  foldIdent,
  isKeyword,
  isPunct,
  type ParseTree,
  positionOf,
  syntaxErrorAt,
  type Token,
} from "./sql-tokens.js";
import type { SqlDialect } from "./statement.js";

export function checkTargetTokens(sql: string, toks: readonly Token[], from: number, to: number): void {
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

export function checkTargetExpression(sql: string, toks: readonly Token[], from: number, to: number): string {
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
export function highestParam(toks: readonly Token[], from: number, to: number): number {
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

export function checkQuery(
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
