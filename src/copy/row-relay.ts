// The snapshot's rows into the export's encoder threads, a read's worth at a time. When the
// threads fall behind, the upstream's row stream is paused at that message until they catch up
// (backpressure, not buffering); a stall of any side ends the export (stall-watchdog.ts).

import type { HostLoan } from "../encoders/worker/encoder-host.js";
import type { RingWriter } from "../encoders/worker/row-ring.js";
import { PgError } from "../errors.js";
import type { UpstreamChannel } from "../proxy/copy-hook.js";
import type { OutputBatches } from "./output-batches.js";
import type { SnapshotSource } from "./snapshot/snapshot-source.js";
import { watchForStall } from "./stall-watchdog.js";

export interface RowRelayDeps {
  snapshot: SnapshotSource;
  output: OutputBatches;
  /** The session's upstream: paused and resumed here. */
  channel: UpstreamChannel;
  resultFormats: readonly number[];
  stallTimeoutMs: number;
  /** The encoding budget's slots (exports.maxEncodingThreads), for the stall's words. */
  encodingTurns: number;
  /** Ends the export (a stall, a failed flush). */
  abort: (err: PgError) => void;
  signal: AbortSignal;
  /** exports.maxRowBytes: the largest row the encoder host takes when it reads the rows itself. */
  maxRowBytes: number;
}

/** Tests only: how many row bytes the relay's own thread handed to the encoders (a loan's are not). */
export const rowRelayTestHooks: { relayedBytes: number } = { relayedBytes: 0 };

export class RowRelay {
  /** Rows handed to the encoders so far. */
  rows = 0;
  /** When (Date.now()) the first and the latest rows were handed to the encoders (the export's log). */
  firstRowAt: number | undefined;
  lastRowAt: number | undefined;

  constructor(private readonly d: RowRelayDeps) {}

