// One client connection and its upstream connection, relayed as the original bytes in both
// directions. Only BackendKeyData (replaced), ReadyForQuery (tracked), authentication requests
// (SCRAM-PLUS removed) and statements that start with COPY are looked at; a COPY TO S3 is run
// here, on this same upstream session, and answered as PostgreSQL would answer it.
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Config } from "../config.js";
import { canceled, PgError, SqlState } from "../errors.js";
import type { Logger } from "../log.js";
import {
  backendKeyData,
  bindComplete,
  closeComplete,
  commandComplete,
  errorResponse,
  noData,
  noticeResponse,
  parameterDescription,
  parseComplete,
  readyForQuery,
  type TxStatus,
} from "../wire/backend.js";
import { frame } from "../wire/frame.js";
import { frontend } from "../wire/frontend.js";
import { MessageStream, Policy, type PolicyTable, policyTable } from "../wire/message-stream.js";
import type { CancelRegistry } from "./cancel-registry.js";
import type {
  CopyHook,
  ExportContext,
  UpstreamChannel,
  UpstreamMessageHandler,
  UpstreamRunHandler,
} from "./copy-hook.js";
import { sniffCopy } from "./copy-sniff.js";
import { withStaticReads } from "./fast-socket.js";
import { FlowGate } from "./flow-gate.js";
import { sendUpstreamCancel } from "./upstream-connect.js";

type Duplex = Socket | TLSSocket;

export interface SessionDeps {
  config: Config;
  log: Logger;
  registry: CancelRegistry;
  copy: CopyHook | null;
  onClosed(s: Session): void;
}

export interface SessionInit {
  id: number;
  client: Duplex;
  upstream: Duplex;
  upstreamTls: boolean;
  startupPacket: Buffer;
  /** Client bytes that arrived after the StartupMessage (pipelined), to be relayed first. */
  clientLeftover: Buffer;
  user: string;
  database: string;
}

const T = {
  Q: 0x51,
  P: 0x50,
  B: 0x42,
  E: 0x45,
  D: 0x44,
  C: 0x43,
  S: 0x53,
  H: 0x48,
  X: 0x58,
  F: 0x46,
  R: 0x52,
  K: 0x4b,
  Z: 0x5a,
  A: 0x41,
  N: 0x4e,
} as const;

// Client → upstream. Bind/Execute/Describe/Close/Flush are only looked at while the session has
// statements of its own (see refreshClientPolicy).
const CLIENT_RELAY = policyTable({
  Q: Policy.Peek,
  P: Policy.Peek,
  S: Policy.Peek,
  F: Policy.Observe,
  X: Policy.Observe,
});
const CLIENT_LOCAL = policyTable({
  Q: Policy.Peek,
  P: Policy.Peek,
  S: Policy.Peek,
  F: Policy.Observe,
  X: Policy.Observe,
  B: Policy.Peek,
  E: Policy.Peek,
  D: Policy.Peek,
  C: Policy.Peek,
  H: Policy.Peek,
});
const TAKE_ALL: PolicyTable = new Uint8Array(256).fill(Policy.Take);
/** While an export owns the upstream: everything is ours, DataRows in runs. */
const UPSTREAM_EXPORT: PolicyTable = TAKE_ALL.slice();
UPSTREAM_EXPORT["D".charCodeAt(0)] = Policy.TakeRun;
// Upstream → client.
const UPSTREAM_RELAY = policyTable({ R: Policy.Take, K: Policy.Take, Z: Policy.Observe, S: Policy.Observe });

const SASL = 10;
/** Largest statement text starting with COPY that is parsed here; longer ones go upstream. */
const MAX_COPY_TEXT = 16 << 20;
/** Largest text parsed on a weaker hint (comments first, or a URL behind other statements). */
const MAX_HINTED_TEXT = 1 << 20;
const PEEK = 512;
/**
 * onread buffers of plain-TCP sockets (allocated per session for its lifetime). The upstream's is
 * larger: result sets and export rows come that way; clients mostly send small messages.
 */
const CLIENT_READ_BUFFER = 16 << 10;
const UPSTREAM_READ_BUFFER = 64 << 10;

