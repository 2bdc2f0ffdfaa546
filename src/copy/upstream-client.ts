// A minimal pgwire client that speaks on the client's own upstream session while an export runs:
// control statements, describes, and the row stream itself. One request at a time.
import { PgError, SqlState } from "../errors.js";
import type { BoundParams, UpstreamChannel } from "../proxy/copy-hook.js";
import { parseErrorFields } from "../wire/backend.js";
import { frontend } from "../wire/frontend.js";
import { forEachMessage } from "../wire/message-stream.js";

export interface FieldDesc {
  name: string;
  tableOid: number;
  columnNumber: number;
  typeOid: number;
  typeSize: number;
  typeMod: number;
  format: number;
}

export interface TextResult {
  fields: FieldDesc[];
  rows: Array<Array<string | null>>;
  tag: string;
}

/** One row: `buf[pos..]` holds `nFields` values (int32 length + bytes each). */
/** One request of UpstreamClient.pipeline: a simple query, or (`prepare`: its name) a prepare. */
export interface PipelineStep {
  sql: string;
  prepare?: string;
}

export type RowCallback = (buf: Buffer, pos: number, nFields: number) => void;

/**
 * `count` whole DataRow messages (type byte, int32 length, int16 field count, fields) in
 * `buf[start..end)`: as many as arrived in one read. Valid only during the call.
 */
export type RowsCallback = (buf: Buffer, start: number, end: number, count: number) => void;

type Handler = (type: number, buf: Buffer, start: number, end: number) => void;
type RunHandler = (type: number, buf: Buffer, start: number, end: number, count: number) => void;

const M = {
  ParseComplete: 0x31,
  BindComplete: 0x32,
  CloseComplete: 0x33,
  ParameterDescription: 0x74,
  RowDescription: 0x54,
  NoData: 0x6e,
  DataRow: 0x44,
  CommandComplete: 0x43,
  EmptyQuery: 0x49,
  Error: 0x45,
  Ready: 0x5a,
  PortalSuspended: 0x73,
  CopyOut: 0x48,
  CopyIn: 0x47,
} as const;

export function serverError(buf: Buffer, start: number, end: number): PgError {
  const f = parseErrorFields(buf.subarray(start, end));
  return new PgError(f.C ?? SqlState.internalError, f.M ?? "upstream error", {
    detail: f.D,
    hint: f.H,
    severity: f.S === "FATAL" || f.V === "FATAL" ? "FATAL" : "ERROR",
  });
}

export function parseRowDescription(buf: Buffer, start: number): FieldDesc[] {
  const n = buf.readInt16BE(start);
  const out: FieldDesc[] = [];
  let p = start + 2;
  for (let i = 0; i < n; i++) {
    const z = buf.indexOf(0, p);
    const name = buf.toString("utf8", p, z);
    p = z + 1;
    out.push({
      name,
      tableOid: buf.readUInt32BE(p),
      columnNumber: buf.readInt16BE(p + 4),
      typeOid: buf.readUInt32BE(p + 6),
      typeSize: buf.readInt16BE(p + 10),
      typeMod: buf.readInt32BE(p + 12),
      format: buf.readInt16BE(p + 16),
    });
    p += 18;
  }
  return out;
}

/** A cancelled statement still running this long after its CancelRequest gets another one. */
export const CANCEL_RETRY_FIRST_MS = 1000;
/** The longest wait between two CancelRequests for one statement. */
export const CANCEL_RETRY_MAX_MS = 8000;
/**
 * While rows stream, a read that emptied the socket is followed by this pause before the next
 * (UpstreamChannel.bulkReads): the relay wakes about once per gap instead of once per packet.
 */
export const BULK_READ_GAP_MS = 1;

export class UpstreamClient {
  private handler: Handler | null = null;
  private runHandler: RunHandler | null = null;
  private busy = false;
  /** The session's transaction status, as of the last ReadyForQuery ('I', 'T' or 'E'). */
  private status: string;

  constructor(
    private readonly ch: UpstreamChannel,
    initialStatus: "I" | "T" = "I",
  ) {
    this.status = initialStatus;
    ch.setHandler(
      (type, buf, start, end) => this.handler?.(type, buf, start, end),
      (type, buf, start, end, count) => this.runHandler?.(type, buf, start, end, count),
    );
  }

  /** The transaction status the upstream last reported: 'I' idle, 'T' in a block, 'E' failed. */
  get txStatus(): string {
    return this.status;
  }