  /** Until the snapshot is read (or the export aborted) and no flush of the encoders runs any more. */
  async run(): Promise<void> {
    const { output, channel, signal } = this.d;
    let flushing: Promise<void> | null = null;
    let paused = false;
    let resumes = 0;
    const unpause = (): void => {
      if (!paused) return;
      paused = false;
      resumes++;
      channel.resume();
    };
    const stopWatching = watchForStall(
      this.d.stallTimeoutMs,
      {
        progress: () => this.rows + resumes,
        waitingFor: () =>
          paused || loanHeld
            ? (output.waitingFor ?? "encoder")
            : loanFull || ringFull
              ? "encoder"
              : "upstream",
      },
      (err) => this.d.abort(err),
      this.d.encodingTurns,
    );
    // A cancel must not wait for the flush that paused the row stream: the upstream has to be
    // read for its cancel to land (a backend blocked writing to us does not notice one), and the
    // rows still arriving are dropped below.
    signal.addEventListener("abort", unpause, { once: true });
    const relieve = (): void => {
      // Stop the row stream at this message, catch up, then let it flow again.
      channel.pause();
      paused = true;
      flushing = output.drained().then(
        () => {
          flushing = null;
          unpause();
        },
        (e: unknown) => {
          flushing = null;
          this.d.abort(PgError.from(e));
          unpause();
        },
      );
    };
    // The encoder host reading the rows itself (a loan of the upstream socket), if it does.
    let loan: HostLoan | null = null;
    /** The host waits for its thread (its window is full): what a stall waits for then. */
    let loanFull = false;
    let loanHeld = false;
    const dropLoan = (): void => loan?.drop();
    signal.addEventListener("abort", dropLoan, { once: true });
    // The relay's uploads fall behind while the host reads: it stops reading until they catch up.
    const holdLoanIfDue = (): void => {
      if (loan === null || loanHeld || !output.needsRelief) return;
      loanHeld = true;
      loan.hold(true);
      const held = loan;
      flushing = output.drained().then(
        () => {
          flushing = null;
          loanHeld = false;
          resumes++;
          held.hold(false);
        },
        (e: unknown) => {
          flushing = null;
          loanHeld = false;
          this.d.abort(PgError.from(e));
          held.hold(false);
        },
      );
    };
    /**
     * With the encoder host (exports.encoderHost "process") and one encoder thread, the relay
     * lends the host the upstream socket once the first rows have come: the host reads the rest of
     * the statement's DataRows itself, and gives the stream back at its first other message
     * (docs/isolation.md, "The host reads the rows itself"). The relay's thread then reads none of
     * the rows. Not for TLS upstreams (lend() says no), Materialize (rowsAsSent) or several threads.
     */
    const lendIfPossible = (): boolean => {
      if (loan !== null || flushing !== null || signal.aborted || this.d.snapshot.rowsAsSent !== true)
        return false;
      const thread = output.soleThread;
      if (thread === null || !thread.canLend) return false;
      const lent = channel.lend?.() ?? null;
      if (lent === null) return false;
      const base = this.rows;
      loan = thread.lend(lent, this.d.maxRowBytes, {
        rows: (n, full) => {
          loanFull = full;
          if (base + n !== this.rows) {
            this.rows = base + n;
            this.lastRowAt = Date.now();
          }
          holdLoanIfDue();
        },
        back: (n) => {
          loan = null;
          loanFull = false;
          if (base + n !== this.rows) {
            this.rows = base + n;
            this.lastRowAt = Date.now();
          }
        },
        // The upstream is lost (lent.lose()): the statement fails with the session's upstream.
        failed: () => {
          loan = null;
        },
      });
      if (loan === null) lent.back(Buffer.alloc(0)); // not taken after all: read on here
      return loan !== null;
    };
    const relieveIfDue = (): void => {
      if (flushing === null && output.needsRelief) relieve();
    };
    // The rows going to the thread through a ring, unframed (exports.encoderHost "thread").
    let ring: RingWriter | null = null;
    /** The ring is full: the upstream waits for the thread. */
    let ringFull = false;
    /**
     * With encoder threads in this process and one of them, the relay stops framing the rows once
     * the first have come: each upstream read goes as it is into a ring the thread reads, frames
     * and gives back at its first other message (docs/isolation.md, "Rows to the encoder thread
     * without framing"). TLS upstreams too (the relay has the plaintext). Not for Materialize
     * (rowsAsSent) or several threads.
     */
    const ringIfPossible = (): boolean => {
      if (ring !== null || flushing !== null || signal.aborted || this.d.snapshot.rowsAsSent !== true)
        return false;
      const thread = output.soleThread;
      if (thread === null || !thread.canRing) return false;
      let writer: RingWriter | null = null;
      // Called from the end of this read on, never before ring() below has returned. The
      // upstream's reads go straight into the ring where they can (RingWriter.lend).
      const diversion =
        channel.divert?.((chunk) => writer!.write(chunk), {
          lend: () => writer!.lend(),
          returned: () => writer!.returned(),
        }) ?? null;
      if (diversion === null) return false;
      const base = this.rows;
      const counted = (n: number): void => {
        if (base + n === this.rows) return;
        this.rows = base + n;
        this.lastRowAt = Date.now();
      };
      writer = thread.ring(this.d.maxRowBytes, {
        rows: (n) => {
          counted(n);
          relieveIfDue();
        },
        full: (held) => {
          ringFull = held;
          if (held) diversion.hold();
          else diversion.release();
        },
        back: (n, rest, skip) => {
          ring = null;
          ringFull = false;
          counted(n);
          diversion.back(rest, skip);
        },
      });
      ring = writer;
      return true;
    };
    try {
      await this.d.snapshot.read(
        this.d.resultFormats,
        {
          // A read's worth of rows at a time: the queue to the encoder may overshoot by one read.
          rows: (buf, start, end, count) => {
            if (signal.aborted) return; // the statement is being cancelled upstream
            output.writeRows(buf, start, end);
            rowRelayTestHooks.relayedBytes += end - start;
            this.rows += count;
            this.lastRowAt = Date.now();
            this.firstRowAt ??= this.lastRowAt;
            if (!lendIfPossible() && !ringIfPossible()) relieveIfDue();
          },
          row: (buf, pos, n) => {
            if (signal.aborted) return;
            output.writeRow(buf, pos, n);
            if (this.rows++ === 0) this.firstRowAt = Date.now();
            relieveIfDue();
          },
        },
        signal,
      );
      // Rows one by one (Materialize) are not timed each: their last is taken as the read's end.
      if (this.rows > 0 && this.lastRowAt === undefined) this.lastRowAt = Date.now();
    } finally {
      stopWatching();
      signal.removeEventListener("abort", unpause);
      signal.removeEventListener("abort", dropLoan);
      // The encoders are disposed only once no flush of them runs any more.
      while (flushing !== null) await flushing;
    }
  }
}