const ADMIN_SHUTDOWN = (): Buffer =>
  errorResponse({
    severity: "FATAL",
    code: SqlState.adminShutdown,
    message: "terminating connection due to administrator command",
  });

export class Session {
  readonly id: number;
  readonly user: string;
  readonly database: string;
  private readonly client: Duplex;
  private readonly upstream: Duplex;
  private readonly clientStream: MessageStream;
  private readonly upstreamStream: MessageStream;
  private readonly clientGate: FlowGate;
  private readonly upstreamGate: FlowGate;
  private readonly log: Logger;
  /** The socket reads through onread (fast-socket.ts), not 'data' events. */
  private readonly clientOnread: boolean;
  private readonly upstreamOnread: boolean;

  /** Queries/Syncs forwarded whose ReadyForQuery has not come back; the startup counts as one. */
  private pending = 1;
  private txStatus: TxStatus = "I";
  private idleWaiters: Array<() => void> = [];
  private readonly params = new Map<string, string>();
  private realPid = 0;
  private realSecret: Buffer = Buffer.alloc(0);
  private key: { pid: number; secret: Buffer } | null = null;
  private closed = false;
  private draining = false;
  private terminating = false;

  // Extended-protocol state for statements this proxy runs itself.
  private readonly localStatements = new Map<string, unknown>();
  private readonly localPortals = new Map<string, unknown>();
  private segHasLocal = false;
  private segForwarded = 0;
  private skipping = false;
  private injectBeforeZ: Buffer | null = null;

  // Local work happens one message at a time, in order, while the client stream is paused.
  private work: Promise<void> = Promise.resolve();
  private exportAbort: AbortController | null = null;
  private exportRunning: Promise<unknown> | null = null;
  private upstreamHandler: UpstreamMessageHandler | null = null;
  private upstreamRunHandler: UpstreamRunHandler | null = null;
  private readonly upstreamLost = new AbortController();

  constructor(
    private readonly deps: SessionDeps,
    private readonly init: SessionInit,
  ) {
    this.id = init.id;
    this.user = init.user;
    this.database = init.database;
    // Plain-TCP sockets move to onread reads now that the startup phase is over; the chunks then
    // come from a reused buffer, which the MessageStreams below are told (`reusesInput`).
    const fastClient = withStaticReads(init.client, CLIENT_READ_BUFFER, (c) => this.onClientData(c));
    const fastUpstream = withStaticReads(init.upstream, UPSTREAM_READ_BUFFER, (c) =>
      this.upstreamStream.push(c),
    );
    this.client = fastClient ?? init.client;
    this.upstream = fastUpstream ?? init.upstream;
    this.clientOnread = fastClient !== null;
    this.upstreamOnread = fastUpstream !== null;
    this.log = deps.log.child({ session: init.id });
    this.clientGate = new FlowGate(this.client);
    this.upstreamGate = new FlowGate(this.upstream);

    this.clientStream = new MessageStream(
      CLIENT_RELAY,
      {
        forward: (b) => this.toUpstream(b),
        observe: (type) => this.observeClient(type),
        decide: (type, head, bodyLength) => this.decideClient(type, head, bodyLength),
        take: (type, buf, start, end) => this.takeClient(type, Buffer.from(buf.subarray(start, end))),
        violation: (reason) => this.protocolViolation(reason),
      },
      { peekBytes: PEEK, reusesInput: this.clientOnread },
    );
    this.upstreamStream = new MessageStream(
      UPSTREAM_RELAY,
      {
        forward: (b) => this.toClient(b),
        observe: (type, buf, start, end) => this.observeUpstream(type, buf, start, end),
        take: (type, buf, start, end) => this.takeUpstream(type, buf, start, end),
        takeRun: (type, buf, start, end, count) => this.takeUpstreamRun(type, buf, start, end, count),
        violation: (reason) => {
          this.log.error({ reason }, "upstream protocol violation");
          this.destroy();
        },
      },
      { reusesInput: this.upstreamOnread },
    );
  }

  private onClientData(d: Buffer): void {
    this.clientStream.push(d);
    // A client that keeps sending while a local statement runs is held back, not buffered.
    if (this.clientStream.queued > 1 << 20) this.clientGate.hold("backlog");
  }

