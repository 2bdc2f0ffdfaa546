// The Parquet writer: parquet-wasm's streaming writer (`transformParquetStream`) driven from the
// thread that encodes the export (its encoder thread, see ../worker/), compiled once per process.
//
// Why on the encoder thread and not in a thread of its own (as until 2026-12-06): one export
// then costs one thread and one isolate less, the row groups' Arrow IPC and the encoded bytes
// cross no extra thread, and the total CPU per row is lower (docs/decisions.md, "Parquet CPU per
// row"). A WebAssembly.Memory never shrinks: it goes when the encoder thread ends after the export.
//
// Row groups are ours to cut: the writer runs with `max_row_group_bytes = 1`, so arrow-rs closes
// the row group after every write (it never splits a batch for the byte limit): each batch we send
// is exactly one row group, and `write` resolves once its bytes are out, so the encoder knows a
// file's exact size at every row-group boundary.
//
// parquet-wasm pulls record batches from a ReadableStream: the pull for batch k+1 means batch k
// is encoded and its bytes are in the output stream; one macrotask later they have been read.
// parquet-wasm ignores write errors inside the stream, so the encoder only ever sends batches
// with the file's schema (it builds them that way).
//
// Output buffers are reused. parquet-wasm's glue copies each piece of output out of WASM memory
// into a new ArrayBuffer (its `__wbg_new_from_slice` import): ~3.6 MB per row group, every one
// first-touched, then garbage that drives the thread's collections (4 mark-compacts per 1M rows of
// an 11 MB heap, the external bytes are what triggers them). At instantiation that one import is
// given a function that makes the same copy into a buffer from a small pool instead; the sink
// hands the buffer back through `release` once it has read it (FileSink's contract). No view of
// WASM memory escapes, so the glue's semantics are kept; if a parquet-wasm version names or calls
// the import differently, the glue's own function stays in place (`outputPooled()` tells which).
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { pathToFileURL } from "node:url";
import { Worker } from "node:worker_threads";
import { PgError, SqlState } from "../../errors.js";
import { onIdleDrop } from "./kept.js";

export type Compression = "snappy" | "zstd" | "gzip" | "none";

/** Writer settings (SPEC §4); applied with parquet-wasm's WriterPropertiesBuilder. */
export const WRITER_SETTINGS = {
  // Parquet 1.0 pages: what every reader (Snowflake, Redshift, old Spark) accepts. [mz]
  writerVersion: "V1",
  dictionary: true,
  // A column whose dictionary outgrows this falls back to plain encoding for the rest of the row
  // group. arrow-rs's 1 MiB default keeps building dictionaries for unique columns (ids,
  // timestamps): on the bench table 64 KiB makes files ~17% smaller (snappy) and writing ~30%
  // faster, and low-cardinality columns still get their dictionary.
  dictionaryPageSizeLimit: 64 << 10,
  statistics: "None",
} as const;

/** A compiled WebAssembly.Module (the project's lib settings carry no WebAssembly value types). */
type WasmModule = object;
const wasmApi = (
  globalThis as unknown as { WebAssembly: { compile(bytes: Uint8Array): Promise<WasmModule> } }
).WebAssembly;

/** parquet-wasm compiled, and where its JavaScript glue is; can be sent to another thread. */
export interface ParquetWasm {
  module: WasmModule;
  esmUrl: string;
}

let compiled: Promise<ParquetWasm> | null = null;

/**
 * Hands this thread parquet-wasm as another thread compiled it: an export's encoder thread gets
 * the relay thread's copy rather than compiling its own.
 */
export function useParquetWasm(wasm: ParquetWasm): void {
  compiled = Promise.resolve(wasm);
}

const require = createRequire(import.meta.url);
const WASM_FILE = require.resolve("parquet-wasm/esm/parquet_wasm_bg.wasm");
const ESM_URL = pathToFileURL(require.resolve("parquet-wasm/esm/parquet_wasm.js")).href;

/** parquet-wasm's ESM build, compiled once per process and shared by every worker. */
export function parquetWasm(): Promise<ParquetWasm> {
  compiled ??= (async () => ({ module: await wasmApi.compile(readFileSync(WASM_FILE)), esmUrl: ESM_URL }))();
  return compiled;
}

