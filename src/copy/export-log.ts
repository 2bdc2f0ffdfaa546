// What an operator reads about each export: one line when it starts and one when it ends, however
// it ends (complete at info; cancelled by its client at info; anything else at warn). Only ids,
// the target's canonical spelling (credentials never fit in it, see target-url.ts), counts and
// SQLSTATEs are logged: no query text, no connection secrets.
import { type PgError, SqlState } from "../errors.js";
import type { Logger } from "../log.js";
import { exportEnded, exportStarted } from "../metrics/metrics.js";

/** The steps of an export (SPEC §2), in order; the end line names the last one reached. */
export type ExportPhase = "plan" | "preflight" | "read" | "upload" | "commit";

/**
 * Moments inside the read phase, in ms after it began: the first and the last rows handed to the
 * encoders. What follows the last row until the read phase ends is the encoders' tail (the last
 * row groups encoded and written).
 */
export type ReadMark = "firstRow" | "lastRow";

export interface ExportIdentity {
  exportId: string;
  user: string;
  database: string;
  format: string;
  compression: string;
}

export interface ExportTotals {
  rows: number;
  bytes: number;
  files: number;
}

export class ExportLog {
  private readonly started = Date.now();
  private phaseStarted = this.started;
  private current: ExportPhase = "plan";
  private readonly phaseMs: Partial<Record<ExportPhase, number>> = {};
  private readonly readMs: Partial<Record<ReadMark, number>> = {};
  private target: string | undefined;

  constructor(
    private readonly log: Logger,
    private readonly who: ExportIdentity,
  ) {}

  get elapsedMs(): number {
    return Date.now() - this.started;
  }

  start(): void {
    this.log.info({ ...this.who }, "export started");
    exportStarted();
  }

  /** The target once it is known (it may be computed by a query). */
  setTarget(target: string): void {
    this.target = target;
  }

  phase(next: ExportPhase): void {
    const now = Date.now();
    this.phaseMs[this.current] = now - this.phaseStarted;
    this.phaseStarted = now;
    this.current = next;
  }

  /** `at` (Date.now()) of a moment of the read phase, if it happened (an empty result has no rows). */
  mark(what: ReadMark, at: number | undefined): void {
    if (at !== undefined && this.current === "read") this.readMs[what] = at - this.phaseStarted;
  }

  complete(totals: ExportTotals): void {
    this.phase(this.current);
    this.log.info(
      {
        ...this.who,
        target: this.target,
        ...totals,
        ms: Date.now() - this.started,
        phaseMs: this.phaseMs,
        readMs: this.readMs,
      },
      "export complete",
    );
    exportEnded("completed", "", this.who.format, totals, this.elapsedMs / 1000);
  }

  /** After the cleanup: `err` carries what it left behind, if anything. */
  failed(err: PgError, totals: ExportTotals): void {
    const cancelled = err.code === SqlState.queryCanceled;
    const fields = {
      ...this.who,
      target: this.target,
      ...totals,
      phase: this.current,
      sqlstate: err.code,
      err: err.message,
      // Only set when the cleanup could not take everything back (it lists what is left).
      cleanup: err.detail?.includes("left behind:") ? err.detail : undefined,
      ms: Date.now() - this.started,
    };
    if (cancelled) this.log.info(fields, "export cancelled");
    else this.log.warn(fields, "export failed");
    exportEnded(cancelled ? "cancelled" : "failed", err.code, this.who.format, totals, fields.ms / 1000);
  }
}
