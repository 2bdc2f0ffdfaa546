// bench/start-cpu.ts's rows: the proxy's warm-up export's synthetic rows and spec
// (src/encoders/worker/encoder-warm-up.ts, which keeps them to itself), as PostgreSQL sends them.
import type { EncoderSpec } from "../../src/encoders/create-encoder.js";
import type { ColumnInfo } from "../../src/encoders/types.js";

const COLUMNS: readonly ColumnInfo[] = [
  { name: "i4", typeOid: 23, typeMod: -1 },
  { name: "i8", typeOid: 20, typeMod: -1 },
  { name: "t", typeOid: 25, typeMod: -1 },
  { name: "n", typeOid: 1700, typeMod: ((12 << 16) | 2) + 4 },
  { name: "ts", typeOid: 1184, typeMod: -1 },
  { name: "b", typeOid: 16, typeMod: -1 },
  { name: "f8", typeOid: 701, typeMod: -1 },
  { name: "d", typeOid: 1082, typeMod: -1 },
];

const ROW_BYTES = 7 + 8 * 4 + (4 + 8 + 8 + 12 + 8 + 1 + 8 + 4);

/**
 * The synthetic rows as PostgreSQL sends them: whole DataRow messages, binary values, written in
 * place into one buffer (this runs on the relay's thread: no allocation per value).
 */
export function syntheticRowsForBench(n: number): Buffer {
  const b = Buffer.alloc(n * ROW_BYTES);
  let at = 0;
  const field = (len: number): number => {
    b.writeInt32BE(len, at);
    at += 4 + len;
    return at - len;
  };
  for (let i = 0; i < n; i++) {
    b[at] = 0x44; // 'D'
    b.writeInt32BE(ROW_BYTES - 1, at + 1);
    b.writeInt16BE(COLUMNS.length, at + 5);
    at += 7;
    b.writeInt32BE(i, field(4));
    b.writeBigInt64BE(BigInt(i) * 1_000_003n, field(8));
    b.write(`label ${String(i % 97).padStart(2, "0")}`, field(8), "latin1");
    // numeric(12,2) 1..9999 + .01..0.99: ndigits 2, weight 0, sign +, dscale 2, base-10000 digits.
    const num = field(12);
    b.writeInt16BE(2, num);
    b.writeInt16BE(2, num + 6);
    b.writeInt16BE((i % 9999) + 1, num + 8);
    b.writeInt16BE(((i % 99) + 1) * 100, num + 10);
    b.writeBigInt64BE(757_382_400_000_000n + BigInt(i) * 1_000_000n, field(8));
    b[field(1)] = i & 1;
    b.writeDoubleBE(i / 7, field(8));
    b.writeInt32BE(8766 + (i % 366), field(4));
  }
  return b;
}

export const warmUpSpec: EncoderSpec = {
  format: "parquet",
  options: { compression: "snappy", maxFileSize: 64 << 20, columns: COLUMNS },
};
