// The messages between an export's driver (the relay's thread) and its encoder thread. Plain data
// only: structured clone keeps no classes, so errors travel as their ErrorResponse fields.

import type { FileTarget } from "../../copy/storage/sync-file-upload.js";
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
  | { t: "wasm"; wasm: ParquetWasm }
  // Output: where the files go.
  /**
   * This export's files go to a file:// target, written by the thread itself (after `start`,
   * before any rows); without it they go to the driver as `open`/`chunk`/`close`.
   */
  | {
      t: "files";
      output: FileOutput;
      /** Tests only: after each file's rename, before its word, the thread counts itself in
       * renamed[1] and blocks while renamed[0] is 1. */
      renamed?: Int32Array;
    }
  // Rows input through the row ring (./row-ring.ts, ./ring-reader.ts).
  /**
   * From here on (after the rows sent before) the statement's rows come through this ring as the
   * upstream's bytes: frame its DataRows until the first other message, then `ringBack`.
   */
  | { t: "ring"; sab: SharedArrayBuffer; maxRowBytes: number }
  /** Chunk buffers the relay's store no longer reads, while no `rows` message carries them. */
  | { t: "free"; free: ArrayBuffer[] };

/** Encoder thread → driver, in the order things happened there. */
export type FromEncoder =
  /**
   * `loadedNice`: the niceness the thread's encoder modules were loaded at (its entry lowers it
   * first); `startedNice`: the niceness its entry began at (its creator lowers it: Node's start-up
   * of the thread ran at it).
   */
  | { t: "ready"; nice: number; idle: boolean; loadedNice: number; startedNice: number }
  /** A batch of rows is encoded (and its flush, if it made one due, has been awaited). */
  | { t: "ack"; buf: ArrayBuffer; len: number }
  | { t: "open"; index: number }
  /** File bytes `buf[0..len)`; the buffer is the driver's until it sends it back (`free`). */
  | { t: "chunk"; buf: ArrayBuffer; len: number }
  | { t: "close"; rows: number }
  // Output written by the thread itself (after a `files`): the driver is told per file.
  /** File `index` is about to be created, as temp file `uploadId` (before it exists). */
  | { t: "file-open"; index: number; uploadId: string }
  /** Bytes of the current file written since the last word (progress). */
  | { t: "file-bytes"; bytes: number }
  /** File `index` is complete and in place (renamed) with `rows` rows and `bytes` bytes. */
  | { t: "file-done"; index: number; rows: number; bytes: number }
  /** The export is encoded; `buffers`: chunk buffers its thread allocated (tests). */
  | { t: "finished"; buffers: number }
  | { t: "error"; error: WireError }
  /** The ring's thread stopped at a message it does not take (at the ring's Read): the relay's again. */
  | { t: "ringBack" };

/** A file:// target as its encoder thread writes it: file `i` of the batch is fileKey(output, i). */
export interface FileOutput extends FileTarget {
  /** `mz-<id>-batch-<BBBB>-` */
  keyPrefix: string;
  /** `.csv`, `.csv.gz`, `.parquet` */
  suffix: string;
}

/** The key of a batch's file `index` (Materialize's `S3KeyManager::data_key`: 4 digits at least). */
export function fileKey(o: { keyPrefix: string; suffix: string }, index: number): string {
  return `${o.keyPrefix}${String(index).padStart(4, "0")}${o.suffix}`;
}

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
