// One occurrence of a job, from start to outcome: its lease among several proxies, a slot under
// the export caps, the export with retries and exponential backoff, then latest.json and retention;
// a job that failed N runs in a row is suspended.

import { PgError } from "../errors.js";
import type { Logger } from "../log.js";
import { type Clock, sleepOn } from "./clock.js";
import type { JobSpec } from "./jobs.js";
import type { RunRecord } from "./run-record.js";
import type { RunSlots } from "./run-slots.js";

/** One export of a job into `prefixUrl` (an ordinary COPY TO). */
export interface SnapshotRunner {
  run(job: JobSpec, prefixUrl: string, signal: AbortSignal): Promise<{ rows: number }>;
}

/** The latest pointer and retention of a job's target. */
export interface SnapshotPublisher {
  /** Points `<target>/latest.json` at the completed snapshot (unless a newer one is there). */
  publish(job: JobSpec, snapshot: string, signal: AbortSignal): Promise<void>;
  /** Deletes snapshots retention no longer keeps; never `keep`'s, latest's or unfinished ones. */
  prune(job: JobSpec, keep: readonly string[], now: number, signal: AbortSignal): Promise<string[]>;
}

/** Exactly one proxy runs an occurrence: the one that gets its lease. */
export interface OccurrenceLeases {
  /**
   * The lease, or null when the occurrence is done (another proxy ran it), or when another proxy
   * is running it: the time its lease expires unless renewed (ask again then).
   */
  acquire(
    job: JobSpec,
    snapshot: string,
    signal: AbortSignal,
  ): Promise<HeldLease | { busyUntil: number } | null>;
}
export interface HeldLease {
  /** Marks the occurrence done (no other proxy takes it over) and stops renewing. */
  finish(outcome: "succeeded" | "failed"): Promise<void>;
  /** Aborted when the lease was lost (another proxy took it over): stop the run. */
  readonly lost: AbortSignal;
  /**
   * Taken over from a proxy that died after its export completed: the snapshot is there, only
   * latest.json, done.json and retention are left to do.
   */
  readonly complete?: boolean;
}

export interface OccurrenceDeps {
  clock: Clock;
  runner: SnapshotRunner;
  publisher: SnapshotPublisher;
  leases?: OccurrenceLeases | undefined;
  /** Room under the export caps: runs wait here ("queued") rather than be refused (run-slots.ts). */
  slots?: RunSlots | undefined;
  log: Logger;
}

/** What a run reads and updates of its job. */
export interface JobOutcomes {
  spec: JobSpec;
  suspended: boolean;
  failures: number;
  lastError: string | undefined;
  lastSuccess: number | undefined;
}

/** The scheduler, as a run sees it. */
export interface RunOwner {
  /** The scheduler is stopping (its stop aborted the run): a failure then suspends nothing. */
  stopped(): boolean;
  /** The job was suspended: its timer must be set again without it. */
  suspended(): void;
}

