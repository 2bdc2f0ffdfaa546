// Seeing and steering scheduled snapshots from any SQL client, answered by the proxy itself (as
// PgBouncer's console answers SHOW POOLS), in the simple query protocol and in the extended one
// (drivers' parameterised queries: Describe answers the columns, Execute the rows):
//   SHOW COPY_TO_S3 JOBS                   one row per job: schedule, next/last run, last error, suspended
//   SHOW COPY_TO_S3 RUNS [job]             the run history, newest first
//   RUN COPY_TO_S3 JOB name                a run now, outside the schedule
//   SUSPEND COPY_TO_S3 JOB name / RESUME COPY_TO_S3 JOB name
// SHOW is open to every client of the proxy; the steering statements to the job's own user and
// the users its `operators` list names (a run exports as the job's user, not as the caller).

import { PgError, SqlState } from "../errors.js";
import { COPY_LABEL, type CopyHook, type LocalResult } from "../proxy/copy-hook.js";
import type { RunRecord } from "./run-record.js";
import type { Scheduler } from "./scheduler.js";

export type ConsoleStatement =
  | { console: "jobs" }
  | { console: "runs"; job: string | undefined }
  | { console: "run" | "suspend" | "resume"; job: string };

const CLAIM = /^\s*(?:show|run|resume|suspend)\s+copy_to_s3\b/i;
const JOBS = /^\s*show\s+copy_to_s3\s+jobs\s*;?\s*$/i;
const RUNS = /^\s*show\s+copy_to_s3\s+runs(?:\s+("?)([a-z_][a-z0-9_]*)\1)?\s*;?\s*$/i;
const STEER = /^\s*(run|resume|suspend)\s+copy_to_s3\s+job\s+("?)([a-z_][a-z0-9_]*)\2\s*;?\s*$/i;

export function parseConsole(sql: string): ConsoleStatement | null {
  if (!CLAIM.test(sql)) return null;
  if (JOBS.test(sql)) return { console: "jobs" };
  const r = RUNS.exec(sql);
  if (r !== null) return { console: "runs", job: r[2]?.toLowerCase() };
  const s = STEER.exec(sql);
  if (s !== null)
    return { console: s[1]!.toLowerCase() as "run" | "suspend" | "resume", job: s[3]!.toLowerCase() };
  throw new PgError(SqlState.syntaxError, "syntax error in a COPY_TO_S3 console statement", {
    hint: "The proxy answers SHOW COPY_TO_S3 JOBS, SHOW COPY_TO_S3 RUNS [job], and RUN | SUSPEND | RESUME COPY_TO_S3 JOB name.",
  });
}

const iso = (ms: number | undefined): string | null => (ms === undefined ? null : new Date(ms).toISOString());
const text = (v: string | number | boolean | undefined): string | null =>
  v === undefined ? null : String(v);

/** The first two letters of SHOW, SUSPEND, RUN and RESUME, lower case, as (byte << 8) | byte. */
const VERB_STARTS = new Set(["sh", "su", "ru", "re"].map((v) => (v.charCodeAt(0) << 8) | v.charCodeAt(1)));

/** Wraps the COPY hook: console statements are answered here, everything else goes to `inner`. */
export function withScheduleConsole(
  inner: CopyHook,
  scheduler: Scheduler | null,
  operatorsOf: (job: string) => readonly string[],
): CopyHook {
  return {
    recognize: (sql, params) => parseConsole(sql) ?? inner.recognize(sql, params),
    claims: (buf) => {
      let i = 0;
      while (i < buf.length && (buf[i] === 0x20 || buf[i] === 0x09 || buf[i] === 0x0a || buf[i] === 0x0d))
        i++;
      // The cheap part first: the first two bytes must start one of the four verbs, so an
      // ordinary SELECT or SET (the relay's every query) stops here.
      if (!VERB_STARTS.has((((buf[i] ?? 0) | 0x20) << 8) | ((buf[i + 1] ?? 0) | 0x20))) return false;
      return CLAIM.test(buf.toString("latin1", i, Math.min(buf.length, i + 40)));
    },
    label: (stmt) => (isConsole(stmt) ? labelOf(stmt) : (inner.label?.(stmt) ?? COPY_LABEL)),
    describe: (stmt) => (isConsole(stmt) ? { columns: columnsOf(stmt) } : (inner.describe?.(stmt) ?? null)),
    run: async (stmt, ctx) => {
      if (!isConsole(stmt)) return inner.run(stmt, ctx);
      const result = answer(stmt, scheduler, ctx.user, operatorsOf);
      return { rows: result.rows.length, result };
    },
    listening: () => inner.listening?.(),
    shutdown: () => inner.shutdown?.(),
  };
}

const JOB_COLUMNS = [
  "job",
  "schedule",
  "target",
  "next_run",
  "running",
  "suspended",
  "consecutive_failures",
  "last_snapshot",
  "last_state",
  "last_rows",
  "last_error",
  "last_success",
];
const RUN_COLUMNS = [
  "job",
  "snapshot",
  "trigger",
  "state",
  "attempts",
  "scheduled_at",
  "started_at",
  "ended_at",
  "rows",
  "error",
];

/** The result columns of a console statement (known before it runs: Describe needs them). */
function columnsOf(stmt: ConsoleStatement): string[] {
  if (stmt.console === "jobs") return JOB_COLUMNS;
  if (stmt.console === "runs") return RUN_COLUMNS;
  return stmt.console === "run" ? ["job", "snapshot"] : [];
}

function labelOf(stmt: ConsoleStatement): string {
  if (stmt.console === "jobs") return "SHOW COPY_TO_S3 JOBS";
  if (stmt.console === "runs") return "SHOW COPY_TO_S3 RUNS";
  return `${stmt.console.toUpperCase()} COPY_TO_S3 JOB`;
}

function isConsole(stmt: unknown): stmt is ConsoleStatement {
  return typeof stmt === "object" && stmt !== null && "console" in stmt;
}

function answer(
  stmt: ConsoleStatement,
  scheduler: Scheduler | null,
  user: string,
  operatorsOf: (job: string) => readonly string[],
): LocalResult {
  if (stmt.console === "jobs") {
    return {
      columns: JOB_COLUMNS,
      rows: (scheduler?.status() ?? []).map((j) => [
        j.name,
        j.schedule,
        j.target,
        iso(j.nextRun),
        text(j.running),
        text(j.suspended),
        text(j.consecutiveFailures),
        j.lastRun?.snapshot ?? null,
        j.lastRun?.state ?? null,
        text(j.lastRun?.rows),
        j.lastError ?? null,
        iso(j.lastSuccess),
      ]),
      tag: "SHOW",
    };
  }
  if (stmt.console === "runs") {
    const runs: RunRecord[] = scheduler === null ? [] : scheduler.history(stmt.job);
    return {
      columns: RUN_COLUMNS,
      rows: runs.map((r) => [
        r.job,
        r.snapshot,
        r.trigger,
        r.state,
        text(r.attempts),
        iso(r.scheduledAt),
        iso(r.startedAt),
        iso(r.endedAt),
        text(r.rows),
        r.error ?? null,
      ]),
      tag: "SHOW",
    };
  }
  if (scheduler === null) {
    throw new PgError(SqlState.undefinedObject, `scheduled snapshot job "${stmt.job}" does not exist`);
  }
  scheduler.history(stmt.job); // 42704 for an unknown job before any permission question
  if (!operatorsOf(stmt.job).includes(user)) {
    throw new PgError(
      SqlState.insufficientPrivilege,
      `permission denied to ${stmt.console} scheduled snapshot job "${stmt.job}"`,
      {
        hint: 'The job\'s own user and the users in its "operators" list may steer it.',
      },
    );
  }
  if (stmt.console === "run") {
    const r = scheduler.runNow(stmt.job);
    return { columns: ["job", "snapshot"], rows: [[r.job, r.snapshot]], tag: "RUN" };
  }
  if (stmt.console === "suspend") scheduler.suspend(stmt.job);
  else scheduler.resume(stmt.job);
  return { columns: [], rows: [], tag: stmt.console.toUpperCase() };
}
