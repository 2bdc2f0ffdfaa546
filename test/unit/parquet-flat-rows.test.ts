// The one-pass decode of flat columns (src/encoders/parquet/flat-rows.ts) against the encoder's
// general two-pass path: for every flat type, with NULLs, long values and row groups of varying
// size, the two write byte-identical Parquet files; and a row the one pass does not take fails
// with the general path's error.
import { describe, expect, it } from "vitest";
import { parquetEncoderTestHooks } from "../../src/encoders/parquet/encoder.js";
import { createParquetEncoder } from "../../src/encoders/parquet-encoder.js";
import type { ColumnInfo, FileSink } from "../../src/encoders/types.js";
import { PgError } from "../../src/errors.js";

const COLUMNS: ColumnInfo[] = [
  { name: "i2", typeOid: 21, typeMod: -1 },
  { name: "i4", typeOid: 23, typeMod: -1 },
  { name: "i8", typeOid: 20, typeMod: -1 },
  { name: "f4", typeOid: 700, typeMod: -1 },
  { name: "f8", typeOid: 701, typeMod: -1 },
  { name: "n", typeOid: 1700, typeMod: ((38 << 16) | 4) + 4 },
  { name: "t", typeOid: 25, typeMod: -1 },
  { name: "vc", typeOid: 1043, typeMod: 300 + 4 },
  { name: "by", typeOid: 17, typeMod: -1 },
  { name: "b", typeOid: 16, typeMod: -1 },
  { name: "d", typeOid: 1082, typeMod: -1 },
  { name: "ts", typeOid: 1114, typeMod: -1 },
  { name: "tz", typeOid: 1184, typeMod: -1 },
  { name: "tm", typeOid: 1083, typeMod: -1 },
  { name: "nn", typeOid: 23, typeMod: -1, nullable: false },
];

function seeded(seed: number): (n: number) => number {
  let s = seed;
  return (n) => {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    return (s >>> 8) % n;
  };
}

/** Binary numeric of ±digits·10^-4 (at most 4 fractional digits: the column's scale holds it). */
function numeric(rand: (n: number) => number): Buffer {
  const groups = Array.from({ length: 1 + rand(6) }, () => rand(10000));
  while (groups.length > 0 && groups[0] === 0) groups.shift();
  while (groups.length > 0 && groups[groups.length - 1] === 0) groups.pop();
  // Last group's weight -1 (the 4 fractional digits) or more.
  const weight = groups.length - 2 + rand(3);
  const b = Buffer.alloc(8 + 2 * groups.length);
  b.writeInt16BE(groups.length, 0);
  b.writeInt16BE(groups.length === 0 ? 0 : weight, 2);
  b.writeUInt16BE(groups.length > 0 && rand(2) === 0 ? 0x4000 : 0, 4);
  b.writeInt16BE(4, 6);
  groups.forEach((g, i) => {
    b.writeInt16BE(g, 8 + 2 * i);
  });
  return b;
}

function text(rand: (n: number) => number, max: number): Buffer {
  const n = rand(10) === 0 ? 200 + rand(max - 200) : rand(40);
  return Buffer.from(Array.from({ length: n }, () => 97 + rand(26)));
}

/** Values of one row (null: NULL), in COLUMNS' order. */
function rowValues(rand: (n: number) => number): Array<Buffer | null> {
  const word = (n: number): Buffer => {
    const b = Buffer.alloc(n);
    for (let i = 0; i < n; i++) b[i] = rand(256);
    return b;
  };
  const i32 = (v: number): Buffer => {
    const b = Buffer.alloc(4);
    b.writeInt32BE(v);
    return b;
  };
  const i64 = (hi: number, lo: number): Buffer => {
    const b = Buffer.alloc(8);
    b.writeInt32BE(hi);
    b.writeUInt32BE(lo, 4);
    return b;
  };
  // Timestamps across 1970 and 2000, lows near the carry into the high word.
  const ts = (): Buffer => i64(rand(2) === 0 ? -rand(300000) : rand(300000), 0xffffffff - rand(1 << 30) * 4);
  const values: Array<Buffer | null> = [
    word(2),
    word(4),
    word(8),
    word(4),
    word(8),
    numeric(rand),
    text(rand, 2000),
    text(rand, 300),
    word(rand(8) === 0 ? 300 + rand(500) : rand(24)),
    Buffer.from([rand(3) === 0 ? 0 : rand(2) === 0 ? 1 : 1 + rand(255)]),
    i32(rand(2) === 0 ? -rand(1 << 20) : rand(1 << 20)),
    ts(),
    ts(),
    i64(rand(21), rand(1 << 30)),
    word(4),
  ];
  // NULLs in every nullable column, in runs that come and go.
  return values.map((v, i) => (i < values.length - 1 && rand(7) === 0 ? null : v));
}