  start(): void {
    const { client, upstream } = this;
    if (!this.clientOnread) client.on("data", (d: Buffer) => this.onClientData(d));
    if (!this.upstreamOnread) upstream.on("data", (d: Buffer) => this.upstreamStream.push(d));
    client.on("end", () => this.onClientGone("client closed the connection"));
    client.on("close", () => this.onClientGone("client connection closed"));
    client.on("error", (e) => this.onClientGone(`client socket error: ${e.message}`));
    upstream.on("end", () => this.onUpstreamGone("upstream closed the connection"));
    upstream.on("close", () => this.onUpstreamGone("upstream connection closed"));
    upstream.on("error", (e) => this.onUpstreamGone(`upstream socket error: ${e.message}`));
    upstream.write(this.init.startupPacket);
    if (this.init.clientLeftover.length > 0) this.clientStream.push(this.init.clientLeftover);
    client.resume();
    upstream.resume();
  }

  // ---- relay ------------------------------------------------------------------------------

  private toUpstream(b: Buffer): void {
    if (!this.upstream.write(b)) this.clientGate.holdUntilDrain(this.upstream, "upstream-buffer");
  }

  private toClient(b: Buffer): void {
    if (this.closed) return;
    if (!this.client.write(b)) this.upstreamGate.holdUntilDrain(this.client, "client-buffer");
  }

  private observeClient(type: number): void {
    if (type === T.F) this.pending++;
    // Terminate: the upstream will close; nothing else to do.
  }

  private decideClient(type: number, head: Buffer, bodyLength: number): Policy.Pass | Policy.Take {
    const whole = head.length >= bodyLength;
    switch (type) {
      case T.Q: {
        const s = sniffCopy(head, 0, head.length);
        // A COPY TO S3 behind other statements must be refused, not forwarded: a URL in the text
        // is the cheap hint that one might be there.
        // Size caps keep a huge statement (a 500 MB INSERT that happens to hold a URL) streaming
        // through instead of being assembled and parsed; a real COPY TO S3 is a few KB.
        if (
          this.deps.copy !== null &&
          (s === "yes"
            ? bodyLength <= MAX_COPY_TEXT
            : bodyLength <= MAX_HINTED_TEXT && ((s === "unknown" && !whole) || head.includes("://")))
        ) {
          return Policy.Take;
        }
        this.pending++;
        return Policy.Pass;
      }
      case T.P: {
        const nameEnd = head.indexOf(0);
        if (nameEnd >= 0 && this.deps.copy !== null) {
          const s = sniffCopy(head, nameEnd + 1, head.length);
          if (
            (s === "yes" && bodyLength <= MAX_COPY_TEXT) ||
            (s === "unknown" && !whole && bodyLength <= MAX_HINTED_TEXT)
          ) {
            return Policy.Take;
          }
        }
        if (nameEnd >= 0 && this.localStatements.delete(head.toString("utf8", 0, nameEnd)))
          this.refreshClientPolicy();
        this.segForwarded++;
        return Policy.Pass;
      }
      case T.S:
        if (this.segHasLocal) return Policy.Take;
        this.pending++;
        this.segForwarded = 0;
        return Policy.Pass;
      case T.B: {
        const portalEnd = head.indexOf(0);
        const stmtEnd = portalEnd < 0 ? -1 : head.indexOf(0, portalEnd + 1);
        if (stmtEnd >= 0 && this.localStatements.has(head.toString("utf8", portalEnd + 1, stmtEnd)))
          return Policy.Take;
        if (portalEnd >= 0 && this.localPortals.delete(head.toString("utf8", 0, portalEnd)))
          this.refreshClientPolicy();
        this.segForwarded++;
        return Policy.Pass;
      }
      case T.E: {
        const end = head.indexOf(0);
        if (end >= 0 && this.localPortals.has(head.toString("utf8", 0, end))) return Policy.Take;
        this.segForwarded++;
        return Policy.Pass;
      }
      case T.D:
      case T.C: {
        const end = head.indexOf(0, 1);
        if (end >= 0) {
          const name = head.toString("utf8", 1, end);
          const local =
            head[0] === 0x53 /* S */ ? this.localStatements.has(name) : this.localPortals.has(name);
          if (local) return Policy.Take;
        }
        this.segForwarded++;
        return Policy.Pass;
      }
      case T.H:
        return this.segHasLocal ? Policy.Take : Policy.Pass;
      default:
        return Policy.Pass;
    }
  }

