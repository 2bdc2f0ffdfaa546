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

/** Called after each read's chunk has been handled: its length and the read buffer's size. */
export type ReadObserver = (bytes: number, bufferSize: number) => void;

/** The sockets withStaticReads made, to the observer of their reads (flow-gate.ts sets one). */
const readObservers = new WeakMap<Socket, ReadObserver | null>();

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
  _handle: { reading?: boolean; writeQueueSize?: number; useUserBuffer?: unknown } | null;
  _server: unknown;
  server: unknown;
}

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
  if (server !== null && server !== undefined) {
    const f = fresh as Socket & SocketInternals;
    f._server = server;
    f.server = server;
  }
  return fresh;
}
