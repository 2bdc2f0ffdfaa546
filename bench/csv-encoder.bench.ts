// Micro benchmark of the CSV encoder on synthetic DataRows (8 short text-format columns, a few
// NULLs, some values that need quoting), against a baseline that only copies each row's DataRow
// bytes into a 1 MiB output buffer the same way (the least any row-at-a-time consumer must do).
// Runs A and B alternately and reports medians and the ratio, as bench/ figures must.
//
//   npx tsx bench/csv-encoder.bench.ts [rows=1000000] [rounds=7] [none|gzip]
import { createCsvEncoder } from "../src/encoders/csv-encoder.js";
import type { FileSink } from "../src/encoders/types.js";

const ROWS = Number(process.argv[2] ?? 1_000_000);
const ROUNDS = Number(process.argv[3] ?? 7);
const COMPRESSION = (process.argv[4] ?? "none") as "none" | "gzip";
const COLUMNS = ["id", "name", "email", "amount", "active", "created_at", "note", "qty"];

/** Deterministic pseudo-random numbers, so every run encodes the same bytes. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** DataRow messages ('D', int32 length, int16 count, fields) packed into 4 MiB batches. */
function makeBatches(rows: number): Buffer[] {
  const r = rng(42);
  const words = ["alpha", "beta", "gamma", "delta", "o'neil", "smith, jr", 'say "hi"', "zeta"];
  const batches: Buffer[] = [];
  let buf = Buffer.allocUnsafe(4 << 20);
  let pos = 0;
  const fields: Array<Buffer | null> = [];
  for (let i = 0; i < rows; i++) {
    fields.length = 0;
    fields.push(Buffer.from(String(i + 1)));
    fields.push(Buffer.from(words[Math.floor(r() * words.length)]!));
    fields.push(Buffer.from(`user${Math.floor(r() * 1e6)}@example.com`));
    fields.push(Buffer.from((r() * 10000).toFixed(2)));
    fields.push(Buffer.from(r() < 0.5 ? "t" : "f"));
    fields.push(Buffer.from(`2024-0${1 + Math.floor(r() * 9)}-1${Math.floor(r() * 10)} 12:34:56.789+00`));
    fields.push(r() < 0.3 ? null : Buffer.from(r() < 0.1 ? "multi\nline" : "ok"));
    fields.push(Buffer.from(String(Math.floor(r() * 100))));
    let size = 7;
    for (const f of fields) size += 4 + (f?.length ?? 0);
    if (pos + size > buf.length) {
      batches.push(buf.subarray(0, pos));
      buf = Buffer.allocUnsafe(4 << 20);
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
    },
    sink,
  );
  for (const b of batches) {
    let pos = 0;
    while (pos < b.length) {
      const len = b.readInt32BE(pos + 1);
      enc.writeRow(b, pos + 7, b.readInt16BE(pos + 5));
      pos += 1 + len;
    }
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
for (let i = 0; i < ROUNDS; i++) {
  let t = process.hrtime.bigint();
  outBytes = await runEncoder(batches);
  encTimes.push(Number(process.hrtime.bigint() - t) / 1e9);
  t = process.hrtime.bigint();
  await runCopy(batches);
  copyTimes.push(Number(process.hrtime.bigint() - t) / 1e9);
}
const enc = median(encTimes);
const copy = median(copyTimes);
const mb = (bytes: number, s: number): string => (bytes / s / 1e6).toFixed(0);
console.log(
  `csv encoder (${COMPRESSION}): ${ROWS} rows x ${COLUMNS.length} cols, ${(inputBytes / 1e6).toFixed(1)} MB DataRows -> ${(outBytes / 1e6).toFixed(1)} MB, ${ROUNDS} rounds, medians`,
);
console.log(
  `  encoder:        ${(ROWS / enc / 1e6).toFixed(2)} M rows/s  ${mb(inputBytes, enc)} MB/s in  ${mb(outBytes, enc)} MB/s out`,
);
console.log(`  baseline copy:  ${(ROWS / copy / 1e6).toFixed(2)} M rows/s  ${mb(inputBytes, copy)} MB/s in`);
console.log(`  encoder / copy time ratio: ${(enc / copy).toFixed(2)}x`);