  private refreshClientPolicy(): void {
    if (this.skipping) return;
    const local = this.localStatements.size > 0 || this.localPortals.size > 0 || this.segHasLocal;
    this.clientStream.policy = local ? CLIENT_LOCAL : CLIENT_RELAY;
  }

  private takeClient(type: number, body: Buffer): void {
    this.clientStream.pause();
    this.work = this.work
      .then(() => this.handleLocal(type, body))
      .catch((e: unknown) => {
        this.log.error({ err: e }, "internal error handling a local message");
        this.destroy();
      })
      .finally(() => {
        if (this.closed) return;
        this.clientStream.resume();
        if (this.clientStream.queued <= 1 << 20) this.clientGate.release("backlog");
      });
  }

  private observeUpstream(type: number, buf: Buffer, start: number, end: number): void {
    if (type === T.Z) {
      this.txStatus = String.fromCharCode(buf[start]!) as TxStatus;
      this.pending--;
      if (this.pending <= 0) {
        this.pending = 0;
        const w = this.idleWaiters;
        this.idleWaiters = [];
        for (const f of w) f();
        if (this.draining) queueMicrotask(() => this.closeIfIdle());
      }
    } else if (type === T.S) {
      const nameEnd = buf.indexOf(0, start);
      if (nameEnd > 0 && nameEnd < end) {
        const valueEnd = buf.indexOf(0, nameEnd + 1);
        this.params.set(
          buf.toString("utf8", start, nameEnd),
          buf.toString("utf8", nameEnd + 1, valueEnd < 0 ? end : valueEnd),
        );
      }
    }
  }

  private takeUpstreamRun(type: number, buf: Buffer, start: number, end: number, count: number): void {
    const run = this.upstreamRunHandler;
    if (run !== null && this.upstreamHandler !== null) {
      run(type, buf, start, end, count);
      return;
    }
    for (let p = start; p < end; ) {
      const next = p + 1 + buf.readInt32BE(p + 1);
      this.takeUpstream(type, buf, p + 5, next);
      p = next;
    }
  }

  private takeUpstream(type: number, buf: Buffer, start: number, end: number): void {
    // The whole message (header included) is copied out only where it is forwarded: DataRows on
    // the export path cost no allocation here.
    const handler = this.upstreamHandler;
    if (handler !== null) {
      // An export owns the upstream. Asynchronous messages still belong to the client.
      if (type === T.A || type === T.S || type === T.N) {
        if (type === T.S) this.observeUpstream(type, buf, start, end);
        this.toClient(copyMessage(buf, start, end));
        return;
      }
      handler(type, buf, start, end);
      return;
    }
    if (type === T.K) {
      this.realPid = buf.readInt32BE(start);
      this.realSecret = Buffer.from(buf.subarray(start + 4, end));
      this.key ??= this.deps.registry.register({ cancel: () => this.cancel() });
      this.toClient(backendKeyData(this.key.pid, this.key.secret.readInt32BE(0)));
      return;
    }
    if (type === T.R && buf.readInt32BE(start) === SASL) {
      this.toClient(withoutChannelBinding(buf, start, end));
      return;
    }
    if (type === T.Z && this.injectBeforeZ !== null) {
      this.toClient(this.injectBeforeZ);
      this.injectBeforeZ = null;
      this.upstreamStream.policy = UPSTREAM_RELAY;
      this.observeUpstream(type, buf, start, end);
      this.toClient(copyMessage(buf, start, end));
      return;
    }
    this.toClient(copyMessage(buf, start, end));
  }

  // ---- local statements -------------------------------------------------------------------

  private idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** ReadyForQuery for a statement answered here; a draining session may close after it. */
  private localReady(): void {
    this.toClient(readyForQuery(this.txStatus));
    if (this.draining) queueMicrotask(() => this.closeIfIdle());
  }