export async function runOccurrence(
  j: JobOutcomes,
  rec: RunRecord,
  signal: AbortSignal,
  deps: OccurrenceDeps,
  owner: RunOwner,
): Promise<void> {
  const { spec } = j;
  const log = deps.log;
  let lease: HeldLease | null = null;
  // A slot under the export caps is held while an attempt runs, not while waiting for another
  // proxy's lease or for a retry's backoff: other jobs of the user run meanwhile.
  let release: (() => void) | undefined;
  const free = (): void => {
    release?.();
    release = undefined;
  };
  const needSlot = (): boolean => deps.slots !== undefined && release === undefined;
  const takeSlot = async (s: AbortSignal): Promise<void> => {
    const was = rec.state;
    rec.state = "queued";
    release = await deps.slots!.acquire(spec.user, s);
    rec.state = was;
  };
  try {
    // Another proxy running this occurrence keeps it "waiting" here: if that proxy dies, its
    // lease expires and this one takes the occurrence over.
    while (deps.leases !== undefined && lease === null) {
      // The slot first: a replica with room takes the lease, not one that would have to wait.
      if (needSlot()) await takeSlot(signal);
      const got = await deps.leases.acquire(spec, rec.snapshot, signal);
      if (got === null) {
        rec.state = "skipped";
        rec.error = "another proxy ran this occurrence";
        rec.endedAt = deps.clock.now();
        return;
      }
      if ("busyUntil" in got) {
        free();
        rec.state = "waiting";
        rec.error = "another proxy runs this occurrence";
        await sleepOn(deps.clock, Math.max(1, got.busyUntil - deps.clock.now() + 1), signal);
        continue;
      }
      lease = got;
    }
    const runSignal = lease === null ? signal : AbortSignal.any([signal, lease.lost]);
    const prefixUrl = `${spec.target}/${rec.snapshot}`;
    if (lease?.complete === true) {
      log.warn(
        { job: spec.name, snapshot: rec.snapshot },
        "the taken-over occurrence's snapshot is complete: publishing it without running it again",
      );
    }
    while (lease?.complete !== true) {
      // Only awaited when there are caps: without, a run starts in the timer's own tick.
      if (needSlot()) await takeSlot(runSignal);
      rec.attempts++;
      rec.state = "running";
      log.info(
        { job: spec.name, snapshot: rec.snapshot, attempt: rec.attempts, trigger: rec.trigger },
        "scheduled snapshot starting",
      );
      try {
        const { rows } = await deps.runner.run(spec, prefixUrl, runSignal);
        rec.rows = rows;
        free();
        break;
      } catch (e) {
        free();
        const err = PgError.from(e);
        rec.error = err.message;
        if (runSignal.aborted || rec.attempts > spec.retries) throw err;
        rec.state = "retrying";
        const wait = spec.backoffMs * 2 ** (rec.attempts - 1);
        log.warn(
          {
            job: spec.name,
            snapshot: rec.snapshot,
            attempt: rec.attempts,
            retryInMs: wait,
            err: err.message,
          },
          "scheduled snapshot failed; retrying",
        );
        await sleepOn(deps.clock, wait, runSignal);
      }
    }
    // The snapshot is complete (its sentinel is gone): only now may latest.json name it.
    await deps.publisher.publish(spec, rec.snapshot, runSignal);
    j.failures = 0;
    j.lastError = undefined;
    rec.error = undefined;
    await lease?.finish("succeeded");
    lease = null;
    log.info(
      { job: spec.name, snapshot: rec.snapshot, rows: rec.rows, attempts: rec.attempts },
      "scheduled snapshot complete",
    );
    try {
      const deleted = await deps.publisher.prune(spec, [rec.snapshot], deps.clock.now(), signal);
      if (deleted.length > 0) log.info({ job: spec.name, deleted }, "old snapshots removed");
    } catch (e) {
      // The snapshot stands; pruning is tried again after the next run.
      rec.error = `retention: ${PgError.from(e).message}`;
      log.warn({ job: spec.name, err: PgError.from(e).message }, "could not remove old snapshots");
    }
    rec.state = "succeeded";
    rec.endedAt = deps.clock.now();
    j.lastSuccess = rec.endedAt;
  } catch (e) {
    const err = PgError.from(e);
    rec.state = "failed";
    rec.error = err.message;
    rec.endedAt = deps.clock.now();
    j.lastError = err.message;
    j.failures++;
    await lease?.finish("failed").catch(() => {});
    if (j.failures >= spec.suspendAfter && !owner.stopped()) {
      j.suspended = true;
      owner.suspended();
      log.error(
        { job: spec.name, failures: j.failures, err: err.message },
        `scheduled snapshot job suspended after ${j.failures} failed runs; RESUME COPY_TO_S3 JOB ${spec.name} to restart it`,
      );
    } else {
      log.error({ job: spec.name, snapshot: rec.snapshot, err: err.message }, "scheduled snapshot failed");
    }
  } finally {
    free();
  }
}
