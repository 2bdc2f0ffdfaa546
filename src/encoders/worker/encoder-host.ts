// The relay's side of the encoder host (./encoder-host-main.ts): one child process per proxy
// process, started at the first export that wants it (./host-launch.ts), that runs the encoder
// threads. This module keeps the process's current host and its channels to it: the data channel
// (frames: every thread's messages, rows and chunks), the IPC channel (start-up, the writers'
// state, the sockets of row loans: ./socket-lender.ts), and its end. Each thread is seen through
// a HostedWorker (./hosted-worker.ts), which behaves as the Worker it replaces, so
// ./encoder-thread.ts keeps one logic (credits, acks, the ring, cancel = terminate, the spare
// thread) for both hosts.
import type { ChildProcess } from "node:child_process";
import type { Socket } from "node:net";
import { withStaticReads } from "../../proxy/fast-socket.js";
import { FrameReader, FrameWriter } from "./host-frames.js";
import { launchHost } from "./host-launch.js";
import type { FromHost, HostArgs, HostBudget, ToHost, WriterQuery, WriterState } from "./host-protocol.js";
import { HostedWorker, type WorkerHost } from "./hosted-worker.js";
import { type HostLoan, type LentSocket, type LoanEvents, SocketLender } from "./socket-lender.js";
import { profilerArgs, workerEntry } from "./worker-entry.js";

// Where the relay's code (./thread-pool.ts, ./encoder-thread.ts, ../../copy/row-relay.ts) has them.
export type { EncoderWorker } from "./hosted-worker.js";
export type { HostLoan, LentSocket, LoanEvents };
export { HostedWorker };

/** What the host reported once up (tests and benches: its pid, its lowered priority). */
export interface HostState {
  pid: number;
  nice: number;
  autogroup: string;
}

let current: EncoderHost | null = null;
/** Ids of hosted threads: unique in this process (they stand for threadIds). */
let nextId = 1;
/** The data channel's read buffer. */
const CHANNEL_READ = 64 << 10;

class EncoderHost implements WorkerHost {
  readonly nice: number;
  private readonly child: ChildProcess;
  /** The data channel (./host-frames.ts): every thread's messages, rows and chunks. */
  private readonly data: Socket;
  private readonly frames: FrameWriter;
  private readonly threads = new Map<number, HostedWorker>();
  private refs = 0;
  private gone = false;
  /** No new threads go here (a newer host took over, or the proxy shut down): ends once empty. */
  private retired = false;
  readonly up: Promise<HostState>;
  /** Budget reports asked for and not yet answered, by query number. */
  private readonly asked = new Map<number, (b: HostBudget[]) => void>();
  /** Writer states asked for and not yet answered, by query number. */
  private readonly askedWriter = new Map<number, (s: WriterState | null) => void>();
  private nextQuery = 1;
  /** Its row loans: the upstream sockets lent to it (./socket-lender.ts). */
  private readonly lender: SocketLender;