  private async handleLocal(type: number, body: Buffer): Promise<void> {
    if (this.skipping) {
      // An error earlier in this Sync segment: discard until Sync, as PostgreSQL does.
      if (type !== T.S) return;
      this.skipping = false;
      await this.endSegment();
      return;
    }
    const hook = this.deps.copy;
    switch (type) {
      case T.Q: {
        const sql = cstring(body, 0);
        let stmt: unknown;
        try {
          stmt = hook!.recognize(sql, this.params);
        } catch (e) {
          await this.idle();
          this.toClient(PgError.from(e, SqlState.syntaxError).toWire());
          this.localReady();
          return;
        }
        if (stmt === null) {
          this.pending++;
          this.toUpstream(frame(T.Q, body));
          return;
        }
        await this.idle();
        await this.runExport(stmt);
        this.localReady();
        return;
      }
      case T.P: {
        const nameEnd = body.indexOf(0);
        const name = body.toString("utf8", 0, nameEnd);
        const sql = cstring(body, nameEnd + 1);
        let stmt: unknown;
        try {
          stmt = hook!.recognize(sql, this.params);
        } catch (e) {
          this.localError(PgError.from(e, SqlState.syntaxError));
          return;
        }
        if (stmt === null) {
          this.segForwarded++;
          this.toUpstream(frame(T.P, body));
          return;
        }
        this.segHasLocal = true;
        // A refused statement must not stay defined.
        if (await this.mixedSegment()) return;
        this.localStatements.set(name, stmt);
        this.refreshClientPolicy();
        this.toClient(parseComplete());
        return;
      }
      case T.B: {
        const portalEnd = body.indexOf(0);
        const portal = body.toString("utf8", 0, portalEnd);
        const stmtName = cstring(body, portalEnd + 1);
        this.segHasLocal = true;
        if (await this.mixedSegment()) return;
        this.localPortals.set(portal, this.localStatements.get(stmtName));
        this.refreshClientPolicy();
        this.toClient(bindComplete());
        return;
      }
      case T.D: {
        this.segHasLocal = true;
        this.refreshClientPolicy();
        if (await this.mixedSegment()) return;
        if (body[0] === 0x53 /* S */) this.toClient(parameterDescription([]));
        this.toClient(noData());
        return;
      }
      case T.C: {
        const name = cstring(body, 1);
        if (body[0] === 0x53) this.localStatements.delete(name);
        else this.localPortals.delete(name);
        this.segHasLocal = true;
        this.refreshClientPolicy();
        if (await this.mixedSegment()) return;
        this.toClient(closeComplete());
        return;
      }
      case T.E: {
        const portal = cstring(body, 0);
        const stmt = this.localPortals.get(portal);
        this.segHasLocal = true;
        this.refreshClientPolicy();
        if (await this.mixedSegment()) return;
        if (!(await this.runExport(stmt))) this.skipping = true;
        if (portal === "") this.localPortals.delete(portal);
        this.refreshClientPolicy();
        return;
      }
      case T.H:
        return;
      case T.S:
        await this.endSegment();
        return;
    }
  }

  /**
   * A Sync that ends a segment holding local messages: if forwarded messages share the segment
   * the upstream must see the Sync (its ReadyForQuery is the reply), else it is answered here.
   */
  private async endSegment(): Promise<void> {
    this.segHasLocal = false;
    this.refreshClientPolicy();
    if (this.segForwarded > 0) {
      this.segForwarded = 0;
      this.pending++;
      this.upstream.write(frontend.sync());
      return;
    }
    await this.idle();
    this.localReady();
  }

  /**
   * A local message in a Sync segment that also holds forwarded messages: their replies only come
   * at Sync, so the local one cannot be answered in order. Refuse it after the upstream's replies.
   */
  private async mixedSegment(): Promise<boolean> {
    if (this.segForwarded === 0) {
      await this.idle();
      return false;
    }
    this.injectBeforeZ = new PgError(
      SqlState.featureNotSupported,
      "COPY ... TO 's3://...' cannot be combined with other statements in one extended-protocol Sync segment",
      { hint: "Send a Sync before the COPY." },
    ).toWire();
    this.upstreamStream.policy = policyTable({
      R: Policy.Take,
      K: Policy.Take,
      Z: Policy.Take,
      S: Policy.Observe,
    });
    this.skipping = true;
    this.clientStream.policy = TAKE_ALL;
    return true;
  }

