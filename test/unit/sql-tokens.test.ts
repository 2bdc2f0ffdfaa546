import { beforeAll, expect, test } from "vitest";
import { initParser, matchingClose, matchingOpen, tokenize } from "../../src/copy/sql-tokens.js";

beforeAll(async () => {
  await initParser();
});

const toks = (sql: string) => tokenize(sql)!;
const at = (sql: string, text: string, nth = 0): number => {
  const ts = toks(sql);
  const hits = ts.flatMap((t, i) => (t.text === text ? [i] : []));
  return hits[nth]!;
};

// Both directions share one walk (matchingBracket): each is checked on nesting of both bracket
// kinds, on brackets inside strings (one token, not punct), and on running out of tokens.
const NESTED = "f(a[1], (b), ')') x";

test("matchingClose finds the bracket that closes the one given", () => {
  expect(matchingClose(toks(NESTED), at(NESTED, "("))).toBe(at(NESTED, ")", 1));
  expect(matchingClose(toks(NESTED), at(NESTED, "["))).toBe(at(NESTED, "]"));
  expect(matchingClose(toks("(a (b)"), 0)).toBe(-1);
  expect(matchingClose(toks("(a))"), 0)).toBe(2);
  expect(matchingClose([], 0)).toBe(-1);
  // Not at an opening bracket: the level ends before anything could match.
  expect(matchingClose(toks("a) ((b)"), 0)).toBe(-1);
});

test("matchingOpen finds the bracket that opens the one given, no further back than `from`", () => {
  const close = at(NESTED, ")", 1);
  expect(matchingOpen(toks(NESTED), close, 0)).toBe(at(NESTED, "("));
  expect(matchingOpen(toks(NESTED), at(NESTED, "]"), 0)).toBe(at(NESTED, "["));
  // The opening bracket lies before `from`.
  expect(matchingOpen(toks(NESTED), close, at(NESTED, "(") + 1)).toBe(-1);
  expect(matchingOpen(toks("a (b)) c"), 4, 0)).toBe(-1);
  expect(matchingOpen(toks("((b)"), 3, 0)).toBe(1);
  // Not at a closing bracket: -1, as matchingClose (before the shared walk it went on and matched).
  expect(matchingOpen(toks("(b)) x ("), 5, 0)).toBe(-1);
});
