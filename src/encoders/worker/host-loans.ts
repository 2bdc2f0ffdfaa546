// The encoder host's side of row loans (docs/isolation.md, "The host reads the rows itself"): a
// loan arrives in two halves on two channels, its frame on the data channel and its socket on the
// IPC channel, in either order; a hold or drop from the relay may come before both have. Once
// complete it is a RowLoan (./row-loan.ts) that reads the rows for one thread, and stops reading
// while the relay holds it or while the relay has fallen behind reading the host (congested).
// ./socket-lender.ts is the relay's side.
import type { Socket } from "node:net";
import type { FromHost, ToHost } from "./host-protocol.js";
import { RowLoan } from "./row-loan.js";

type LoanFrame = Extract<ToHost, { t: "loan" }>;

/** What the loans need of the host (./encoder-host-main.ts). */
export interface LoanHost {
  /** A row buffer for thread `w`'s next batch. */
  buffer(w: number): ArrayBuffer;
  /** Rows `buf[0..len)` read by `loan` to thread `w`. False if the thread is gone. */
  postRows(w: number, buf: ArrayBuffer, len: number, loan: RowLoan | null): boolean;
  /** To the relay. */
  send(m: FromHost): void;
}

export class HostLoans {
  /** Loans whose two halves have not both arrived: the data frame and the socket (IPC). */
  private readonly frames = new Map<number, LoanFrame>();
  private readonly sockets = new Map<number, Socket>();
  private readonly loans = new Map<number, RowLoan>();
  /** Whether the relay holds each running loan (its uploads are behind): held too while congested. */
  private readonly held = new Map<number, boolean>();
  /** Holds and drops that came before their loan was complete. */
  private readonly early = new Map<number, { held: boolean; dropped: boolean }>();
  private congested = false;

  constructor(private readonly host: LoanHost) {}

  /** A loan's frame (data channel). */
  frame(m: LoanFrame): void {
    this.frames.set(m.h, m);
    this.start(m.h);
  }

  /** A loan's socket (IPC channel). */
  socket(h: number, sock: Socket): void {
    this.sockets.set(h, sock);
    this.start(h);
  }

  /** The relay holds loan `h` (true) or lets it read again. */
  hold(h: number, held: boolean): void {
    const loan = this.loans.get(h);
    if (loan !== undefined) {
      this.held.set(h, held);
      loan.hold(held || this.congested);
    } else if (this.waiting(h)) this.earlyOf(h).held = held;
  }

  /** The relay drops loan `h` (its export ended). */
  drop(h: number): void {
    const loan = this.loans.get(h);
    if (loan !== undefined) loan.drop();
    else if (this.waiting(h)) this.earlyOf(h).dropped = true;
  }

  /** The relay has fallen behind reading the host (true), or caught up: no loan reads meanwhile. */
  congest(on: boolean): void {
    this.congested = on;
    for (const [h, loan] of this.loans) loan.hold(on || (this.held.get(h) ?? false));
  }

  private waiting(h: number): boolean {
    return this.frames.has(h) || this.sockets.has(h);
  }

  private earlyOf(h: number): { held: boolean; dropped: boolean } {
    let e = this.early.get(h);
    if (e === undefined) {
      e = { held: false, dropped: false };
      this.early.set(h, e);
    }
    return e;
  }

  /** Starts loan `h` once both its halves are here. */
  private start(h: number): void {
    const m = this.frames.get(h);
    const sock = this.sockets.get(h);
    if (m === undefined || sock === undefined) return;
    this.frames.delete(h);
    this.sockets.delete(h);
    let loan: RowLoan | null = null;
    let ended = false;
    loan = new RowLoan(
      sock,
      Buffer.from(m.leftover.buffer, m.leftover.byteOffset, m.leftover.byteLength),
      m.maxRowBytes,
      {
        buffer: () => this.host.buffer(m.w),
        send: (buf, len) => this.host.postRows(m.w, buf, len, loan),
        progress: (rows, full, read) => this.host.send({ t: "loanRows", h, rows, full, read }),
        back: (rows, rest, read, error) => {
          ended = true;
          this.loans.delete(h);
          this.held.delete(h);
          this.host.send(
            error === undefined
              ? { t: "loanBack", h, rows, rest, read }
              : { t: "loanBack", h, rows, rest, read, error },
          );
        },
      },
    );
    const e = this.early.get(h);
    this.early.delete(h);
    if (ended) return;
    this.loans.set(h, loan);
    this.held.set(h, e?.held ?? false);
    if (e?.held || this.congested) loan.hold(true);
    if (e?.dropped) loan.drop();
  }
}