  private localError(err: PgError): void {
    this.toClient(err.toWire());
    this.skipping = true;
    this.clientStream.policy = TAKE_ALL;
  }

  /** Runs one export and writes its CommandComplete or ErrorResponse. Returns false on error. */
  private async runExport(stmt: unknown): Promise<boolean> {
    if (this.txStatus === "E") {
      this.toClient(
        new PgError(
          SqlState.inFailedSqlTransaction,
          "current transaction is aborted, commands ignored until end of transaction block",
        ).toWire(),
      );
      return false;
    }
    if (this.txStatus === "T") {
      this.toClient(
        new PgError(
          SqlState.activeSqlTransaction,
          "COPY ... TO 's3://...' cannot run inside a transaction block",
        ).toWire(),
      );
      return false;
    }
    const abort = new AbortController();
    this.exportAbort = abort;
    const lostListener = (): void =>
      abort.abort(new PgError(SqlState.connectionFailure, "lost the connection to the upstream database"));
    this.upstreamLost.signal.addEventListener("abort", lostListener, { once: true });
    const ctx: ExportContext = {
      upstream: this.channel(),
      signal: abort.signal,
      notice: (message, detail) =>
        this.toClient(noticeResponse({ severity: "NOTICE", code: "00000", message, detail })),
      log: this.log,
      user: this.user,
      database: this.database,
    };
    this.upstreamStream.policy = UPSTREAM_EXPORT;
    const run = this.deps.copy!.run(stmt, ctx);
    this.exportRunning = run;
    try {
      const { rows } = await run;
      this.toClient(commandComplete(`COPY ${rows}`));
      return true;
    } catch (e) {
      const err = PgError.from(e);
      if (err.code === SqlState.internalError) this.log.error({ err: e }, "export failed");
      this.toClient(err.toWire());
      return false;
    } finally {
      this.upstreamLost.signal.removeEventListener("abort", lostListener);
      this.exportAbort = null;
      this.exportRunning = null;
      this.upstreamHandler = null;
      this.upstreamRunHandler = null;
      this.upstreamStream.policy = UPSTREAM_RELAY;
      this.upstreamGate.release("export");
      this.upstreamStream.resume();
      if (this.upstreamLost.signal.aborted) this.destroy();
    }
  }

  private channel(): UpstreamChannel {
    return {
      send: (msg) => this.upstream.write(msg),
      setHandler: (h, run) => {
        this.upstreamHandler = h;
        this.upstreamRunHandler = run ?? null;
      },
      // The stream stops at the current message, so no row reaches the export while it catches up.
      pause: () => {
        this.upstreamStream.pause();
        this.upstreamGate.hold("export");
      },
      resume: () => {
        this.upstreamGate.release("export");
        this.upstreamStream.resume();
      },
      cancel: () => this.cancelUpstream(),
      parameters: this.params,
      lost: this.upstreamLost.signal,
    };
  }

  // ---- cancel, close, shutdown -------------------------------------------------------------

  /** A CancelRequest with this session's key arrived. */
  cancel(): void {
    if (this.exportAbort !== null) {
      this.exportAbort.abort(canceled());
      return;
    }
    if (this.pending > 0) void this.cancelUpstream();
  }

