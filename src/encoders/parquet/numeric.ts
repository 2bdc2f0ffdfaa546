// PostgreSQL binary numeric → Arrow Decimal128 (128-bit two's complement, little-endian limbs).
//
// Binary numeric (numeric_send): int16 ndigits, int16 weight, uint16 sign, int16 dscale, then
// ndigits base-10000 digits, most significant first; the value is Σ d[i]·10000^(weight-i).
// PostgreSQL strips leading and trailing zero digits, so `ndigits` is small for typical values.
//
// The unscaled integer N = value·10^scale is built with Horner's rule on four 32-bit limbs held in
// doubles (limb·10^4 + carry < 2^47, exact), so no BigInt is allocated per value. Most values
// (money, quantities: N < 10^15 < 2^53) take a shorter path first: N as one double, split into
// the two low limbs, the upper two limbs being the sign's extension.

export const NUMERIC_POS = 0x0000;
export const NUMERIC_NEG = 0x4000;
export const NUMERIC_NAN = 0xc000;
export const NUMERIC_PINF = 0xd000;
export const NUMERIC_NINF = 0xf000;

/** Decimal128 holds at most 38 decimal digits. */
export const DECIMAL_MAX_PRECISION = 38;

export enum NumericStatus {
  Ok = 0,
  /** NaN or ±Infinity. */
  Special = 1,
  /** |value|·10^scale needs more than 38 digits. */
  Overflow = 2,
  /** The value has non-zero digits beyond the column's scale. */
  Fraction = 3,
}

const TWO32 = 4294967296;
const POW10 = [1, 10, 100, 1000, 10000];
/** Powers of ten exact as doubles, up to the short path's largest exponent (14). */
const POW10_SHORT = [1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14];
/** Digits of N that the short path holds exactly in one double (10^15 < 2^53). */
const SHORT_DIGITS = 15;

function decimalDigits(d: number): number {
  return d >= 1000 ? 4 : d >= 100 ? 3 : d >= 10 ? 2 : 1;
}

/**
 * Writes the Decimal128 value of the binary numeric at `buf[pos..pos+len)` with `scale` into
 * `out[o..o+4)` (least significant limb first). Returns a NumericStatus; `out` is only meaningful
 * when the status is Ok.
 */
