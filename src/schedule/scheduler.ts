// Runs each job's snapshots on its schedule (docs/schedules.md): one timer for the earliest due
// job, no overlapping runs of one job, retries with exponential backoff, suspension after N failed
// runs in a row, a run history, and "run now". Every run is an ordinary export into its own prefix
// `<target>/snapshot=<ISO time>/`; after it completes, latest.json is moved to it and old snapshots
// are pruned. With several proxies, a per-occurrence lease makes one of them run it.
import { PgError, SqlState } from "../errors.js";
import type { Logger } from "../log.js";
import { jobRunEnded } from "../metrics/job-metrics.js";
import type { Clock } from "./clock.js";
import type { JobSpec } from "./jobs.js";
import { nextOccurrence, snapshotName } from "./next-run.js";
import type { RunSlots } from "./run-slots.js";

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

export interface JobStatus {
  name: string;
  schedule: string;
  target: string;
  nextRun: number | undefined;
  running: boolean;
  suspended: boolean;
  consecutiveFailures: number;
  lastRun: RunRecord | undefined;
  lastError: string | undefined;
  lastSuccess: number | undefined;
}

export interface SchedulerDeps {
  clock: Clock;
  runner: SnapshotRunner;
  publisher: SnapshotPublisher;
  leases?: OccurrenceLeases | undefined;
  /** Room under the export caps: runs wait here ("queued") rather than be refused (run-slots.ts). */
  slots?: RunSlots | undefined;
  log: Logger;
  /** Run records kept per job. */
  historySize?: number;
}

interface JobState {
  spec: JobSpec;
  next: number | undefined;
  running: Promise<void> | null;
  abort: AbortController | null;
  suspended: boolean;
  failures: number;
  history: RunRecord[];
  lastError: string | undefined;
  lastSuccess: number | undefined;
  /** Gone from the config while a run was going: that run finishes, nothing else starts. */
  removed: boolean;
}

/** What a reload changed, by job name. */
export interface JobChanges {
  added: string[];
  changed: string[];
  removed: string[];
}

export class Scheduler {
  private readonly jobs = new Map<string, JobState>();
  private timer: unknown;
  private started = false;
  private stopped = false;

  constructor(
    specs: readonly JobSpec[],
    private readonly deps: SchedulerDeps,
  ) {
    for (const spec of specs) this.jobs.set(spec.name, this.newState(spec));
  }

  start(): void {
    this.started = true;
    const now = this.deps.clock.now();
    for (const j of this.jobs.values()) j.next = nextOccurrence(j.spec.schedule, now);
    this.arm();
  }

  /**
   * Replaces the jobs (a config reload): a new job is scheduled from now; a changed one takes its
   * new definition from its next occurrence on, with its suspension and failure count cleared (a
   * changed job is a new attempt; its history stays); an unchanged one keeps everything, its
   * suspension too. A removed job's running run finishes (its snapshot, latest.json and
   * retention, as any run), then the job is gone; nothing new starts for it.
   */
  reconfigure(specs: readonly JobSpec[]): JobChanges {
    const now = this.deps.clock.now();
    const out: JobChanges = { added: [], changed: [], removed: [] };
    const incoming = new Set(specs.map((s) => s.name));
    for (const [name, j] of this.jobs) {
      if (incoming.has(name) || j.removed) continue;
      out.removed.push(name);
      if (j.running === null) this.jobs.delete(name);
      else j.removed = true;
    }
    for (const spec of specs) {
      const j = this.jobs.get(spec.name);
      if (j === undefined) {
        const fresh = this.newState(spec);
        if (this.started) fresh.next = nextOccurrence(spec.schedule, now);
        this.jobs.set(spec.name, fresh);
        out.added.push(spec.name);
        continue;
      }
      if (j.removed) {
        j.removed = false;
        out.added.push(spec.name);
      }
      if (JSON.stringify(j.spec) === JSON.stringify(spec)) continue;
      // A run going on keeps the definition it started with (execute() holds its own spec).
      j.spec = spec;
      j.suspended = false;
      j.failures = 0;
      if (this.started) j.next = nextOccurrence(spec.schedule, now);
      if (!out.added.includes(spec.name)) out.changed.push(spec.name);
    }
    this.arm();
    return out;
  }

  /** Whether `name` is a configured job (a removed one still finishing its run is not). */
  has(name: string): boolean {
    const j = this.jobs.get(name);
    return j !== undefined && !j.removed;
  }

