// A job's run records: one per occurrence (scheduled or "run now"), its state and outcome, kept in
// a bounded history per job.

import { snapshotName } from "./next-run.js";

export type RunState = "queued" | "waiting" | "running" | "retrying" | "succeeded" | "failed" | "skipped";

export interface RunRecord {
  job: string;
  /** `snapshot=<ISO time>`: the run's prefix under the job's target. */
  snapshot: string;
  trigger: "schedule" | "manual";
  state: RunState;
  attempts: number;
  /** ms since the epoch. */
  scheduledAt: number;
  startedAt: number;
  endedAt: number | undefined;
  rows: number | undefined;
  error: string | undefined;
}

export function newRunRecord(job: string, at: number, trigger: RunRecord["trigger"], now: number): RunRecord {
  return {
    job,
    snapshot: snapshotName(at),
    trigger,
    state: "running",
    attempts: 0,
    scheduledAt: at,
    startedAt: now,
    endedAt: undefined,
    rows: undefined,
    error: undefined,
  };
}

/** Appends `r`, dropping the oldest beyond `max`. */
export function keepRecord(history: RunRecord[], r: RunRecord, max: number): void {
  history.push(r);
  if (history.length > max) history.splice(0, history.length - max);
}