export function numericToDecimal128(
  buf: Uint8Array,
  pos: number,
  len: number,
  scale: number,
  out: Uint32Array,
  o: number,
): NumericStatus {
  if (len < 8) throw new RangeError(`binary numeric too short (${len} bytes)`);
  const ndigits = (buf[pos]! << 8) | buf[pos + 1]!;
  const weight = (((buf[pos + 2]! << 8) | buf[pos + 3]!) << 16) >> 16;
  const sign = (buf[pos + 4]! << 8) | buf[pos + 5]!;
  if (sign !== NUMERIC_POS && sign !== NUMERIC_NEG) return NumericStatus.Special;
  if (len < 8 + 2 * ndigits) throw new RangeError("binary numeric truncated");
  let p = pos + 8;
  if (ndigits > 0) {
    const d0 = (buf[p]! << 8) | buf[p + 1]!;
    // Exponent of the last digit once scaled: digits before it have exponents ≥ eLast + 4 > 0,
    // so only the last one can reach below the scale (and then by at most three decimal digits).
    const eLast = 4 * (weight - ndigits + 1) + scale;
    if (d0 !== 0 && eLast > -4 && 4 * weight + decimalDigits(d0) + scale <= SHORT_DIGITS) {
      // Horner over every digit but the last: at most 14 decimal digits, exact.
      let v = 0;
      const lastAt = p + 2 * (ndigits - 1);
      for (let q = p; q < lastAt; q += 2) v = v * 10000 + ((buf[q]! << 8) | buf[q + 1]!);
      const last = (buf[lastAt]! << 8) | buf[lastAt + 1]!;
      if (eLast >= 0) {
        v = (v * 10000 + last) * POW10_SHORT[eLast]!;
      } else {
        // The last digit reaches below the scale: its dropped decimal digits must be zero.
        const drop = POW10[-eLast]!;
        if (last % drop !== 0) return NumericStatus.Fraction;
        v = v * POW10[4 + eLast]! + last / drop;
      }
      const s = sign === NUMERIC_NEG ? -v : v;
      const hi = Math.floor(s / TWO32); // exact: a power of two
      out[o] = s - hi * TWO32;
      out[o + 1] = hi >>> 0;
      const ext = hi < 0 ? 0xffffffff : 0;
      out[o + 2] = ext;
      out[o + 3] = ext;
      return NumericStatus.Ok;
    }
  }
  // Skip leading zero digits (PostgreSQL does not send them, but be liberal in what we accept).
  let first = 0;
  while (first < ndigits && ((buf[p + 2 * first]! << 8) | buf[p + 2 * first + 1]!) === 0) first++;
  if (first === ndigits) {
    out[o] = 0;
    out[o + 1] = 0;
    out[o + 2] = 0;
    out[o + 3] = 0;
    return NumericStatus.Ok;
  }
  const w0 = weight - first;
  p += 2 * first;
  const n = ndigits - first;
  const d0 = (buf[p]! << 8) | buf[p + 1]!;
  // Digits of the integer part of |value|·10^scale; the leading base-10000 digit d0 has weight w0.
  const totalDigits = 4 * w0 + decimalDigits(d0) + scale;
  if (totalDigits > DECIMAL_MAX_PRECISION) return NumericStatus.Overflow;

  // Horner over the digits that land at or above 10^0 after scaling. Exponent of digit i is
  // e_i = 4·(w0 - i) + scale.
  let l0 = 0;
  let l1 = 0;
  let l2 = 0;
  let l3 = 0;
  let small = true; // value still held exactly in l0 as a double (< 2^53)
  let lastE = 0;
  let i = 0;
  for (; i < n; i++) {
    const e = 4 * (w0 - i) + scale;
    let d = (buf[p + 2 * i]! << 8) | buf[p + 2 * i + 1]!;
    let mul = 10000;
    if (e < 0) {
      if (e <= -4) {
        if (d !== 0) return NumericStatus.Fraction;
        continue;
      }
      // Partial digit: keep its top 4+e decimal digits, the rest must be zero.
      const drop = POW10[-e]!;
      if (d % drop !== 0) return NumericStatus.Fraction;
      d = d / drop;
      mul = POW10[4 + e]!;
    }
    if (i === 0) {
      l0 = d;
    } else if (small && l0 < 9e11) {
      l0 = l0 * mul + d;
    } else {
      if (small) {
        l1 = Math.floor(l0 / TWO32);
        l0 = l0 - l1 * TWO32;
        small = false;
      }
      let t = l0 * mul + d;
      let c = Math.floor(t / TWO32);
      l0 = t - c * TWO32;
      t = l1 * mul + c;
      c = Math.floor(t / TWO32);
      l1 = t - c * TWO32;
      t = l2 * mul + c;
      c = Math.floor(t / TWO32);
      l2 = t - c * TWO32;
      l3 = l3 * mul + c; // cannot overflow: the digit count was checked above
    }
    lastE = Math.max(e, 0);
    if (e <= 0) {
      i++;
      break;
    }
  }
  // Digits below the scale that were not consumed must be zero.
  for (; i < n; i++) {
    if (((buf[p + 2 * i]! << 8) | buf[p + 2 * i + 1]!) !== 0) return NumericStatus.Fraction;
  }
  // Trailing zeros PostgreSQL did not send (e.g. 10000 is one digit of weight 1).
  while (lastE > 0) {
    const k = Math.min(lastE, 4);
    const mul = POW10[k]!;
    lastE -= k;
    if (small && l0 < 9e11) {
      l0 *= mul;
      continue;
    }
    if (small) {
      l1 = Math.floor(l0 / TWO32);
      l0 = l0 - l1 * TWO32;
      small = false;
    }
    let t = l0 * mul;
    let c = Math.floor(t / TWO32);
    l0 = t - c * TWO32;
    t = l1 * mul + c;
    c = Math.floor(t / TWO32);
    l1 = t - c * TWO32;
    t = l2 * mul + c;
    c = Math.floor(t / TWO32);
    l2 = t - c * TWO32;
    l3 = l3 * mul + c;
  }
  if (small) {
    l1 = Math.floor(l0 / TWO32);
    l0 = l0 - l1 * TWO32;
  }
  if (sign === NUMERIC_NEG) {
    // Two's complement: invert and add one, carrying through the limbs.
    l0 = TWO32 - 1 - l0 + 1;
    let carry = 0;
    if (l0 === TWO32) {
      l0 = 0;
      carry = 1;
    }
    l1 = TWO32 - 1 - l1 + carry;
    carry = 0;
    if (l1 === TWO32) {
      l1 = 0;
      carry = 1;
    }
    l2 = TWO32 - 1 - l2 + carry;
    carry = 0;
    if (l2 === TWO32) {
      l2 = 0;
      carry = 1;
    }
    l3 = (TWO32 - 1 - l3 + carry) % TWO32;
  }
  out[o] = l0;
  out[o + 1] = l1;
  out[o + 2] = l2;
  out[o + 3] = l3;
  return NumericStatus.Ok;
}

/** The text form of a binary numeric, for error messages (not on the hot path). */
export function numericToText(buf: Uint8Array, pos: number, len: number): string {
  if (len < 8) return "<invalid numeric>";
  const ndigits = (buf[pos]! << 8) | buf[pos + 1]!;
  const weight = (((buf[pos + 2]! << 8) | buf[pos + 3]!) << 16) >> 16;
  const sign = (buf[pos + 4]! << 8) | buf[pos + 5]!;
  const dscale = (buf[pos + 6]! << 8) | buf[pos + 7]!;
  if (sign === NUMERIC_NAN) return "NaN";
  if (sign === NUMERIC_PINF) return "Infinity";
  if (sign === NUMERIC_NINF) return "-Infinity";
  const digits: number[] = [];
  for (let i = 0; i < ndigits; i++) digits.push((buf[pos + 8 + 2 * i]! << 8) | buf[pos + 9 + 2 * i]!);
  let int = "";
  for (let w = weight, i = 0; w >= 0; w--, i++) {
    const d = digits[i] ?? 0;
    int += i === 0 ? String(d) : String(d).padStart(4, "0");
  }
  if (int === "") int = "0";
  let frac = "";
  for (let w = -1; frac.length < dscale; w--) {
    const i = weight - w;
    const d = i >= 0 ? (digits[i] ?? 0) : 0;
    frac += String(d).padStart(4, "0");
  }
  frac = frac.slice(0, dscale);
  return (sign === NUMERIC_NEG ? "-" : "") + int.replace(/^0+(?=\d)/, "") + (dscale > 0 ? `.${frac}` : "");
}

/** Decodes a numeric typmod into precision and scale (PostgreSQL 15+ allows negative scales). */
export function numericTypmod(typmod: number): { precision: number; scale: number } | null {
  if (typmod < 4) return null;
  const t = typmod - 4;
  return { precision: (t >> 16) & 0xffff, scale: ((t & 0x7ff) ^ 1024) - 1024 };
}
