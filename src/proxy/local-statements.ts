// Statements this proxy runs itself (COPY TO S3): which client messages are ours, and the replies
// PostgreSQL would send for them, for a simple Query as for the extended protocol's
// Parse/Bind/Describe/Execute/Close/Sync on statements and portals parsed here. The session owns
// the sockets and the streams; this only reaches them through a LocalHost.
import { PgError, SqlState } from "../errors.js";
import {
  bindComplete,
  closeComplete,
  noData,
  parameterDescription,
  parseComplete,
  rowDescription,
  type TxStatus,
} from "../wire/backend.js";
import { frame } from "../wire/frame.js";
import { frontend } from "../wire/frontend.js";
import { Policy, type PolicyTable, policyTable } from "../wire/message-policy.js";
import { type BoundParams, COPY_LABEL, type CopyHook } from "./copy-hook.js";
import { hasUrlMark, sniffCopy } from "./copy-sniff.js";
import { boundParams, cstring, declaredTypes, paramTypes } from "./extended-messages.js";

/** What the local statements need from the session. */
export interface LocalHost {
  readonly copy: CopyHook | null;
  /** ParameterStatus values the upstream reported; recognize() reads them. */
  readonly params: ReadonlyMap<string, string>;
  txStatus(): TxStatus;
  toClient(b: Buffer): void;
  /** A client message forwarded after all (the upstream's backpressure holds the client). */
  toUpstream(b: Buffer): void;
  /** A message of the proxy's own to the upstream. */
  writeUpstream(b: Buffer): void;
  /** A Query or Sync went upstream: its ReadyForQuery will come back from there. */
  expectReady(): void;
  /** Resolves once the upstream has answered every Query and Sync sent to it. */
  idle(): Promise<void>;
  /** ReadyForQuery for something answered here. */
  ready(): void;
  /**
   * Runs one export and writes its CommandComplete or ErrorResponse. Returns false on error.
   * `extended`: an Execute, which sends rows only (a RowDescription is Describe's reply there);
   * `params`: the values Bind bound to it.
   */
  runExport(stmt: unknown, extended?: boolean, params?: BoundParams): Promise<boolean>;
  /** Sends `msg` to the client right before the upstream's next ReadyForQuery. */
  beforeNextReady(msg: Buffer): void;
  setClientPolicy(p: PolicyTable): void;
  pauseClient(): void;
  /** Resumes the client stream unless the session closed meanwhile. */
  resumeClient(): void;
  /** A bug here: the session cannot go on. */
  internalError(e: unknown): void;
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
} as const;

