// When a job runs next. Occurrences are pure functions of the schedule and the time, so every
// proxy replica with the same jobs computes the same instants (the lease names them; see lease.ts).
import { createRequire } from "node:module";
import type { Schedule } from "./jobs.js";

/** The part of croner's Cron this module uses. */
interface CronJob {
  nextRun(from?: Date): Date | null;
  stop(): void;
}
type CronCtor = new (pattern: string, opts: { timezone: string; paused: boolean }) => CronJob;

let cronCtor: CronCtor | undefined;
/** croner, loaded on first use: a proxy without cron jobs never loads it. */
function Cron(): CronCtor {
  cronCtor ??= (createRequire(import.meta.url)("croner") as { Cron: CronCtor }).Cron;
  return cronCtor;
}

/** The first occurrence strictly after `after` (ms since the epoch); undefined: never again. */
export function nextOccurrence(s: Schedule, after: number): number | undefined {
  if (s.kind === "every") {
    // Anchored at the epoch, not at start-up: replicas started apart still agree.
    return (Math.floor(after / s.ms) + 1) * s.ms;
  }
  const next = new (Cron())(s.pattern, { timezone: s.timezone, paused: true }).nextRun(new Date(after));
  return next === null ? undefined : next.getTime();
}

/** Throws (croner's message) if a cron pattern is not valid. */
export function checkCron(pattern: string, timezone: string): void {
  new (Cron())(pattern, { timezone, paused: true }).stop();
}

/** The sortable, ISO-8601 name of a run's prefix: `snapshot=2026-12-02T10:00:00Z`. */
export function snapshotName(at: number): string {
  return `snapshot=${new Date(at).toISOString().replace(/\.000Z$/, "Z")}`;
}
