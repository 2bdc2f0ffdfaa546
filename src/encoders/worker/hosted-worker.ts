// An encoder thread of the encoder host, as the relay sees it: a HostedWorker behaves as the Worker
// it replaces (postMessage, message/error/exit events, terminate, ref/unref, threadId), so
// ./encoder-thread.ts keeps one logic for both hosts. Its messages and rows travel through its
// host (./encoder-host.ts, the WorkerHost here); the chunks the host sends back are read into
// buffers of its own ring.
import { EventEmitter } from "node:events";
import type { FromHost, ToHost } from "./host-protocol.js";
import { CHUNK_BYTES, RING_BUFFERS } from "./port-sink.js";
import type { FromEncoder, ToEncoder } from "./protocol.js";
import type { HostLoan, LentSocket, LoanEvents } from "./socket-lender.js";

/** What EncoderThread needs of a thread, whichever process runs it (node:worker_threads' Worker has it). */
export interface EncoderWorker {
  readonly threadId: number;
  postMessage(m: ToEncoder, transfer?: ArrayBuffer[]): void;
  on(event: "message", listener: (m: FromEncoder) => void): unknown;
  on(event: "error", listener: (e: Error) => void): unknown;
  on(event: "exit", listener: (code: number) => void): unknown;
  removeAllListeners(event: string): unknown;
  terminate(): Promise<number>;
  ref(): void;
  unref(): void;
}

/** What a HostedWorker needs of the host it runs in (./encoder-host.ts, EncoderHost). */
export interface WorkerHost {
  send(m: ToHost): void;
  /** Row batch `buf[0..len)` for thread `w`. */
  sendRows(w: number, buf: ArrayBuffer, len: number): void;
  lend(w: number, lent: LentSocket, maxRowBytes: number, events: LoanEvents): HostLoan;
  /** The host keeps the proxy's process alive while any of its threads is ref'd. */
  ref(): void;
  unref(): void;
  /** Thread `w` has ended. */
  forget(w: number): void;
}

/** Tests only: chunk buffers the relay has allocated for chunks from its hosts (the pool bounds them). */
export const encoderHostTestHooks = { chunkBuffers: 0 };

/** A thread of the encoder host, as the relay sees it. */
export class HostedWorker extends EventEmitter implements EncoderWorker {
  /** Row buffers sent and not yet acknowledged: the host acks without them (they were copied). */
  private readonly sent: ArrayBuffer[] = [];
  /** Chunk buffers the relay's store is done with: the next chunks from the host are read into them. */
  private readonly chunks: ArrayBuffer[] = [];
  private refd = false;
  private exited: Promise<number> | null = null;
  private onExit: (code: number) => void = () => {};
  private ended = false;

  constructor(
    private readonly host: WorkerHost,
    readonly threadId: number,
  ) {
    super();
    this.ref();
  }

  postMessage(m: ToEncoder): void {
    if (this.ended) return;
    if (m.t === "rows") {
      this.sent.push(m.buf);
      // Chunk buffers stay on this side (the host keeps its own for the thread's ring).
      for (const b of m.free) this.reclaim(b);
      this.host.sendRows(this.threadId, m.buf, m.len);
    } else this.host.send({ t: "post", w: this.threadId, m });
  }

  /** Lends the host the upstream socket for this thread's rows (EncoderHost.lend). */
  lend(lent: LentSocket, maxRowBytes: number, events: LoanEvents): HostLoan | null {
    if (this.ended) return null;
    return this.host.lend(this.threadId, lent, maxRowBytes, events);
  }

  /** A `start` that uses the host's encoding budget of `slots` slots. */
  postStart(m: Extract<ToEncoder, { t: "start" }>, slots: number | undefined): void {
    if (this.ended) return;
    this.host.send(slots ? { t: "post", w: this.threadId, m, slots } : { t: "post", w: this.threadId, m });
  }

  terminate(): Promise<number> {
    this.exited ??= new Promise((resolve) => {
      this.onExit = resolve;
    });
    if (!this.ended) this.host.send({ t: "terminate", w: this.threadId });
    return this.exited;
  }

  ref(): void {
    if (this.refd || this.ended) return;
    this.refd = true;
    this.host.ref();
  }

  unref(): void {
    if (!this.refd) return;
    this.refd = false;
    this.host.unref();
  }

  /** Chunk buffer `buf` is free again (the relay's store is done with it): the next chunks go there. */
  reclaim(buf: ArrayBuffer): void {
    if (!this.ended && buf.byteLength === CHUNK_BYTES && this.chunks.length < RING_BUFFERS)
      this.chunks.push(buf);
  }

  /** Where the next chunk from the host, of `len` bytes, is read into. */
  chunkInto(len: number): Uint8Array {
    let pooled = len <= CHUNK_BYTES ? this.chunks.pop() : undefined;
    if (pooled === undefined) {
      encoderHostTestHooks.chunkBuffers++;
      pooled = new ArrayBuffer(Math.max(len, CHUNK_BYTES));
    }
    return new Uint8Array(pooled, 0, len);
  }

  /** A chunk has been read (into what chunkInto gave). */
  chunk(into: Uint8Array): void {
    if (!this.ended) this.emit("message", { t: "chunk", buf: into.buffer, len: into.byteLength });
  }

  acked(len: number): void {
    if (!this.ended) this.emit("message", { t: "ack", len, buf: this.sent.shift()! });
  }

  fromHost(m: Exclude<FromHost, { t: "up" | "budgets" | "writer" }>): void {
    switch (m.t) {
      case "msg":
        this.emit("message", m.m);
        break;
      case "error":
        this.emit("error", new Error(m.message));
        break;
      case "exit":
        this.exit(m.code);
        this.host.forget(this.threadId);
        break;
    }
  }

  /** The host process ended under this thread: it failed. */
  hostGone(why: string): void {
    if (this.ended) return;
    // Like a Worker's, but an idle thread being ended has no listener left, and must not throw.
    if (this.listenerCount("error") > 0) this.emit("error", new Error(`its encoder host process ${why}`));
    this.exit(1);
  }

  private exit(code: number): void {
    if (this.ended) return;
    this.unref();
    this.ended = true;
    this.sent.length = 0;
    this.chunks.length = 0;
    this.emit("exit", code);
    this.exited ??= Promise.resolve(code);
    this.onExit(code);
  }
}