/** Tests only: awaited before the warm-up's compile begins (a test holds it there). */
export const parquetWasmTestHooks: { beforeCompile?: () => Promise<void> } = {};

/**
 * The compile of parquetWasm(), done in a short-lived thread of its own (the proxy's warm-up):
 * WebAssembly.compile reads and decodes the module's 4.7 MB on the calling thread before V8's
 * own threads compile it, which held the relay's event loop 50–460 ms at load 15 here (a thread
 * of its own: no more than an idle loop's delay; docs/decisions.md, "The first export of a
 * proxy"). The module comes back to this thread (it is shared, not copied) and serves every
 * export as parquetWasm()'s. A failure or `signal` leaves the compile to the first export.
 */
export function compileParquetWasmOffThread(signal?: AbortSignal): Promise<ParquetWasm> {
  if (compiled !== null) return compiled;
  const mine: Promise<ParquetWasm> = (async () => {
    await parquetWasmTestHooks.beforeCompile?.();
    if (signal?.aborted) throw new Error("aborted");
    // CommonJS source run by the thread; none of the process's node options (as encoder threads).
    const code = `const { parentPort, workerData } = require("node:worker_threads");
      WebAssembly.compile(require("node:fs").readFileSync(workerData)).then((m) => parentPort.postMessage(m));`;
    const worker = new Worker(code, { eval: true, workerData: WASM_FILE, execArgv: [] });
    worker.unref();
    const stop = (): void => void worker.terminate();
    signal?.addEventListener("abort", stop, { once: true });
    try {
      const module = await new Promise<WasmModule>((resolve, reject) => {
        worker.once("message", resolve);
        worker.once("error", reject);
        worker.once("exit", (code) => reject(new Error(`parquet-wasm's compile thread exited (${code})`)));
      });
      return { module, esmUrl: ESM_URL };
    } finally {
      signal?.removeEventListener("abort", stop);
      void worker.terminate();
    }
  })();
  compiled = mine;
  mine.catch(() => {
    if (compiled === mine) compiled = null; // the first export compiles it itself
  });
  return mine;
}

type ParquetWasmModule = typeof import("parquet-wasm/esm/parquet_wasm.js");
type Table = ReturnType<ParquetWasmModule["Table"]["fromIPCStream"]>;
type RecordBatch = NonNullable<ReturnType<Table["recordBatch"]>>;

const CODEC = { snappy: "SNAPPY", zstd: "ZSTD", gzip: "GZIP", none: "UNCOMPRESSED" } as const;

let loaded: Promise<ParquetWasmModule> | null = null;

/** parquet-wasm instantiated in this thread (once: its memory lives as long as the thread). */
function instance(): Promise<ParquetWasmModule> {
  loaded ??= (async () => {
    const { module, esmUrl } = await parquetWasm();
    const pw = (await import(esmUrl)) as ParquetWasmModule;
    initPooled(pw, module);
    return pw;
  })();
  return loaded;
}

/** Pieces of output below this size keep the glue's own copy (metadata, footers). */
const POOLED_MIN_BYTES = 64 << 10;
/** Output buffers kept for reuse in this thread: one being read, one or two being written. */
const POOL_BUFFERS = 4;
const outputPool: ArrayBuffer[] = [];
const poolable = new WeakSet<ArrayBuffer>();
let pooling = false;

/** Whether this thread's parquet-wasm writes its output into pooled buffers (see above). */
export function outputPooled(): boolean {
  return pooling;
}

function pooledBuffer(len: number): ArrayBuffer {
  for (let i = 0; i < outputPool.length; i++) {
    if (outputPool[i]!.byteLength >= len) return outputPool.splice(i, 1)[0]!;
  }
  // None fits: drop the smallest so the pool keeps its size; leave room for larger row groups.
  if (outputPool.length >= POOL_BUFFERS - 1) {
    outputPool.sort((a, b) => a.byteLength - b.byteLength);
    outputPool.shift();
  }
  const b = new ArrayBuffer(len + (len >>> 2));
  poolable.add(b);
  return b;
}

