// The messages between the relay's process and its encoder host (./encoder-host.ts,
// ./encoder-host-main.ts). `w` names one encoder thread of the host; the messages it exchanges
// with its driver are ./protocol.ts's. They travel on the host's data channel (HOST_DATA_FD,
// framed by ./host-frames.ts), where row batches, encoded chunks and acks are frames of raw bytes
// of their own; the Node IPC channel carries only the host's `up` and tells it when the proxy is
// gone (its `disconnect`).
import type { FromEncoder, ToEncoder } from "./protocol.js";

/** The host's fd of the data channel's socket pair (stdio: ignore, inherit, inherit, ipc, pipe). */
export const HOST_DATA_FD = 4;

/** What the host is started with (its one command-line argument, as JSON). */
export interface HostArgs {
  /** Niceness of the whole host: every thread, and (Linux) its autogroup. */
  nice: number;
  /** The encoder thread's entry module (./worker-entry.ts). */
  workerUrl: string;
  /** Node options for the encoder threads (the profiler's only). */
  execArgv: string[];
}

/** Relay → host. */
export type ToHost =
  /** Start encoder thread `w` (its workerData). */
  | { t: "spawn"; w: number; nice: number; idle: boolean }
  /**
   * A message for thread `w`, except `rows` (a bytes frame: the batch itself). `slots`: with a `start`, the host's encoding budget of that many
   * slots (the budget's SharedArrayBuffer cannot cross processes: every encoder thread is here).
   */
  | { t: "post"; w: number; m: ToEncoder; slots?: number }
  | { t: "terminate"; w: number }
  /** Tests only: while `closed`, every thread started from now on blocks inside each batch's
   * encoding, its budget slot taken (encoderThreadTestHooks.gate's gate[2], which cannot cross
   * processes). */
  | { t: "gate"; closed: boolean }
  /** Tests and debugging: the host's encoding budgets now, answered by a `budgets` with `q`. */
  | { t: "budgets"; q: number }
  /**
   * Loan `h`: read thread `w`'s rows from the upstream socket sent with the IPC message
   * `{ t: "loan", h }` (./row-loan.ts), `leftover` first; DataRows up to `maxRowBytes` (header
   * included) only. Behind every row batch the relay sent the thread before it.
   */
  | { t: "loan"; h: number; w: number; leftover: Uint8Array; maxRowBytes: number }
  /** Stop reading loan `h`'s socket until released (the relay's uploads are behind). */
  | { t: "loanHold"; h: number; held: boolean }
  /** The export of loan `h` is ending (cancel, failure): read on, dropping the rows, to the end. */
  | { t: "loanDrop"; h: number };

/** One encoding budget of the host (./encoder-budget.ts). */
export interface HostBudget {
  slots: number;
  encoding: number;
  waiting: number;
  /** The threadIds (the host's own) holding a slot. */
  holders: number[];
}

/** Host → relay. */
export type FromHost =
  /** The host is up, lowered: its pid, its main thread's niceness, its autogroup line (Linux). */
  | { t: "up"; pid: number; nice: number; autogroup: string }
  /**
   * Thread `w`'s message, except `chunk` (a bytes frame: the chunk itself) and `ack` (an ack frame,
   * without its buffer: the relay still has the one it sent).
   */
  | { t: "msg"; w: number; m: FromEncoder }
  | { t: "error"; w: number; message: string }
  | { t: "exit"; w: number; code: number }
  | { t: "budgets"; q: number; budgets: HostBudget[] }
  /**
   * Loan `h` has sent its thread `rows` rows in all so far; `full`: it waits for the thread.
   * `read`: bytes it read from the socket since its last report (the session's traffic).
   */
  | { t: "loanRows"; h: number; rows: number; full: boolean; read: number }
  /**
   * Loan `h` has ended: `rows` rows in all; `rest` is what the host read from the first message
   * that is not a DataRow it takes on (the relay reads it first); its copy of the socket is closed.
   * `error`: the socket failed or ended (the upstream is lost).
   */
  | { t: "loanBack"; h: number; rows: number; rest: Uint8Array; read: number; error?: string }
  /** The answer to a WriterQuery (on the IPC channel). */
  | ({ t: "writer"; q: number } & WriterState);

/**
 * Tests and debugging: the state of the host's data channel writer, asked on the IPC channel (which
 * goes on when the data channel is held), answered by a FromHost `writer` with the same `q`.
 */
export interface WriterQuery {
  t: "writer";
  q: number;
}

/** A data channel writer's state (./host-frames.ts). */
export interface WriterState {
  /** Bytes written and not yet taken by the other side. */
  queued: number;
  /** The most there ever were. */
  most: number;
  congested: boolean;
}

/** The IPC message (Node's channel, which can carry a socket) that comes with the socket of loan `h`. */
export interface LoanSocketMessage {
  t: "loan";
  h: number;
}