  /** The job's definition (steering permissions read its user and operators). */
  spec(name: string): JobSpec | undefined {
    const j = this.jobs.get(name);
    return j === undefined || j.removed ? undefined : j.spec;
  }

  private newState(spec: JobSpec): JobState {
    return {
      spec,
      next: undefined,
      running: null,
      abort: null,
      suspended: false,
      failures: 0,
      history: [],
      lastError: undefined,
      lastSuccess: undefined,
      removed: false,
    };
  }

  /** Stops the timer and cancels running exports (their cleanup leaves the prefix as found). */
  async stop(): Promise<void> {
    this.stopped = true;
    this.deps.clock.clearTimer(this.timer);
    const running = [...this.jobs.values()].filter((j) => j.running !== null);
    for (const j of running)
      j.abort?.abort(
        new PgError(SqlState.adminShutdown, "terminating scheduled snapshot due to administrator command"),
      );
    await Promise.allSettled(running.map((j) => j.running));
  }

  status(): JobStatus[] {
    return this.live().map((j) => ({
      name: j.spec.name,
      schedule:
        j.spec.schedule.kind === "cron"
          ? `cron ${j.spec.schedule.pattern} ${j.spec.schedule.timezone}`
          : `every ${j.spec.schedule.ms / 1000}s`,
      target: j.spec.target,
      nextRun: j.suspended ? undefined : j.next,
      running: j.running !== null,
      suspended: j.suspended,
      consecutiveFailures: j.failures,
      lastRun: j.history.at(-1),
      lastError: j.lastError,
      lastSuccess: j.lastSuccess,
    }));
  }

  /** Newest first; one job's or every job's. */
  history(name?: string): RunRecord[] {
    const states = name === undefined ? this.live() : [this.job(name)];
    return states.flatMap((j) => j.history).sort((a, b) => b.startedAt - a.startedAt);
  }

  /** Starts a run now (outside the schedule); refused while one runs. */
  runNow(name: string): RunRecord {
    const j = this.job(name);
    if (j.running !== null) {
      throw new PgError(SqlState.objectInUse, `scheduled snapshot job "${name}" is already running`);
    }
    const at = Math.floor(this.deps.clock.now() / 1000) * 1000;
    return this.launch(j, at, "manual");
  }

  /** Lifts a suspension: the failure count starts again at 0 and the schedule resumes from now. */
  resume(name: string): void {
    const j = this.job(name);
    j.suspended = false;
    j.failures = 0;
    j.next = nextOccurrence(j.spec.schedule, this.deps.clock.now());
    this.arm();
  }

  suspend(name: string): void {
    this.job(name).suspended = true;
    this.arm();
  }

  /** Resolves once no run is in progress (tests, shutdown). */
  async idle(): Promise<void> {
    for (;;) {
      const running = [...this.jobs.values()].map((j) => j.running).filter((p) => p !== null);
      if (running.length === 0) return;
      await Promise.allSettled(running);
    }
  }

  private live(): JobState[] {
    return [...this.jobs.values()].filter((j) => !j.removed);
  }

  private job(name: string): JobState {
    const j = this.jobs.get(name);
    if (j === undefined || j.removed)
      throw new PgError(SqlState.undefinedObject, `scheduled snapshot job "${name}" does not exist`);
    return j;
  }

  /** One timer, for the earliest due job; an idle scheduler costs nothing else. */
  private arm(): void {
    this.deps.clock.clearTimer(this.timer);
    this.timer = undefined;
    if (this.stopped) return;
    let earliest: number | undefined;
    for (const j of this.jobs.values()) {
      if (j.suspended || j.removed || j.next === undefined) continue;
      if (earliest === undefined || j.next < earliest) earliest = j.next;
    }
    if (earliest === undefined) return;
    this.timer = this.deps.clock.setTimer(() => this.fire(), earliest - this.deps.clock.now());
  }

  private fire(): void {
    const now = this.deps.clock.now();
    for (const j of this.jobs.values()) {
      if (j.suspended || j.removed || j.next === undefined || j.next > now) continue;
      const at = j.next;
      // Missed occurrences (a long run, a paused process) are not caught up one by one: the next
      // one is the first after now.
      j.next = nextOccurrence(j.spec.schedule, now);
      if (j.running !== null) {
        this.record(j, {
          ...this.newRecord(j, at, "schedule", now),
          state: "skipped",
          endedAt: now,
          error: "the previous run of this job is still running",
        });
        jobRunEnded({ job: j.spec.name, state: "skipped" });
        continue;
      }
      this.launch(j, at, "schedule");
    }
    this.arm();
  }

