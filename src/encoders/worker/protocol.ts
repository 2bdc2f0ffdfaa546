// The messages between an export's driver (the relay's thread) and its encoder thread. Plain data
// only: structured clone keeps no classes, so errors travel as their ErrorResponse fields.

import { PgError } from "../../errors.js";
import type { EncoderSpec } from "../create-encoder.js";
import type { ParquetWasm } from "../parquet/wasm-writer.js";

export interface EncoderWorkerData {
  /** Niceness the thread gives itself (Linux: per thread); never lower than it inherits. */
  nice: number;
  /** Whether the thread moves itself to SCHED_IDLE (Linux), below every niceness. */
  idle?: boolean;
}

/** Driver → encoder thread. */
export type ToEncoder =
  /**
   * An export begins: build its encoder. A thread serves one export at a time, and the next one
   * after a `finished` (it is kept warm for it: see encoder-thread.ts).
   */
  | {
      t: "start";
      spec: EncoderSpec;
      /** Tests only: while gate[0] is 1 the thread blocks before each batch of rows; if there is
       * a gate[2], while it is 1 the thread blocks inside each batch's encoding (its budget slot
       * taken), counting itself in gate[1]. */
      gate?: Int32Array;
      /** The process's encoding budget (./encoder-budget.ts): a slot per batch; none = no limit. */
      budget?: Int32Array;
    }
  /**
   * Whole DataRow messages in `buf[0..len)`; the buffer comes back with the ack. `free`: chunk
   * buffers the relay's store no longer reads, back for reuse (port-sink.ts).
   */
  | { t: "rows"; buf: ArrayBuffer; len: number; free: ArrayBuffer[] }
  | { t: "finish" }
  /**
   * The export ended before any rows were sent (refused, cancelled): drop its encoder and what it
   * queued, then `finished`, so the thread can serve the next export.
   */
  | { t: "drop" }
  /** parquet-wasm as the relay's thread compiled it: a Parquet encoder waits for it. */
  | { t: "wasm"; wasm: ParquetWasm };

/** Encoder thread → driver, in the order things happened there. */
export type FromEncoder =
  | { t: "ready"; nice: number; idle: boolean }
  /** A batch of rows is encoded (and its flush, if it made one due, has been awaited). */
  | { t: "ack"; buf: ArrayBuffer; len: number }
  | { t: "open"; index: number }
  /** File bytes `buf[0..len)`; the buffer is the driver's until it sends it back (`free`). */
  | { t: "chunk"; buf: ArrayBuffer; len: number }
  | { t: "close"; rows: number }
  /** The export is encoded; `buffers`: chunk buffers its thread allocated (tests). */
  | { t: "finished"; buffers: number }
  | { t: "error"; error: WireError };

/** What a client may see of an error: the fields of its ErrorResponse, never a stack. */
export interface WireError {
  code: string;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
  severity: "ERROR" | "FATAL";
}

export function toWireError(e: unknown): WireError {
  const err = PgError.from(e);
  return { code: err.code, message: err.message, detail: err.detail, hint: err.hint, severity: err.severity };
}

export function fromWireError(w: WireError): PgError {
  return new PgError(w.code, w.message, { detail: w.detail, hint: w.hint, severity: w.severity });
}
