// Materialize's `list` and `map` only travel in text format (its pgwire has no binary encoding for
// them), so their columns are parsed here: the container syntax, and each element's text turned
// into the binary value the element's column builder takes.
//
// Text formats (materialize.com/docs/sql/types/list "Output format", …/map; mz_repr::strconv):
//  - list: `{e1,e2,…}`, nested lists as `{…}`, NULL as the bare word NULL; an element is wrapped in
//    double quotes when it is empty, is exactly `NULL`, or contains `{ } , " \` or whitespace, and
//    inside quotes `"` and `\` are backslash-escaped.
//  - map: `{k1=>v1,k2=>v2}`, same quoting, with `=` and `>` also forcing quotes.
// Element texts are the types' own text output (ISO dates, `t`/`f`, `\x…` bytea, …).

/** One parsed element: its text (unescaped), or null for SQL NULL. */
export type ElementText = string | null;

export class MzTextError extends Error {}

/** Splits a list value into its elements; nested lists come back as their `{…}` text. */
export function parseMzList(s: string): ElementText[] {
  const p = new Cursor(s);
  p.expect("{");
  const out: ElementText[] = [];
  p.ws();
  if (p.peek() === "}") {
    p.i++;
    p.end();
    return out;
  }
  for (;;) {
    p.ws();
    out.push(p.element(false));
    p.ws();
    const c = p.next();
    if (c === "}") break;
    if (c !== ",") throw new MzTextError(`malformed list literal: ${s}`);
  }
  p.end();
  return out;
}

/** Splits a map value into [key, value] pairs in order; nested maps/lists come back as text. */
export function parseMzMap(s: string): Array<[string, ElementText]> {
  const p = new Cursor(s);
  p.expect("{");
  const out: Array<[string, ElementText]> = [];
  p.ws();
  if (p.peek() === "}") {
    p.i++;
    p.end();
    return out;
  }
  for (;;) {
    p.ws();
    const key = p.element(true);
    if (key === null) throw new MzTextError(`map key is NULL: ${s}`);
    p.ws();
    if (p.next() !== "=" || p.next() !== ">") throw new MzTextError(`malformed map literal: ${s}`);
    p.ws();
    const value = p.element(true);
    out.push([key, value]);
    p.ws();
    const c = p.next();
    if (c === "}") break;
    if (c !== ",") throw new MzTextError(`malformed map literal: ${s}`);
  }
  p.end();
  return out;
}

