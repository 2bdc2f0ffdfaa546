// What the wire layer needs from the COPY TO S3 feature, and what it offers it. The session owns
// the sockets; an export borrows the upstream leg through an UpstreamChannel while it runs.
import type { Socket } from "node:net";
import type { Logger } from "../log.js";
import type { ReadLender } from "./fast-socket.js";

export type UpstreamMessageHandler = (type: number, buf: Buffer, start: number, end: number) => void;
/**
 * `count` consecutive whole messages of type `type` (DataRows), headers included, in
 * `buf[start..end)`; valid only during the call.
 */
export type UpstreamRunHandler = (
  type: number,
  buf: Buffer,
  start: number,
  end: number,
  count: number,
) => void;

/**
 * The upstream socket lent to another reader for one statement's rows (the encoder host,
 * docs/isolation.md "The host reads the rows itself"). While lent, the relay reads nothing from it.
 */
export interface UpstreamLoan {
  /** The session's upstream socket: plain TCP, not reading. Send it, never read or close it. */
  readonly socket: Socket;
  /**
   * The bytes the relay had already read past the current message (whole or partial messages),
   * which the borrower must take before the socket's. Valid once the current read's handling has
   * returned (take it in a microtask, not in the callback that asked for the loan).
   */
  leftover(): Buffer;
  /** The borrower is done: `rest` (from a message boundary on) is relayed first, then the socket's. */
  back(rest: Buffer): void;
  /** The borrower consumed bytes it cannot give back (it died): the session's upstream is lost. */
  lose(): void;
  /** The borrower read `bytes` more from the socket (the session's traffic counts them). */
  counted(bytes: number): void;
}

/**
 * The upstream's bytes diverted, unframed, to another reader for one statement's rows (an
 * export's encoder thread, docs/isolation.md "Rows to the encoder thread without framing"). The
 * relay still reads the socket (TLS included) and hands each read's bytes on as they are.
 */
export interface UpstreamDiversion {
  /** The reader cannot take another read: stop reading the upstream until release(). */
  hold(): void;
  release(): void;
  /**
   * The reader is done: `rest` (from a message boundary on, in order; the relay's to keep) is
   * framed by the relay first, after skipping the next `skip` bytes of the upstream unseen, then
   * the socket's bytes as they come.
   */
  back(rest: readonly Buffer[], skip?: number): void;
}

export interface UpstreamChannel {
  /** Writes a frontend message to the upstream. Returns false when the socket buffer is full. */
  send(msg: Buffer): boolean;
  /**
   * Receives every upstream message while the export runs (the client sees none of them); with
   * `run`, DataRows arrive there in runs (one call per read), else one by one at `h`.
   */
  setHandler(h: UpstreamMessageHandler, run?: UpstreamRunHandler): void;
  /**
   * While a statement streams rows: read the upstream in bulk (after a read that emptied the
   * socket, wait `gapMs` before the next), 0 to read every packet as it comes again. Ends with
   * the export at the latest.
   */
  bulkReads?(gapMs: number): void;
  /** Backpressure on the upstream reader, for when the encoder or the uploads fall behind. */
  pause(): void;
  resume(): void;
  /** Cancels whatever the upstream session is running (a CancelRequest with the real key). */
  cancel(): Promise<void>;
  /** ParameterStatus values the upstream reported (server_version, mz_version, TimeZone...). */
  readonly parameters: ReadonlyMap<string, string>;
  /** Aborted when the upstream connection is lost. */
  readonly lost: AbortSignal;
  /**
   * Messages longer than `maxBytes` (header included) are dropped as they arrive, never assembled,
   * and reported to `onRefused` instead of `setHandler`'s handlers. Until the export ends.
   */
  refuseLarger(maxBytes: number, onRefused: (type: number, bytes: number) => void): void;
  /**
   * Stops reading the upstream at the current message and lends its socket (call it from a
   * message handler); null where it cannot be lent: a TLS upstream (its state is this process's),
   * a socket not reading through onread, the stream paused for another reason.
   */
  lend?(): UpstreamLoan | null;
  /**
   * From the end of the current message on, every upstream read goes to `to` as it is (a view of
   * a reused buffer: copy it before returning), unframed, until the diversion's back(). Call it
   * from a message handler; null where it cannot: the stream paused with bytes queued, the
   * upstream lost. With `lender`, the socket's reads go into the memory it lends where they can
   * (fast-socket.ts, ReadLender: a plain TCP upstream read through onread), until back().
   */
  divert?(to: (chunk: Buffer) => void, lender?: ReadLender): UpstreamDiversion | null;
}

