#!/bin/sh
//bin/sh -c :; [ -n "${MALLOC_ARENA_MAX+set}" ] || export MALLOC_ARENA_MAX=2; exec node --single-threaded-gc --v8-pool-size=1 "$0" "$@"
// The two lines above are the bin's launcher (npx, a global install, `npm start`): the kernel runs
// this file with sh, which sets glibc's MALLOC_ARENA_MAX=2 unless the environment has it (set,
// even empty: the operator's word) and replaces itself with node on this same file, so the pid,
// stdio, signals and exit code are node's as they were with `#!/usr/bin/env node` (the same `node`
// from PATH). To JavaScript line 2 is a comment and Node skips line 1. glibc reads the variable at
// the first malloc, so Node cannot set it for itself (Node 20 has no process.execve): two arenas
// instead of one per allocating thread (up to 8 per core), which each kept their thread's freed
// memory, took 10–43 MB off an S3 export's peak RSS (docs/decisions.md, "Peak RSS: the launcher
// and the part buffers"). `--single-threaded-gc`: every isolate collects on its own thread, so an
// encoder thread's GC runs at that thread's lowered priority instead of on V8's platform threads,
// which every isolate shares and which run at the relay's priority (nice 0): with four Parquet
// exports they were nearly all the CPU at nice 0 besides the relay's own (docs/isolation.md, "V8's
// platform threads"); 4-Parquet p99 ratio 4.64 -> 2.48 over 8 quiet rounds (docs/benchmarks.md,
// session 13). `--v8-pool-size=1`: with GC off them, V8's platform threads only compile (TurboFan,
// wasm tier-up) for every isolate at nice 0; one such thread caps that at one of the cores while
// exports start (4-Parquet p99 ratio 2.28 -> 1.84 over 5 quiet rounds, no CPU or throughput cost
// measured: docs/isolation.md, "Decision (lead, session 14)"). `node dist/cli.js` skips all of
// this: pass them there (the Docker image does).
// Entry point: `copy-to-s3-proxy [options]` runs the proxy; `copy-to-s3-proxy cleanup ...` cleans
// up after crashed exports.
import { ConfigError, HELP, loadConfig } from "./config.js";
import { runCleanupCommand } from "./copy/cleanup-command.js";
import { loadConnections } from "./copy/connections.js";
import { createCopyHook } from "./copy/hook.js";
import { startDemo } from "./demo/demo-mode.js";
import { PgError } from "./errors.js";
import { controlProcess, type ProcessControl } from "./lifecycle.js";
import { createLogger, logOutput } from "./log.js";
import { startAdminServer } from "./metrics/admin-server.js";
import { watchJobs } from "./metrics/job-metrics.js";
import { quietAwsNodeWarning } from "./node-support.js";
import { type ProxyServer, startProxy } from "./proxy/server.js";
import { warnIfUpstreamUnreachable } from "./proxy/upstream-probe.js";
import { createSchedules } from "./schedule/start.js";
import { packageVersion } from "./version.js";

async function main(): Promise<number> {
  let cli: ReturnType<typeof loadConfig>;
  try {
    cli = loadConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`copy-to-s3-proxy: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (cli.command === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  if (cli.command === "version") {
    process.stdout.write(`copy-to-s3-proxy ${packageVersion()}\n`);
    return 0;
  }
  // Before any S3 client exists (the SDK reads the switch when the first one is built).
  const nodeNotice = quietAwsNodeWarning();
  if (cli.command === "cleanup") {
    if (cli.positionals.length !== 1) {
      process.stderr.write(
        "copy-to-s3-proxy: usage: cleanup s3://bucket/prefix [--yes] [--connection NAME] [--older-than 15m]\n",
      );
      return 2;
    }
    try {
      const e = cli.config.exports;
      return await runCleanupCommand({
        target: cli.positionals[0]!,
        yes: cli.flags.yes,
        olderThan: cli.flags.olderThan,
        sentinelRefreshMs: e.sentinelRefreshMs,
        connection: cli.flags.connection,
        connections: loadConnections(cli.config.connections, process.env, {
          warn: (message) => process.stderr.write(`copy-to-s3-proxy: warning: ${message}\n`),
        }),
        storeOptions: {
          maxAttempts: e.s3MaxAttempts,
          retryMode: e.s3RetryMode,
          requestTimeoutMs: e.s3RequestTimeoutMs,
        },
        out: (line) => process.stdout.write(`${line}\n`),
      });
    } catch (e) {
      const err = PgError.from(e);
      process.stderr.write(
        `copy-to-s3-proxy cleanup: ${err.message}${err.detail ? `\n${err.detail}` : ""}${err.hint ? `\nhint: ${err.hint}` : ""}\n`,
      );
      return 1;
    }
  }
  // The serving process logs through an output that never blocks and reports a lost reader.
  let control: ProcessControl | null = null;
  const early: Error[] = [];
  const output = logOutput(1, (err) => (control === null ? early.push(err) : control.logBroken(err)));
  const serveLog = createLogger(cli.config.logLevel, output);
  if (nodeNotice) serveLog.warn(nodeNotice);
  // No upstream configured: an embedded demo database takes its place (src/demo/).
  const say = (text: string): void => void process.stderr.write(`${text}\n`);
  const demo = cli.demo ? await startDemo(cli.config, serveLog, say) : undefined;
  const config = demo?.config ?? cli.config;
  const copy = await createCopyHook(config, serveLog);
  // Scheduled runs are sessions of this proxy: its shutdown drains and cleans them up like any.
  const schedules = await createSchedules(config, serveLog, copy);
  if (schedules.scheduler !== null) watchJobs(() => schedules.scheduler!.status());
  // Before the proxy, so that a taken admin port stops the start before clients are accepted.
  let started: ProxyServer | undefined;
  const admin =
    config.adminListen &&
    (await startAdminServer(
      config.adminListen,
      () => (started === undefined ? "starting" : started.draining ? "draining" : "ready"),
      serveLog,
    ));
  // The proxy says it is ready ("proxy listening", what operators and tests take for ready; the
  // admin's readiness) only once the handlers below exist: a signal sent on that line must meet
  // them, not Node's default action (SIGHUP: the process killed; seen under load). A signal sent
  // before waits here and is raised again once they do.
  const held = holdSignals();
  const proxy = await startProxy(config, serveLog, schedules.hook, { announce: false });
  schedules.start(() => proxy.address);
  control = controlProcess({
    argv: process.argv.slice(2),
    env: process.env,
    config,
    log: serveLog,
    output,
    proxy,
    copy,
    schedules,
    admin: admin || undefined,
  });
  started = proxy;
  proxy.announce();
  held.release();
  for (const err of early) control.logBroken(err);
  if (demo) await demo.showAround(proxy.address);
  else void warnIfUpstreamUnreachable(config, serveLog);
  return -1;
}

/** Until release(): SIGHUP, SIGINT, SIGTERM and SIGQUIT are kept; then raised again, in order. */
function holdSignals(): { release(): void } {
  const signals = ["SIGHUP", "SIGINT", "SIGTERM", "SIGQUIT"] as const;
  const got: NodeJS.Signals[] = [];
  const keep = (s: NodeJS.Signals): void => void got.push(s);
  for (const s of signals) process.on(s, keep);
  return {
    release: () => {
      for (const s of signals) process.off(s, keep);
      for (const s of got) process.kill(process.pid, s);
    },
  };
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`copy-to-s3-proxy: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
