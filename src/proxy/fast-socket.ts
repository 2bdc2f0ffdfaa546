// Reads a plain TCP socket through `onread` (one reused buffer) instead of 'data' events.
//
// Why: with pgbench -S a 'data' event (Readable.push, the readable state, emit) costs more user
// CPU than everything else the relay does; a Node relay reading through `onread` needs ~40% less
// user CPU per transaction (docs/decisions.md, "Proxy overhead"). Node offers `onread` only when
// a socket is created (net.connect / new net.Socket), but a session's sockets already exist: the
// client's was accepted by the server (no onread option there), the upstream's negotiated
// SSLRequest through 'data' events. So after the startup phase the libuv handle is moved into a
// new net.Socket({ handle, onread }), the way Node itself hands handles between sockets
// (child_process, cluster). TLS sockets cannot read through onread and keep 'data' events.
//
// The buffer is overwritten by the next read: `onChunk` must copy whatever it keeps (see
// MessageStream's `reusesInput`).
import { Socket } from "node:net";
import type { Duplex } from "node:stream";
import { TLSSocket } from "node:tls";
import { getSystemErrorName } from "node:util";

/** Called after each read's chunk has been handled: its length and the read buffer's size. */
export type ReadObserver = (bytes: number, bufferSize: number) => void;

/** The sockets withStaticReads made, to the observer of their reads (flow-gate.ts sets one). */
const readObservers = new WeakMap<Socket, ReadObserver | null>();

/**
 * Memory a socket's next reads go into instead of its own buffer (an export's row ring,
 * src/encoders/worker/row-ring.ts: the kernel copies the upstream's bytes straight into the ring,
 * and the relay copies nothing). The buffer of a read is chosen when the read before it has been
 * handled, so a lender may see one more read into the buffer it lent after it stopped lending.
 */
export interface ReadLender {
  /** The next read's buffer, or null for the socket's own. Called after each read was handled. */
  lend(): Buffer | null;
  /** The read into the buffer lend() gave last has been handled: the socket no longer uses it. */
  returned(): void;
}

/** The sockets whose reads may go into lent buffers, to their lender (null: none now). */
const readLenders = new WeakMap<Socket, ReadLender | null>();

/**
 * Has `sock`'s next reads go into buffers `lender` lends (null: its own buffer again, from the
 * read after the one already lent, if one is). False when `sock` cannot: not a socket
 * withStaticReads made, or its reads go through Node's own onread path.
 */
export function lendReads(sock: Duplex, lender: ReadLender | null): boolean {
  if (!readLenders.has(sock as Socket)) return false;
  readLenders.set(sock as Socket, lender);
  return true;
}

/**
 * Has `observer` told about every read of `sock` from now on (null: no more). Returns false when
 * `sock` does not read through onread (TLS, or a socket withStaticReads left alone): its reads are
 * 'data' events, whose sizes say nothing about what the kernel had queued.
 */
export function observeReads(sock: Duplex, observer: ReadObserver | null): boolean {
  if (!readObservers.has(sock as Socket)) return false;
  readObservers.set(sock as Socket, observer);
  return true;
}

/** Node internals of net.Socket that moving a handle touches (stable since Node 12). */
interface SocketInternals {
  _handle: {
    reading?: boolean;
    writeQueueSize?: number;
    useUserBuffer?: unknown;
    writeBuffer?(req: WriteReq, data: Buffer): number;
    onread?: (this: unknown, arrayBuffer: unknown) => unknown;
  } | null;
  _server: unknown;
  server: unknown;
}

/** A libuv write request as Node's stream_wrap binding makes them (lib/internal/stream_base_commons.js). */
interface WriteReq {
  handle: unknown;
  oncomplete: (this: WriteReq, status: number) => void;
  async: boolean;
  bytes: number;
  buffer: Buffer | null;
  /** Ours: the writer whose write this is. */
  writer: DirectWriter | null;
}

