// numeric_send bytes → Decimal128 limbs, checked against a BigInt oracle written from the
// documented binary format (not from the encoder's code).
import { describe, expect, it } from "vitest";
import {
  NumericStatus,
  numericToDecimal128,
  numericToText,
  numericTypmod,
} from "../../src/encoders/parquet/numeric.js";

/** PostgreSQL's binary numeric for a decimal literal, the way numeric_send lays it out. */
function numericBinary(text: string): Buffer {
  const special: Record<string, number> = { NaN: 0xc000, Infinity: 0xd000, "-Infinity": 0xf000 };
  if (text in special) {
    const b = Buffer.alloc(8);
    b.writeUInt16BE(special[text]!, 4);
    return b;
  }
  const neg = text.startsWith("-");
  const [intRaw = "", fracRaw = ""] = text.replace(/^-/, "").split(".");
  const dscale = fracRaw.length;
  const intPart = intRaw.replace(/^0+/, "");
  const intPadded = intPart.padStart(Math.ceil(intPart.length / 4) * 4, "0");
  const fracPadded = fracRaw.padEnd(Math.ceil(fracRaw.length / 4) * 4, "0");
  let groups: number[] = [];
  for (let i = 0; i < intPadded.length; i += 4) groups.push(Number(intPadded.slice(i, i + 4)));
  let weight = groups.length - 1;
  for (let i = 0; i < fracPadded.length; i += 4) groups.push(Number(fracPadded.slice(i, i + 4)));
  while (groups.length > 0 && groups[0] === 0) {
    groups.shift();
    weight--;
  }
  while (groups.length > 0 && groups[groups.length - 1] === 0) groups.pop();
  if (groups.length === 0) {
    weight = 0;
    groups = [];
  }
  const b = Buffer.alloc(8 + 2 * groups.length);
  b.writeInt16BE(groups.length, 0);
  b.writeInt16BE(weight, 2);
  b.writeUInt16BE(neg && groups.length > 0 ? 0x4000 : 0, 4);
  b.writeInt16BE(dscale, 6);
  groups.forEach((g, i) => {
    b.writeInt16BE(g, 8 + 2 * i);
  });
  return b;
}

/** Expected status and two's-complement limbs via BigInt. */
function oracle(text: string, scale: number): { status: NumericStatus; limbs?: number[] } {
  if (/^-?(NaN|Infinity)$/.test(text)) return { status: NumericStatus.Special };
  const neg = text.startsWith("-");
  const [intRaw = "", fracRaw = ""] = text.replace(/^-/, "").split(".");
  const intDigits = intRaw.replace(/^0+/, "").length;
  const kept = fracRaw.slice(0, scale).padEnd(scale, "0");
  const dropped = fracRaw.slice(scale);
  if (intDigits > 0 && intDigits + scale > 38) return { status: NumericStatus.Overflow };
  if (/[1-9]/.test(dropped)) return { status: NumericStatus.Fraction };
  let n = BigInt((intRaw || "0") + kept);
  if (neg) n = -n;
  const u = BigInt.asUintN(128, n);
  const limbs = [0, 1, 2, 3].map((k) => Number((u >> BigInt(32 * k)) & 0xffffffffn));
  return { status: NumericStatus.Ok, limbs };
}

function convert(text: string, scale: number): { status: NumericStatus; limbs: number[] } {
  const b = numericBinary(text);
  const out = new Uint32Array(8).fill(0xdeadbeef);
  const status = numericToDecimal128(b, 0, b.length, scale, out, 2);
  return { status, limbs: Array.from(out.subarray(2, 6)) };
}

const CASES: Array<[string, number]> = [
  ["0", 0],
  ["0", 10],
  ["0.000", 2],
  ["1", 0],
  ["-1", 0],
  ["1", 38],
  ["12.5", 10],
  ["-12.5", 10],
  ["12.5", 1],
  ["12.5", 0],
  ["0.0000000001", 10],
  ["-0.0000000001", 10],
  ["0.00000000001", 10],
  ["0.10000000000", 10], // trailing zeros beyond the scale are fine
  ["10000", 0],
  ["10000", 10],
  ["100000000", 2],
  ["1000000000000000000000000000", 10],
  ["10000000000000000000000000000", 10], // 29 + 10 digits
  ["99999999999999999999999999999999999999", 0],
  ["-99999999999999999999999999999999999999", 0],
  ["100000000000000000000000000000000000000", 0],
  ["0.99999999999999999999999999999999999999", 38],
  ["-0.99999999999999999999999999999999999999", 38],
  ["1.5", 38],
  ["1234567890123456789012345678.1234567890", 10],
  ["-1234567890123456789012345678.1234567890", 10],
  ["1234567890123456789012345678.12345678901", 10],
  ["4294967295", 0],
  ["4294967296", 0],
  ["-4294967296", 0],
  ["18446744073709551616", 0],
  ["-18446744073709551616", 0],
  ["79228162514264337593543950336", 0], // 2^96
  ["-79228162514264337593543950336", 0],
  ["900719925474099.1", 1], // beyond 2^53 once scaled
  ["123.456", 2],
  ["123.450", 2],
  ["0.05", 1],
  ["0.5", 1],
  ["NaN", 10],
  ["Infinity", 10],
  ["-Infinity", 0],
];

