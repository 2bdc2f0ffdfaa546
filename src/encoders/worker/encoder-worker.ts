// An export's encoder thread: runs the export's RowEncoder on the DataRow batches the relay's
// thread sends, and sends the encoded file bytes back. Everything that scales with rows happens
// here, at a lower priority than the relay (see docs/isolation.md). One export at a time; a thread
// whose export finished may be kept (warm) for the next one, which begins with a `start` message.
import { execFileSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { parentPort, threadId, workerData } from "node:worker_threads";
import { createEncoder } from "../create-encoder.js";
import { useParquetWasm } from "../parquet/wasm-writer.js";
import type { FileSink, RowEncoder } from "../types.js";
import { acquireSlot, type EncoderBudget, releaseSlot } from "./encoder-budget.js";
import { type EncoderWorkerData, type FromEncoder, type ToEncoder, toWireError } from "./protocol.js";

const port = parentPort!;
const data = workerData as EncoderWorkerData;

function post(m: FromEncoder, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

/**
 * Lowers this thread's priority to `nice`. Linux applies setpriority(PRIO_PROCESS, 0) to the
 * calling thread only (the Parquet writer runs on this thread too). Raising a
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
  private queued: Array<FromEncoder | { t: "data"; chunk: Uint8Array; whole: boolean }> = [];

  openFile(index: number): void {
    this.queue({ t: "open", index });
  }

  write(chunk: Uint8Array, whole = false): void {
    this.queue({ t: "data", chunk, whole });
  }

  closeFile(rows: number): void {
    this.queue({ t: "close", rows });
  }

  private queue(m: (typeof this.queued)[number]): void {
    if (this.queued.length === 0) queueMicrotask(() => this.flush());
    this.queued.push(m);
  }

  /** Forgets what is queued (an export dropped before its files mean anything). */
  discard(): void {
    this.queued = [];
  }

  /** Sends what is queued; called, too, before anything that must follow it (ack, finished). */
  flush(): void {
    const q = this.queued;
    this.queued = [];
    for (const m of q) {
      if (m.t !== "data") {
        post(m);
        continue;
      }
      // Transfer the memory the encoder gave away (or a chunk that is its buffer's only view),
      // else a copy: never transfer memory the encoder, a Buffer pool or WASM might still use.
      // The message carries the bare ArrayBuffer: posting a Buffer (a Uint8Array subclass) took
      // ~0.6 ms per 600 KiB chunk even when transferred, a bare ArrayBuffer ~0.07 ms.
      const c = m.chunk;
      const own =
        c.buffer instanceof ArrayBuffer &&
        (m.whole || (c.byteOffset === 0 && c.byteLength === c.buffer.byteLength));
      const data = own ? c : new Uint8Array(c); // a copy (Buffer#slice would be a view)
      const buf = data.buffer as ArrayBuffer;
      post({ t: "chunk", buf, offset: data.byteOffset, len: data.byteLength }, [buf]);
    }
  }
}

/**
 * Puts this thread in the SCHED_IDLE class: it runs only when no ordinary thread wants the CPU,
 * and an ordinary thread that wakes (the relay, with a client's query) takes the CPU from it at
 * once, where niceness only weighs the shares. Linux lets an unprivileged thread move itself to
 * SCHED_IDLE (sched(7)); Node has no call for it, so util-linux's `chrt` does it for this thread's
 * id (the Parquet writer runs on this thread too). Without /proc, chrt or
 * the permission the thread keeps its niceness alone.
 */
function idleClass(): boolean {
  try {
    const tid = readlinkSync("/proc/thread-self").split("/").pop()!;
    execFileSync("chrt", ["--idle", "--pid", "0", tid], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}

const nice = lowerPriority(data.nice);
const idle = data.idle === true && idleClass();
const sink = new PortSink();
/** The current export's encoder and state: one export at a time, the next after `finished`. */
let encoder: RowEncoder | null = null;
let failed = false;
let gate: Int32Array | undefined;
let budget: EncoderBudget | undefined;

async function begin(m: Extract<ToEncoder, { t: "start" }>): Promise<void> {
  failed = false;
  gate = m.gate;
  budget = m.budget;
  try {
    if (m.spec.format === "parquet") await wasm;
    encoder = await createEncoder(m.spec, sink);
    post({ t: "ready", nice, idle });
  } catch (e) {
    failed = true;
    post({ t: "error", error: toWireError(e) });
  }
}

async function handle(m: Extract<ToEncoder, { t: "rows" | "finish" }>): Promise<void> {
  if (failed) return; // the driver is ending the export; nothing more is encoded
  const enc = encoder!;
  // Encoding takes a slot of the process's budget (batch by batch, and the last encoding at
  // finish); while this thread waits for one its batches stay unacknowledged, so the export's
  // upstream pauses. The slot goes back before anything is posted: once the relay has a
  // `finished` it may end this thread, and a slot still held then would be lost to the others.
  if (m.t === "rows" && gate !== undefined) Atomics.wait(gate, 0, 1);
  let slot = budget === undefined ? -1 : acquireSlot(budget, threadId, true);
  const release = (): void => {
    if (slot >= 0) releaseSlot(budget!, slot, threadId);
    slot = -1;
  };
  try {
    if (m.t === "rows") {
      if (gate !== undefined && gate.length > 2) {
        Atomics.add(gate, 1, 1); // threads encoding at once
        Atomics.wait(gate, 2, 1);
      }
      enc.writeRows(Buffer.from(m.buf, 0, m.len), 0, m.len);
      if (enc.wantsFlush) await enc.flush();
      release();
      sink.flush();
      post({ t: "ack", buf: m.buf, len: m.len }, [m.buf]);
    } else {
      await enc.finish();
      // The thread may serve another export: the encoder's own threads and memory go now.
      encoder = null;
      enc.dispose();
      release();
      sink.flush();
      post({ t: "finished" });
    }
  } catch (e) {
    release();
    failed = true;
    post({ t: "error", error: toWireError(e) });
  }
}

/** The export ended without its rows: no file of it is finished; the thread is free again. */
function drop(): void {
  const enc = encoder;
  encoder = null;
  failed = false;
  sink.discard();
  try {
    enc?.dispose();
  } catch {
    // Its memory goes with the next encoder's or the thread's end either way.
  }
  post({ t: "finished" });
}

// A Parquet encoder needs parquet-wasm, which the driver sends once (compiled) per thread.
let wasmArrived: () => void = () => {};
const wasm = new Promise<void>((resolve) => {
  wasmArrived = resolve;
});

// Messages are handled one at a time, in order.
let queue: Promise<void> = Promise.resolve();
port.on("message", (m: ToEncoder) => {
  if (m.t === "wasm") {
    useParquetWasm(m.wasm);
    wasmArrived();
  } else if (m.t === "start") queue = queue.then(() => begin(m));
  else if (m.t === "drop") queue = queue.then(drop);
  else queue = queue.then(() => handle(m));
});