function recycle(b: ArrayBuffer): void {
  if (outputPool.length < POOL_BUFFERS) outputPool.push(b);
}

// The thread's next export reuses them; an idle thread lets go of them (./kept.ts).
onIdleDrop(() => {
  outputPool.length = 0;
});

type Imports = Record<string, Record<string, unknown>>;
type InstanceCtor = new (module: WasmModule, imports: Imports) => object;

/**
 * Runs the glue's `initSync` with its output-copy import replaced (see the top of this file). The
 * glue instantiates synchronously inside `initSync`, so the constructor is swapped only for that call.
 */
function initPooled(pw: ParquetWasmModule, module: WasmModule): void {
  const wa = (globalThis as unknown as { WebAssembly: { Instance: InstanceCtor } }).WebAssembly;
  const original = wa.Instance;
  // A Proxy, so that the glue's `new WebAssembly.Instance(module, imports)` still constructs.
  const wrapped = new Proxy(original, {
    construct(target, args: [WasmModule, Imports]) {
      for (const ns of Object.values(args[1])) {
        const key = Object.keys(ns).find((k) => k.startsWith("__wbg_new_from_slice_"));
        const glue = key === undefined ? undefined : ns[key];
        if (key === undefined || typeof glue !== "function") continue;
        const glueCopy = glue as (ptr: number, len: number) => Uint8Array;
        ns[key] = (ptr: number, len: number): Uint8Array => {
          if (len < POOLED_MIN_BYTES) return glueCopy(ptr, len);
          const out = new Uint8Array(pooledBuffer(len), 0, len);
          // As the glue reads it: the pointer is an unsigned 32-bit address.
          out.set(new Uint8Array(pw.wasmMemory().buffer as ArrayBuffer, ptr >>> 0, len));
          return out;
        };
        pooling = true;
      }
      return Reflect.construct(target, args);
    },
  });
  wa.Instance = wrapped;
  try {
    pw.initSync({ module: module as WebAssembly.Module });
  } finally {
    wa.Instance = original;
  }
}

const nextMacrotask = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

interface OpenFile {
  ctrl: ReadableStreamDefaultController<RecordBatch> | null;
  demand: Promise<void>;
  signal: () => void;
  done: Promise<void> | null;
}

function newFile(): OpenFile {
  const f: OpenFile = { ctrl: null, demand: Promise.resolve(), signal: () => {}, done: null };
  renew(f);
  return f;
}

function renew(f: OpenFile): void {
  f.demand = new Promise((resolve) => {
    f.signal = resolve;
  });
}

/** One export's Parquet writer: files one after another, requests served in order. */
export class ParquetWasmWriter {
  /** Bytes of the current file that have reached `onChunk`. */
  fileBytes = 0;
  /** Receives the buffers of batches given away (`giveAway`), once parquet-wasm has copied them. */
  onRecycle: ((buffer: ArrayBuffer) => void) | null = null;
  private file: OpenFile | null = null;
  private onChunk: ((chunk: Uint8Array, release?: () => void) => void) | null = null;
  private queue: Promise<void> = Promise.resolve();
  private failure: PgError | null = null;
  private terminated = false;

  private constructor(private readonly pw: ParquetWasmModule) {}

  static async start(): Promise<ParquetWasmWriter> {
    return new ParquetWasmWriter(await instance());
  }

  /**
   * Starts a file whose schema is the first batch's; resolves once that batch is written.
   * `giveAway`: the whole buffer under `ipc` is the caller's to give (see `onRecycle`).
   * `noDictionary`: top-level columns to write without dictionary encoding.
   */
  open(
    ipc: Uint8Array,
    compression: Compression,
    onChunk: (chunk: Uint8Array, release?: () => void) => void,
    giveAway = false,
    noDictionary: readonly string[] = [],
  ): Promise<void> {
    return this.serial(async () => {
      if (this.file !== null) throw new Error("a file is already open");
      this.onChunk = onChunk;
      this.fileBytes = 0;
      const f = newFile();
      this.file = f;
      const input = new ReadableStream<RecordBatch>(
        {
          pull: (c) => {
            f.ctrl = c;
            f.signal();
          },
        },
        { highWaterMark: 0 },
      );
      // The writer reads the first batch before it resolves (it needs the schema).
      const output = this.pw.transformParquetStream(input, this.props(compression, noDictionary));
      await f.demand;
      renew(f);
      f.ctrl!.enqueue(this.toBatch(ipc, giveAway));
      const reader = ((await output) as ReadableStream<Uint8Array>).getReader();
      f.done = (async () => {
        for (;;) {
          const r = await reader.read();
          if (r.done) return;
          this.chunk(r.value);
        }
      })();
      await f.demand;
      await nextMacrotask();
    });
  }

