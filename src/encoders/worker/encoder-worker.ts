// An export's encoder thread: runs the export's RowEncoder on the DataRow batches the relay's
// thread sends, and sends the encoded file bytes back. Everything that scales with rows happens
// here, at a lower priority than the relay (see docs/isolation.md).
import { getPriority, setPriority } from "node:os";
import { parentPort, workerData } from "node:worker_threads";
import { createEncoder } from "../create-encoder.js";
import { useParquetWasm } from "../parquet/wasm-writer.js";
import type { FileSink, RowEncoder } from "../types.js";
import { type EncoderWorkerData, type FromEncoder, type ToEncoder, toWireError } from "./protocol.js";

const port = parentPort!;
const data = workerData as EncoderWorkerData;

function post(m: FromEncoder, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

/**
 * Lowers this thread's priority to `nice`. Linux applies setpriority(PRIO_PROCESS, 0) to the
 * calling thread only, and threads started from here (the Parquet writer) inherit it. Raising a
 * priority needs privileges, so a process already nicer than `nice` keeps its own.
 */
function lowerPriority(nice: number): number {
  try {
    const current = getPriority();
    if (nice > current) setPriority(nice);
    return getPriority();
  } catch {
    return Number.NaN; // a platform without per-thread priorities: run as we are
  }
}

/**
 * Sends the encoder's file bytes to the driver's sink, in order. A chunk is given away, but the
 * encoder may still read it until its call returns (the CSV encoder moves a row's tail out of the
 * buffer it just handed on), so messages leave once the current call is done.
 */
class PortSink implements FileSink {
  private queued: FromEncoder[] = [];

  openFile(index: number): void {
    this.queue({ t: "open", index });
  }

  write(chunk: Uint8Array): void {
    this.queue({ t: "chunk", data: chunk });
  }

  closeFile(rows: number): void {
    this.queue({ t: "close", rows });
  }

  private queue(m: FromEncoder): void {
    if (this.queued.length === 0) queueMicrotask(() => this.flush());
    this.queued.push(m);
  }

  /** Sends what is queued; called, too, before anything that must follow it (ack, finished). */
  flush(): void {
    const q = this.queued;
    this.queued = [];
    for (const m of q) {
      if (m.t !== "chunk") {
        post(m);
        continue;
      }
      // Transfer a chunk that is its buffer's only view, else copy: never transfer memory the
      // encoder, a Buffer pool or WASM might still use.
      const c = m.data;
      const own =
        c.byteOffset === 0 && c.byteLength === c.buffer.byteLength && c.buffer instanceof ArrayBuffer;
      const data = own ? c : c.slice();
      post({ t: "chunk", data }, [data.buffer as ArrayBuffer]);
    }
  }
}

const nice = lowerPriority(data.nice);
const sink = new PortSink();
let encoder: RowEncoder | null = null;
let failed = false;

async function handle(m: Exclude<ToEncoder, { t: "wasm" }>): Promise<void> {
  if (failed) return; // the driver is ending the export; nothing more is encoded
  const enc = encoder!;
  try {
    if (m.t === "rows") {
      const gate = data.gate;
      if (gate !== undefined) Atomics.wait(gate, 0, 1);
      enc.writeRows(Buffer.from(m.buf, 0, m.len), 0, m.len);
      if (enc.wantsFlush) await enc.flush();
      sink.flush();
      post({ t: "ack", buf: m.buf, len: m.len }, [m.buf]);
    } else {
      await enc.finish();
      sink.flush();
      post({ t: "finished" });
    }
  } catch (e) {
    failed = true;
    post({ t: "error", error: toWireError(e) });
  }
}

// A Parquet encoder needs parquet-wasm, which the driver sends once compiled.
let wasmArrived: () => void = () => {};
const wasm = new Promise<void>((resolve) => {
  wasmArrived = resolve;
});
if (data.spec.format !== "parquet") wasmArrived();

// Messages are handled one at a time, in order, once the encoder exists.
let queue: Promise<void> = wasm
  .then(() => createEncoder(data.spec, sink))
  .then(
    (e) => {
      encoder = e;
      post({ t: "ready", nice });
    },
    (e: unknown) => {
      failed = true;
      post({ t: "error", error: toWireError(e) });
    },
  );
port.on("message", (m: ToEncoder) => {
  if (m.t === "wasm") {
    useParquetWasm(m.wasm);
    wasmArrived();
  } else queue = queue.then(() => handle(m));
});
