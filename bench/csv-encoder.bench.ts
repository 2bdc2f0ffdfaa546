// Micro benchmark of the CSV encoder on synthetic DataRows shaped like bench/export.ts's table (the
// same 8 columns and values: int, bigint, md5 text with NULLs and quoted values, numeric(12,2),
// timestamptz, bool, float8, date), fed as whole DataRow runs the way the encoder thread gets them,
// against a baseline that only copies each row's DataRow bytes into a 1 MiB output buffer (the
// least any row-at-a-time consumer must do). Runs A and B alternately and reports medians of CPU
// time and the ratio, as bench/ figures must; `untyped` encodes without the column types (every
// value scanned).
//
//   npx tsx bench/csv-encoder.bench.ts [rows=1000000] [rounds=7] [none|gzip] [typed|untyped]
import { createHash } from "node:crypto";
import { createCsvEncoder } from "../src/encoders/csv-encoder.js";
import type { FileSink } from "../src/encoders/types.js";

const ROWS = Number(process.argv[2] ?? 1_000_000);
const ROUNDS = Number(process.argv[3] ?? 7);
const COMPRESSION = (process.argv[4] ?? "none") as "none" | "gzip";
const TYPED = (process.argv[5] ?? "typed") === "typed";
const COLUMNS = ["id", "big", "label", "amount", "at", "flag", "score", "day"];
/** int4, int8, text, numeric, timestamptz, bool, float8, date (bench/lib/bench-table.ts). */
const TYPES = [23, 20, 25, 1700, 1184, 16, 701, 1082];
/** Batches as the relay sends them to the encoder thread (encoder-thread.ts BATCH_BYTES). */
const BATCH = 256 << 10;

/** The text PostgreSQL returns for row g of bench/lib/bench-table.ts. */
function values(g: number): Array<string | null> {
  const md5 = createHash("md5").update(String(g)).digest("hex");
  const at = new Date(Date.UTC(2024, 0, 1) + g * 1000)
    .toISOString()
    .replace("T", " ")
    .replace(".000Z", "+00");
  const day = new Date(Date.UTC(2000, 0, 1) + (g % 10000) * 86_400_000).toISOString().slice(0, 10);
  return [
    String(g),
    String(BigInt(g) * 2654435761n),
    g % 17 === 0 ? null : g % 5 === 0 ? `${md5}, "q"` : md5,
    ((g % 10000000) / 100).toFixed(2),
    at,
    g % 3 === 0 ? "t" : "f",
    String(g / 7),
    day,
  ];
}

/** DataRow messages ('D', int32 length, int16 count, fields) packed into batches. */
function makeBatches(rows: number): Buffer[] {
  const batches: Buffer[] = [];
  let buf = Buffer.allocUnsafe(BATCH);
  let pos = 0;
  for (let g = 1; g <= rows; g++) {
    const fields = values(g).map((v) => (v === null ? null : Buffer.from(v)));
    let size = 7;
    for (const f of fields) size += 4 + (f?.length ?? 0);
    if (pos + size > buf.length) {
      batches.push(buf.subarray(0, pos));
      buf = Buffer.allocUnsafe(BATCH);
      pos = 0;
    }
    buf[pos] = 0x44;
    buf.writeInt32BE(size - 1, pos + 1);
    buf.writeInt16BE(fields.length, pos + 5);
    let p = pos + 7;
    for (const f of fields) {
      if (f === null) p = buf.writeInt32BE(-1, p);
      else {
        p = buf.writeInt32BE(f.length, p);
        p += f.copy(buf, p);
      }
    }
    pos = p;
  }
  batches.push(buf.subarray(0, pos));
  return batches;
}

class CountingSink implements FileSink {
  bytes = 0;
  files = 0;
  openFile(): void {
    this.files++;
  }
  write(chunk: Uint8Array): void {
    this.bytes += chunk.length;
  }
  closeFile(): void {}
}

async function runEncoder(batches: Buffer[]): Promise<number> {
  const sink = new CountingSink();
  const enc = createCsvEncoder(
    {
      header: true,
      delimiter: 0x2c,
      quote: 0x22,
      escape: 0x22,
      null: "",
      compression: COMPRESSION,
      maxFileSize: 256 << 20,
      columnNames: COLUMNS,
      ...(TYPED ? { columnTypes: TYPES } : {}),
    },
    sink,
  );
  for (const b of batches) {
    enc.writeRows(b, 0, b.length);
    if (enc.wantsFlush) await enc.flush();
  }
  await enc.finish();
  return sink.bytes;
}

/** Baseline: per row, copy the DataRow's field bytes into a 1 MiB buffer, hand full buffers on. */
async function runCopy(batches: Buffer[]): Promise<number> {
  const sink = new CountingSink();
  let out = Buffer.allocUnsafeSlow(1 << 20);
  let o = 0;
  for (const b of batches) {
    let pos = 0;
    while (pos < b.length) {
      const len = b.readInt32BE(pos + 1);
      const n = len - 6;
      if (o + n > out.length) {
        sink.write(out.subarray(0, o));
        out = Buffer.allocUnsafeSlow(1 << 20);
        o = 0;
      }
      b.copy(out, o, pos + 7, pos + 1 + len);
      o += n;
      pos += 1 + len;
    }
    await Promise.resolve();
  }
  sink.write(out.subarray(0, o));
  return sink.bytes;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

const batches = makeBatches(ROWS);
const inputBytes = batches.reduce((s, b) => s + b.length, 0);
const encTimes: number[] = [];
const copyTimes: number[] = [];
let outBytes = 0;
await runEncoder(batches); // warm-up (JIT)
await runCopy(batches);
/** CPU seconds of this process (one thread does all the work): robust to a loaded machine. */
const cpu = (): number => {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
};
for (let i = 0; i < ROUNDS; i++) {
  let t = cpu();
  outBytes = await runEncoder(batches);
  encTimes.push(cpu() - t);
  t = cpu();
  await runCopy(batches);
  copyTimes.push(cpu() - t);
}
console.log("rounds", encTimes.map((t) => t.toFixed(3)).join(" "));
const enc = median(encTimes);
const copy = median(copyTimes);
const mb = (bytes: number, s: number): string => (bytes / s / 1e6).toFixed(0);
console.log(
  `csv encoder (${COMPRESSION}, ${TYPED ? "typed" : "untyped"}): ${ROWS} rows x ${COLUMNS.length} cols, ${(inputBytes / 1e6).toFixed(1)} MB DataRows -> ${(outBytes / 1e6).toFixed(1)} MB, ${ROUNDS} rounds, medians of CPU time`,
);
console.log(
  `  encoder:        ${(ROWS / enc / 1e6).toFixed(2)} M rows/s  ${mb(inputBytes, enc)} MB/s in  ${mb(outBytes, enc)} MB/s out  ${((enc * 1e6) / ROWS).toFixed(3)} CPU-s per 1M rows`,
);
console.log(`  baseline copy:  ${(ROWS / copy / 1e6).toFixed(2)} M rows/s  ${mb(inputBytes, copy)} MB/s in`);
console.log(`  encoder / copy time ratio: ${(enc / copy).toFixed(2)}x`);
