// One Parquet file written by parquet-wasm's streaming writer (`transformParquetStream`).
//
// Row groups are ours to cut: the writer is configured with `max_row_group_bytes = 1`, which
// makes arrow-rs close the row group after every `write` (it never splits a batch for the byte
// limit), so each batch we hand over is exactly one row group and its bytes come out before the
// writer asks for the next batch. That lets the encoder count a file's bytes exactly at every
// row-group boundary and decide where the next file starts.
//
// parquet-wasm runs the writer as a future on the JS microtask queue and pulls record batches
// from a ReadableStream; the pull for batch k+1 means batch k has been encoded and its bytes
// passed to the output stream. parquet-wasm ignores write errors inside the stream, so the
// encoder must only ever hand it batches that match the schema (it builds them that way).
import { tableToIPC, type Table as ArrowTable, type RecordBatch as ArrowBatch, Table } from "apache-arrow";
import * as pw from "parquet-wasm";

export type Compression = "snappy" | "zstd" | "gzip" | "none";

const COMPRESSION: Record<Compression, pw.Compression> = {
  snappy: pw.Compression.SNAPPY,
  zstd: pw.Compression.ZSTD,
  gzip: pw.Compression.GZIP,
  none: pw.Compression.UNCOMPRESSED,
};

export function writerProperties(compression: Compression): pw.WriterProperties {
  return (
    new pw.WriterPropertiesBuilder()
      // Parquet 1.0 pages: what every reader (Snowflake, Redshift, old Spark) accepts. [mz]
      .setWriterVersion(pw.WriterVersion.V1)
      .setCompression(COMPRESSION[compression])
      .setDictionaryEnabled(true)
      .setStatisticsEnabled(pw.EnabledStatistics.None)
      .setMaxRowGroupSize(0x7fffffff)
      .setMaxRowGroupBytes(1)
      .build()
  );
}

/** Arrow JS batch → the same batch in WASM memory (via one IPC stream message). */
export function toWasmBatch(batch: ArrowBatch): pw.RecordBatch {
  const ipc = tableToIPC(new Table([batch]) as ArrowTable, "stream");
  const table = pw.Table.fromIPCStream(ipc);
  try {
    const rb = table.recordBatch(0);
    if (rb === undefined) throw new Error("parquet-wasm: IPC stream held no record batch");
    return rb;
  } finally {
    table.free();
  }
}

const nextMacrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

export class WasmParquetWriter {
  private ctrl: ReadableStreamDefaultController<pw.RecordBatch> | null = null;
  private demand: Promise<void>;
  private signalDemand!: () => void;
  private done: Promise<void> | null = null;
  private closed = false;
  private discard = false;
  private failure: unknown = null;
  /** Bytes this file has produced so far (all of them, once `write` has returned). */
  bytes = 0;

  private constructor(
    private readonly props: pw.WriterProperties,
    private readonly onChunk: (chunk: Uint8Array) => void,
  ) {
    this.demand = this.nextDemand();
  }

  private nextDemand(): Promise<void> {
    return new Promise<void>((resolve) => {
      this.signalDemand = resolve;
    });
  }

  /** Starts a file whose schema is the first batch's; returns once that batch is written. */
  static async open(
    first: pw.RecordBatch,
    props: pw.WriterProperties,
    onChunk: (chunk: Uint8Array) => void,
  ): Promise<WasmParquetWriter> {
    const w = new WasmParquetWriter(props, onChunk);
    await w.start(first);
    return w;
  }

  private async start(first: pw.RecordBatch): Promise<void> {
    const input = new ReadableStream<pw.RecordBatch>(
      {
        pull: (c) => {
          this.ctrl = c;
          this.signalDemand();
        },
      },
      { highWaterMark: 0 },
    );
    // The writer reads the first batch before it resolves (it needs the schema).
    const output = pw.transformParquetStream(input, this.props);
    await this.demand;
    this.enqueue(first);
    const stream = await output;
    const reader = stream.getReader();
    this.done = (async () => {
      for (;;) {
        const r = await reader.read();
        if (r.done) return;
        this.bytes += r.value.byteLength;
        if (this.discard) continue;
        try {
          this.onChunk(r.value);
        } catch (err) {
          // Keep draining so the WASM writer can finish and free its memory; report the error
          // to whoever waits next.
          this.failure ??= err;
          this.discard = true;
          this.signalDemand();
        }
      }
    })();
    await this.demand;
    await nextMacrotask();
    this.check();
  }

  private enqueue(rb: pw.RecordBatch): void {
    this.demand = this.nextDemand();
    this.ctrl!.enqueue(rb);
  }

  /** Writes one row group; when it returns, `bytes` includes it. */
  async write(rb: pw.RecordBatch): Promise<void> {
    if (this.closed) throw new Error("parquet writer is closed");
    await this.demand;
    this.check();
    this.enqueue(rb);
    // The next pull means this batch is encoded and its bytes are in the output stream; one
    // macrotask later they have reached onChunk (the stream hands them over in microtasks).
    await this.demand;
    await nextMacrotask();
    this.check();
  }

  private check(): void {
    if (this.failure !== null) {
      this.abandon();
      throw this.failure;
    }
  }

  /** Writes the footer; when it returns every byte of the file has been passed to onChunk. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    await this.demand;
    this.ctrl!.close();
    await this.done;
    if (this.failure !== null) throw this.failure;
  }

  /** Ends the file without caring for its bytes (failure or cancel); frees the WASM writer. */
  abandon(): void {
    this.discard = true;
    if (this.closed) return;
    this.closed = true;
    void this.demand.then(() => {
      try {
        this.ctrl?.close();
      } catch {
        // already closed
      }
    });
  }
}
