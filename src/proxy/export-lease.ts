// An export borrowing its session's upstream connection: the export runs on the client's own
// upstream session. While the lease lasts every upstream message is the export's (the session
// still hands the asynchronous ones to the client), the export may pause the upstream stream and
// cap the size of what it takes; when it ends, the client gets its reply and the relay gets the
// upstream stream back as it was.
import type { Socket } from "node:net";
import type { TLSSocket } from "node:tls";
import { PgError, SqlState } from "../errors.js";
import type { Logger } from "../log.js";
import { commandComplete, dataRow, noticeResponse, rowDescription, type TxStatus } from "../wire/backend.js";
import { Policy, type PolicyTable } from "../wire/message-policy.js";
import { MAX_MESSAGE_LENGTH, type MessageStream } from "../wire/message-stream.js";
import type {
  BoundParams,
  CopyHook,
  ExportContext,
  UpstreamChannel,
  UpstreamDiversion,
  UpstreamLoan,
  UpstreamMessageHandler,
  UpstreamRunHandler,
} from "./copy-hook.js";
import { lendReads, type ReadLender } from "./fast-socket.js";
import type { FlowGate } from "./flow-gate.js";

/** While an export owns the upstream: everything is ours, DataRows in runs. */
const UPSTREAM_EXPORT: PolicyTable = new Uint8Array(256).fill(Policy.Take);
UPSTREAM_EXPORT["D".charCodeAt(0)] = Policy.TakeRun;

/** What a lease needs of its session. */
export interface LeaseHost {
  readonly copy: CopyHook;
  readonly log: Logger;
  readonly user: string;
  readonly database: string;
  readonly upstream: Socket | TLSSocket;
  readonly upstreamStream: MessageStream;
  readonly upstreamGate: FlowGate;
  /** The upstream stream's policy outside exports. */
  readonly relayPolicy: PolicyTable;
  /** ParameterStatus values the upstream reported. */
  readonly params: ReadonlyMap<string, string>;
  /** Aborted when the upstream connection is lost. */
  readonly upstreamLost: AbortSignal;
  txStatus(): TxStatus;
  toClient(b: Buffer): void;
  cancelUpstream(): Promise<void>;
  /** The export has ended: the session is the relay again. */
  released(): void;
  /** The upstream was lost during the export: the session cannot go on. */
  destroy(): void;
  /** The upstream socket reads through onread (fast-socket.ts): plain TCP, lendable. */
  readonly upstreamOnread: boolean;
  /** The upstream's byte stream can no longer be trusted: treat it as lost. */
  loseUpstream(): void;
  /** Bytes of the upstream that another reader read from the lent socket (the traffic metrics). */
  countUpstream(bytes: number): void;
}

export class ExportLease {
  /** Aborts the export: a cancel, the client or the upstream gone, a shutdown. */
  readonly abort = new AbortController();
  /** The export's own upstream messages; null until it sets one. */
  handler: UpstreamMessageHandler | null = null;
  runHandler: UpstreamRunHandler | null = null;
  /** Called for an upstream message over the export's size cap. */
  refused: ((type: number, bytes: number) => void) | null = null;
  /** The export's run (settled once it has cleaned up); null until it has started. */
  running: Promise<unknown> | null = null;

  constructor(private readonly host: LeaseHost) {}