export interface ExportContext {
  upstream: UpstreamChannel;
  /** Aborted on cancel, client disconnect, upstream loss or shutdown. */
  signal: AbortSignal;
  /** Sends a NoticeResponse to the client. */
  notice(message: string, detail?: string): void;
  log: Logger;
  user: string;
  database: string;
  /**
   * The client is inside a transaction block (ReadyForQuery 'T'): the export runs in that
   * transaction, and a failure must leave it failed ('E'), as any failing statement does.
   */
  inTransaction: boolean;
  /** Parameters bound to the statement (extended protocol), for `$n` in the target. */
  params?: BoundParams;
}

/** A Bind message's parameters, as the client sent them. */
export interface BoundParams {
  /** One type OID per parameter (0: unspecified), from Parse, completed by the proxy. */
  types: readonly number[];
  /** Format code per parameter (0 text, 1 binary), expanded from Bind's list. */
  formats: readonly number[];
  /** The values' bytes; null for SQL NULL. */
  values: ReadonlyArray<Buffer | null>;
}

/** How errors name a COPY ... TO the proxy runs itself (and any local statement without a label). */
export const COPY_LABEL = "COPY ... TO 's3://...'";

// biome-ignore lint/suspicious/noExplicitAny: the statement type is opaque to the wire layer
export interface CopyHook<S = any> {
  /**
   * Decides whether a statement text is a COPY this proxy runs itself. Returns null for anything
   * to forward untouched; throws a PgError for ours-but-invalid.
   */
  recognize(sql: string, upstreamParameters: ReadonlyMap<string, string>): S | null;
  /**
   * Runs the export; resolves with the row count for CommandComplete, or with a result set for a
   * statement the proxy answers itself (SHOW COPY_TO_S3 JOBS). Throws PgError.
   */
  run(stmt: S, ctx: ExportContext): Promise<{ rows: number; result?: LocalResult }>;
  /**
   * Whether a simple Query that does not start with COPY is still one of ours (the scheduler's
   * console statements); looks at the first bytes only. Absent: none are.
   */
  claims?(head: Buffer): boolean;
  /**
   * For a statement the proxy answers with rows itself (a console statement): its result columns,
   * for the extended protocol's Describe (RowDescription before Execute). Such a statement touches
   * no upstream transaction, so it also runs inside a transaction block. null or absent: an export
   * (Describe answers NoData).
   */
  describe?(stmt: S): { columns: string[] } | null;
  /** How many parameters (`$1` … `$n`) a statement takes; absent: none. */
  parameters?(stmt: S): number;
  /** The statement as an error refusing it names it (e.g. "SHOW COPY_TO_S3 JOBS"); absent: a COPY. */
  label?(stmt: S): string;
  /**
   * The proxy listens: what is kept ready for statements may be prepared now, in the background
   * (never delaying a client). Called once.
   */
  listening?(): void;
  /**
   * The proxy is shutting down: no statement starts any more. Let go of what is kept ready for
   * later ones (an idle encoder thread); running exports finish or are aborted as before.
   */
  shutdown?(): void;
}

/** Rows the proxy answers a statement with itself (text columns), and the command tag. */
export interface LocalResult {
  columns: string[];
  rows: Array<Array<string | null>>;
  tag: string;
}