  /** Writes one row group; when it resolves, `fileBytes` includes it. `giveAway` as for open. */
  write(ipc: Uint8Array, giveAway = false): Promise<void> {
    return this.serial(async () => {
      const f = this.file;
      if (f === null) throw new Error("no file is open");
      await f.demand;
      renew(f);
      f.ctrl!.enqueue(this.toBatch(ipc, giveAway));
      await f.demand;
      await nextMacrotask();
    });
  }

  /** Writes the footer; when it resolves every byte of the file has reached onChunk. */
  close(): Promise<void> {
    return this.serial(async () => {
      const f = this.file;
      if (f === null) throw new Error("no file is open");
      this.file = null;
      await f.demand;
      f.ctrl!.close();
      await f.done;
    });
  }

  /** Nothing more is written: an open file is ended (its bytes go nowhere), freeing its writer. */
  terminate(): void {
    if (this.terminated) return;
    this.terminated = true;
    this.failure ??= new PgError(SqlState.queryCanceled, "parquet writer stopped");
    const f = this.file;
    this.file = null;
    try {
      f?.ctrl?.close();
    } catch {
      // already closed or errored: nothing left to free
    }
  }

  private props(compression: Compression, noDictionary: readonly string[]) {
    const pw = this.pw;
    let b = new pw.WriterPropertiesBuilder()
      .setWriterVersion(pw.WriterVersion[WRITER_SETTINGS.writerVersion])
      .setCompression(pw.Compression[CODEC[compression]])
      .setDictionaryEnabled(WRITER_SETTINGS.dictionary)
      .setDictionaryPageSizeLimit(WRITER_SETTINGS.dictionaryPageSizeLimit)
      .setStatisticsEnabled(pw.EnabledStatistics[WRITER_SETTINGS.statistics])
      .setMaxRowGroupSize(0x7fffffff)
      .setMaxRowGroupBytes(1);
    for (const col of noDictionary) b = b.setColumnDictionaryEnabled(col, false);
    return b.build();
  }

  private toBatch(ipc: Uint8Array, giveAway: boolean): RecordBatch {
    let table: Table;
    try {
      table = this.pw.Table.fromIPCStream(ipc);
    } finally {
      // The bytes are in WASM memory now: the buffer is free again.
      if (giveAway && ipc.buffer instanceof ArrayBuffer) this.onRecycle?.(ipc.buffer);
    }
    try {
      const rb = table.recordBatch(0);
      if (!rb) throw new Error("IPC stream held no record batch");
      return rb;
    } finally {
      table.free();
    }
  }

  private chunk(data: Uint8Array): void {
    if (this.failure !== null) return;
    this.fileBytes += data.byteLength;
    const b = data.buffer;
    try {
      // A pooled buffer goes back once the sink no longer reads it (at once, if it copies).
      this.onChunk?.(data, b instanceof ArrayBuffer && poolable.has(b) ? () => recycle(b) : undefined);
    } catch (err) {
      this.failure = PgError.from(err);
    }
  }

  /** Requests run one after another; a failure fails this and every later request. */
  private serial(op: () => Promise<void>): Promise<void> {
    const run = this.queue.then(() => {
      if (this.failure !== null) throw this.failure;
      return op();
    });
    this.queue = run.catch(() => {});
    return run.then(
      () => {
        if (this.failure !== null) throw this.failure;
      },
      (err: unknown) => {
        throw (
          this.failure ??
          (err instanceof PgError
            ? err
            : new PgError(
                SqlState.internalError,
                `parquet writer failed: ${err instanceof Error ? err.message : String(err)}`,
              ))
        );
      },
    );
  }
}