function message(values: Array<Buffer | null>): Buffer {
  const body = values.reduce((n, v) => n + 4 + (v?.length ?? 0), 2);
  const m = Buffer.alloc(1 + 4 + body);
  m[0] = 0x44;
  m.writeInt32BE(4 + body, 1);
  m.writeInt16BE(values.length, 5);
  let p = 7;
  for (const v of values) {
    m.writeInt32BE(v === null ? -1 : v.length, p);
    p += 4;
    if (v !== null) p += v.copy(m, p);
  }
  return m;
}

class BytesSink implements FileSink {
  readonly chunks: Buffer[] = [];
  openFile(): void {}
  write(chunk: Uint8Array): void {
    this.chunks.push(Buffer.from(chunk));
  }
  closeFile(): void {}
}

/** The runs written through one path or the other; the Parquet bytes. */
async function encode(runs: Buffer[], twoPass: boolean, rowGroupSize: number): Promise<Buffer> {
  const sink = new BytesSink();
  const enc = await createParquetEncoder(
    { compression: "snappy", maxFileSize: 256 << 20, columns: COLUMNS, rowGroupSize },
    sink,
  );
  parquetEncoderTestHooks.twoPass = twoPass;
  try {
    for (const run of runs) {
      // At an odd offset inside a bigger buffer, as a piece of the ring is.
      const buf = Buffer.concat([Buffer.alloc(3, 0xee), run, Buffer.alloc(5, 0xee)]);
      enc.writeRows(buf, 3, 3 + run.length);
      if (enc.wantsFlush) await enc.flush();
    }
    await enc.finish();
  } finally {
    parquetEncoderTestHooks.twoPass = false;
    enc.dispose();
  }
  return Buffer.concat(sink.chunks);
}

describe("flat columns in one pass", () => {
  it("writes the files the general path writes: every flat type, NULLs, long values, varying row groups", async () => {
    const rand = seeded(7);
    const runs: Buffer[] = [];
    for (let r = 0; r < 120; r++) {
      runs.push(Buffer.concat(Array.from({ length: 1 + rand(60) }, () => message(rowValues(rand)))));
    }
    for (const rowGroupSize of [1000, 64]) {
      const one = await encode(runs, false, rowGroupSize);
      const two = await encode(runs, true, rowGroupSize);
      expect(one.length).toBeGreaterThan(10000);
      expect(one.equals(two)).toBe(true);
    }
  });

  it("a row it does not take fails as the general path fails it, after the rows before it", async () => {
    const rand = seeded(11);
    const good = (): Buffer => message(rowValues(rand));
    const withValue = (i: number, v: Buffer | null): Buffer => {
      const values = rowValues(rand);
      values[i] = v;
      return message(values);
    };
    const i32 = (v: number): Buffer => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(v);
      return b;
    };
    const nan = Buffer.alloc(8);
    nan.writeUInt16BE(0xc000, 4);
    const infinity = Buffer.from([0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff]);
    const truncated = good().subarray(0, -1);
    truncated.writeInt32BE(truncated.length - 1, 1);
    const bad: Array<[string, Buffer]> = [
      ["short int4", withValue(1, Buffer.alloc(3))],
      ["NULL in NOT NULL", withValue(14, null)],
      ["numeric NaN", withValue(5, nan)],
      ["numeric beyond the scale", withValue(5, Buffer.from([0, 1, 0xff, 0xfe, 0, 0, 0, 8, 0, 7]))],
      ["infinite date", withValue(10, i32(0x7fffffff))],
      ["infinite timestamp", withValue(11, infinity)],
      ["boolean of 2 bytes", withValue(9, Buffer.alloc(2))],
      ["fields past the message", truncated],
    ];
    for (const [what, row] of bad) {
      const run = Buffer.concat([good(), good(), row, good()]);
      const errors: unknown[] = [];
      for (const twoPass of [false, true]) {
        try {
          await encode([run], twoPass, 1000);
          errors.push(null);
        } catch (e) {
          errors.push(e);
        }
      }
      const [one, two] = errors as [PgError, PgError];
      expect(one, what).toBeInstanceOf(PgError);
      expect([one.code, one.message], what).toEqual([two.code, two.message]);
    }
  });
});
