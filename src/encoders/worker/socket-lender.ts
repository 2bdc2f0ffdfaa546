// The relay's side of row loans (docs/isolation.md, "The host reads the rows itself"): lending the
// encoder host the upstream socket for one statement's rows, keeping each loan until the host
// gives the socket back (or cannot), and telling the relay what the host reports of it.
// ./row-loan.ts is the host's side; ./encoder-host.ts owns the channels the loans travel on.
import type { Socket } from "node:net";
import type { FromHost, LoanSocketMessage, ToHost } from "./host-protocol.js";

/**
 * The relay's upstream socket lent for one statement's rows (the proxy's UpstreamLoan, which this
 * is the shape of: the encoders know nothing of the proxy's sessions).
 */
export interface LentSocket {
  readonly socket: Socket;
  leftover(): Buffer;
  back(rest: Buffer): void;
  lose(): void;
  counted(bytes: number): void;
}

/** What a row loan tells the relay. */
export interface LoanEvents {
  /** `rows` rows sent to the thread so far; `full`: the host waits for the thread to catch up. */
  rows(rows: number, full: boolean): void;
  /** The loan has ended with `rows` rows; the relay reads the upstream again. */
  back(rows: number): void;
  /** The loan ended with bytes the host read and cannot give back: the upstream is lost. */
  failed(why: string): void;
}

/** A running loan, from the relay's side. */
export interface HostLoan {
  /** Stops (true) or restarts (false) the host's reading: the relay's uploads are behind. */
  hold(held: boolean): void;
  /** The export is ending: the host reads the rest of the rows and drops them. */
  drop(): void;
}

/** How a lender reaches its host. */
export interface LoanChannel {
  /** A message on the data channel (behind every frame written before it). */
  send(m: ToHost): void;
  /** A socket, with its message, on the IPC channel (the only one that can carry a descriptor). */
  sendSocket(m: LoanSocketMessage, socket: Socket, sent: (e: Error | null) => void): void;
  /** The host has ended. */
  gone(): boolean;
}

/** Ids of row loans, unique in this process. */
let nextLoan = 1;

/** Loans of one encoder host. */
export class SocketLender {
  private readonly loans = new Map<number, { lent: LentSocket; events: LoanEvents }>();

  constructor(private readonly host: LoanChannel) {}

  /**
   * Lends the host `lent`'s socket for thread `w`'s rows: from the next microtask on (the bytes the
   * relay has read past the current message are known only once its read has been handled), after
   * every row batch sent to the thread before.
   */
  lend(w: number, lent: LentSocket, maxRowBytes: number, events: LoanEvents): HostLoan {
    const h = nextLoan++;
    this.loans.set(h, { lent, events });
    let sent = false;
    let dropped = false;
    queueMicrotask(() => {
      if (!this.loans.has(h)) return;
      if (this.host.gone()) {
        this.failed(h, "is gone");
        return;
      }
      const leftover = lent.leftover();
      this.host.send({ t: "loan", h, w, leftover, maxRowBytes });
      sent = true;
      if (dropped) this.host.send({ t: "loanDrop", h });
      this.host.sendSocket({ t: "loan", h }, lent.socket, (e) => {
        if (e) this.failed(h, `could not be given the upstream socket: ${e.message}`);
      });
    });
    return {
      // Only from a `rows` event on, so after the loan's frame.
      hold: (held) => {
        if (this.loans.has(h)) this.host.send({ t: "loanHold", h, held });
      },
      drop: () => {
        dropped = true;
        if (sent && this.loans.has(h)) this.host.send({ t: "loanDrop", h });
      },
    };
  }

  /** Handles `m` if it is a loan's report (true), else leaves it (false). */
  receive(m: FromHost): m is Extract<FromHost, { t: "loanRows" | "loanBack" }> {
    if (m.t === "loanRows") {
      const loan = this.loans.get(m.h);
      loan?.lent.counted(m.read);
      loan?.events.rows(m.rows, m.full);
      return true;
    }
    if (m.t !== "loanBack") return false;
    const loan = this.loans.get(m.h);
    if (loan === undefined) return true;
    this.loans.delete(m.h);
    loan.lent.counted(m.read);
    if (m.error !== undefined) {
      loan.lent.lose();
      loan.events.failed(m.error);
      return true;
    }
    loan.lent.back(Buffer.from(m.rest.buffer, m.rest.byteOffset, m.rest.byteLength));
    loan.events.back(m.rows);
    return true;
  }

  /** The host has ended (`why`): every loan fails, its upstream lost. */
  failAll(why: string): void {
    for (const h of [...this.loans.keys()]) this.failed(h, why);
  }

  private failed(h: number, why: string): void {
    const loan = this.loans.get(h);
    if (loan === undefined) return;
    this.loans.delete(h);
    loan.lent.lose();
    loan.events.failed(`its encoder host process ${why}`);
  }
}
