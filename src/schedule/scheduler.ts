// Runs each job's snapshots on its schedule (docs/schedules.md): one timer for the earliest due
// job, no overlapping runs of one job, retries with exponential backoff, suspension after N failed
// runs in a row, a run history, and "run now". Every run is an ordinary export into its own prefix
// `<target>/snapshot=<ISO time>/`; after it completes, latest.json is moved to it and old snapshots
// are pruned. With several proxies, a per-occurrence lease makes one of them run it.
import { PgError, SqlState } from "../errors.js";
import { jobRunEnded } from "../metrics/job-metrics.js";
import type { JobSpec } from "./jobs.js";
import { nextOccurrence } from "./next-run.js";
import { type JobOutcomes, type OccurrenceDeps, runOccurrence } from "./occurrence-run.js";
import { keepRecord, newRunRecord, type RunRecord } from "./run-record.js";

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

export interface SchedulerDeps extends OccurrenceDeps {
  /** Run records kept per job. */
  historySize?: number;
}

interface JobState extends JobOutcomes {
  next: number | undefined;
  running: Promise<void> | null;
  abort: AbortController | null;
  history: RunRecord[];
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
      // A run going on keeps the definition it started with (runOccurrence() holds its own spec).
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
    return newRunRecord(j.spec.name, at, trigger, now);
  }

  private record(j: JobState, r: RunRecord): void {
    keepRecord(j.history, r, this.deps.historySize ?? 50);
  }

  private launch(j: JobState, at: number, trigger: RunRecord["trigger"]): RunRecord {
    const rec = this.newRecord(j, at, trigger, this.deps.clock.now());
    this.record(j, rec);
    const ac = new AbortController();
    j.abort = ac;
    j.running = runOccurrence(j, rec, ac.signal, this.deps, {
      stopped: () => this.stopped,
      suspended: () => this.arm(),
    }).finally(() => {
      j.running = null;
      j.abort = null;
      if (j.removed && this.jobs.get(j.spec.name) === j) this.jobs.delete(j.spec.name);
      jobRunEnded(rec);
    });
    return rec;
  }
}