  private async cancelUpstream(): Promise<void> {
    if (this.realSecret.length === 0) return;
    try {
      await sendUpstreamCancel(this.deps.config, this.realPid, this.realSecret, this.init.upstreamTls);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "could not forward cancel request");
    }
  }

  private onClientGone(reason: string): void {
    if (this.closed) return;
    this.log.debug({ reason }, "client gone");
    this.exportAbort?.abort(new PgError(SqlState.connectionFailure, "client disconnected"));
    this.closed = true;
    this.clientStream.kill();
    this.client.destroy();
    // End, not destroy: a Terminate the client sent last must still reach the upstream.
    const close = (): void => {
      this.upstream.end();
      setTimeout(() => this.upstream.destroy(), 2000).unref();
      this.finish();
    };
    // An aborted export first rolls back on the upstream session and cleans up its uploads; the
    // session stays listed (shutdown waits for it) until then.
    if (this.exportRunning !== null) void this.exportRunning.catch(() => {}).finally(close);
    else close();
  }

  private onUpstreamGone(reason: string): void {
    // Even on a closed session: an export still cleaning up must not wait for replies.
    this.upstreamLost.abort();
    if (this.closed) return;
    this.log.debug({ reason }, "upstream gone");
    if (this.exportRunning !== null) return; // the export reports the loss, then destroy() runs
    // Let what the upstream sent last (e.g. FATAL 57P01) reach the client before closing it.
    this.closed = true;
    this.client.end();
    this.finish();
  }

  private protocolViolation(reason: string): void {
    this.log.warn({ reason }, "client protocol violation");
    this.exportAbort?.abort(new PgError(SqlState.protocolViolation, "protocol violation"));
    if (!this.closed) {
      this.client.write(
        errorResponse({
          severity: "FATAL",
          code: SqlState.protocolViolation,
          message: `invalid frontend message: ${reason}`,
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

  private closeIfIdle(): void {
    if (this.closed || this.pending > 0 || this.exportRunning !== null || !this.upstreamStream.atBoundary)
      return;
    this.terminate();
  }

  /** Ends the session now with FATAL 57P01 (drain timeout passed). */
  terminate(): void {
    if (this.closed) return;
    this.exportAbort?.abort(
      new PgError(SqlState.adminShutdown, "terminating connection due to administrator command"),
    );
    if (this.exportRunning !== null) {
      // Let the export clean up first (`exporting` stays set: shutdown waits for it); the FATAL
      // below follows its error reply.
      if (!this.terminating) {
        this.terminating = true;
        void this.exportRunning.catch(() => {}).finally(() => this.terminate());
      }
      return;
    }
    if (this.upstreamStream.atBoundary) this.client.write(ADMIN_SHUTDOWN());
    this.upstream.write(Buffer.from([T.X, 0, 0, 0, 4]));
    this.closed = true;
    this.client.end();
    this.upstream.end();
    setTimeout(() => this.destroy(), 1000).unref();
    this.finish();
  }

  get exporting(): Promise<unknown> | null {
    return this.exportRunning;
  }

  destroy(): void {
    this.closed = true;
    this.clientStream.kill();
    this.upstreamStream.kill();
    this.client.destroy();
    this.upstream.destroy();
    this.finish();
  }

  private finished = false;
  private finish(): void {
    if (this.finished) return;
    this.finished = true;
    if (this.key) this.deps.registry.unregister(this.key.pid);
    for (const w of this.idleWaiters) w();
    this.idleWaiters = [];
    this.deps.onClosed(this);
  }
}

/** A copy of the message whose body is buf[start..end), header included (the buffer is reused). */
function copyMessage(buf: Buffer, start: number, end: number): Buffer {
  return Buffer.from(buf.subarray(start - 5, end));
}

function cstring(buf: Buffer, from: number): string {
  const end = buf.indexOf(0, from);
  return buf.toString("utf8", from, end < 0 ? buf.length : end);
}

/** AuthenticationSASL without SCRAM-SHA-256-PLUS: channel binding cannot cross a TLS-terminating proxy. */
function withoutChannelBinding(buf: Buffer, start: number, end: number): Buffer {
  const mechs: string[] = [];
  let i = start + 4;
  while (i < end && buf[i] !== 0) {
    const z = buf.indexOf(0, i);
    mechs.push(buf.toString("utf8", i, z));
    i = z + 1;
  }
  const kept = mechs.filter((m) => !m.endsWith("-PLUS"));
  const body = Buffer.concat([
    Buffer.from([0, 0, 0, SASL]),
    ...kept.map((m) => Buffer.from(`${m}\0`)),
    Buffer.from([0]),
  ]);
  return frame(T.R, body);
}