/**
 * Node's `stream_wrap` binding: the write request class, and the shared state words that say how
 * many bytes a read brought and whether the last write completed at once, which net.Socket's own
 * reads and writes use. Reached through process.binding, which Node 20, 22 and 24 still allow for
 * this module without a warning; null (Node's own read and write paths) where it is missing.
 */
const streamWrap = ((): {
  WriteWrap: new () => WriteReq;
  streamBaseState: Int32Array;
  kLastWriteWasAsync: number;
  kReadBytesOrError: number;
} | null => {
  try {
    const b = (process as unknown as { binding(name: string): Record<string, unknown> }).binding(
      "stream_wrap",
    );
    if (
      typeof b.WriteWrap !== "function" ||
      !(b.streamBaseState instanceof Int32Array) ||
      typeof b.kLastWriteWasAsync !== "number" ||
      typeof b.kReadBytesOrError !== "number"
    )
      return null;
    return b as never;
  } catch {
    return null;
  }
})();

/**
 * Moves `sock`'s handle into a new, paused net.Socket that hands each read to `onChunk` as a view
 * of one reused `bufferSize` buffer (valid only during the call); `resume()` starts reading.
 * Returns null, leaving `sock` untouched, when it cannot be moved: TLS, or a state a handle
 * swap could lose (bytes or EOF already buffered in `sock`, writes in flight, closing).
 */
export function withStaticReads(
  sock: Duplex,
  bufferSize: number,
  onChunk: (chunk: Buffer) => void,
): Socket | null {
  if (!(sock instanceof Socket) || sock instanceof TLSSocket) return null;
  const old = sock as Socket & SocketInternals;
  const handle = old._handle;
  if (
    handle === null ||
    typeof handle.useUserBuffer !== "function" ||
    old.destroyed ||
    old.connecting ||
    !old.readable ||
    old.readableEnded ||
    old.readableLength > 0 || // read but not yet consumed: would be lost
    !old.writable ||
    old.writableLength > 0 || // a write in flight completes through the handle's owner
    (handle.writeQueueSize ?? 0) > 0
  ) {
    return null;
  }
  const buffer = Buffer.allocUnsafe(bufferSize);
  // The old socket must not close the handle or count as a server connection any more: the new
  // one closes it, and decrements the server's connection count (server.close() waits for it).
  const server = old._server;
  old._handle = null;
  old._server = null;
  old.removeAllListeners();
  old.destroy(); // closes nothing now; just marks the old object dead
  const fresh = new Socket({
    handle: handle as never,
    allowHalfOpen: old.allowHalfOpen,
    readable: true,
    writable: true,
    // Stops the handle reading until the owner resumes (the old socket may have left it on).
    pauseOnCreate: true,
    onread: {
      buffer,
      callback: (n: number, buf: Uint8Array) => {
        onChunk((buf as Buffer).subarray(0, n));
        readObservers.get(fresh)?.(n, bufferSize);
      },
    },
  } as ConstructorParameters<typeof Socket>[0]);
  readObservers.set(fresh, null);
  // The handle calls its `onread` with each read; Node's (onStreamRead) only passes it on to
  // the callback above for a read of data, after bookkeeping for features these sockets do not
  // use (idle timeouts, a callback that asks to stop): data goes to `onChunk` directly, and
  // everything else (end of stream, errors) still to Node's.
  const h = fresh as Socket & SocketInternals;
  const sw = streamWrap;
  if (sw !== null && h._handle !== null && typeof h._handle.onread === "function") {
    const nodeOnread = h._handle.onread;
    const state = sw.streamBaseState;
    const kRead = sw.kReadBytesOrError;
    /** The buffer the handle reads into now, and who lent it (null: our own). */
    let current: Buffer = buffer;
    let lentBy: ReadLender | null = null;
    readLenders.set(fresh, null);
    h._handle.onread = function (this: unknown, arrayBuffer: unknown): unknown {
      const n = state[kRead]!;
      if (n > 0 && !fresh.destroyed) {
        const into = current;
        onChunk(into.subarray(0, n));
        readObservers.get(fresh)?.(n, into.length);
        if (lentBy !== null) {
          const l = lentBy;
          lentBy = null;
          l.returned();
        }
        // Returning a buffer makes it the next read's (node's CustomBufferJSListener).
        const lender = readLenders.get(fresh) ?? null;
        const next = lender === null ? null : lender.lend();
        if (next !== null) {
          lentBy = lender;
          current = next;
          return next;
        }
        if (current === buffer) return undefined;
        current = buffer;
        return buffer;
      }
      return nodeOnread.call(this, arrayBuffer);
    };
  }
  if (server !== null && server !== undefined) {
    const f = fresh as Socket & SocketInternals;
    f._server = server;
    f.server = server;
  }
  return fresh;
}