  constructor(nice: number) {
    this.nice = nice;
    const args: HostArgs = { nice, workerUrl: workerEntry().href, execArgv: profilerArgs() };
    this.child = launchHost(args);
    let upNow: (s: HostState) => void = () => {};
    let failedUp: (e: Error) => void = () => {};
    this.up = new Promise<HostState>((resolve, reject) => {
      upNow = resolve;
      failedUp = reject;
    });
    this.up.catch(() => {});
    const reader = new FrameReader({
      target: (w, len) => this.threads.get(w)?.chunkInto(len) ?? new Uint8Array(len),
      bytes: (w, into) => this.threads.get(w)?.chunk(into),
      ack: (w, len) => this.threads.get(w)?.acked(len),
      message: (_w, m) => this.receive(m as FromHost),
    });
    // Read into one reused buffer (the reader copies what it keeps): a Buffer per read of the
    // encoded chunks was external memory the relay's isolate collected late.
    const pipe = this.child.stdio[4] as Socket;
    const fast = withStaticReads(pipe, CHANNEL_READ, (chunk) => reader.push(chunk));
    this.data = fast ?? pipe;
    if (fast === null) pipe.on("data", (chunk: Buffer) => reader.push(chunk));
    else fast.resume();
    this.frames = new FrameWriter(this.data);
    this.data.on("error", () => {}); // the host died: its 'exit' fails the threads
    this.child.on("message", (m: FromHost) => {
      if (m.t === "up") upNow({ pid: m.pid, nice: m.nice, autogroup: m.autogroup });
      else if (m.t === "writer") {
        this.askedWriter.get(m.q)?.({ queued: m.queued, most: m.most, congested: m.congested });
        this.askedWriter.delete(m.q);
      }
    });
    this.child.on("error", (e) => this.died(e.message, failedUp));
    this.child.on("exit", (code, signal) => this.died(`exited (${signal ?? code})`, failedUp));
    this.lender = new SocketLender({
      send: (m) => this.send(m),
      // Node sends the descriptor with SCM_RIGHTS; keepOpen: the relay's stays open (and is the
      // connection's again once the loan ends).
      sendSocket: (m, socket, sent) => this.child.send(m, socket, { keepOpen: true }, sent),
      gone: () => this.gone,
    });
    this.unrefChild();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  private receive(m: FromHost): void {
    if (this.lender.receive(m)) return;
    if (m.t === "budgets") {
      this.asked.get(m.q)?.(m.budgets);
      this.asked.delete(m.q);
    } else if (m.t !== "up" && m.t !== "writer") this.threads.get(m.w)?.fromHost(m);
  }

  /** Lends the host `lent`'s socket for thread `w`'s rows (SocketLender.lend). */
  lend(w: number, lent: LentSocket, maxRowBytes: number, events: LoanEvents): HostLoan {
    return this.lender.lend(w, lent, maxRowBytes, events);
  }

  spawn(nice: number, idle: boolean): HostedWorker {
    const w = new HostedWorker(this, nextId++);
    this.threads.set(w.threadId, w);
    this.send({ t: "spawn", w: w.threadId, nice, idle });
    if (this.gone) queueMicrotask(() => w.hostGone("is gone"));
    return w;
  }

  send(m: ToHost): void {
    if (!this.gone) this.frames.message(0, m);
  }

  /** Row batch `buf[0..len)` for thread `w`: written as it is (the buffer comes back with the ack). */
  sendRows(w: number, buf: ArrayBuffer, len: number): void {
    if (!this.gone) this.frames.bytes(w, new Uint8Array(buf, 0, len));
  }

  /** The host's encoding budgets now (none if it is gone). */
  budgets(): Promise<HostBudget[]> {
    if (this.gone) return Promise.resolve([]);
    const q = this.nextQuery++;
    return new Promise((resolve) => {
      this.asked.set(q, resolve);
      this.send({ t: "budgets", q });
    });
  }

  /**
   * Tests and debugging: both writers of the data channel, the relay's and the host's (asked on
   * the IPC channel, which goes on when the data channel is held); the host's is null if it is gone.
   */
  writers(): Promise<{ relay: WriterState; host: WriterState | null }> {
    const relay = {
      queued: this.frames.queued,
      most: this.frames.mostQueued,
      congested: this.frames.congested,
    };
    if (this.gone || !this.child.connected) return Promise.resolve({ relay, host: null });
    const q = this.nextQuery++;
    return new Promise((resolve) => {
      this.askedWriter.set(q, (host) => resolve({ relay, host }));
      this.child.send({ t: "writer", q } satisfies WriterQuery);
    });
  }

  /** Tests only: stops (true) or restarts the relay's reading of the data channel. */
  holdReads(held: boolean): void {
    if (held) this.data.pause();
    else this.data.resume();
  }

  ref(): void {
    if (this.refs++ === 0) {
      this.child.ref();
      this.data.ref();
      (this.child.channel as { ref?: () => void } | undefined)?.ref?.();
    }
  }

  unref(): void {
    if (--this.refs === 0) this.unrefChild();
  }

  /** Thread `id` has ended. */
  forget(id: number): void {
    this.threads.delete(id);
    this.endIfDone();
  }

  retire(): void {
    this.retired = true;
    this.endIfDone();
  }

  private endIfDone(): void {
    if (!this.retired || this.threads.size > 0 || this.gone) return;
    this.gone = true;
    if (current === this) current = null;
    // The host exits when its channel closes.
    if (this.child.connected) this.child.disconnect();
    this.data.end();
  }

  /** The host is idle or holds only idle threads: it must not keep the proxy's process alive. */
  private unrefChild(): void {
    this.child.unref();
    this.data.unref();
    (this.child.channel as { unref?: () => void } | undefined)?.unref?.();
  }

  private died(why: string, failedUp: (e: Error) => void): void {
    const wasGone = this.gone;
    this.gone = true;
    if (current === this) current = null;
    failedUp(new Error(`encoder host ${why}`));
    this.data.destroy();
    for (const answer of this.asked.values()) answer([]);
    this.asked.clear();
    for (const answer of this.askedWriter.values()) answer(null);
    this.askedWriter.clear();
    // The threads fail first: their exports' error is theirs (XX000), not the lost upstream's.
    if (!(wasGone && this.threads.size === 0)) {
      for (const w of [...this.threads.values()]) w.hostGone(why);
      this.threads.clear();
    }
    this.lender.failAll(why);
  }
}

/** A new encoder thread in this process's encoder host, started now if none runs (or if it runs
 * at another niceness: a reload changed exports.workerNice; the old one ends with its threads). */
export function hostedWorker(nice: number, idle: boolean): HostedWorker {
  if (current !== null && current.nice !== nice) {
    current.retire();
    current = null;
  }
  current ??= new EncoderHost(nice);
  return current.spawn(nice, idle);
}

/** The proxy shuts down: the host ends once its threads have (at once if it has none). */
export function retireEncoderHost(): void {
  const h = current;
  current = null;
  h?.retire();
}

/** The running host's state once it is up, or null if none runs (tests, benches). */
export function encoderHostState(): Promise<HostState> | null {
  return current?.up ?? null;
}

/** Tests and debugging: the running host's encoding budgets (slots, holders, waiters); null if none runs. */
export function encoderHostBudgets(): Promise<HostBudget[]> | null {
  return current?.budgets() ?? null;
}

/** Tests and debugging: the running host's data channel writers (EncoderHost.writers); null if none runs. */
export function encoderHostWriters(): Promise<{ relay: WriterState; host: WriterState | null }> | null {
  return current?.writers() ?? null;
}

/**
 * Tests only: while held, the relay reads nothing of the running host's data channel (a relay that
 * has fallen behind). Returns false if no host runs.
 */
export function holdEncoderHostReads(held: boolean): boolean {
  if (current === null) return false;
  current.holdReads(held);
  return true;
}

/**
 * Tests only: while closed, every export the running host starts from now on blocks inside each
 * batch's encoding with its budget slot taken (what encoderThreadTestHooks.gate does to threads).
 * Returns false if no host runs.
 */
export function gateEncoderHost(closed: boolean): boolean {
  if (current === null) return false;
  current.send({ t: "gate", closed });
  return true;
}
