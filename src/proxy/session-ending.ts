// How a session ends, whichever way it does: the client goes, the upstream goes, the client breaks
// the protocol, a graceful shutdown drains it, a drain timeout terminates it, or something destroys
// it. A running export is aborted first and, except where the session is destroyed, finishes its
// cleanup (rollback on the upstream session, uploads taken back) before the sockets close; the
// session stays listed until then, so a shutdown waits for it. The relaying itself is session.ts's.
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { PgError, SqlState } from "../errors.js";
import type { Logger } from "../log.js";
import { errorResponse } from "../wire/backend.js";
import type { MessageStream } from "../wire/message-stream.js";

type Duplex = Socket | TLSSocket;

/** Terminate ('X'), sent to the upstream when the proxy ends the session itself. */
const TERMINATE = Buffer.from([0x58, 0, 0, 0, 4]);

const ADMIN_SHUTDOWN = (): Buffer =>
  errorResponse({
    severity: "FATAL",
    code: SqlState.adminShutdown,
    message: "terminating connection due to administrator command",
  });

/** What the ending needs of its session. */
export interface EndingHost {
  readonly client: Duplex;
  readonly upstream: Duplex;
  readonly clientStream: MessageStream;
  readonly upstreamStream: MessageStream;
  readonly log: Logger;
  /** Aborts the running export, if one runs. */
  abortExport(reason: PgError): void;
  /** The running export until it has cleaned up; null when none runs. */
  exporting(): Promise<unknown> | null;
  /** True when no ReadyForQuery of the upstream is owed. */
  idle(): boolean;
  /** The upstream connection is gone: what waits on it must stop. */
  loseUpstream(): void;
  /** Called once, when the session is over. */
  finished(): void;
}

export class SessionEnding {
  /** Nothing more goes to the client. */
  closed = false;
  /** A graceful shutdown waits for the current query to be answered. */
  draining = false;
  private terminating = false;
  private over = false;

  constructor(private readonly s: EndingHost) {}

  clientGone(reason: string): void {
    if (this.closed) return;
    const s = this.s;
    s.log.debug({ reason }, "client gone");
    s.abortExport(new PgError(SqlState.connectionFailure, "client disconnected"));
    this.closed = true;
    s.clientStream.kill();
    s.client.destroy();
    // End, not destroy: a Terminate the client sent last must still reach the upstream.
    const close = (): void => {
      s.upstream.end();
      setTimeout(() => s.upstream.destroy(), 2000).unref();
      this.finish();
    };
    // An aborted export first rolls back on the upstream session and cleans up its uploads; the
    // session stays listed (shutdown waits for it) until then.
    const exporting = s.exporting();
    if (exporting !== null) void exporting.catch(() => {}).finally(close);
    else close();
  }

  upstreamGone(reason: string): void {
    const s = this.s;
    // Even on a closed session: an export still cleaning up must not wait for replies.
    s.loseUpstream();
    if (this.closed) return;
    s.log.debug({ reason }, "upstream gone");
    if (s.exporting() !== null) return; // the export reports the loss, then destroy() runs
    // Let what the upstream sent last (e.g. FATAL 57P01) reach the client before closing it.
    this.closed = true;
    s.client.end();
    this.finish();
  }

  protocolViolation(reason: string): void {
    const s = this.s;
    s.log.warn({ reason }, "client protocol violation");
    s.abortExport(new PgError(SqlState.protocolViolation, "protocol violation"));
    if (!this.closed) {
      s.client.write(
        errorResponse({
          severity: "FATAL",
          code: SqlState.protocolViolation,
          message: reason,
        }),
      );
    }
    this.destroy();
  }

  /** Graceful shutdown: close now if idle, else as soon as the current query is answered. */
  requestShutdown(): void {
    this.draining = true;
    this.closeIfIdle();
  }

  closeIfIdle(): void {
    const s = this.s;
    if (this.closed || !s.idle() || s.exporting() !== null || !s.upstreamStream.atBoundary) return;
    this.terminate();
  }

  /** Ends the session now with FATAL 57P01 (drain timeout passed). */
  terminate(): void {
    if (this.closed) return;
    const s = this.s;
    s.abortExport(new PgError(SqlState.adminShutdown, "terminating connection due to administrator command"));
    const exporting = s.exporting();
    if (exporting !== null) {
      // Let the export clean up first (`exporting` stays set: shutdown waits for it); the FATAL
      // below follows its error reply.
      if (!this.terminating) {
        this.terminating = true;
        void exporting.catch(() => {}).finally(() => this.terminate());
      }
      return;
    }
    if (s.upstreamStream.atBoundary) s.client.write(ADMIN_SHUTDOWN());
    s.upstream.write(TERMINATE);
    this.closed = true;
    s.client.end();
    s.upstream.end();
    setTimeout(() => this.destroy(), 1000).unref();
    this.finish();
  }

  destroy(): void {
    const s = this.s;
    this.closed = true;
    s.clientStream.kill();
    s.upstreamStream.kill();
    s.client.destroy();
    s.upstream.destroy();
    this.finish();
  }

  private finish(): void {
    if (this.over) return;
    this.over = true;
    this.s.finished();
  }
}
