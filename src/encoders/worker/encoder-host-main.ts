// The encoder host: a child process of the proxy that runs every export's encoder thread
// (./encoder-worker.ts, unchanged) when `exports.encoderHost` is "process" (docs/isolation.md,
// "Encoders in a process of their own"). In a process of its own, in a session of its own, its
// CPU is charged to a scheduling group of its own (Linux autogroup), and all its threads — V8's
// platform threads and libuv's pool included, which run the encoders' GC and compilation — are
// lowered, which nothing inside the proxy's process can do for the relay.
import { Socket } from "node:net";
import { getPriority } from "node:os";
import { Worker } from "node:worker_threads";
import { parquetWasm } from "../parquet/wasm-writer.js";
import {
  budgetHolders,
  budgetUse,
  type EncoderBudget,
  encoderBudget,
  encoderBudgets,
  releaseSlotsOf,
} from "./encoder-budget.js";
import { FrameReader, FrameWriter } from "./host-frames.js";
import { HostLoans } from "./host-loans.js";
import { lowerHost } from "./host-priority.js";
import {
  type FromHost,
  HOST_DATA_FD,
  type HostArgs,
  type HostBudget,
  type LoanSocketMessage,
  type ToHost,
  type WriterQuery,
} from "./host-protocol.js";
import { RING_BUFFERS } from "./port-sink.js";
import { type FromEncoder, type ToEncoder, toWireError } from "./protocol.js";
import { BATCH_BYTES, WINDOW_BYTES } from "./row-batcher.js";
import type { RowLoan } from "./row-loan.js";

const args = JSON.parse(process.argv[2] ?? "{}") as HostArgs;

/** A hosted encoder thread's young generation, in MB: what V8 gives an encoder thread in the proxy. */
export const ENCODER_YOUNG_GENERATION_MB = 48;

const autogroup = lowerHost(args.nice);

/** The data channel's read buffer. */
const CHANNEL_READ = 64 << 10;
/** The data channel from and to the relay (fd 4; ./host-frames.ts), read into one reused buffer. */
const channel = new Socket({
  fd: HOST_DATA_FD,
  readable: true,
  writable: true,
  onread: {
    buffer: Buffer.allocUnsafe(CHANNEL_READ),
    callback: (n: number, buf: Uint8Array) => fromRelay(n, buf),
  },
} as ConstructorParameters<typeof Socket>[0]);
const frames = new FrameWriter(channel);
/**
 * The relay is QUEUE_BYTES behind reading our frames: nothing more goes to the threads (their row
 * batches wait here, bounded by the relay's window; loans stop reading) until it has caught up.
 */
let congested = false;

function send(m: FromHost): void {
  frames.message(0, m);
}

interface Hosted {
  worker: Worker;
  /** The encoding budget its current export uses: a terminated thread's slot goes back there. */
  budget: EncoderBudget | undefined;
  hasWasm: boolean;
  /** Chunk buffers already written to the relay: back to the thread with its next rows. */
  returns: ArrayBuffer[];
  /** Row buffers the thread has acknowledged: the next batches from the relay are read into them. */
  rowBuffers: ArrayBuffer[];
  /**
   * Whose each batch posted to the thread and not yet acknowledged was, in order (the thread acks
   * in order): the relay's (null, its ack goes back to the relay) or a loan's (the host's own).
   */
  batches: Array<RowLoan | null>;
  /** What waits for the relay to catch up (congested), in order: rows, and the messages behind them. */
  held: Array<{ m: ToEncoder; transfer: ArrayBuffer[] }>;
}

const threads = new Map<number, Hosted>();
/** Row loans (./host-loans.ts): the relay's upstream sockets, lent for one statement's rows each. */
const loans = new HostLoans({
  buffer: (w) => threads.get(w)?.rowBuffers.pop() ?? new ArrayBuffer(BATCH_BYTES),
  postRows,
  send,
});
/** Acknowledged row buffers kept per thread, at most: its window's worth (row-batcher.ts). */
const ROW_BUFFERS = WINDOW_BYTES / BATCH_BYTES;
/** C2S_DEBUG_ENCODER_HOST: every thread's end is logged with the budgets' state (stderr). */
const debug = Boolean(process.env.C2S_DEBUG_ENCODER_HOST);
/** Tests only: the gate every thread started while it is set gets (ToHost "gate"). */
let gate: Int32Array | undefined;

function budgetsNow(): HostBudget[] {
  return [...encoderBudgets()].map(([slots, b]) => ({ slots, ...budgetUse(b), holders: budgetHolders(b) }));
}

function spawn(w: number, nice: number, idle: boolean): void {
  const worker = new Worker(new URL(args.workerUrl), {
    workerData: { nice, idle },
    execArgv: args.execArgv,
    // V8's default young generation (48 MB), not the host isolate's small one (HOST_NODE_ARGS):
    // the encoder makes garbage at every row.
    resourceLimits: { maxYoungGenerationSizeMb: ENCODER_YOUNG_GENERATION_MB },
  });
  const h: Hosted = {
    worker,
    budget: undefined,
    hasWasm: false,
    returns: [],
    rowBuffers: [],
    batches: [],
    held: [],
  };
  threads.set(w, h);
  worker.on("message", (m: FromEncoder) => {
    switch (m.t) {
      case "ack": {
        if (m.buf.byteLength === BATCH_BYTES && h.rowBuffers.length < ROW_BUFFERS) h.rowBuffers.push(m.buf);
        const loan = h.batches.shift() ?? null;
        if (loan === null) frames.ack(w, m.len);
        else loan.acked(m.len);
        break;
      }
      case "chunk": {
        const buf = m.buf;
        // Written as it is: the thread may refill it once the socket has taken it.
        frames.bytes(w, new Uint8Array(buf, 0, m.len), () => {
          if (h.returns.length < RING_BUFFERS) h.returns.push(buf);
        });
        if (frames.congested) hold();
        break;
      }
      case "finished":
        h.rowBuffers = []; // an idle thread's host holds none
        send({ t: "msg", w, m });
        break;
      default:
        send({ t: "msg", w, m });
    }
  });
  worker.on("error", (e) => send({ t: "error", w, message: e instanceof Error ? e.message : String(e) }));
  // Read now: once the thread has ended, Worker.threadId is -1.
  const tid = worker.threadId;
  worker.on("exit", (code) => {
    // Terminated (a cancel, a failure) in the middle of a batch, or while waiting for a slot: its
    // slot goes to the others, and it is no waiter any more.
    if (h.budget !== undefined) releaseSlotsOf(h.budget, tid);
    if (debug && h.budget !== undefined)
      process.stderr.write(`encoder host: thread ${tid} exited (${code}); ${JSON.stringify(budgetsNow())}\n`);
    threads.delete(w);
    h.held = [];
    send({ t: "exit", w, code });
  });
}

