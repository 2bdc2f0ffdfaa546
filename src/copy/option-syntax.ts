// The option list after a COPY ... TO target, `[WITH] (NAME [=] value, ...)`, in Materialize's
// syntax (multi-word names such as MAX FILE SIZE, `=` optional) as well as PostgreSQL's: names
// and raw values; their meaning is options.ts's.
import { COPY_OPTION_NAMES, type RawCopyOption, type RawOptionValue } from "./options.js";
import {
  decodeStringLiteral,
  foldIdent,
  isKeyword,
  isPunct,
  matchingClose,
  positionOf,
  syntaxErrorAt,
  type Token,
} from "./sql-tokens.js";

const OPTION_WORDS: readonly (readonly string[])[] = COPY_OPTION_NAMES.map((n) => n.split(" ")).sort(
  (a, b) => b.length - a.length,
);

export function parseOptionList(sql: string, toks: readonly Token[], from: number): RawCopyOption[] {
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
