// An export's encoder thread: runs the export's RowEncoder on the DataRow batches the relay's
// thread sends, and sends the encoded file bytes back. Everything that scales with rows happens
// here, at a lower priority than the relay (see docs/isolation.md). One export at a time; a thread
// whose export finished may be kept (warm) for the next one, which begins with a `start` message.
import { parentPort, receiveMessageOnPort, threadId, workerData } from "node:worker_threads";
import { PgError, SqlState } from "../../errors.js";
import { createEncoder } from "../create-encoder.js";
import { useParquetWasm } from "../parquet/wasm-writer.js";
import type { FileSink, RowEncoder } from "../types.js";
import { BudgetTurns } from "./encoder-budget.js";
import { FileWriterSink } from "./file-writer-sink.js";
import { PortSink } from "./port-sink.js";
import { type EncoderWorkerData, type FromEncoder, type ToEncoder, toWireError } from "./protocol.js";
import { RingReader } from "./ring-reader.js";
import { BATCH_BYTES } from "./row-batcher.js";
import { applyThreadPriority, currentNice, niceAtStart } from "./thread-priority.js";

const port = parentPort!;
const data = workerData as EncoderWorkerData;

function post(m: FromEncoder, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

/**
 * The niceness this module and its imports were loaded at: read before anything here lowers it,
 * so it is the relay's unless the thread's entry (./encoder-worker-start.ts) lowered the thread
 * first. Reported with `ready` (tests).
 */
const loadedNice = currentNice();
// Applied by the entry already; applied here where this module was the entry itself.
const { nice, idle } = applyThreadPriority(data);
const portSink = new PortSink(post);
/** The export's files when this thread writes them itself (a `files` message: file:// targets). */
let files: FileWriterSink | null = null;
/** The encoder's sink: this thread's own file writes, else chunks to the driver over the port. */
const sink: FileSink = {
  copies: true,
  openFile: (index) => (files ?? portSink).openFile(index),
  write: (chunk, release) => (files ?? portSink).write(chunk, release),
  closeFile: (rows) => (files ?? portSink).closeFile(rows),
};
/** The current export's encoder and state: one export at a time, the next after `finished`. */
let encoder: RowEncoder | null = null;
let failed = false;
let gate: Int32Array | undefined;
/** This thread's turns in the process's encoding budget; none = no limit. */
let turns: BudgetTurns | undefined;
/** `rows` and `finish` messages received and not yet being handled. */
let pending = 0;

async function begin(m: Extract<ToEncoder, { t: "start" }>): Promise<void> {
  failed = false;
  gate = m.gate;
  turns = m.budget === undefined ? undefined : new BudgetTurns(m.budget, threadId);
  portSink.reset();
  files = null;
  try {
    if (m.spec.format === "parquet") await wasm;
    // Building the encoder takes a slot too: in a new thread it loads the format's modules
    // (Parquet: Arrow, the writer's WASM instance; ~0.4 CPU-s), and four exports starting at
    // once did that beside the one encoding, in the very second their backends start too.
    // Given back at once, rows queued or not: a turn is for encoding rows.
    turns?.take();
    encoder = await createEncoder(m.spec, sink);
    turns?.release();
    post({ t: "ready", nice, idle, loadedNice, startedNice: niceAtStart() });
  } catch (e) {
    turns?.release();
    failed = true;
    post({ t: "error", error: toWireError(e) });
  }
}

async function handle(m: Extract<ToEncoder, { t: "rows" | "finish" }>): Promise<void> {
  pending--;
  if (failed) return; // the driver is ending the export; nothing more is encoded
  const enc = encoder!;
  try {
    if (m.t === "rows") {
      await encodeBatch(enc, Buffer.from(m.buf, 0, m.len), moreQueued);
      post({ t: "ack", buf: m.buf, len: m.len }, [m.buf]);
    } else {
      turns?.take();
      await enc.finish();
      // The thread may serve another export: the encoder's own threads and memory go now.
      encoder = null;
      enc.dispose();
      turns?.release();
      files = null;
      post({ t: "finished", buffers: portSink.allocated });
      portSink.reset();
    }
  } catch (e) {
    turns?.release();
    failed = true;
    // The file being written goes before the driver hears of the failure.
    const err = files?.abort(PgError.from(e)) ?? e;
    post({ t: "error", error: toWireError(err) });
  }
}

/**
 * Encodes one batch of whole DataRows. Encoding needs a slot of the process's budget; while this
 * thread waits for one its rows stay unacknowledged (or in the ring), so the export's upstream
 * pauses. A slot is kept from batch to batch while `more()` are queued, for a turn
 * (./encoder-budget.ts). It goes back before `finished` is posted: the relay may then end this
 * thread or keep it idle, and a slot held then would be lost to the others. Throws the encoder's
 * error (the caller gives the slot back).
 */
async function encodeBatch(enc: RowEncoder, rows: Buffer, more: () => boolean): Promise<void> {
  takeTurn();
  enc.writeRows(rows, 0, rows.length);
  await endTurn(enc, more);
}

/** Waits for this thread's slot of the encoding budget (see encodeBatch). */
function takeTurn(): void {
  if (gate !== undefined) Atomics.wait(gate, 0, 1);
  turns?.take();
  if (gate !== undefined && gate.length > 2) {
    Atomics.add(gate, 1, 1); // threads encoding at once
    Atomics.wait(gate, 2, 1);
  }
}

/** After rows were written: the flush they made due, then the turn's end (see encodeBatch). */
async function endTurn(enc: RowEncoder, more: () => boolean): Promise<void> {
  if (enc.wantsFlush) await enc.flush();
  if (turns !== undefined) turns.next(more());
}

/**
 * Rows longer than this on average are copied out of the ring before they are written: a builder
 * copies a value of more than 256 bytes with one native copy, which V8 does a byte at a time out
 * of shared memory unless source and target lie at the same offset modulo 8 (h-many, session 12:
 * 16–25 µs per 64 KiB against 1–4.5 µs). One aligned copy of such rows into `wideRows`, then
 * native copies out of ordinary memory, is the cheaper way for them; short rows are read in place.
 */
const WIDE_ROW_BYTES = 256;
/** Where wide rows are copied: a piece of the ring at most (BATCH_BYTES), from any offset modulo 8. */
let wideRows: Buffer | null = null;

/**
 * The statement's rows through the relay's ring (./ring-reader.ts), framed here and written to the
 * encoder straight from the ring's memory as they are framed, up to BATCH_BYTES at a time, until
 * the first message that is not a DataRow, which the relay takes back (`ringBack`). The encoder
 * copies every value it keeps (RowEncoder's contract), and the reader frees a piece of the ring
 * only once its rows were written, so nothing reads memory the relay may write again. (Until
 * session 13 the rows were first copied into 256 KiB batch buffers: one copy of every row more,
 * ~2% of the thread.) On an encoder's error the ring is left as it is: the relay ends this thread
 * and reads on from its last message boundary.
 */
async function ringRows(m: Extract<ToEncoder, { t: "ring" }>): Promise<void> {
  pending--;
  if (failed) return;
  const enc = encoder!;
  const ring = new RingReader(m.sab, m.maxRowBytes, {
    rows: (buf, start, end, count, _own, at) => {
      const n = end - start;
      if (n <= WIDE_ROW_BYTES * count || n > BATCH_BYTES) enc.writeRows(buf, start, end);
      else {
        // Long values: see WIDE_ROW_BYTES. Source and copy at the same offset modulo 8.
        const off = at & 7;
        wideRows ??= Buffer.allocUnsafeSlow(BATCH_BYTES + 8);
        buf.copy(wideRows, off, start, end);
        enc.writeRows(wideRows, off, off + n);
      }
    },
  });
  const more = (): boolean => ring.available > 0 || moreQueued();
  try {
    for (;;) {
      if (ring.available > 0) {
        takeTurn();
        const took = ring.take(BATCH_BYTES);
        // The relay reads on at once; the flush the last rows made due follows.
        if (took < 0) post({ t: "ringBack" });
        await endTurn(enc, more);
        if (took < 0) return;
      } else {
        // A thread waiting for rows must not hold up the others: its slot goes back.
        turns?.release();
        await ring.waitForBytes();
      }
      // Chunk buffers the relay gave back (`free`), which wait in the port while this loop runs.
      for (let next = receiveMessageOnPort(port); next !== undefined; next = receiveMessageOnPort(port))
        receive(next.message as ToEncoder);
    }
  } catch (e) {
    turns?.release();
    failed = true;
    // The file being written goes before the driver hears of the failure.
    const err = files?.abort(PgError.from(e)) ?? e;
    post({ t: "error", error: toWireError(err) });
  }
}

/**
 * Whether another batch (or the finish) is ready for this thread: one received already, or the
 * next message waiting in the port, taken now (in order: everything received is queued before it).
 * Messages reach the port's listener only when this thread's event loop turns, which it does not
 * between batches handled back to back.
 */
function moreQueued(): boolean {
  if (pending > 0) return true;
  const next = receiveMessageOnPort(port);
  if (next === undefined) return false;
  receive(next.message as ToEncoder);
  return pending > 0;
}

/** The export ended without its rows: no file of it is finished; the thread is free again. */
function drop(): void {
  const enc = encoder;
  encoder = null;
  failed = false;
  turns?.release(); // none is held without rows; never one kept by an idle thread
  const buffers = portSink.allocated;
  portSink.reset();
  // A file the dropped encoder began (an empty result's, its finish sent before the drop) goes.
  // (Its cleanup's failure, if any, the driver meets again taking the file back.)
  files?.abort(new PgError(SqlState.queryCanceled, "encoder dropped"));
  files = null;
  try {
    enc?.dispose();
  } catch {
    // Its memory goes with the next encoder's or the thread's end either way.
  }
  post({ t: "finished", buffers });
}

// A Parquet encoder needs parquet-wasm, which the driver sends once (compiled) per thread.
let wasmArrived: () => void = () => {};
const wasm = new Promise<void>((resolve) => {
  wasmArrived = resolve;
});

// Messages are handled one at a time, in order.
let queue: Promise<void> = Promise.resolve();
function receive(m: ToEncoder): void {
  if (m.t === "wasm") {
    useParquetWasm(m.wasm);
    wasmArrived();
  } else if (m.t === "free") portSink.reclaim(m.free);
  else if (m.t === "start") queue = queue.then(() => begin(m));
  else if (m.t === "drop") queue = queue.then(drop);
  else if (m.t === "files") {
    const { output, renamed } = m;
    queue = queue.then(() => {
      files = new FileWriterSink(output, post, undefined, renamed);
    });
  } else if (m.t === "ring") {
    pending++;
    queue = queue.then(() => ringRows(m));
  } else {
    // Returned chunk buffers are usable at once, before the rows ahead of them are encoded.
    if (m.t === "rows") portSink.reclaim(m.free);
    pending++;
    queue = queue.then(() => handle(m));
  }
}
port.on("message", receive);