  /**
   * Sends `msgs` and feeds replies to `onMessage` until ReadyForQuery. Rejects with the first
   * server error (after ReadyForQuery, so the session is in a known state), or at once if the
   * upstream is lost. `signal` cancels the running statement upstream. Runs of DataRows go to
   * `onRun` when given, else one by one to `onMessage`. `readies`: the requests pipelined in
   * `msgs`, each answered up to its own ReadyForQuery (the ones before the last reach `onMessage`).
   */
  private exchange(
    msgs: Buffer[],
    onMessage: Handler,
    signal?: AbortSignal,
    onRun?: RunHandler,
    readies = 1,
  ): Promise<void> {
    if (this.busy) return Promise.reject(new PgError(SqlState.internalError, "upstream client is busy"));
    if (this.ch.lost.aborted) return Promise.reject(lostError());
    this.busy = true;
    return new Promise<void>((resolve, reject) => {
      let error: PgError | null = null;
      let cancelling: Promise<void> | null = null;
      let retry: ReturnType<typeof setTimeout> | undefined;
      let retryMs = CANCEL_RETRY_FIRST_MS;
      let finished = false;
      // PostgreSQL drops a CancelRequest that reaches a backend still reading its next command
      // (postgres.c, ProcessInterrupts: "If we are reading a command from the client, just ignore
      // the cancel request"), so a cancel sent just as a statement went out can be lost, and a
      // statement that then waits (a FETCH of a slow query) would keep the export until the stall
      // watchdog. The cancel is sent again while the statement runs, backing off to a bound.
      const sendCancel = (): void => {
        retry = undefined;
        cancelling = this.ch
          .cancel()
          .catch(() => {})
          .then(() => {
            if (finished || this.ch.lost.aborted) return;
            retry = setTimeout(sendCancel, retryMs);
            retry.unref?.();
            retryMs = Math.min(retryMs * 2, CANCEL_RETRY_MAX_MS);
          });
      };
      const onAbort = (): void => {
        if (cancelling === null) sendCancel();
      };
      const onLost = (): void => finish(lostError());
      const finish = (err: PgError | null): void => {
        if (finished) return;
        finished = true;
        if (retry !== undefined) clearTimeout(retry);
        this.handler = null;
        this.runHandler = null;
        signal?.removeEventListener("abort", onAbort);
        this.ch.lost.removeEventListener("abort", onLost);
        const settle = (): void => {
          this.busy = false;
          if (err) reject(err);
          else resolve();
        };
        // A CancelRequest still on its way could hit the next statement on this session (e.g. the
        // ROLLBACK of the cleanup): the statement that follows is sent only once the server has
        // taken the request (it closes the cancel connection after signalling the backend).
        if (cancelling !== null && !this.ch.lost.aborted) void cancelling.then(settle);
        else settle();
      };
      // An encoder error: stop the statement, report it once the session is ready again.
      const failed = (e: unknown): void => {
        error = PgError.from(e);
        onAbort();
      };
      const handler: Handler = (type, buf, start, end) => {
        if (type === M.Error) {
          error ??= serverError(buf, start, end);
          return;
        }
        if (type === M.Ready) {
          this.status = String.fromCharCode(buf[start]!);
          if (--readies > 0) {
            if (error === null) onMessage(type, buf, start, end);
            return;
          }
          finish(error);
          return;
        }
        if (error === null) {
          try {
            onMessage(type, buf, start, end);
          } catch (e) {
            failed(e);
          }
        }
      };
      this.handler = handler;
      this.runHandler = (type, buf, start, end, count) => {
        if (error !== null) return;
        if (onRun === undefined) {
          forEachMessage(buf, start, end, (s, e) => handler(type, buf, s, e));
          return;
        }
        try {
          onRun(type, buf, start, end, count);
        } catch (e) {
          failed(e);
        }
      };
      signal?.addEventListener("abort", onAbort, { once: true });
      this.ch.lost.addEventListener("abort", onLost, { once: true });
      for (const m of msgs) this.ch.send(m);
      if (signal?.aborted) onAbort();
    });
  }

  /** A simple query whose (small) result is returned as text. */
  async query(sql: string, signal?: AbortSignal): Promise<TextResult> {
    const result = emptyResult();
    await this.exchange(
      [frontend.query(sql)],
      (type, buf, start, end) => collectText(result, type, buf, start, end),
      signal,
    );
    return result;
  }

  /**
   * A query with bound parameters (the extended protocol, unnamed statement and portal), its
   * small result returned as text.
   */
  async queryParams(sql: string, params: BoundParams, signal?: AbortSignal): Promise<TextResult> {
    const result = emptyResult();
    await this.exchange(
      [
        frontend.parse("", sql, params.types),
        frontend.bind("", "", [], params),
        frontend.execute(""),
        frontend.sync(),
      ],
      (type, buf, start, end) => {
        if (type === M.DataRow) result.rows.push(textRow(buf, start));
        else if (type === M.CommandComplete) result.tag = buf.toString("utf8", start, end - 1);
      },
      signal,
    );
    return result;
  }

