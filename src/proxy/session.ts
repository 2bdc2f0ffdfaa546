// One client connection and its upstream connection, relayed as the original bytes both ways.
// Only BackendKeyData (replaced: session-cancel-keys.ts), ReadyForQuery (tracked), authentication
// requests (SCRAM-PLUS removed) and statements that start with COPY are looked at; a COPY TO S3 is
// run on this same upstream session and answered as PostgreSQL would (local-statements.ts decides
// which messages are such statements and answers them). How a session ends: session-ending.ts.
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import type { Config } from "../config.js";
import { canceled } from "../errors.js";
import type { Logger } from "../log.js";
import { type Traffic, trafficOf } from "../metrics/metrics.js";
import { readyForQuery, type TxStatus } from "../wire/backend.js";
import { Policy, policyTable } from "../wire/message-policy.js";
import { forEachMessage, MessageStream } from "../wire/message-stream.js";
import type { CancelRegistry } from "./cancel-registry.js";
import type { BoundParams, CopyHook } from "./copy-hook.js";
import { ExportLease } from "./export-lease.js";
import { DirectWriter, withStaticReads } from "./fast-socket.js";
import { FlowGate } from "./flow-gate.js";
import { CLIENT_RELAY, LocalStatements, MAX_COPY_TEXT } from "./local-statements.js";
import { CLIENT_BEFORE_LOGIN, refusalBeforeLogin, SASL, withoutChannelBinding } from "./login-phase.js";
import { SessionCancelKeys } from "./session-cancel-keys.js";
import { SessionEnding } from "./session-ending.js";

type Duplex = Socket | TLSSocket;

export interface SessionDeps {
  config: Config;
  log: Logger;
  registry: CancelRegistry;
  copy: CopyHook | null;
  onClosed(s: Session): void;
  /** The upstream accepted the login (AuthenticationOk). */
  onAuthenticated?(s: Session): void;
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
  S: 0x53,
  F: 0x46,
  R: 0x52,
  K: 0x4b,
  Z: 0x5a,
  A: 0x41,
  N: 0x4e,
} as const;

// Upstream → client (while an export runs, export-lease.ts's policy).
const UPSTREAM_RELAY = policyTable({ R: Policy.Take, K: Policy.Take, Z: Policy.Observe, S: Policy.Observe });
/** Until the next ReadyForQuery, which has a message to put in front of it. */
const UPSTREAM_INJECT = policyTable({ R: Policy.Take, K: Policy.Take, Z: Policy.Take, S: Policy.Observe });

/**
 * Largest client message assembled after the login: the longest statement parsed here
 * (local-statements.ts) and its header; messages that size or smaller are all that is ever taken.
 */
const CLIENT_MAX_TAKE = MAX_COPY_TEXT + 5;

const PEEK = 512;
/**
 * onread buffers of plain-TCP sockets (allocated per session for its lifetime). The upstream's is
 * larger: result sets and export rows come that way; clients mostly send small messages.
 */