class Cursor {
  i = 0;
  constructor(readonly s: string) {}
  peek(): string | undefined {
    return this.s[this.i];
  }
  next(): string | undefined {
    return this.s[this.i++];
  }
  expect(c: string): void {
    if (this.s[this.i] !== c) throw new MzTextError(`expected "${c}" in ${this.s}`);
    this.i++;
  }
  ws(): void {
    while (this.i < this.s.length && /\s/.test(this.s[this.i]!)) this.i++;
  }
  end(): void {
    this.ws();
    if (this.i !== this.s.length) throw new MzTextError(`trailing characters in ${this.s}`);
  }
  element(isMap: boolean): ElementText {
    const c = this.peek();
    if (c === undefined) throw new MzTextError(`unexpected end of ${this.s}`);
    if (c === '"') return this.quoted();
    if (c === "{") return this.embedded();
    // Unquoted: up to the next delimiter; backslash escapes the next character.
    let out = "";
    let escaped = false;
    while (this.i < this.s.length) {
      const ch = this.s[this.i]!;
      if (ch === "\\") {
        escaped = true;
        this.i++;
        if (this.i < this.s.length) out += this.s[this.i++];
        continue;
      }
      if (ch === "," || ch === "}" || (isMap && (ch === "=" || ch === ">"))) break;
      out += ch;
      this.i++;
    }
    const trimmed = out.trim();
    if (!escaped && trimmed === "NULL") return null;
    return trimmed;
  }
  private quoted(): string {
    this.i++; // opening quote
    let out = "";
    while (this.i < this.s.length) {
      const ch = this.s[this.i++]!;
      if (ch === "\\") {
        if (this.i >= this.s.length) break;
        out += this.s[this.i++];
      } else if (ch === '"') {
        return out;
      } else {
        out += ch;
      }
    }
    throw new MzTextError(`unterminated quoted element in ${this.s}`);
  }
  private embedded(): string {
    const start = this.i;
    let depth = 0;
    let inQuote = false;
    while (this.i < this.s.length) {
      const ch = this.s[this.i++]!;
      if (inQuote) {
        if (ch === "\\") this.i++;
        else if (ch === '"') inQuote = false;
      } else if (ch === '"') inQuote = true;
      else if (ch === "{") depth++;
      else if (ch === "}") {
        depth--;
        if (depth === 0) return this.s.slice(start, this.i);
      }
    }
    throw new MzTextError(`unbalanced braces in ${this.s}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Element text → the binary value (PostgreSQL/Materialize binary format) a column builder takes.

/** Element codecs whose text this module can turn into binary (or that take text as is). */
export const TEXT_ELEMENT_CODECS = new Set([
  "bool",
  "int2",
  "int4",
  "int8",
  "uint2",
  "uint4",
  "uint8",
  "float4",
  "float8",
  "numeric",
  "date",
  "time",
  "timestamp",
  "timestamptz",
  "text",
  "bytea",
  "uuid",
  "json",
  "jsonb",
  "mz_timestamp",
  "list",
  "map",
]);

const enc = new TextEncoder();

/** Binary bytes of `text` for a builder with `codec`. Throws MzTextError on malformed input. */
export function elementBinary(codec: string, text: string): Uint8Array {
  switch (codec) {
    case "text":
    case "json":
    case "mz_timestamp": // Materialize's binary mz_timestamp is its text
    case "list": // nested containers are parsed by their own builder, from text
    case "map":
      return enc.encode(text);
    case "jsonb": {
      const b = enc.encode(text);
      const out = new Uint8Array(b.length + 1);
      out[0] = 1;
      out.set(b, 1);
      return out;
    }
    case "bool":
      if (text === "t" || text === "true") return Uint8Array.of(1);
      if (text === "f" || text === "false") return Uint8Array.of(0);
      throw new MzTextError(`invalid boolean: ${text}`);
    case "int2":
      return intBytes(text, 2, -0x8000n, 0x7fffn);
    case "int4":
      return intBytes(text, 4, -0x80000000n, 0x7fffffffn);
    case "int8":
      return intBytes(text, 8, -(1n << 63n), (1n << 63n) - 1n);
    case "uint2":
      return intBytes(text, 2, 0n, 0xffffn);
    case "uint4":
      return intBytes(text, 4, 0n, 0xffffffffn);
    case "uint8":
      return intBytes(text, 8, 0n, (1n << 64n) - 1n);
    case "float4":
    case "float8": {
      const v = parseFloatText(text);
      const b = Buffer.allocUnsafe(codec === "float4" ? 4 : 8);
      if (codec === "float4") b.writeFloatBE(v, 0);
      else b.writeDoubleBE(v, 0);
      return b;
    }
    case "numeric":
      return numericBinary(text);
    case "date":
      return int32(dateDays(text));
    case "time":
      return int64(timeMicros(text));
    case "timestamp":
      return int64(timestampMicros(text, false));
    case "timestamptz":
      return int64(timestampMicros(text, true));
    case "bytea":
      if (!/^\\x([0-9a-fA-F]{2})*$/.test(text)) throw new MzTextError(`invalid bytea: ${text}`);
      return Buffer.from(text.slice(2), "hex");
    case "uuid": {
      const hex = text.replace(/-/g, "");
      if (!/^[0-9a-fA-F]{32}$/.test(hex)) throw new MzTextError(`invalid uuid: ${text}`);
      return Buffer.from(hex, "hex");
    }
    default:
      throw new MzTextError(`no text decoder for ${codec}`);
  }
}

function intBytes(text: string, width: 2 | 4 | 8, min: bigint, max: bigint): Uint8Array {
  if (!/^[+-]?\d+$/.test(text.trim())) throw new MzTextError(`invalid integer: ${text}`);
  const v = BigInt(text.trim());
  if (v < min || v > max) throw new MzTextError(`integer out of range: ${text}`);
  const b = Buffer.alloc(width);
  if (width === 8) {
    if (min < 0n) b.writeBigInt64BE(v, 0);
    else b.writeBigUInt64BE(v, 0);
  } else if (width === 4) {
    if (min < 0n) b.writeInt32BE(Number(v), 0);
    else b.writeUInt32BE(Number(v), 0);
  } else if (min < 0n) b.writeInt16BE(Number(v), 0);
  else b.writeUInt16BE(Number(v), 0);
  return b;
}

function parseFloatText(text: string): number {
  const t = text.trim();
  if (t === "NaN") return Number.NaN;
  if (t === "Infinity" || t === "inf") return Number.POSITIVE_INFINITY;
  if (t === "-Infinity" || t === "-inf") return Number.NEGATIVE_INFINITY;
  const v = Number(t);
  if (t === "" || Number.isNaN(v)) throw new MzTextError(`invalid float: ${text}`);
  return v;
}

function int32(v: number): Uint8Array {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(v, 0);
  return b;
}

function int64(v: bigint): Uint8Array {
  const b = Buffer.allocUnsafe(8);
  b.writeBigInt64BE(v, 0);
  return b;
}

/** PostgreSQL's binary numeric: ndigits, weight, sign, dscale, base-10000 digits. */
export function numericBinary(text: string): Uint8Array {
  const t = text.trim();
  const header = (ndigits: number, weight: number, sign: number, dscale: number): Buffer => {
    const b = Buffer.alloc(8 + 2 * ndigits);
    b.writeUInt16BE(ndigits, 0);
    b.writeInt16BE(weight, 2);
    b.writeUInt16BE(sign, 4);
    b.writeUInt16BE(dscale, 6);
    return b;
  };
  if (t === "NaN") return header(0, 0, 0xc000, 0);
  if (t === "Infinity") return header(0, 0, 0xd000, 0);
  if (t === "-Infinity") return header(0, 0, 0xf000, 0);
  const m = /^([+-]?)(\d*)(?:\.(\d*))?(?:[eE]([+-]?\d+))?$/.exec(t);
  if (!m || (m[2] === "" && (m[3] ?? "") === "")) throw new MzTextError(`invalid numeric: ${text}`);
  const neg = m[1] === "-";
  let intDigits = m[2]!;
  let fracDigits = m[3] ?? "";
  const exp = m[4] === undefined ? 0 : Number(m[4]);
  // Move the decimal point by the exponent.
  if (exp > 0) {
    const take = fracDigits.slice(0, exp).padEnd(exp, "0");
    intDigits += take;
    fracDigits = fracDigits.slice(exp);
  } else if (exp < 0) {
    const n = -exp;
    const padded = intDigits.padStart(n, "0");
    fracDigits = padded.slice(padded.length - n) + fracDigits;
    intDigits = padded.slice(0, padded.length - n);
  }
  intDigits = intDigits.replace(/^0+/, "");
  const dscale = fracDigits.length;
  // Group into base-10000 digits around the decimal point.
  const intPad = intDigits.padStart(Math.ceil(intDigits.length / 4) * 4, "0");
  const fracPad = fracDigits.padEnd(Math.ceil(fracDigits.length / 4) * 4, "0");
  const groups: number[] = [];
  for (let i = 0; i < intPad.length; i += 4) groups.push(Number(intPad.slice(i, i + 4)));
  const intGroups = groups.length;
  for (let i = 0; i < fracPad.length; i += 4) groups.push(Number(fracPad.slice(i, i + 4)));
  let weight = intGroups - 1;
  let start = 0;
  while (start < groups.length && groups[start] === 0) {
    start++;
    weight--;
  }
  let end = groups.length;
  while (end > start && groups[end - 1] === 0) end--;
  const digits = groups.slice(start, end);
  if (digits.length === 0) return header(0, 0, 0, dscale);
  const b = header(digits.length, weight, neg ? 0x4000 : 0, dscale);
  for (const [i, d] of digits.entries()) b.writeUInt16BE(d, 8 + 2 * i);
  return b;
}

const DAY_MS = 86_400_000;
const PG_EPOCH_DAYS = 10_957; // 2000-01-01 in days since 1970-01-01

function civilDays(y: number, m: number, d: number, bc: boolean): number {
  const year = bc ? 1 - y : y;
  const dt = new Date(0);
  dt.setUTCFullYear(year, m - 1, d);
  return Math.round(dt.getTime() / DAY_MS);
}

/** `YYYY-MM-DD[ BC]` → days since 2000-01-01. */
export function dateDays(text: string): number {
  const m = /^(\d{4,})-(\d\d)-(\d\d)( BC)?$/.exec(text.trim());
  if (!m) throw new MzTextError(`invalid date: ${text}`);
  return civilDays(Number(m[1]), Number(m[2]), Number(m[3]), m[4] !== undefined) - PG_EPOCH_DAYS;
}

function clockMicros(h: string, mi: string, s: string, frac: string | undefined): bigint {
  const us = frac === undefined ? 0 : Number(frac.padEnd(6, "0").slice(0, 6));
  return ((BigInt(h) * 60n + BigInt(mi)) * 60n + BigInt(s)) * 1_000_000n + BigInt(us);
}

/** `HH:MM:SS[.ffffff]` → microseconds since midnight. */
export function timeMicros(text: string): bigint {
  const m = /^(\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?$/.exec(text.trim());
  if (!m) throw new MzTextError(`invalid time: ${text}`);
  return clockMicros(m[1]!, m[2]!, m[3]!, m[4]);
}

/** `YYYY-MM-DD HH:MM:SS[.ffffff][±HH[:MM]][ BC]` → microseconds since 2000-01-01 00:00 (UTC). */
export function timestampMicros(text: string, tz: boolean): bigint {
  const m =
    /^(\d{4,})-(\d\d)-(\d\d)[ T](\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?(?:([+-])(\d\d)(?::?(\d\d))?(?::?(\d\d))?)?( BC)?$/.exec(
      text.trim(),
    );
  if (!m) throw new MzTextError(`invalid timestamp: ${text}`);
  const days = civilDays(Number(m[1]), Number(m[2]), Number(m[3]), m[12] !== undefined) - PG_EPOCH_DAYS;
  let us = BigInt(days) * 86_400_000_000n + clockMicros(m[4]!, m[5]!, m[6]!, m[7]);
  if (m[8] !== undefined) {
    if (!tz) throw new MzTextError(`unexpected time zone in timestamp: ${text}`);
    const off = ((Number(m[9]) * 60 + Number(m[10] ?? 0)) * 60 + Number(m[11] ?? 0)) * 1_000_000;
    us += m[8] === "+" ? -BigInt(off) : BigInt(off);
  }
  return us;
}
