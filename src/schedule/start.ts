// Wires scheduled snapshots into a proxy: parses `jobs`, answers the console statements, and runs
// the jobs once the proxy listens.
import type { Config, HostPort } from "../config.js";
import { createStore, loadConnections } from "../copy/connections.js";
import { initParser } from "../copy/statement.js";
import type { ObjectStore } from "../copy/storage/object-store.js";
import { parseTargetUrl } from "../copy/storage/target-url.js";
import type { Logger } from "../log.js";
import type { CopyHook } from "../proxy/copy-hook.js";
import { type Clock, systemClock } from "./clock.js";
import { withScheduleConsole } from "./console.js";
import { type JobSpec, parseJobs } from "./jobs.js";
import { StoreLeases } from "./lease.js";
import { TargetPublisher } from "./publisher.js";
import { LoopbackRunner } from "./runner.js";
import { type OccurrenceLeases, Scheduler, type SnapshotRunner } from "./scheduler.js";

export interface Schedules {
  /** The COPY hook with the console statements added. */
  hook: CopyHook;
  /** null when no jobs are configured. */
  scheduler: Scheduler | null;
  /** Starts the timers; `address` is where the proxy listens. */
  start(address: () => HostPort): void;
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
  copy: CopyHook,
  opts: ScheduleOptions = {},
): Promise<Schedules> {
  await initParser();
  const jobs = parseJobs(config.jobs);
  const byName = new Map(jobs.map((j) => [j.name, j]));
  const operatorsOf = (name: string): string[] => {
    const j = byName.get(name);
    return j === undefined ? [] : [j.user, ...j.operators];
  };
  if (jobs.length === 0) {
    return {
      hook: withScheduleConsole(copy, null, operatorsOf),
      scheduler: null,
      start: () => {},
      stop: async () => {},
    };
  }
  const env = opts.env ?? process.env;
  // The copy hook keeps its own registry; its warnings were logged there already.
  const connections = loadConnections(config.connections, env, { warn: () => {} });
  const e = config.exports;
  const stores = new Map<string, ObjectStore>();
  const storeFor = (job: JobSpec): ObjectStore => {
    let s = stores.get(job.name);
    if (s === undefined) {
      const target = parseTargetUrl(job.target);
      s = createStore(target.scheme === "file" ? undefined : connections.get(job.awsConnection), target, {
        partSize: e.partSize,
        maxAttempts: e.s3MaxAttempts,
        retryMode: e.s3RetryMode,
        requestTimeoutMs: e.s3RequestTimeoutMs,
      });
      stores.set(job.name, s);
    }
    return s;
  };
  let address: (() => HostPort) | undefined;
  const clock = opts.clock ?? systemClock;
  const scheduler = new Scheduler(jobs, {
    clock,
    runner: opts.runner ?? new LoopbackRunner(() => address!(), env),
    publisher: new TargetPublisher(storeFor),
    leases:
      typeof opts.leases === "function"
        ? opts.leases(storeFor)
        : (opts.leases ?? new StoreLeases(storeFor, clock, log.child({ component: "scheduler" }))),
    log: log.child({ component: "scheduler" }),
  });
  return {
    hook: withScheduleConsole(copy, scheduler, operatorsOf),
    scheduler,
    start: (addr) => {
      address = addr;
      scheduler.start();
      log.info({ jobs: jobs.map((j) => j.name) }, "scheduled snapshots started");
    },
    stop: () => scheduler.stop(),
  };
}
