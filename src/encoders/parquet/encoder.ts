// The Parquet RowEncoder: DataRows → column builders → one Arrow IPC batch per row group →
// parquet-wasm (on this thread) → file bytes, with files cut so each stays within
// MAX FILE SIZE.
//
// File size rule (SPEC §4): a row group's compressed size is only known after it is written, so
// the encoder predicts it from the ratio "row group bytes / DataRow bytes" of the row groups
// written so far. Batches are cut small enough that a misprediction costs little:
//  - a row group aims at ≤ 1/16 of MAX FILE SIZE compressed, and ≤ RAW_BATCH_CAP raw (memory);
//  - near the end of a file the batch is cut at the predicted remaining space;
//  - before writing, a batch predicted not to fit in a non-empty file starts a new file;
//  - a file with less than 1/64 of MAX FILE SIZE left is closed right away.
// So a file overshoots only by the prediction error on its last, small row group.

import { PgError, SqlState } from "../../errors.js";
import type { ColumnInfo, FileSink, RowEncoder } from "../types.js";
import * as arrow from "./arrow.js";
import { type ColumnBuilder, extMeta } from "./columns/builder.js";
import { makeBuilder } from "./columns/make-builder.js";
import { dictionaryOverflows } from "./dictionary-choice.js";
import { FlatRows } from "./flat-rows.js";
import { IndexedRows } from "./indexed-rows.js";
import { IpcStreamWriter } from "./ipc.js";
import { exportBegins, exportEnds, keepForNext, takeBuilders, takeIpcBuffer } from "./kept.js";
import { type ColumnPlan, planColumns } from "./types.js";
import { type Compression, ParquetWasmWriter, WRITER_SETTINGS } from "./wasm-writer.js";

export interface ParquetOptions {
  compression: Compression;
  /** MAX FILE SIZE in bytes. */
  maxFileSize: number;
  /** ROW GROUP SIZE: upper bound on rows per row group. */
  rowGroupSize?: number;
  columns: readonly ColumnInfo[];
}

/** Raw (DataRow) bytes per batch: bounds the column buffers, the IPC copies and the writer's heap. */
export const RAW_BATCH_CAP = 16 << 20;
/** Rows per row group when ROW GROUP SIZE is not given. */
export const DEFAULT_ROW_GROUP_ROWS = 65536;
/** Smallest batch worth a row group of its own, unless the data ends. */
const MIN_BATCH_BYTES = 64 << 10;
/** Rows of a batch from which the dictionary choice holds for the rest of the export. */
const DICTIONARY_SAMPLE_ROWS = 16384;

interface Batch {
  rows: number;
  raw: number;
  /** Its predicted compressed size when it was cut. */
  predicted: number;
  /** The row group as an Arrow IPC stream (schema + one record batch), at the start of a pooled buffer. */
  ipc: Uint8Array;
  /** Columns to write without a dictionary, should this batch open a file. */
  noDictionary: readonly string[];
}

/** IPC buffers kept for reuse: one being filled, two in flight (see flush()). */
const POOL_SIZE = 3;

export interface ParquetFileStats {
  index: number;
  rows: number;
  bytes: number;
  rowGroups: number;
}

/**
 * Result formats to request and the columns exported as their text output (for the NOTICE).
 * Throws PgError for columns Parquet cannot hold at all (numeric scales outside 0..38).
 */
export function planParquet(columns: readonly ColumnInfo[]): {
  resultFormats: number[];
  textColumns: string[];
} {
  const plans = planColumns(columns);
  return {
    resultFormats: plans.map((p) => (p.node === null ? 0 : 1)),
    textColumns: plans.filter((p) => p.node === null).map((p) => p.name),
  };
}

/** An encoder whose Parquet writer runs on this thread; `dispose()` ends the writer. */
export async function createParquetEncoder(opts: ParquetOptions, sink: FileSink): Promise<ParquetEncoder> {
  const encoder = new ParquetEncoder(opts, sink); // plan errors before parquet-wasm is loaded
  try {
    encoder.attach(await ParquetWasmWriter.start());
  } catch (err) {
    encoder.dispose();
    throw err;
  }
  return encoder;
}

/** Tests only: `twoPass` sends every run through the general path (to compare the two). */
export const parquetEncoderTestHooks: { twoPass: boolean } = { twoPass: false };

