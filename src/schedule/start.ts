// Wires scheduled snapshots into a proxy: parses `jobs`, answers the console statements, and runs
// the jobs once the proxy listens.
import type { Config, HostPort } from "../config.js";
import { createStore } from "../copy/create-store.js";
import type { CopyToHook } from "../copy/hook.js";
import { initParser } from "../copy/sql-tokens.js";
import type { ObjectStore } from "../copy/storage/object-store.js";
import { parseTargetUrl } from "../copy/storage/target-url.js";
import type { Logger } from "../log.js";
import type { CopyHook } from "../proxy/copy-hook.js";
import { type Clock, systemClock } from "./clock.js";
import { withScheduleConsole } from "./console.js";
import { type JobSpec, parseJobs } from "./jobs.js";
import { StoreLeases } from "./lease.js";
import type { OccurrenceLeases, SnapshotRunner } from "./occurrence-run.js";
import { TargetPublisher } from "./publisher.js";
import { CappedRunSlots } from "./run-slots.js";
import { LoopbackRunner } from "./runner.js";
import { type JobChanges, Scheduler } from "./scheduler.js";

export interface Schedules {
  /** The COPY hook with the console statements added. */
  hook: CopyHook;
  /** Never null since jobs became reloadable (a proxy started without jobs may get some). */
  scheduler: Scheduler | null;
  /** Starts the timers; `address` is where the proxy listens. */
  start(address: () => HostPort): void;
  /** Applies the `jobs` of a reloaded config (SIGHUP); throws ConfigError and changes nothing if they are invalid. */
  reload(next: Config): JobChanges;
  stop(): Promise<void>;
}

export interface ScheduleOptions {
  clock?: Clock;
  /** Replaces the loopback runner (tests). */
  runner?: SnapshotRunner;
  leases?: OccurrenceLeases | ((storeFor: (job: JobSpec) => ObjectStore) => OccurrenceLeases);
  env?: NodeJS.ProcessEnv;
}

export async function createSchedules(
  config: Config,
  log: Logger,
  copy: CopyToHook,
  opts: ScheduleOptions = {},
): Promise<Schedules> {
  await initParser();
  const jobs = parseJobs(config.jobs);
  const env = opts.env ?? process.env;
  // The exports' connections: one loading (and one set of warnings) for both.
  const source = copy.connections;
  let connections = source.current;
  let e = config.exports;
  // By target and connection, not by job: a reload may point a job elsewhere while its run goes on.
  const stores = new Map<string, ObjectStore>();
  const storeFor = (job: JobSpec): ObjectStore => {
    const key = `${job.awsConnection ?? ""}\n${job.target}`;
    let s = stores.get(key);
    if (s === undefined) {
      const target = parseTargetUrl(job.target);
      s = createStore(target.scheme === "file" ? undefined : connections.get(job.awsConnection), target, {
        partSize: e.partSize,
        maxAttempts: e.s3MaxAttempts,
        retryMode: e.s3RetryMode,
        requestTimeoutMs: e.s3RequestTimeoutMs,
      });
      stores.set(key, s);
    }
    return s;
  };
  let address: (() => HostPort) | undefined;
  const clock = opts.clock ?? systemClock;
  const schedLog = log.child({ component: "scheduler" });
  const slots = new CappedRunSlots(config.exports.maxConcurrentExports, config.exports.maxExportsPerUser);
  // Also without jobs: a reload may add some.
  const scheduler = new Scheduler(jobs, {
    clock,
    runner: opts.runner ?? new LoopbackRunner(() => address!(), env),
    publisher: new TargetPublisher(storeFor),
    leases:
      typeof opts.leases === "function"
        ? opts.leases(storeFor)
        : (opts.leases ?? new StoreLeases(storeFor, clock, schedLog)),
    // The export limiter's caps; a reload changes both.
    slots,
    log: schedLog,
  });
  const operatorsOf = (name: string): string[] => {
    const j = scheduler.spec(name);
    return j === undefined ? [] : [j.user, ...j.operators];
  };
  return {
    hook: withScheduleConsole(copy, scheduler, operatorsOf),
    scheduler,
    start: (addr) => {
      address = addr;
      scheduler.start();
      if (jobs.length > 0) log.info({ jobs: jobs.map((j) => j.name) }, "scheduled snapshots started");
    },
    reload: (next) => {
      // Throws (ConfigError) before anything changed: the running jobs stay as they were. Invalid
      // connections also kept the export limiter's caps (copy hook); invalid jobs did not.
      const nextConnections = source.load(next);
      slots.setLimits(next.exports.maxConcurrentExports, next.exports.maxExportsPerUser);
      const specs = parseJobs(next.jobs);
      connections = nextConnections;
      e = next.exports;
      stores.clear();
      return scheduler.reconfigure(specs);
    },
    stop: () => scheduler.stop(),
  };
}
