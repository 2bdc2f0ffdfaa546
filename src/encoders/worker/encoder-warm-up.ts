// The proxy's warm-up at start-up (exports.warmUp): what a proxy's first Parquet export would
// otherwise pay itself, done in the background once the proxy listens (docs/decisions.md, "The
// first export of a proxy").
//   "compile"  parquet-wasm compiled (WebAssembly.compile: V8 compiles on its own threads; the
//              relay thread only reads the file and hands it over). The first export's thread
//              then instantiates an already compiled module.
//   "thread"   also the spare encoder thread (./encoder-thread.ts) started, by a small export of
//              synthetic rows through it: Arrow and parquet-wasm loaded and instantiated in that
//              thread, the encoder's code run once, and the thread kept for the first real export.
//   "none"     nothing: the first export pays all of it.
// With `exports.encoderHost: "process"` the relay never uses parquet-wasm itself (the host compiles
// its own), so "compile" does nothing there and "thread" starts the host with its spare thread.
import type { PgError } from "../../errors.js";
import type { EncoderSpec } from "../create-encoder.js";
import { parquetWasm } from "../parquet/wasm-writer.js";
import type { ColumnInfo, FileSink } from "../types.js";
import { EncoderThread, type EncoderThreadOptions, spareEncoderThreadId } from "./encoder-thread.js";

export type WarmUp = "none" | "compile" | "thread";
export const WARM_UPS: readonly WarmUp[] = ["none", "compile", "thread"];

/** Rows of the synthetic export: enough to run every step of the encoder (a row group, a file). */
export const WARM_UP_ROWS = 2048;

/** One column of each kind the encoder decodes most (binary, as an export requests them). */
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

/** The synthetic rows as PostgreSQL sends them: whole DataRow messages, binary values. */
function syntheticRows(n: number): Buffer {
  const rows: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const values: Buffer[] = [];
    const i4 = Buffer.alloc(4);
    i4.writeInt32BE(i);
    const i8 = Buffer.alloc(8);
    i8.writeBigInt64BE(BigInt(i) * 1_000_003n);
    // numeric(12,2) 1..9999 + .01..0.99: ndigits 2, weight 0, sign +, dscale 2, base-10000 digits.
    const num = Buffer.alloc(12);
    num.writeInt16BE(2, 0);
    num.writeInt16BE(0, 2);
    num.writeUInt16BE(0, 4);
    num.writeInt16BE(2, 6);
    num.writeInt16BE((i % 9999) + 1, 8);
    num.writeInt16BE(((i % 99) + 1) * 100, 10);
    const ts = Buffer.alloc(8);
    ts.writeBigInt64BE(757_382_400_000_000n + BigInt(i) * 1_000_000n);
    const f8 = Buffer.alloc(8);
    f8.writeDoubleBE(i / 7);
    const d = Buffer.alloc(4);
    d.writeInt32BE(8766 + (i % 366));
    values.push(i4, i8, Buffer.from(`label ${i % 97}`), num, ts, Buffer.from([i & 1]), f8, d);
    const len = 4 + 2 + values.reduce((a, v) => a + 4 + v.length, 0);
    const row = Buffer.alloc(1 + len);
    row[0] = 0x44; // 'D'
    row.writeInt32BE(len, 1);
    row.writeInt16BE(values.length, 5);
    let at = 7;
    for (const v of values) {
      row.writeInt32BE(v.length, at);
      v.copy(row, at + 4);
      at += 4 + v.length;
    }
    rows.push(row);
  }
  return Buffer.concat(rows);
}

/** Takes the encoded bytes and drops them. */
const discard: FileSink = { openFile() {}, write() {}, closeFile() {}, copies: true };

/** Tests only: told when a warm-up has ended (finished, skipped, failed or aborted). */
export const warmUpTestHooks: { ended?: (mode: WarmUp, outcome: string) => void } = {};

/**
 * Runs the warm-up `mode`; resolves when it is done. Never rejects: a warm-up that fails leaves
 * the first export to do the work itself (and to report what failed, if it fails again).
 * `signal` (the proxy's shutdown) ends it, and with it any thread it started.
 */
export async function warmUpEncoders(
  mode: WarmUp,
  opts: EncoderThreadOptions,
  signal: AbortSignal = new AbortController().signal,
  rows = WARM_UP_ROWS,
): Promise<"done" | "skipped" | "aborted" | "failed"> {
  let outcome: "done" | "skipped" | "aborted" | "failed" = "done";
  try {
    const hosted = opts.host === "process";
    if (mode === "none" || (mode === "compile" && hosted) || signal.aborted) outcome = "skipped";
    else {
      if (!hosted) await parquetWasm();
      // A spare thread kept already (another proxy of this process warmed it, or an export ran).
      if (mode === "thread" && !signal.aborted && spareEncoderThreadId() === null)
        await syntheticExport(opts, signal, rows);
      if (signal.aborted) outcome = "aborted";
    }
  } catch {
    outcome = signal.aborted ? "aborted" : "failed";
  }
  warmUpTestHooks.ended?.(mode, outcome);
  return outcome;
}

const spec: EncoderSpec = {
  format: "parquet",
  options: { compression: "snappy", maxFileSize: 64 << 20, columns: COLUMNS },
};

/** A Parquet export of synthetic rows into nowhere; its thread becomes the spare one. */
async function syntheticExport(opts: EncoderThreadOptions, signal: AbortSignal, n: number): Promise<void> {
  // No slot of the encoding budget: its few rows would take the first export's turn.
  const thread = new EncoderThread(spec, { ...opts, maxEncoding: 0 });
  let failure = null as PgError | null;
  thread.attach(discard, signal, (err) => {
    failure = err;
  });
  const rows = syntheticRows(n);
  thread.writeRows(rows, 0, rows.length);
  await thread.finish();
  if (failure !== null) throw failure;
}