const disposedError = (): Error => new Error("Parquet encoder: rows after dispose");

function leafCount(t: arrow.DataType): number {
  const children = t.children as arrow.Field[] | null | undefined;
  if (!children || children.length === 0) return 1;
  let n = 0;
  for (const c of children) n += leafCount(c.type);
  return n;
}

export class ParquetEncoder implements RowEncoder {
  readonly extension = "parquet";
  readonly resultFormats: readonly number[];
  /** Per-file figures, filled as files close (for progress, manifests, tests). */
  readonly files: ParquetFileStats[] = [];

  private readonly plans: ColumnPlan[];
  private readonly builders: ColumnBuilder[];
  /** The one-pass decoder when every column is flat (./flat-rows.ts), else null. */
  private readonly flat: FlatRows | null;
  private readonly schema: arrow.Schema;
  private readonly structType: arrow.Struct;
  private readonly ipcWriter: IpcStreamWriter;
  /** IPC buffers the writer has handed back (after copying them into its memory). */
  private readonly pool: ArrayBuffer[] = [];
  private readonly limit: number;
  private readonly rowCap: number;
  private readonly footerBase: number;
  private readonly footerPerRowGroup: number;
  /** The columns as given: builders kept from an export of the same ones fit this one. */
  private readonly columnsKey: string;

  private rows = 0;
  private rawBytes = 0;
  /** The general path's two-pass decoder (./indexed-rows.ts). */
  private readonly indexed: IndexedRows;
  private byteCap: number;
  /** Predicted compressed bytes per raw byte; starts pessimistic (no compression). */
  private ratio = 1;
  private measured = false;
  /** Columns whose dictionary would not fit a page (dictionary-choice.ts); final once `dictionarySettled`. */
  private noDictionary: readonly string[] = [];
  private dictionarySettled = false;

  private worker: ParquetWasmWriter | null = null;
  /** A file is open in the writer. */
  private open = false;
  /** Row groups are written one after another, in the order they were cut. */
  private chain: Promise<void> = Promise.resolve();
  /** Predicted bytes of row groups cut but not yet written. */
  private pendingBytes = 0;
  private fileIndex = 0;
  private fileRows = 0;
  private fileRowGroups = 0;
  private disposed = false;

  constructor(
    private readonly opts: ParquetOptions,
    private readonly sink: FileSink,
  ) {
    this.plans = planColumns(opts.columns);
    this.resultFormats = this.plans.map((p) => (p.node === null ? 0 : 1));
    this.columnsKey = JSON.stringify(opts.columns);
    // The thread's last export's builders when it had the same columns (./kept.ts).
    this.builders =
      takeBuilders(this.columnsKey) ??
      this.plans.map((p) => makeBuilder(p.node, { column: p.name }, p.nullable));
    this.flat = FlatRows.of(this.builders);
    const fields = this.plans.map(
      (p, i) =>
        new arrow.Field(p.fieldName, this.builders[i]!.type, p.nullable, extMeta(p.node?.ext ?? "text")),
    );
    this.schema = new arrow.Schema(fields);
    this.structType = new arrow.Struct(fields);
    this.ipcWriter = new IpcStreamWriter(this.schema);
    this.indexed = new IndexedRows(this.builders.length);
    this.limit = opts.maxFileSize;
    this.rowCap = Math.max(1, opts.rowGroupSize ?? DEFAULT_ROW_GROUP_ROWS);
    // Footer: the Arrow schema (IPC, base64) plus Thrift metadata per row group and column.
    const leaves = fields.reduce((n, f) => n + leafCount(f.type), 0);
    const schemaBytes = JSON.stringify(fields.map((f) => [f.name, String(f.type)])).length;
    this.footerBase = 2048 + 4 * schemaBytes + 64 * leaves;
    this.footerPerRowGroup = 64 + 96 * leaves;
    this.byteCap = this.nextByteCap();
    exportBegins();
  }

  get wantsFlush(): boolean {
    return this.rows >= this.rowCap || this.rawBytes >= this.byteCap;
  }