/**
 * Writes to a socket withStaticReads made straight through its libuv handle, the way net.Socket's
 * own write ends up writing (StreamBase::WriteBuffer: one write(2) at once, libuv queues what the
 * kernel did not take), without the Writable stream around it: its bookkeeping and the
 * process.nextTick it schedules after every write cost the relay's thread more per forwarded
 * message than the system call (docs/decisions.md, "The relay writes through the handle").
 *
 * Order: a write while the socket's Writable holds anything goes through socket.write, behind it;
 * socket.write after a direct write that libuv is still finishing reaches the same handle's queue
 * behind it. So mixing both keeps the bytes in order, and end() (a shutdown libuv runs once its
 * write queue is empty) still comes after them.
 */
export class DirectWriter {
  /** Direct writes libuv has not finished (the kernel took only part at once). */
  private pending = 0;
  /** A request object no libuv request holds, for the next write. */
  private spare: WriteReq | null = null;

  private constructor(private readonly socket: Socket) {}

  /** A writer for `sock`: direct for sockets withStaticReads made, else socket.write. */
  static for(sock: Duplex): DirectWriter | null {
    if (streamWrap === null || !readObservers.has(sock as Socket)) return null;
    return new DirectWriter(sock as Socket);
  }

  /**
   * Like socket.write: false when the bytes could not all be handed to the kernel at once, and
   * then 'drain' is emitted on the socket once they have been.
   */
  write(buf: Buffer): boolean {
    const s = this.socket;
    const h = (s as Socket & SocketInternals)._handle;
    if (s.writableLength !== 0 || s.destroyed || s.writableEnded || h === null || h.writeBuffer === undefined)
      return s.write(buf);
    const sw = streamWrap!;
    // A write the kernel takes at once never binds its request object to a libuv request
    // (StreamBase::Write makes one only for what is left): the same object serves the next write.
    let req = this.spare;
    this.spare = null;
    if (req === null) {
      req = new sw.WriteWrap();
      req.oncomplete = afterDirectWrite;
      req.async = false;
      req.bytes = 0;
      req.buffer = null;
      req.writer = null;
    }
    req.handle = h;
    const err = h.writeBuffer(req, buf);
    if (err !== 0) {
      s.destroy(writeError(err));
      return false;
    }
    if (sw.streamBaseState[sw.kLastWriteWasAsync] === 0) {
      this.spare = req;
      return true;
    }
    // This request is libuv's now; it writes the rest from this memory later: keep it alive.
    req.buffer = buf;
    req.writer = this;
    this.pending++;
    return false;
  }

  /** @internal */
  done(status: number): void {
    this.pending--;
    const s = this.socket;
    if (s.destroyed) return;
    if (status < 0) s.destroy(writeError(status));
    else if (this.pending === 0) s.emit("drain");
  }
}

function afterDirectWrite(this: WriteReq, status: number): void {
  const w = this.writer;
  this.writer = null;
  this.buffer = null;
  w?.done(status);
}

function writeError(errno: number): Error {
  const code = getSystemErrorName(errno);
  return Object.assign(new Error(`write ${code}`), { errno, code, syscall: "write" });
}