  /** Runs one export and writes its CommandComplete or ErrorResponse. Returns false on error. */
  async run(stmt: unknown, extended = false, params?: BoundParams): Promise<boolean> {
    const host = this.host;
    const abort = this.abort;
    const lostListener = (): void =>
      abort.abort(new PgError(SqlState.connectionFailure, "lost the connection to the upstream database"));
    host.upstreamLost.addEventListener("abort", lostListener, { once: true });
    const ctx: ExportContext = {
      upstream: this.channel(),
      signal: abort.signal,
      notice: (message, detail) =>
        host.toClient(noticeResponse({ severity: "NOTICE", code: "00000", message, detail })),
      log: host.log,
      user: host.user,
      database: host.database,
      inTransaction: host.txStatus() === "T",
      params,
    };
    host.upstreamStream.policy = UPSTREAM_EXPORT;
    const run = host.copy.run(stmt, ctx);
    this.running = run;
    try {
      const { rows, result } = await run;
      if (result !== undefined) {
        if (result.columns.length > 0 && !extended) host.toClient(rowDescription(result.columns));
        for (const r of result.rows) host.toClient(dataRow(r));
        host.toClient(commandComplete(result.tag));
      } else host.toClient(commandComplete(`COPY ${rows}`));
      return true;
    } catch (e) {
      const err = PgError.from(e);
      if (err.code === SqlState.internalError) host.log.error({ err: e }, "export failed");
      host.toClient(err.toWire());
      return false;
    } finally {
      host.upstreamLost.removeEventListener("abort", lostListener);
      host.released();
      this.handler = null;
      this.runHandler = null;
      this.refused = null;
      host.upstreamStream.maxTakeLength = MAX_MESSAGE_LENGTH;
      host.upstreamStream.policy = host.relayPolicy;
      host.upstreamGate.bulkReads(0);
      host.upstreamGate.release("export");
      host.upstreamStream.resume();
      if (host.upstreamLost.aborted) host.destroy();
    }
  }

  private channel(): UpstreamChannel {
    const host = this.host;
    return {
      send: (msg) => host.upstream.write(msg),
      setHandler: (h, run) => {
        this.handler = h;
        this.runHandler = run ?? null;
      },
      bulkReads: (gapMs) => host.upstreamGate.bulkReads(gapMs),
      // The stream stops at the current message, so no row reaches the export while it catches up.
      pause: () => {
        host.upstreamStream.pause();
        host.upstreamGate.hold("export");
      },
      resume: () => {
        host.upstreamGate.release("export");
        host.upstreamStream.resume();
      },
      cancel: () => host.cancelUpstream(),
      parameters: host.params,
      lost: host.upstreamLost,
      refuseLarger: (maxBytes, onRefused) => {
        host.upstreamStream.maxTakeLength = maxBytes;
        this.refused = onRefused;
      },
      lend: () => this.lend(),
      divert: (to, lender) => this.divert(to, lender),
    };
  }

  private divert(to: (chunk: Buffer) => void, lender?: ReadLender): UpstreamDiversion | null {
    const host = this.host;
    const stream = host.upstreamStream;
    if (host.upstreamLost.aborted || stream.queued > 0 || !stream.atBoundary) return null;
    stream.divert(to);
    if (lender !== undefined) lendReads(host.upstream, lender);
    let out = true;
    return {
      hold: () => host.upstreamGate.hold("ring"),
      release: () => host.upstreamGate.release("ring"),
      back: (rest, skip = 0) => {
        if (!out) return;
        out = false;
        // Released first: framing `rest` may divert again (rows after a NoticeResponse).
        if (lender !== undefined) lendReads(host.upstream, null);
        host.upstreamGate.release("ring");
        stream.undivert(rest, skip);
      },
    };
  }

  private lend(): UpstreamLoan | null {
    const host = this.host;
    if (!host.upstreamOnread || host.upstreamLost.aborted || host.upstreamStream.queued > 0) return null;
    // The stream stops after the current message (the rest of this read goes to its backlog, which
    // the borrower takes), and the socket stops reading at once (readStop).
    host.upstreamStream.pause();
    host.upstreamGate.hold("lent");
    let out = true;
    return {
      socket: host.upstream as Socket,
      leftover: () => host.upstreamStream.takeBacklog(),
      back: (rest) => {
        if (!out) return;
        out = false;
        // The socket reads again from the next turn of the loop on, after `rest`; released first,
        // because handling `rest` may lend the socket again (rows after a NoticeResponse).
        host.upstreamGate.release("lent");
        host.upstreamStream.resume();
        if (rest.length > 0) host.upstreamStream.push(rest);
      },
      lose: () => {
        if (!out) return;
        out = false;
        host.loseUpstream();
      },
      counted: (bytes) => host.countUpstream(bytes),
    };
  }
}