  writeRow(buf: Buffer, pos: number, nFields: number): void {
    if (this.disposed) throw disposedError();
    const b = this.builders;
    if (nFields !== b.length) {
      throw new PgError(SqlState.protocolViolation, `DataRow has ${nFields} fields, expected ${b.length}`);
    }
    let p = pos;
    for (let i = 0; i < nFields; i++) {
      const len = buf.readInt32BE(p);
      p += 4;
      if (len < 0) b[i]!.appendNull();
      else {
        b[i]!.append(buf, p, len);
        p += len;
      }
    }
    this.rows++;
    this.rawBytes += p - pos;
  }

  writeRows(buf: Buffer, start: number, end: number): void {
    // Its builders may be another export's now (kept: ./kept.ts).
    if (this.disposed) throw disposedError();
    const flat = this.flat;
    if (flat !== null && !parquetEncoderTestHooks.twoPass) {
      // Flat columns: one pass (./flat-rows.ts), up to a row it leaves to the general path below.
      const stop = flat.decode(buf, start, end, this.rows);
      this.rows += flat.rows;
      this.rawBytes += stop - start - 7 * flat.rows;
      if (stop < end) this.writeRowsIndexed(buf, stop, end);
    } else this.writeRowsIndexed(buf, start, end);
  }

  /** The general path of writeRows (a method of its own: its JIT feedback is not the flat path's). */
  private writeRowsIndexed(buf: Buffer, start: number, end: number): void {
    const rows = this.indexed.decode(buf, start, end, this.builders);
    this.rows += rows;
    // Raw bytes as writeRow counts them (fields only): 7 header bytes a row less.
    this.rawBytes += end - start - 7 * rows;
  }

  /**
   * Cuts a row group from the rows written so far (synchronously, so rows written while it is
   * being encoded go into the next one) and queues it for the Parquet writer. Calls may overlap:
   * row groups are written in order. The driver should still await it for backpressure.
   */
  flush(): Promise<void> {
    if (this.rows === 0 || this.disposed) return this.chain;
    const raw = this.rawBytes;
    const noDictionary = this.chooseDictionaries();
    const job: Batch = {
      rows: this.rows,
      raw,
      predicted: raw * this.ratio,
      ipc: this.takeBatch(),
      noDictionary,
    };
    this.pendingBytes += job.predicted;
    this.byteCap = this.nextByteCap();
    const previous = this.chain;
    this.chain = previous.then(() => this.writeBatch(job));
    // Surfaced by the next flush() or finish(), not as an unhandled rejection.
    this.chain.catch(() => {});
    // The driver goes on with the next rows while this row group is written (between them, on
    // this thread): it waits only for the one before (at most two row groups in flight).
    return previous;
  }

  private async writeBatch(job: Batch): Promise<void> {
    this.pendingBytes -= job.predicted;
    if (this.disposed) return;
    const w = this.worker!;
    if (this.open && this.fileRows > 0) {
      const after = w.fileBytes + job.raw * this.ratio + this.footerEstimate(1);
      if (after > this.limit + this.limit / 64) await this.closeFile();
    }
    let before = 0;
    if (!this.open) {
      await this.openFile(job.ipc, job.noDictionary);
    } else {
      before = w.fileBytes;
      await w.write(job.ipc, true);
    }
    this.fileRows += job.rows;
    this.fileRowGroups++;
    this.learn(w.fileBytes - before, job.raw);
    if (this.limit - w.fileBytes - this.footerEstimate(0) < this.limit / 64) await this.closeFile();
    this.byteCap = this.nextByteCap();
  }

  async finish(): Promise<void> {
    await this.flush();
    await this.chain;
    if (this.disposed) return;
    if (!this.open && this.fileIndex === 0) {
      // An empty result still makes one (schema-only) file. [mz]
      await this.openFile(this.takeBatch(), []);
    }
    if (this.open) await this.closeFile();
  }

