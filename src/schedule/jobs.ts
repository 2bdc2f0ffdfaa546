// The `jobs` section of the config file (docs/schedules.md): what each scheduled snapshot exports,
// where to, as whom, and when. Validated once at start, like every other setting; the COPY
// statement a job runs is checked by the same parser a client's COPY goes through.
import { readFileSync } from "node:fs";
import { ConfigError } from "../config.js";
import { parseCopyTo } from "../copy/statement.js";
import { parseTargetUrl } from "../copy/storage/target-url.js";
import { checkCron } from "./next-run.js";

export type Schedule = { kind: "cron"; pattern: string; timezone: string } | { kind: "every"; ms: number };

/** Where a job's password comes from; read at each run, never stored in the job or logged. */
export type Secret = { env: string } | { file: string };

export interface JobSpec {
  name: string;
  /** The COPY source: a view/table name or a parenthesised query, as written in SQL. */
  source: string;
  /** Snapshots go to `<target>/snapshot=<ISO time>/`; latest.json sits at `<target>/latest.json`. */
  target: string;
  /** `WITH (…)` of the COPY, as written in SQL (FORMAT etc.), without the parentheses. */
  options: string;
  /** The AWS CONNECTION of the COPY; the scheduler writes latest.json and prunes with it too. */
  awsConnection: string | undefined;
  user: string;
  /** Proxy users besides `user` who may RUN, SUSPEND and RESUME the job. */
  operators: string[];
  password: Secret | undefined;
  database: string;
  schedule: Schedule;
  /** Attempts after a failed one, each after backoffMs × 2^(n-1). */
  retries: number;
  backoffMs: number;
  /** Consecutive failed runs after which the job is suspended until RESUME COPY_TO_S3 JOB. */
  suspendAfter: number;
  /** Retention: keep this many newest snapshots… */
  keep: number | undefined;
  /** …and/or those younger than this. */
  maxAgeMs: number | undefined;
  /**
   * How long an occurrence's lease lasts unless renewed (every third of it): how soon another
   * proxy takes over the run of one that died. Default 60 s.
   */
  leaseTermMs?: number | undefined;
}

const NAME = /^[a-z_][a-z0-9_]*$/;

/** "90s", "15m", "2h", "1d" → ms. */
export function parseInterval(s: unknown, what: string): number {
  const m = typeof s === "string" ? /^(\d+)\s*(ms|s|m|h|d)$/.exec(s.trim()) : null;
  if (m === null)
    throw new ConfigError(`${what}: expected a duration like 30s, 15m, 1h or 1d, got ${JSON.stringify(s)}`);
  const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[
    m[2] as "ms" | "s" | "m" | "h" | "d"
  ];
  return Number(m[1]) * unit;
}

const quoteLiteral = (s: string): string => `'${s.replaceAll("'", "''")}'`;

/** The statement a run sends: an ordinary COPY TO into the run's own prefix. */
export function copyStatement(job: JobSpec, prefixUrl: string): string {
  const opts =
    job.awsConnection === undefined
      ? job.options
      : `${job.options}, AWS CONNECTION = ${quoteIdent(job.awsConnection)}`;
  return `COPY ${job.source} TO ${quoteLiteral(prefixUrl)} WITH (${opts})`;
}

function quoteIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}