  /**
   * Simple queries sent in one write and answered in order (one round trip for all), each one's
   * (small) result as text. As with `query`, the first error rejects, once all are answered; the
   * server runs each query whatever the ones before did (only an extended-protocol error skips
   * to the next Sync), so later ones see the transaction state the earlier ones left.
   */
  async queries(sqls: readonly string[], signal?: AbortSignal): Promise<TextResult[]> {
    return this.pipeline(
      sqls.map((sql) => ({ sql })),
      signal,
    );
  }

  /**
   * Simple queries and prepares (`prepare`: the statement's name) sent in one write and answered
   * in order, each up to its own ReadyForQuery: one round trip for all. A query's result comes as
   * text; a prepare's described columns are its result's `fields`. Each runs in the state the ones
   * before left: in a failed transaction PostgreSQL and Materialize answer every later statement
   * but ROLLBACK/COMMIT with 25P02, and a Parse so refused skips its Describe up to its Sync. The
   * first error rejects, once all are answered.
   */
  async pipeline(steps: readonly PipelineStep[], signal?: AbortSignal): Promise<TextResult[]> {
    const results: TextResult[] = steps.map(emptyResult);
    let i = 0;
    await this.exchange(
      steps.flatMap((s) =>
        s.prepare === undefined
          ? [frontend.query(s.sql)]
          : [frontend.parse(s.prepare, s.sql), frontend.describe("S", s.prepare), frontend.sync()],
      ),
      (type, buf, start, end) => {
        if (type === M.Ready) i++;
        else collectText(results[i]!, type, buf, start, end);
      },
      signal,
      undefined,
      steps.length,
    );
    return results;
  }

  /** Prepares `sql` as statement `name` and returns its result columns ([] for no result). */
  async prepare(name: string, sql: string, signal?: AbortSignal): Promise<FieldDesc[]> {
    return (await this.queryAndPrepare(null, name, sql, signal)).fields;
  }

  /**
   * A simple query (`before`, unless null) and then the prepare of `sql` as statement `name`, in
   * one write: one round trip for both. The prepare runs whatever the query did (in the
   * transaction state it left), and the first error rejects, once both are answered.
   */
  async queryAndPrepare(
    before: string | null,
    name: string,
    sql: string,
    signal?: AbortSignal,
  ): Promise<{ result: TextResult; fields: FieldDesc[] }> {
    const prepared: PipelineStep = { sql, prepare: name };
    if (before === null)
      return { result: emptyResult(), fields: (await this.pipeline([prepared], signal))[0]!.fields };
    const [result, prep] = await this.pipeline([{ sql: before }, prepared], signal);
    return { result: result!, fields: prep!.fields };
  }

  /**
   * Runs prepared statement `name` into portal `name`, streaming the DataRows to `onRows` in the
   * given result formats, a read's worth at a time. Resolves with the command tag.
   */
  async execute(
    name: string,
    resultFormats: readonly number[],
    onRows: RowsCallback,
    signal?: AbortSignal,
  ): Promise<string> {
    let tag = "";
    this.ch.bulkReads?.(BULK_READ_GAP_MS);
    try {
      await this.exchange(
        [
          frontend.bind(name, name, resultFormats),
          frontend.execute(name),
          frontend.close("S", name),
          frontend.sync(),
        ],
        (type, buf, start, end) => {
          // The message header is in front of the body, also for a message assembled from chunks.
          if (type === M.DataRow) onRows(buf, start - 5, end, 1);
          else if (type === M.CommandComplete) tag = buf.toString("utf8", start, end - 1);
        },
        signal,
        (type, buf, start, end, count) => {
          if (type === M.DataRow) onRows(buf, start, end, count);
        },
      );
    } finally {
      this.ch.bulkReads?.(0);
    }
    return tag;
  }
}

function lostError(): PgError {
  return new PgError(SqlState.connectionFailure, "lost the connection to the upstream database", {
    severity: "FATAL",
  });
}

function textRow(buf: Buffer, start: number): Array<string | null> {
  const n = buf.readInt16BE(start);
  const row: Array<string | null> = [];
  let p = start + 2;
  for (let i = 0; i < n; i++) {
    const len = buf.readInt32BE(p);
    p += 4;
    if (len < 0) row.push(null);
    else {
      row.push(buf.toString("utf8", p, p + len));
      p += len;
    }
  }
  return row;
}

/** Fills `result` from a simple query's answer (its columns, rows and tag); a COPY is refused. */
function emptyResult(): TextResult {
  return { fields: [], rows: [], tag: "" };
}

function collectText(result: TextResult, type: number, buf: Buffer, start: number, end: number): void {
  if (type === M.RowDescription) result.fields = parseRowDescription(buf, start);
  else if (type === M.DataRow) result.rows.push(textRow(buf, start));
  else if (type === M.CommandComplete) result.tag = buf.toString("utf8", start, end - 1);
  else if (type === M.CopyOut || type === M.CopyIn) {
    throw new PgError(SqlState.featureNotSupported, "COPY is not allowed here");
  }
}