  /**
   * Stops the writer (its WASM memory goes with the thread); the column builders, reset, and the
   * IPC buffers go to the thread for its next export (./kept.ts).
   */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.worker?.terminate();
    for (const b of this.builders) b.reset();
    keepForNext(this.columnsKey, this.builders, this.pool);
    this.pool.length = 0;
    exportEnds();
  }

  /** @internal */
  attach(worker: ParquetWasmWriter): void {
    this.worker = worker;
    worker.onRecycle = (b) => {
      if (!this.disposed && this.pool.length < POOL_SIZE) this.pool.push(b);
    };
  }

  private footerEstimate(extraRowGroups: number): number {
    return this.footerBase + (this.fileRowGroups + extraRowGroups) * this.footerPerRowGroup;
  }

  private learn(written: number, raw: number): void {
    if (raw < MIN_BATCH_BYTES / 4) return; // tiny batches are dominated by page overheads
    const observed = written / raw;
    // Rise at once, fall slowly: under-predicting is what makes files overshoot.
    this.ratio = !this.measured
      ? observed
      : observed > this.ratio
        ? observed
        : 0.7 * this.ratio + 0.3 * observed;
    this.measured = true;
  }

  /** Raw bytes at which the current batch is cut. */
  private nextByteCap(): number {
    const used = (this.open ? this.worker!.fileBytes : 0) + this.pendingBytes;
    const room = this.limit - used - this.footerEstimate(1);
    const target = Math.min(this.limit / 16, room);
    return Math.max(MIN_BATCH_BYTES, Math.min(RAW_BATCH_CAP, target / this.ratio));
  }

  /**
   * The buffered rows as an Arrow IPC stream at the start of a buffer of its own (pooled: the
   * writer hands it back); the builders are free for the next batch.
   */
  private takeBatch(): Uint8Array {
    const n = this.rows;
    const children = this.builders.map((b) => b.finish());
    const data = arrow.makeData({ type: this.structType, length: n, nullCount: 0, children });
    const stream = this.ipcWriter.prepare({ numRows: n, data });
    // The IPC copy is taken before the builders' buffers are reused.
    const ipc = new Uint8Array(this.ipcBuffer(stream.size), 0, stream.size);
    stream.write(ipc);
    for (const b of this.builders) b.reset();
    this.rows = 0;
    this.rawBytes = 0;
    return ipc;
  }

  /** A pooled buffer of at least `size` bytes, or a new one with room to spare. */
  private ipcBuffer(size: number): ArrayBuffer {
    const pool = this.pool;
    for (let i = 0; i < pool.length; i++) {
      if (pool[i]!.byteLength >= size) return pool.splice(i, 1)[0]!;
    }
    // One the thread kept from its last export (its pool, handed over at dispose()).
    const kept = takeIpcBuffer(size);
    if (kept !== undefined) return kept;
    // Too small for this batch (or none yet): drop the smallest so the pool does not grow.
    if (pool.length > 0) {
      pool.sort((a, b) => a.byteLength - b.byteLength);
      pool.shift();
    }
    return new ArrayBuffer(size + (size >>> 3) + 4096);
  }

  private async openFile(first: Uint8Array, noDictionary: readonly string[]): Promise<void> {
    this.sink.openFile(this.fileIndex);
    this.open = true;
    this.fileRows = 0;
    this.fileRowGroups = 0;
    const sink = this.sink;
    await this.worker!.open(
      first,
      this.opts.compression,
      (chunk, release) => sink.write(chunk, release),
      true,
      noDictionary,
    );
  }

  /**
   * The top-level columns to write without a dictionary, judged from the rows buffered now
   * (before takeBatch resets the builders) until a batch of DICTIONARY_SAMPLE_ROWS rows has been
   * seen. A smaller batch can only show fewer distinct values, so its choice is never wider.
   */
  private chooseDictionaries(): readonly string[] {
    if (this.dictionarySettled) return this.noDictionary;
    const limit = WRITER_SETTINGS.dictionaryPageSizeLimit;
    const off: string[] = [];
    for (let i = 0; i < this.builders.length; i++) {
      const values = this.builders[i]!.plainValues?.();
      if (values !== undefined && dictionaryOverflows(values, limit)) off.push(this.plans[i]!.fieldName);
    }
    this.noDictionary = off;
    this.dictionarySettled = this.rows >= DICTIONARY_SAMPLE_ROWS;
    return off;
  }

  private async closeFile(): Promise<void> {
    this.open = false;
    await this.worker!.close();
    this.sink.closeFile(this.fileRows);
    this.files.push({
      index: this.fileIndex,
      rows: this.fileRows,
      bytes: this.worker!.fileBytes,
      rowGroups: this.fileRowGroups,
    });
    this.fileIndex++;
    this.fileRows = 0;
    this.fileRowGroups = 0;
  }
}