function post(msg: Extract<ToHost, { t: "post" }>): void {
  const h = threads.get(msg.w);
  if (h === undefined) return;
  const m = msg.m;
  if (m.t === "start") {
    h.returns = [];
    h.budget = msg.slots ? encoderBudget(msg.slots) : undefined;
    if (h.budget !== undefined) m.budget = h.budget;
    if (gate !== undefined) m.gate = gate;
    if (m.spec.format === "parquet" && !h.hasWasm) {
      // Compiled once per host, in its main thread, as the relay's thread does for threads.
      h.hasWasm = true;
      parquetWasm().then(
        (wasm) => toThread(h, { t: "wasm", wasm }),
        (e: unknown) => send({ t: "msg", w: msg.w, m: { t: "error", error: toWireError(e) } }),
      );
    }
  }
  toThread(h, m);
}

/** Posts to a thread, unless the relay is behind (or rows wait already: the order is kept). */
function toThread(h: Hosted, m: ToEncoder, transfer: ArrayBuffer[] = []): void {
  if (congested || h.held.length > 0) h.held.push({ m, transfer });
  else h.worker.postMessage(m, transfer);
}

/** The relay has fallen QUEUE_BYTES behind: hold the threads' input until it has caught up. */
function hold(): void {
  if (congested) return;
  congested = true;
  loans.congest(true);
  frames.drained(() => {
    congested = false;
    loans.congest(false);
    for (const t of threads.values()) {
      const held = t.held;
      t.held = [];
      for (const { m, transfer } of held) t.worker.postMessage(m, transfer);
    }
  });
}

/** Row batch `w` read into `into` (a view from the start of its buffer): to the thread, transferred. */
function rows(w: number, into: Uint8Array): void {
  postRows(w, into.buffer as ArrayBuffer, into.byteLength, null);
}

/** Rows `buf[0..len)` to thread `w`, from the relay (`loan` null) or read by a loan. False if it is gone. */
function postRows(w: number, buf: ArrayBuffer, len: number, loan: RowLoan | null): boolean {
  const h = threads.get(w);
  if (h === undefined) return false; // terminated meanwhile
  const free = h.returns;
  h.returns = [];
  h.batches.push(loan);
  toThread(h, { t: "rows", buf, len, free }, [buf, ...free]);
  return true;
}

process.on("message", (m: LoanSocketMessage | WriterQuery, sock?: Socket) => {
  if (m?.t === "writer") {
    const state = { queued: frames.queued, most: frames.mostQueued, congested };
    process.send!({ t: "writer", q: m.q, ...state } satisfies FromHost);
    return;
  }
  if (m?.t === "loan" && sock !== undefined) loans.socket(m.h, sock);
});

function receive(msg: ToHost): void {
  switch (msg.t) {
    case "spawn":
      spawn(msg.w, msg.nice, msg.idle);
      break;
    case "post":
      post(msg);
      break;
    case "terminate": {
      const h = threads.get(msg.w);
      if (h === undefined) send({ t: "exit", w: msg.w, code: 1 });
      else void h.worker.terminate();
      break;
    }
    case "gate":
      if (msg.closed) {
        gate ??= new Int32Array(new SharedArrayBuffer(3 * 4));
        Atomics.store(gate, 2, 1);
      } else if (gate !== undefined) {
        Atomics.store(gate, 2, 0);
        Atomics.notify(gate, 2);
        gate = undefined;
      }
      break;
    case "budgets":
      send({ t: "budgets", q: msg.q, budgets: budgetsNow() });
      break;
    case "loan":
      loans.frame(msg);
      break;
    case "loanHold":
      loans.hold(msg.h, msg.held);
      break;
    case "loanDrop":
      loans.drop(msg.h);
      break;
  }
}

const reader = new FrameReader({
  target(w, len) {
    const pooled = len <= BATCH_BYTES ? threads.get(w)?.rowBuffers.pop() : undefined;
    return new Uint8Array(pooled ?? new ArrayBuffer(Math.max(len, BATCH_BYTES)), 0, len);
  },
  bytes: rows,
  message: (_w, m) => receive(m as ToHost),
  ack() {}, // none go this way
});

function fromRelay(n: number, buf: Uint8Array): void {
  // The reader copies what it keeps: the buffer is read into again.
  reader.push(Buffer.from(buf.buffer, buf.byteOffset, n));
}
// The proxy ended (shut down, crashed, killed): so does the host, and every export it encoded.
process.on("disconnect", () => process.exit(0));
channel.on("error", () => process.exit(0));
channel.on("end", () => process.exit(0));
process.send!({ t: "up", pid: process.pid, nice: getPriority(), autogroup } satisfies FromHost);