export function parseJobs(raw: unknown): JobSpec[] {
  if (raw === undefined || raw === null) return [];
  if (!Array.isArray(raw)) throw new ConfigError("jobs: expected an array of job objects");
  const seen = new Set<string>();
  return raw.map((j: unknown, i) => {
    if (j === null || typeof j !== "object" || Array.isArray(j))
      throw new ConfigError(`jobs[${i}]: expected an object`);
    const o = j as Record<string, unknown>;
    const name = String(o.name ?? "");
    const at = `jobs[${i}] (${name || "unnamed"})`;
    if (!NAME.test(name))
      throw new ConfigError(`${at}: name must be a lower-case identifier ([a-z_][a-z0-9_]*)`);
    if (seen.has(name)) throw new ConfigError(`${at}: duplicate job name`);
    seen.add(name);
    const str = (k: string, required: boolean): string | undefined => {
      const v = o[k];
      if (v === undefined || v === null) {
        if (required) throw new ConfigError(`${at}: "${k}" is required`);
        return undefined;
      }
      if (typeof v !== "string" || v === "")
        throw new ConfigError(`${at}: "${k}" must be a non-empty string`);
      return v;
    };
    const view = str("view", false);
    const query = str("query", false);
    if ((view === undefined) === (query === undefined))
      throw new ConfigError(`${at}: give exactly one of "view" or "query"`);
    const target = str("target", true)!.replace(/\/+$/, "");
    try {
      parseTargetUrl(target);
    } catch (e) {
      throw new ConfigError(`${at}: target: ${(e as Error).message}`);
    }
    const options = optionsText(o.options, at);
    const cron = str("cron", false);
    const every = o.every;
    if ((cron === undefined) === (every === undefined))
      throw new ConfigError(`${at}: give exactly one of "cron" or "every"`);
    const schedule: Schedule =
      cron !== undefined
        ? { kind: "cron", pattern: cron, timezone: str("timezone", false) ?? "UTC" }
        : { kind: "every", ms: parseInterval(every, `${at}: every`) };
    if (schedule.kind === "every" && schedule.ms < 1_000)
      throw new ConfigError(`${at}: every must be at least 1s`);
    if (schedule.kind === "cron") {
      checkTimezone(schedule.timezone, at);
      try {
        checkCron(schedule.pattern, schedule.timezone);
      } catch (e) {
        throw new ConfigError(`${at}: cron: ${(e as Error).message}`);
      }
    }
    const pw = o.password;
    let password: Secret | undefined;
    if (pw !== undefined) {
      const p = pw as Record<string, unknown>;
      if (typeof p?.env === "string") password = { env: p.env };
      else if (typeof p?.file === "string") password = { file: p.file };
      else
        throw new ConfigError(
          `${at}: password must be {"env": "VAR"} or {"file": "/path"} (never the password itself)`,
        );
    }
    const int = (k: string, dflt: number | undefined, min: number): number | undefined => {
      const v = o[k] ?? dflt;
      if (v === undefined) return undefined;
      if (!Number.isInteger(v) || (v as number) < min)
        throw new ConfigError(`${at}: "${k}" must be an integer ≥ ${min}`);
      return v as number;
    };
    const job: JobSpec = {
      name,
      source: view ?? `(${query})`,
      target,
      options,
      awsConnection: str("awsConnection", false),
      user: str("user", true)!,
      operators: stringList(o.operators, `${at}: operators`),
      password,
      database: str("database", false) ?? str("user", true)!,
      schedule,
      retries: int("retries", 2, 0)!,
      backoffMs: o.backoff === undefined ? 30_000 : parseInterval(o.backoff, `${at}: backoff`),
      suspendAfter: int("suspendAfter", 5, 1)!,
      keep: int("keep", undefined, 1),
      maxAgeMs: o.maxAge === undefined ? undefined : parseInterval(o.maxAge, `${at}: maxAge`),
      leaseTermMs: o.leaseTerm === undefined ? undefined : parseInterval(o.leaseTerm, `${at}: leaseTerm`),
    };
    if (job.leaseTermMs !== undefined && job.leaseTermMs < 3_000)
      throw new ConfigError(`${at}: leaseTerm must be at least 3s (it is renewed every third of it)`);
    // The statement must be one the proxy accepts; its errors are a client's COPY errors.
    try {
      if (parseCopyTo(copyStatement(job, `${target}/snapshot=x`)) === null)
        throw new Error("not a COPY TO statement");
    } catch (e) {
      throw new ConfigError(`${at}: ${(e as Error).message}`);
    }
    return job;
  });
}

/** `options` as an object ({"format": "parquet", "max file size": "64MB"}) → SQL option list. */
function optionsText(raw: unknown, at: string): string {
  if (raw === null || typeof raw !== "object" || Array.isArray(raw)) {
    throw new ConfigError(`${at}: "options" must be an object of COPY options, e.g. {"format": "parquet"}`);
  }
  const parts: string[] = [];
  for (const [k, v] of Object.entries(raw)) {
    if (!/^[A-Za-z][A-Za-z ]*$/.test(k))
      throw new ConfigError(`${at}: invalid option name ${JSON.stringify(k)}`);
    if (/^aws connection$/i.test(k.trim()))
      throw new ConfigError(`${at}: give the connection as "awsConnection"`);
    const value =
      typeof v === "boolean"
        ? String(v)
        : typeof v === "number"
          ? String(v)
          : typeof v === "string"
            ? quoteLiteral(v)
            : undefined;
    if (value === undefined) throw new ConfigError(`${at}: option ${k} must be a string, number or boolean`);
    parts.push(`${k.trim().toUpperCase()} ${value}`);
  }
  if (parts.length === 0) throw new ConfigError(`${at}: "options" needs at least FORMAT`);
  return parts.join(", ");
}

function checkTimezone(tz: string, at: string): void {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz });
  } catch {
    throw new ConfigError(`${at}: unknown time zone ${JSON.stringify(tz)}`);
  }
}

/** The job's password, read now (env var or file), or undefined. */
export function readSecret(s: Secret | undefined, env: NodeJS.ProcessEnv): string | undefined {
  if (s === undefined) return undefined;
  if ("env" in s) return env[s.env];
  return readFileSync(s.file, "utf8").replace(/\r?\n$/, "");
}

function stringList(v: unknown, what: string): string[] {
  if (v === undefined) return [];
  if (!Array.isArray(v) || !v.every((x) => typeof x === "string"))
    throw new ConfigError(`${what}: expected an array of user names`);
  return v as string[];
}