// Client → upstream. Bind/Execute/Describe/Close/Flush are only looked at while the session has
// statements of its own (see refreshClientPolicy).
export const CLIENT_RELAY = policyTable({
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
/**
 * Discarding until Sync after an error: every message is dropped unseen (never assembled: it may
 * be up to 1 GiB), but the Sync, which ends the skipping.
 */
const CLIENT_SKIP: PolicyTable = new Uint8Array(256).fill(Policy.Drop);
CLIENT_SKIP["S".charCodeAt(0)] = Policy.Take;

/** Largest statement text starting with COPY that is parsed here; longer ones go upstream. */
export const MAX_COPY_TEXT = 16 << 20;
/** Largest text parsed on a weaker hint (comments first, or a URL behind other statements). */
const MAX_HINTED_TEXT = 1 << 20;

/** A statement parsed here, and its parameters' types (Parse's, completed: see paramTypes). */
interface LocalStatement {
  stmt: unknown;
  types: number[];
}

/** A portal bound here: its statement and the values bound to it. */
interface LocalPortal {
  stmt: unknown;
  params: BoundParams;
}

export class LocalStatements {
  // Extended-protocol state for statements this proxy runs itself.
  private readonly statements = new Map<string, LocalStatement>();
  private readonly portals = new Map<string, LocalPortal>();
  private segHasLocal = false;
  private segForwarded = 0;
  private skipping = false;

  // Local work happens one message at a time, in order, while the client stream is paused.
  private work: Promise<void> = Promise.resolve();

  constructor(private readonly host: LocalHost) {}

  /** MessageStream's `decide` for the client stream: Take what is ours, Pass the rest. */
  decide(type: number, head: Buffer, bodyLength: number): Policy.Pass | Policy.Take {
    const whole = head.length >= bodyLength;
    switch (type) {
      case T.Q: {
        const s = sniffCopy(head, 0, head.length);
        // A COPY TO S3 behind other statements must be refused, not forwarded: a URL in the text
        // is the cheap hint that one might be there.
        // Size caps keep a huge statement (a 500 MB INSERT that happens to hold a URL) streaming
        // through instead of being assembled and parsed; a real COPY TO S3 is a few KB.
        if (
          this.host.copy !== null &&
          (s === "yes"
            ? bodyLength <= MAX_COPY_TEXT
            : bodyLength <= MAX_HINTED_TEXT &&
              ((s === "unknown" && !whole) || hasUrlMark(head) || this.host.copy.claims?.(head) === true))
        ) {
          return Policy.Take;
        }
        this.host.expectReady();
        return Policy.Pass;
      }
      case T.P: {
        const nameEnd = head.indexOf(0);
        if (nameEnd >= 0 && this.host.copy !== null) {
          const s = sniffCopy(head, nameEnd + 1, head.length);
          if (
            (s === "yes" && bodyLength <= MAX_COPY_TEXT) ||
            (s === "unknown" && !whole && bodyLength <= MAX_HINTED_TEXT) ||
            (bodyLength <= MAX_HINTED_TEXT && this.host.copy.claims?.(head.subarray(nameEnd + 1)) === true)
          ) {
            return Policy.Take;
          }
        }
        if (nameEnd >= 0 && this.statements.delete(head.toString("utf8", 0, nameEnd)))
          this.refreshClientPolicy();
        this.segForwarded++;
        return Policy.Pass;
      }
      case T.S:
        if (this.segHasLocal) return Policy.Take;
        this.host.expectReady();
        this.segForwarded = 0;
        return Policy.Pass;
      case T.B: {
        const portalEnd = head.indexOf(0);
        const stmtEnd = portalEnd < 0 ? -1 : head.indexOf(0, portalEnd + 1);
        if (stmtEnd >= 0 && this.statements.has(head.toString("utf8", portalEnd + 1, stmtEnd)))
          return Policy.Take;
        if (portalEnd >= 0 && this.portals.delete(head.toString("utf8", 0, portalEnd)))
          this.refreshClientPolicy();
        this.segForwarded++;
        return Policy.Pass;
      }
      case T.E: {
        const end = head.indexOf(0);
        if (end >= 0 && this.portals.has(head.toString("utf8", 0, end))) return Policy.Take;
        this.segForwarded++;
        return Policy.Pass;
      }
      case T.D:
      case T.C: {
        const end = head.indexOf(0, 1);
        if (end >= 0) {
          const name = head.toString("utf8", 1, end);
          const local = head[0] === 0x53 /* S */ ? this.statements.has(name) : this.portals.has(name);
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

  /** MessageStream's `take` for the client stream; `body` is the caller's own copy. */
  take(type: number, body: Buffer): void {
    this.host.pauseClient();
    this.work = this.work
      .then(() => this.handle(type, body))
      .catch((e: unknown) => this.host.internalError(e))
      .finally(() => this.host.resumeClient());
  }

  private refreshClientPolicy(): void {
    if (this.skipping) return;
    const local = this.statements.size > 0 || this.portals.size > 0 || this.segHasLocal;
    this.host.setClientPolicy(local ? CLIENT_LOCAL : CLIENT_RELAY);
  }

  private async handle(type: number, body: Buffer): Promise<void> {
    const host = this.host;
    if (this.skipping) {
      // An error earlier in this Sync segment: discard until Sync, as PostgreSQL does.
      if (type !== T.S) return;
      this.skipping = false;
      await this.endSegment();
      return;
    }
    const hook = host.copy;
    switch (type) {
      case T.Q: {
        const sql = cstring(body, 0);
        let stmt: unknown;
        try {
          stmt = hook!.recognize(sql, host.params);
        } catch (e) {
          await host.idle();
          host.toClient(PgError.from(e, SqlState.syntaxError).toWire());
          host.ready();
          return;
        }
        if (stmt === null) {
          host.expectReady();
          host.toUpstream(frame(T.Q, body));
          return;
        }
        await host.idle();
        await this.runExport(stmt);
        host.ready();
        return;
      }
      case T.P: {
        const nameEnd = body.indexOf(0);
        const name = body.toString("utf8", 0, nameEnd);
        const sql = cstring(body, nameEnd + 1);
        const sqlEnd = body.indexOf(0, nameEnd + 1);
        let stmt: unknown;
        try {
          stmt = hook!.recognize(sql, host.params);
        } catch (e) {
          this.localError(PgError.from(e, SqlState.syntaxError));
          return;
        }
        if (stmt === null) {
          this.segForwarded++;
          host.toUpstream(frame(T.P, body));
          return;
        }
        this.segHasLocal = true;
        // A refused statement must not stay defined.
        if (await this.mixedSegment(stmt)) return;
        this.statements.set(name, {
          stmt,
          types: paramTypes(declaredTypes(body, sqlEnd + 1), hook!.parameters?.(stmt) ?? 0),
        });
        this.refreshClientPolicy();
        host.toClient(parseComplete());
        return;
      }
      case T.B: {
        const portalEnd = body.indexOf(0);
        const portal = body.toString("utf8", 0, portalEnd);
        const stmtName = cstring(body, portalEnd + 1);
        this.segHasLocal = true;
        const statement = this.statements.get(stmtName);
        if (await this.mixedSegment(statement?.stmt)) return;
        let params: BoundParams;
        try {
          if (statement === undefined) {
            throw new PgError(
              SqlState.invalidSqlStatementName,
              `prepared statement "${stmtName}" does not exist`,
            );
          }
          params = boundParams(body, body.indexOf(0, portalEnd + 1) + 1, stmtName, statement.types);
        } catch (e) {
          this.localError(PgError.from(e, SqlState.protocolViolation));
          return;
        }
        this.portals.set(portal, { stmt: statement.stmt, params });
        this.refreshClientPolicy();
        host.toClient(bindComplete());
        return;
      }
      case T.D: {
        this.segHasLocal = true;
        this.refreshClientPolicy();
        const name = cstring(body, 1);
        const local = body[0] === 0x53 /* S */ ? this.statements.get(name) : this.portals.get(name);
        if (await this.mixedSegment(local?.stmt)) return;
        if (body[0] === 0x53) host.toClient(parameterDescription(this.statements.get(name)?.types ?? []));
        const columns = local === undefined ? undefined : hook?.describe?.(local.stmt)?.columns;
        host.toClient(columns !== undefined && columns.length > 0 ? rowDescription(columns) : noData());
        return;
      }
      case T.C: {
        const name = cstring(body, 1);
        const closed = (body[0] === 0x53 ? this.statements : this.portals).get(name)?.stmt;
        if (body[0] === 0x53) this.statements.delete(name);
        else this.portals.delete(name);
        this.segHasLocal = true;
        this.refreshClientPolicy();
        if (await this.mixedSegment(closed)) return;
        host.toClient(closeComplete());
        return;
      }
      case T.E: {
        const portal = cstring(body, 0);
        const bound = this.portals.get(portal);
        this.segHasLocal = true;
        this.refreshClientPolicy();
        if (await this.mixedSegment(bound?.stmt)) return;
        if (!(await this.runExport(bound?.stmt, true, bound?.params))) this.skipping = true;
        if (portal === "") this.portals.delete(portal);
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
      this.host.expectReady();
      this.host.writeUpstream(frontend.sync());
      return;
    }
    await this.host.idle();
    this.host.ready();
  }

  /**
   * A local message in a Sync segment that also holds forwarded messages: their replies only come
   * at Sync, so the local one cannot be answered in order. Refuse it after the upstream's replies,
   * naming what was refused (`stmt`: an export or a console statement).
   */
  private async mixedSegment(stmt: unknown): Promise<boolean> {
    if (this.segForwarded === 0) {
      await this.host.idle();
      return false;
    }
    const what = (stmt === undefined ? undefined : this.host.copy?.label?.(stmt)) ?? COPY_LABEL;
    this.host.beforeNextReady(
      new PgError(
        SqlState.featureNotSupported,
        `${what} cannot be combined with other statements in one extended-protocol Sync segment`,
        { hint: `Send a Sync before ${what === COPY_LABEL ? "the COPY" : what}.` },
      ).toWire(),
    );
    this.skipping = true;
    this.host.setClientPolicy(CLIENT_SKIP);
    return true;
  }

  private localError(err: PgError): void {
    this.host.toClient(err.toWire());
    this.skipping = true;
    this.host.setClientPolicy(CLIENT_SKIP);
  }

  /**
   * An export, unless the client's transaction failed. Inside a transaction block the export runs
   * in it (the hook decides whether the upstream allows that). Returns false on error.
   */
  private runExport(stmt: unknown, extended = false, params?: BoundParams): Promise<boolean> {
    const tx = this.host.txStatus();
    if (tx === "E") {
      this.host.toClient(
        new PgError(
          SqlState.inFailedSqlTransaction,
          "current transaction is aborted, commands ignored until end of transaction block",
        ).toWire(),
      );
      return Promise.resolve(false);
    }
    return this.host.runExport(stmt, extended, params);
  }
}