/** The conversion agrees with the BigInt oracle: same status, and the same limbs when it is Ok. */
function expectAsOracle(text: string, scale: number): void {
  const exp = oracle(text, scale);
  const got = convert(text, scale);
  expect(got.status, `${text} @${scale}`).toBe(exp.status);
  if (exp.status === NumericStatus.Ok) expect(got.limbs, `${text} @${scale}`).toEqual(exp.limbs);
}

/** A seeded generator (an LCG), so a failing value is the same on every run. */
function seeded(seed: number): { rand: (n: number) => number; digits: (n: number) => string } {
  const rand = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  return { rand, digits: (n) => Array.from({ length: n }, () => String(rand(10))).join("") };
}

describe("numericToDecimal128", () => {
  it.each(CASES)("%s at scale %i", (text, scale) => {
    expectAsOracle(text, scale);
  });

  it("agrees with the BigInt oracle on 20000 random values and scales", () => {
    const { rand, digits } = seeded(12345);
    for (let k = 0; k < 20000; k++) {
      const int = digits(rand(40));
      const frac = digits(rand(42));
      const text = `${rand(2) ? "-" : ""}${int || "0"}${frac ? `.${frac}` : ""}`;
      const scale = rand(39);
      expectAsOracle(text, scale);
    }
  });

  // Values whose unscaled integer has at most 15 digits take a shorter path (one double); these
  // sit on both sides of its limits: 15/16 digits, 2^32, 2^53, a last base-10000 digit that
  // reaches 1..3 decimal digits below the scale, and negatives (two's complement in all limbs).
  it.each([
    ["999999999999999", 0],
    ["-999999999999999", 0],
    ["1000000000000000", 0],
    ["-1000000000000000", 0],
    ["9007199254740991", 0],
    ["9007199254740993", 0],
    ["-9007199254740993", 0],
    ["4294967295", 0],
    ["-4294967295", 0],
    ["-4294967296", 0],
    ["-4294967297", 0],
    ["9999999999999.99", 2],
    ["-9999999999999.99", 2],
    ["99999999999999.99", 2],
    ["0.01", 2],
    ["-0.01", 2],
    ["0.001", 2],
    ["0.0010", 3],
    ["12.3", 1],
    ["12.34", 1],
    ["12.345", 3],
    ["-12.3456", 3],
    ["1234.5678", 4],
    ["1234.5678", 5],
    ["1", 14],
    ["9", 14],
    ["10", 14],
    ["1", 15],
    ["-1", 15],
    ["0.1", 15],
    ["0.000000000000001", 15],
    ["0.0000000000000001", 15],
    ["42949.67296", 5],
    ["-42949.67296", 5],
    ["12345678.9012345", 7],
    ["1234567.89012345", 8],
  ] as Array<[string, number]>)("short path: %s at scale %i", (text, scale) => {
    expectAsOracle(text, scale);
  });

  it("agrees with the BigInt oracle on 20000 random values of up to 18 digits", () => {
    const { rand, digits } = seeded(777);
    for (let k = 0; k < 20000; k++) {
      const scale = rand(19);
      const int = digits(rand(18 - Math.min(scale, 17)));
      // Mostly no more fractional digits than the scale (the common case), sometimes more.
      const frac = digits(rand(10) === 0 ? rand(scale + 4) : rand(scale + 1));
      const text = `${rand(2) ? "-" : ""}${int || "0"}${frac ? `.${frac}` : ""}`;
      expectAsOracle(text, scale);
    }
  });

  it("accepts leading zero digits a sender might include", () => {
    // 0000 0012 . 5000 with weight 1: value 12.5.
    const b = Buffer.from([0, 3, 0, 1, 0, 0, 0, 1, 0, 0, 0, 12, 0x13, 0x88]);
    const out = new Uint32Array(4);
    expect(numericToDecimal128(b, 0, b.length, 1, out, 0)).toBe(NumericStatus.Ok);
    expect(Array.from(out)).toEqual([125, 0, 0, 0]);
  });

  it("rejects truncated input", () => {
    expect(() => numericToDecimal128(Buffer.alloc(4), 0, 4, 2, new Uint32Array(4), 0)).toThrow(RangeError);
    const b = numericBinary("12.5");
    expect(() => numericToDecimal128(b, 0, b.length - 2, 2, new Uint32Array(4), 0)).toThrow(RangeError);
  });
});

describe("numericToText (for error messages)", () => {
  it.each([
    "0",
    "1",
    "-1",
    "12.5",
    "0.0000000001",
    "10000",
    "1e27",
    "-0.99999999999999999999999999999999999999",
    "123.450",
    "NaN",
    "Infinity",
    "-Infinity",
  ])("%s", (text) => {
    const t = text === "1e27" ? `1${"0".repeat(27)}` : text;
    const b = numericBinary(t);
    expect(numericToText(b, 0, b.length)).toBe(t);
  });
});

describe("numericTypmod", () => {
  const typmod = (p: number, s: number): number => ((p << 16) | (s & 0x7ff)) + 4;
  it("decodes precision and scale, including PostgreSQL 15's negative scales", () => {
    expect(numericTypmod(655366)).toEqual({ precision: 10, scale: 2 }); // seen from a real server
    expect(numericTypmod(typmod(38, 38))).toEqual({ precision: 38, scale: 38 });
    expect(numericTypmod(typmod(5, -2))).toEqual({ precision: 5, scale: -2 });
    expect(numericTypmod(typmod(1000, 1000))).toEqual({ precision: 1000, scale: 1000 });
    expect(numericTypmod(-1)).toBeNull();
  });
});
