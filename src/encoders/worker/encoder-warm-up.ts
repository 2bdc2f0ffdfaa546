// The proxy's warm-up at start-up (exports.warmUp): what a proxy's first Parquet export would
// otherwise pay itself, done in the background once the proxy listens (docs/decisions.md, "The
// first export of a proxy").
//   "compile"  parquet-wasm compiled, in a short-lived thread of its own (not on the relay's:
//              ../parquet/wasm-writer.ts). The first export's thread then instantiates an already
//              compiled module.
//   "thread"   also the spare encoder thread (./encoder-thread.ts) started, by a small export of
//              synthetic rows through it: Arrow and parquet-wasm loaded and instantiated in that
//              thread, the encoder's code run once, and the thread kept for the first real export.
//   "none"     nothing: the first export pays all of it.
// With `exports.encoderHost: "process"` the relay never uses parquet-wasm itself (the host compiles
// its own), so "compile" does nothing there and "thread" starts the host with its spare thread.
import type { PgError } from "../../errors.js";
import type { EncoderSpec } from "../create-encoder.js";
import { compileParquetWasmOffThread } from "../parquet/wasm-writer.js";
import type { ColumnInfo, FileSink } from "../types.js";
import { EncoderThread, type EncoderThreadOptions } from "./encoder-thread.js";
import { spareEncoderThreadId } from "./thread-pool.js";

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

/** Bytes of a synthetic row: DataRow header 7, 8 field lengths, the values (text: 8 bytes). */
const ROW_BYTES = 7 + 8 * 4 + (4 + 8 + 8 + 12 + 8 + 1 + 8 + 4);

/**
 * The synthetic rows as PostgreSQL sends them: whole DataRow messages, binary values, written in
 * place into one buffer (this runs on the relay's thread: no allocation per value).
 */
export function syntheticRows(n: number): Buffer {
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
      if (!hosted) await compileParquetWasmOffThread(signal);
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

/** The synthetic export's spec (also bench/start-cpu.ts's, which starts exports like the warm-up's). */
export const warmUpSpec: EncoderSpec = {
  format: "parquet",
  options: { compression: "snappy", maxFileSize: 64 << 20, columns: COLUMNS },
};

/** A Parquet export of synthetic rows into nowhere; its thread becomes the spare one. */
async function syntheticExport(opts: EncoderThreadOptions, signal: AbortSignal, n: number): Promise<void> {
  // No slot of the encoding budget: its few rows would take the first export's turn.
  const thread = new EncoderThread(warmUpSpec, { ...opts, maxEncoding: 0 });
  let failure = null as PgError | null;
  thread.attach(discard, signal, (err) => {
    failure = err;
  });
  const rows = syntheticRows(n);
  thread.writeRows(rows, 0, rows.length);
  await thread.finish();
  if (failure !== null) throw failure;
}
