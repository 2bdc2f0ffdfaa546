// Scheduled snapshot jobs in the metrics (issue 15, item 5): their state is read from the
// scheduler at each scrape (the same status() behind SHOW COPY_TO_S3 JOBS), and runs are counted
// as they end. The only label is the job's name, which comes from the config file.
import { Counter, Gauge } from "prom-client";
import type { RunRecord } from "../schedule/run-record.js";
import type { JobStatus } from "../schedule/scheduler.js";
import { registry } from "./metrics.js";

const registers = [registry];
const P = "copy_to_s3_proxy_job_";
let jobs: () => readonly JobStatus[] = () => [];

/** A gauge per job whose value `pick` reads from its status; a job without a value has no series. */
function jobGauge(name: string, help: string, pick: (j: JobStatus) => number | undefined): void {
  new Gauge({
    name: `${P}${name}`,
    help,
    labelNames: ["job"] as const,
    registers,
    collect() {
      this.reset();
      for (const j of jobs()) {
        const v = pick(j);
        if (v !== undefined) this.set({ job: j.name }, v);
      }
    },
  });
}

const seconds = (ms: number | undefined): number | undefined => (ms === undefined ? undefined : ms / 1000);

jobGauge(
  "suspended",
  "1 when the job is suspended (after too many failed runs, or by SUSPEND), else 0.",
  (j) => (j.suspended ? 1 : 0),
);
jobGauge("running", "1 while a run of the job is in progress, else 0.", (j) => (j.running ? 1 : 0));
jobGauge(
  "consecutive_failures",
  "Failed runs of the job in a row (0 after a success or RESUME).",
  (j) => j.consecutiveFailures,
);
jobGauge(
  "next_run_timestamp_seconds",
  "When the job runs next (Unix time); no series while it is suspended.",
  (j) => seconds(j.nextRun),
);
jobGauge(
  "last_success_timestamp_seconds",
  "When the job's last successful run ended (Unix time); no series before the first.",
  (j) => seconds(j.lastSuccess),
);

const OUTCOMES = ["succeeded", "failed", "skipped"] as const;
const runs = new Counter({
  name: `${P}runs_total`,
  help: "Runs of the job that ended, by outcome (succeeded, failed, or skipped: the previous run still ran, or another proxy ran it).",
  labelNames: ["job", "outcome"] as const,
  registers,
  collect() {
    // Every configured job's counters start at 0, also a job a reload (SIGHUP) added.
    for (const j of jobs()) for (const outcome of OUTCOMES) this.inc({ job: j.name, outcome }, 0);
  },
});

/** Serves `status` (the scheduler's: SHOW COPY_TO_S3 JOBS's state) in the job metrics. */
export function watchJobs(status: () => readonly JobStatus[]): void {
  jobs = status;
}

/** Called once per run, when it has ended (its record's state is final). */
export function jobRunEnded(rec: Pick<RunRecord, "job" | "state">): void {
  if ((OUTCOMES as readonly string[]).includes(rec.state)) runs.inc({ job: rec.job, outcome: rec.state });
}