const CLIENT_READ_BUFFER = 16 << 10;
const UPSTREAM_READ_BUFFER = 64 << 10;

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
  /** The relay's writes (fast-socket.ts): straight to the handle where the socket allows it. */
  private readonly clientWriter: DirectWriter | null;
  private readonly upstreamWriter: DirectWriter | null;

  /** Queries/Syncs forwarded whose ReadyForQuery has not come back; the startup counts as one. */
  private pending = 1;
  private txStatus: TxStatus = "I";
  private idleWaiters: Array<() => void> = [];
  private readonly params = new Map<string, string>();
  private readonly keys: SessionCancelKeys;
  private refusedBeforeLogin: string | null = null;
  private authenticated = false;
  /** Closing, shutdown and termination (session-ending.ts). */
  private readonly ending: SessionEnding;

  private readonly local: LocalStatements;
  private injectBeforeZ: Buffer | null = null;

  /** The running export's hold on the upstream (export-lease.ts); null when none runs. */
  private lease: ExportLease | null = null;
  private readonly upstreamLost = new AbortController();
  /** Upstream bytes the encoder host read from the lent socket (export-lease.ts): traffic too. */
  private lentBytes = 0;

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
    this.clientWriter = DirectWriter.for(this.client);
    this.upstreamWriter = DirectWriter.for(this.upstream);
    this.log = deps.log.child({ session: init.id });
    this.keys = new SessionCancelKeys(deps.registry, this, deps.config, init.upstreamTls, this.log);
    this.clientGate = new FlowGate(this.client);
    this.upstreamGate = new FlowGate(this.upstream);
    this.local = new LocalStatements({
      copy: deps.copy,
      params: this.params,
      txStatus: () => this.txStatus,
      toClient: (b) => this.toClient(b),
      toUpstream: (b) => this.toUpstream(b),
      writeUpstream: (b) => this.upstream.write(b),
      expectReady: () => {
        this.pending++;
      },
      idle: () => this.idle(),
      ready: () => this.localReady(),
      runExport: (stmt, extended, params) => this.runExport(stmt, extended, params),
      beforeNextReady: (msg) => {
        this.injectBeforeZ = msg;
        this.upstreamStream.policy = UPSTREAM_INJECT;
      },
      setClientPolicy: (p) => {
        this.clientStream.policy = p;
      },
      pauseClient: () => this.clientStream.pause(),
      resumeClient: () => {
        if (this.ending.closed) return;
        this.clientStream.resume();
        if (this.clientStream.queued <= 1 << 20) this.clientGate.release("backlog");
      },
      internalError: (e) => {
        this.log.error({ err: e }, "internal error handling a local message");
        this.destroy();
      },
    });

    // Until the login succeeded, nothing the client sends is interpreted or assembled here.
    this.clientStream = new MessageStream(
      CLIENT_BEFORE_LOGIN,
      {
        forward: (b) => this.toUpstream(b),
        observe: (type) => this.observeClient(type),
        decide: (type, head, bodyLength) =>
          this.authenticated
            ? this.local.decide(type, head, bodyLength)
            : this.decideBeforeLogin(type, bodyLength),
        take: (type, buf, start, end) => this.local.take(type, Buffer.from(buf.subarray(start, end))),
        violation: (reason) =>
          this.ending.protocolViolation(this.refusedBeforeLogin ?? `invalid frontend message: ${reason}`),
      },
      // Decided on the header alone (peekBytes 0), as PostgreSQL checks a length before reading on.
      { peekBytes: 0, reusesInput: this.clientOnread, maxTakeLength: 0 },
    );
    this.upstreamStream = new MessageStream(
      UPSTREAM_RELAY,
      {
        forward: (b) => this.toClient(b),
        observe: (type, buf, start, end) => this.observeUpstream(type, buf, start, end),
        take: (type, buf, start, end) => this.takeUpstream(type, buf, start, end),
        takeRun: (type, buf, start, end, count) => this.takeUpstreamRun(type, buf, start, end, count),
        oversize: (type, bytes) => {
          const refused = this.lease?.refused ?? null;
          if (refused !== null) return refused(type, bytes);
          this.log.error({ reason: `message of ${bytes} bytes` }, "upstream protocol violation");
          this.destroy();
        },
        violation: (reason) => {
          this.log.error({ reason }, "upstream protocol violation");
          this.destroy();
        },
      },
      { reusesInput: this.upstreamOnread },
    );
    this.ending = new SessionEnding({
      client: this.client,
      upstream: this.upstream,
      clientStream: this.clientStream,
      upstreamStream: this.upstreamStream,
      log: this.log,
      abortExport: (reason) => this.lease?.abort.abort(reason),
      exporting: () => this.exporting,
      idle: () => this.pending === 0,
      loseUpstream: () => this.upstreamLost.abort(),
      finished: () => this.finish(),
    });
  }

  /**
   * Before AuthenticationOk (login-phase.ts). Refusing makes the stream fail: `maxTakeLength` is 0
   * until the login.
   */
  private decideBeforeLogin(type: number, bodyLength: number): Policy.Pass | Policy.Take {
    const refused = refusalBeforeLogin(type, bodyLength);
    if (refused === null) return Policy.Pass;
    this.refusedBeforeLogin = refused;
    return Policy.Take;
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
    client.on("end", () => this.ending.clientGone("client closed the connection"));
    client.on("close", () => this.ending.clientGone("client connection closed"));
    client.on("error", (e) => this.ending.clientGone(`client socket error: ${e.message}`));
    upstream.on("end", () => this.ending.upstreamGone("upstream closed the connection"));
    upstream.on("close", () => this.ending.upstreamGone("upstream connection closed"));
    upstream.on("error", (e) => this.ending.upstreamGone(`upstream socket error: ${e.message}`));
    upstream.write(this.init.startupPacket);
    if (this.init.clientLeftover.length > 0) this.clientStream.push(this.init.clientLeftover);
    client.resume();
    upstream.resume();
    // Closed before these listeners were attached: no event will come for it.
    if (client.destroyed) this.ending.clientGone("client connection closed");
  }

  // ---- relay ------------------------------------------------------------------------------

  private toUpstream(b: Buffer): void {
    const w = this.upstreamWriter;
    if (!(w === null ? this.upstream.write(b) : w.write(b)))
      this.clientGate.holdUntilDrain(this.upstream, "upstream-buffer");
  }

  private toClient(b: Buffer): void {
    if (this.ending.closed) return;
    const w = this.clientWriter;
    if (!(w === null ? this.client.write(b) : w.write(b)))
      this.upstreamGate.holdUntilDrain(this.client, "client-buffer");
  }

  private observeClient(type: number): void {
    if (type === T.F) this.pending++;
    // Terminate: the upstream will close; nothing else to do.
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
        if (this.ending.draining) queueMicrotask(() => this.ending.closeIfIdle());
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
    const run = this.lease?.runHandler ?? null;
    if (run !== null && this.lease!.handler !== null) {
      run(type, buf, start, end, count);
      return;
    }
    forEachMessage(buf, start, end, (s, e) => this.takeUpstream(type, buf, s, e));
  }

  private takeUpstream(type: number, buf: Buffer, start: number, end: number): void {
    // The whole message (header included) is copied out only where it is forwarded: DataRows on
    // the export path cost no allocation here.
    const handler = this.lease?.handler ?? null;
    if (handler !== null) {
      // An export owns the upstream. Asynchronous messages still belong to the client.
      if (type === T.A || type === T.S || type === T.N) {
        if (type === T.S) this.observeUpstream(type, buf, start, end);
        this.toClient(copyMessage(buf, start, end));
        return;
      }
      // The export's own statements run in the client's transaction when there is one: the
      // ReadyForQuery answered for the COPY reports the state they left it in.
      if (type === T.Z) this.txStatus = String.fromCharCode(buf[start]!) as TxStatus;
      handler(type, buf, start, end);
      return;
    }
    if (type === T.K) {
      this.toClient(this.keys.replace(buf, start, end));
      return;
    }
    if (type === T.R && buf.readInt32BE(start) === 0 && !this.authenticated) {
      // AuthenticationOk: only now is this a session (a refused login is not one).
      this.authenticated = true;
      this.clientStream.policy = CLIENT_RELAY;
      this.clientStream.maxTakeLength = CLIENT_MAX_TAKE;
      this.clientStream.peekBytes = PEEK;
      this.deps.onAuthenticated?.(this);
      const { user, database, upstreamTls } = this.init;
      const clientTls = (this.init.client as TLSSocket).encrypted === true;
      this.log.info({ user, database, clientTls, upstreamTls }, "session started");
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

  // ---- for local statements: idle, ReadyForQuery, exports ---------------------------------

  private idle(): Promise<void> {
    if (this.pending === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  /** ReadyForQuery for a statement answered here; a draining session may close after it. */
  private localReady(): void {
    this.toClient(readyForQuery(this.txStatus));
    if (this.ending.draining) queueMicrotask(() => this.ending.closeIfIdle());
  }

  /** Runs one export on this session's upstream (export-lease.ts). Returns false on error. */
  private runExport(stmt: unknown, extended = false, params?: BoundParams): Promise<boolean> {
    const lease = new ExportLease({
      copy: this.deps.copy!,
      log: this.log,
      user: this.user,
      database: this.database,
      upstream: this.upstream,
      upstreamStream: this.upstreamStream,
      upstreamGate: this.upstreamGate,
      relayPolicy: UPSTREAM_RELAY,
      params: this.params,
      upstreamLost: this.upstreamLost.signal,
      txStatus: () => this.txStatus,
      toClient: (b) => this.toClient(b),
      cancelUpstream: () => this.keys.cancelUpstream(),
      released: () => {
        this.lease = null;
      },
      destroy: () => this.destroy(),
      upstreamOnread: this.upstreamOnread,
      loseUpstream: () => this.upstreamLost.abort(),
      countUpstream: (bytes) => {
        this.lentBytes += bytes;
      },
    });
    this.lease = lease;
    return lease.run(stmt, extended, params);
  }

  // ---- cancel, close, shutdown -------------------------------------------------------------

  /** A CancelRequest with this session's key arrived; says what it did (counted by the registry). */
  cancel(): "export" | "forwarded" | "idle" {
    if (this.lease !== null) {
      this.lease.abort.abort(canceled());
      return "export";
    }
    if (this.pending === 0) return "idle";
    void this.keys.cancelUpstream();
    return "forwarded";
  }

  /** Graceful shutdown: close now if idle, else as soon as the current query is answered. */
  requestShutdown(): void {
    this.ending.requestShutdown();
  }

  /** Ends the session now with FATAL 57P01 (drain timeout passed). */
  terminate(): void {
    this.ending.terminate();
  }

  get exporting(): Promise<unknown> | null {
    return this.lease?.running ?? null;
  }

  /** Bytes on the wire of both legs so far (the metrics' received/sent bytes). */
  get traffic(): Traffic {
    const t = trafficOf(this.client, this.upstream);
    t.fromUpstream += this.lentBytes;
    return t;
  }

  destroy(): void {
    this.ending.destroy();
  }

  /** The session is over (once; session-ending.ts): what it registered and what waits on it. */
  private finish(): void {
    if (!this.authenticated) {
      this.log.info({ user: this.user, database: this.database }, "connection closed before authentication");
    }
    this.keys.unregister();
    for (const w of this.idleWaiters) w();
    this.idleWaiters = [];
    this.deps.onClosed(this);
  }
}

/** A copy of the message whose body is buf[start..end), header included (the buffer is reused). */
function copyMessage(buf: Buffer, start: number, end: number): Buffer {
  return Buffer.from(buf.subarray(start - 5, end));
}
