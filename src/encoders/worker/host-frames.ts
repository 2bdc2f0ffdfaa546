// The framing of the data channel between the relay's process and its encoder host (an extra
// socket pair of the child, fd 4; docs/isolation.md, "Encoder host, session 9"). Row batches and
// encoded chunks travel as raw bytes behind a 9-byte header: written as they are (no structured
// clone, no copy in the writer) and read straight into the buffer that will hold them (one copy,
// out of the socket's reads). The thread's other messages (start, finish, open, close, errors,
// exits) travel on the same socket, v8-serialized, because their order with the bytes matters: a
// `close` must not overtake its file's last chunk, nor a `finish` its export's last rows.
//
// Backpressure: a writer says when the other side has fallen `QUEUE_BYTES` behind (congested), and
// calls its producer back once it has caught up (drained); the producer holds what it makes until
// then, so what waits in a socket is bounded by that constant, not by the export's size
// (docs/isolation.md, "The host's data channel under backpressure").
import type { Socket } from "node:net";
import { deserialize, serialize } from "node:v8";

/** The frame kinds. */
export const FRAME = {
  /** A v8-serialized message (ToHost, FromHost). */
  message: 0,
  /** Raw bytes for/from thread `w`: a row batch (relay → host) or an encoded chunk (host → relay). */
  bytes: 1,
  /** Thread `w` has encoded a row batch of `len` bytes (host → relay; 4-byte body: len). */
  ack: 2,
} as const;

/** Body length (u32), kind (u8), thread (u32); all big-endian. */
const HEADER = 9;
/** Bodies up to this size are copied into their header's buffer: one small write, not two. */
const SMALL = 4096;

/**
 * Bytes a writer may have waiting in its socket (written, not yet taken by the other side) before
 * its producer must wait: four encoded chunks (port-sink.ts), the size of a thread's row window.
 */
export const QUEUE_BYTES = 4 << 20;

export class FrameWriter {
  /** The most bytes that ever waited in the socket just after a write (tests: the bound holds). */
  mostQueued = 0;
  private readonly waiters: Array<() => void> = [];

  constructor(
    private readonly socket: Socket,
    private readonly limit = QUEUE_BYTES,
  ) {}

  /** Bytes written and not yet taken by the other side. */
  get queued(): number {
    return this.socket.writableLength;
  }

  /** The other side is `limit` bytes behind: make nothing more until drained() calls back. */
  get congested(): boolean {
    return this.socket.writableLength >= this.limit && !this.socket.destroyed;
  }

  /**
   * Calls `then` once everything waiting has been written (at once, synchronously, if the writer
   * is not congested). A destroyed socket never drains: its end is handled elsewhere.
   */
  drained(then: () => void): void {
    if (!this.congested) {
      then();
      return;
    }
    this.waiters.push(then);
    // Congested means the last write() returned false (the socket's own high-water mark is far
    // below `limit`), so the stream emits 'drain' once its queue is empty.
    if (this.waiters.length === 1)
      this.socket.once("drain", () => {
        for (const w of this.waiters.splice(0)) w();
      });
  }

  message(w: number, m: unknown): void {
    this.frame(FRAME.message, w, serialize(m));
  }

  /** `bytes` must stay unchanged until `written` is called (the socket may queue it as it is). */
  bytes(w: number, bytes: Uint8Array, written?: () => void): void {
    this.frame(FRAME.bytes, w, bytes, written);
  }

  ack(w: number, len: number): void {
    const f = Buffer.allocUnsafe(HEADER + 4);
    header(f, FRAME.ack, w, 4);
    f.writeUInt32BE(len, HEADER);
    this.write(f);
  }

  private frame(kind: number, w: number, body: Uint8Array, written?: () => void): void {
    if (body.byteLength <= SMALL) {
      const f = Buffer.allocUnsafe(HEADER + body.byteLength);
      header(f, kind, w, body.byteLength);
      f.set(body, HEADER);
      this.write(f, written);
      return;
    }
    const h = Buffer.allocUnsafe(HEADER);
    header(h, kind, w, body.byteLength);
    // One writev of both.
    this.socket.cork();
    this.write(h);
    this.write(body, written);
    this.socket.uncork();
  }

  private write(b: Uint8Array, written?: () => void): void {
    if (this.socket.destroyed) return; // the other side is gone: its end is handled elsewhere
    this.socket.write(b, written === undefined ? undefined : () => written());
    if (this.socket.writableLength > this.mostQueued) this.mostQueued = this.socket.writableLength;
  }
}

function header(f: Buffer, kind: number, w: number, len: number): void {
  f.writeUInt32BE(len, 0);
  f.writeUInt8(kind, 4);
  f.writeUInt32BE(w, 5);
}

export interface FrameHandler {
  /** Where the `len` bytes of a bytes frame for thread `w` go: a view of exactly `len` bytes. */
  target(w: number, len: number): Uint8Array;
  /** The bytes frame is complete in `into` (what target() gave). */
  bytes(w: number, into: Uint8Array): void;
  message(w: number, m: unknown): void;
  ack(w: number, len: number): void;
}

/** Parses the frames of a byte stream as it arrives (push every chunk the socket reads). */
export class FrameReader {
  private readonly head = Buffer.alloc(HEADER);
  private headHave = 0;
  private kind = 0;
  private w = 0;
  private body: Uint8Array | null = null;
  private bodyHave = 0;

  constructor(private readonly handler: FrameHandler) {}

  push(chunk: Buffer): void {
    let off = 0;
    for (;;) {
      if (this.body === null) {
        if (off >= chunk.length) return;
        const k = Math.min(HEADER - this.headHave, chunk.length - off);
        chunk.copy(this.head, this.headHave, off, off + k);
        this.headHave += k;
        off += k;
        if (this.headHave < HEADER) return;
        const len = this.head.readUInt32BE(0);
        this.kind = this.head.readUInt8(4);
        this.w = this.head.readUInt32BE(5);
        this.body = this.kind === FRAME.bytes ? this.handler.target(this.w, len) : Buffer.allocUnsafe(len);
        this.bodyHave = 0;
      }
      const body = this.body;
      const k = Math.min(body.byteLength - this.bodyHave, chunk.length - off);
      if (k > 0) body.set(k === chunk.length ? chunk : chunk.subarray(off, off + k), this.bodyHave);
      this.bodyHave += k;
      off += k;
      if (this.bodyHave < body.byteLength) return;
      this.body = null;
      this.headHave = 0;
      this.deliver(body);
    }
  }

  private deliver(body: Uint8Array): void {
    switch (this.kind) {
      case FRAME.bytes:
        this.handler.bytes(this.w, body);
        break;
      case FRAME.ack:
        this.handler.ack(this.w, Buffer.from(body.buffer, body.byteOffset, 4).readUInt32BE(0));
        break;
      default:
        this.handler.message(this.w, deserialize(body as Buffer));
    }
  }
}