  private newRecord(j: JobState, at: number, trigger: RunRecord["trigger"], now: number): RunRecord {
    return {
      job: j.spec.name,
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

  private record(j: JobState, r: RunRecord): void {
    j.history.push(r);
    const max = this.deps.historySize ?? 50;
    if (j.history.length > max) j.history.splice(0, j.history.length - max);
  }

  private launch(j: JobState, at: number, trigger: RunRecord["trigger"]): RunRecord {
    const rec = this.newRecord(j, at, trigger, this.deps.clock.now());
    this.record(j, rec);
    const ac = new AbortController();
    j.abort = ac;
    j.running = this.execute(j, rec, ac.signal).finally(() => {
      j.running = null;
      j.abort = null;
      if (j.removed && this.jobs.get(j.spec.name) === j) this.jobs.delete(j.spec.name);
      jobRunEnded(rec);
    });
    return rec;
  }

  private async execute(j: JobState, rec: RunRecord, signal: AbortSignal): Promise<void> {
    const { spec } = j;
    const log = this.deps.log;
    let lease: HeldLease | null = null;
    // A slot under the export caps is held while an attempt runs, not while waiting for another
    // proxy's lease or for a retry's backoff: other jobs of the user run meanwhile.
    let release: (() => void) | undefined;
    const free = (): void => {
      release?.();
      release = undefined;
    };
    const needSlot = (): boolean => this.deps.slots !== undefined && release === undefined;
    const takeSlot = async (s: AbortSignal): Promise<void> => {
      const was = rec.state;
      rec.state = "queued";
      release = await this.deps.slots!.acquire(spec.user, s);
      rec.state = was;
    };
    try {
      // Another proxy running this occurrence keeps it "waiting" here: if that proxy dies, its
      // lease expires and this one takes the occurrence over.
      while (this.deps.leases !== undefined && lease === null) {
        // The slot first: a replica with room takes the lease, not one that would have to wait.
        if (needSlot()) await takeSlot(signal);
        const got = await this.deps.leases.acquire(spec, rec.snapshot, signal);
        if (got === null) {
          rec.state = "skipped";
          rec.error = "another proxy ran this occurrence";
          rec.endedAt = this.deps.clock.now();
          return;
        }
        if ("busyUntil" in got) {
          free();
          rec.state = "waiting";
          rec.error = "another proxy runs this occurrence";
          await this.sleep(Math.max(1, got.busyUntil - this.deps.clock.now() + 1), signal);
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
          const { rows } = await this.deps.runner.run(spec, prefixUrl, runSignal);
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
          await this.sleep(wait, runSignal);
        }
      }
      // The snapshot is complete (its sentinel is gone): only now may latest.json name it.
      await this.deps.publisher.publish(spec, rec.snapshot, runSignal);
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
        const deleted = await this.deps.publisher.prune(spec, [rec.snapshot], this.deps.clock.now(), signal);
        if (deleted.length > 0) log.info({ job: spec.name, deleted }, "old snapshots removed");
      } catch (e) {
        // The snapshot stands; pruning is tried again after the next run.
        rec.error = `retention: ${PgError.from(e).message}`;
        log.warn({ job: spec.name, err: PgError.from(e).message }, "could not remove old snapshots");
      }
      rec.state = "succeeded";
      rec.endedAt = this.deps.clock.now();
      j.lastSuccess = rec.endedAt;
    } catch (e) {
      const err = PgError.from(e);
      rec.state = "failed";
      rec.error = err.message;
      rec.endedAt = this.deps.clock.now();
      j.lastError = err.message;
      j.failures++;
      await lease?.finish("failed").catch(() => {});
      if (j.failures >= spec.suspendAfter && !this.stopped) {
        j.suspended = true;
        this.arm();
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

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(PgError.from(signal.reason));
      const onAbort = (): void => {
        this.deps.clock.clearTimer(t);
        reject(PgError.from(signal.reason));
      };
      const t = this.deps.clock.setTimer(() => {
        signal.removeEventListener("abort", onAbort);
        resolve();
      }, ms);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }
}
