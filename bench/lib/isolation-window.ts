// bench/isolation.ts's window: pgbench through a path (a proxy, or PgBouncer) and straight to
// PostgreSQL at the same time, idle or under a constant export load through the proxy, and what
// the window's figures are (latencies of the transactions that ended in it, the proxy's CPU and
// its main thread's waits, the probe's counters). The bench's header comment says why so.
import { spawn } from "node:child_process";
import { mkdirSync, readFileSync, rmSync } from "node:fs";
import { join } from "node:path";
import {
  backToBack,
  type ExportRun,
  latenciesIn,
  rowsFromProgress,
  type StartSplit,
  slowTransactions,
  startSplit,
} from "./export-window.js";
import {
  type IsolationConfig,
  type Load,
  loadTag,
  START_SPLIT_S,
  type WindowKind,
} from "./isolation-args.js";
import { type ProbeFigures, probe, relayAtStart } from "./isolation-probe.js";
import { SchedSampler } from "./isolation-threads.js";
import { activeSpanUs, runPgbench, type Txns, type WindowStats, windowStats } from "./pgbench.js";
import type { Pgbouncer } from "./pgbouncer.js";
import { childPids, cpuSeconds, threadSched, treeCpuSeconds } from "./proc.js";
import type { ProxyProc } from "./proxy-process.js";
import { analyseSchedTrace, readSched, recordSched, type SchedTraceSummary } from "./sched-trace.js";
import { median } from "./stats.js";

export interface WindowResult {
  proxy: WindowStats;
  direct: WindowStats;
  /** The window's latencies, µs ascending, through the path and direct (for the pooled p99). */
  proxyLat: Float64Array;
  directLat: Float64Array;
  /** Window length, s. */
  secs: number;
  /** Idle windows: CPU of the path's relay per transaction it relayed, µs: the proxy's main thread
   * (PgBouncer's one thread), and all the process's threads. NaN in export windows. */
  relayUsPerTx: number;
  allUsPerTx: number;
  /** Median wall time of the exports that ended inside the window, s (NaN for idle or none); how
   * many did; rows exported per second of the window, all streams (the stopped exports' rows
   * included); the longest stop (CancelRequest to psql's exit), ms. */
  exportSecs: number;
  exportsDone: number;
  exportRowsPerSec: number;
  stopMs: number;
  /** CPU-s of the path's process tree (encoder host included) per 1M rows exported in the window;
   * it includes relaying the window's pgbench. */
  cpuPerMRows: number;
  /** The proxy's CPU in the window as a share of one core: main thread, all threads with its
   * encoder host's, the encoder host's alone (exports.encoderHost "process"). */
  mainCpu: number;
  totalCpu: number;
  hostCpu: number;
  /** The main thread's time runnable but waiting for a CPU, as a share of the window. */
  mainWait: number;
  /** The main thread's mean wait for a CPU each time it became runnable, ms. */
  mainWaitEach: number;
  /** CPU of the other threads with a niceness above 0 or a non-default policy (the exports'
   * encoder and writer threads), as a share of one core; and their wait share per thread. */
  lowCpu: number;
  /** With --probe: the main thread's event-loop delay p99 and max, ms; GC time, ms. */
  loopP99: number;
  loopMax: number;
  gcMs: number;
  gcMaxMs: number;
  /** GC ms by kind (1 minor, 2 major, 4 incremental marking, 8 weak callbacks). */
  gcByKind: string;
  /** With --probe: the window's longest 3 collections of the relay (v8.GCProfiler): ms, type, new space before->after, old space growth. */
  longestGcs: string;
  /** With --probe: the main thread's stalls over 50 ms (s since the exports' start: ms, what),
   * and when each export ended. */
  stalls: string;
  /** With --probe, export windows: the relay thread per 100 ms from the exports' start (ran ms /
   * waited ms / page faults / longest late 10 ms timer), and its sums over the first START_SPLIT_S. */
  relayStart: string;
  /** With --probe, export windows: the relay's CPU ms, page faults and longest block (a 10 ms
   * timer's lateness, ms) over the first START_SPLIT_S after the exports' start, and the same over
   * the next START_SPLIT_S (what the thread does without a start). */
  relayFirst: { runMs: number; faults: number; lateMs: number };
  relayNext: { runMs: number; faults: number; lateMs: number };
  /** With --probe: the exports' start on a `--cpu-prof` profile's clock (µs). */
  startMonoUs: number;
  /** Transactions through the path slower than the direct p99 of the window: how many, the share
   * that started late against the schedule (queued behind a stall), the 10 ms slices they fell in. */
  slow: { n: number; laggedShare: number; buckets: number };
  /** Export windows: the p99 ratio over the first START_SPLIT_S after the exports' start and over
   * the rest, and the share of the path's slowest 1% that ended in the first part (all NaN idle). */
  split: StartSplit;
  /** With --sched-trace: the relay's waits and runs, and who ran while it waited. */
  trace: SchedTraceSummary | undefined;
  /** CPU ms per second of the window's first seconds: main / other nice-0 threads / lowered. */
  timeline: string;
}

export const EXPORT_OPTS: Record<Exclude<WindowKind, "idle">, { opts: string; n: number }> = {
  parquet: { opts: "FORMAT = 'parquet', COMPRESSION = 'snappy'", n: 1 },
  csv: { opts: "FORMAT = 'csv'", n: 1 },
  parquet4: { opts: "FORMAT = 'parquet', COMPRESSION = 'snappy'", n: 4 },
  csv4: { opts: "FORMAT = 'csv'", n: 4 },
};

/** Samples the proxy's threads while a window runs (encoder threads exit with their export, so

/** An export through psql (the bench's client everywhere), stopped when `stop` resolves first: psql
 * gets SIGINT, as from Ctrl-C, and sends the CancelRequest. Resolves with the rows exported: all, or
 * as many as its last progress NOTICE said (exports.progressIntervalMs) when it was stopped, and
 * how long the stop took, ms. */
function exportOnce(
  port: number,
  db: string,
  rows: number,
  sql: string,
  stop: Promise<void>,
): Promise<{ rows: number; stopped: boolean; stopMs: number }> {
  const p = spawn(
    "psql",
    [
      "-X",
      "-h",
      "127.0.0.1",
      "-p",
      String(port),
      "-U",
      "postgres",
      "-d",
      db,
      "-v",
      "ON_ERROR_STOP=1",
      "-c",
      sql,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, PGSSLMODE: "disable" } },
  );
  let stdout = "";
  let stderr = "";
  p.stdout.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  p.stderr.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-16000);
  });
  let stoppedAt = Number.NaN;
  let rowsAtStop: number | undefined;
  void stop.then(() => {
    if (p.exitCode !== null || p.signalCode !== null) return;
    rowsAtStop = rowsFromProgress(stderr, rows) ?? 0;
    stoppedAt = performance.now();
    p.kill("SIGINT");
  });
  return new Promise((resolve, reject) => {
    p.on("error", reject);
    p.on("close", (code) => {
      if (code === 0 && stdout.includes(`COPY ${rows}`))
        resolve({ rows, stopped: false, stopMs: Number.NaN });
      // Stopped: cancelled ("canceling statement due to user request"), or stopped before it got
      // going (psql interrupted while connecting: nothing exported).
      else if (!Number.isNaN(stoppedAt))
        resolve({ rows: rowsAtStop ?? 0, stopped: true, stopMs: performance.now() - stoppedAt });
      else reject(new Error(`export exited ${code}: ${stdout} ${stderr.slice(-2000)}`));
    });
  });
}

/** What a window needs of the bench's set-up. */
export interface WindowContext {
  c: IsolationConfig;
  pg: { port: number; dir: string };
  db: string;
  table: string;
  bucket: string;
  /** The bench's scratch directory (pgbench logs, `file://` exports under files/). */
  work: string;
  proxies: ProxyProc[];
  bouncer: Pgbouncer | undefined;
  /** Proxies in --ref × --variants order, then PgBouncer's windows (--yardstick). */
  units: Array<{ name: string; probeFile: string }>;
  /** Empties moto's bucket after a window (a no-op on `file://`). */
  resetS3: () => Promise<void>;
}

/** Runs one window of unit `bi` (a proxy, or PgBouncer when `bi` is past the proxies). */
export function windowRunner(
  x: WindowContext,
): (bi: number, kind: WindowKind, load: Load) => Promise<WindowResult> {
  const { c } = x;
  let runNo = 0;
  return async (bi: number, kind: WindowKind, load: Load): Promise<WindowResult> => {
    const yard = bi >= x.proxies.length;
    /** The proxy that runs the window's exports; pgbench's path (its port, its relay's pid). */
    const proxy = x.proxies[yard ? 0 : bi]!;
    const path = yard ? x.bouncer! : proxy;
    const reniceHelpers = yard ? undefined : c.variants[bi % c.variants.length]!.reniceHelpers;
    const probeUnit = async (): Promise<ProbeFigures | undefined> =>
      yard || !c.argv.probe ? undefined : probe(proxy, x.units[bi]!.probeFile);
    const key = `${x.units[bi]!.name} ${kind}${loadTag(load)}`;
    // An export window's pgbench runs: 1 s lead-in, c.secs of export load, 1 s to spare.
    const secs = kind === "idle" ? c.idleSecs : c.secs + 2;
    const bench = (port: number, name: string): Promise<Txns> =>
      runPgbench({
        port,
        db: x.db,
        clients: c.clients,
        threads: c.threads,
        secs,
        ...(load === "rated" ? { rate: c.rate } : {}),
        logPrefix: join(x.work, `pgbench-${name}-${runNo}`),
      });
    runNo++;
    /** CPU seconds: the path's main thread, it and its descendants (the encoder host), itself. */
    const cpuNow = (): { main: number; total: number; self: number } => ({
      main: cpuSeconds(path.pid, false, true),
      total: treeCpuSeconds(path.pid),
      self: cpuSeconds(path.pid, true),
    });
    await probeUnit();
    let sampler = new SchedSampler(path.pid, reniceHelpers);
    /** With --sched-trace: c.traceSecs of the scheduler, from 1 s into the window's load. */
    const traceSoon = async (): Promise<SchedTraceSummary | undefined> => {
      if (c.traceSecs === 0) return undefined;
      await new Promise((r) => setTimeout(r, 1000));
      const postmaster = Number(
        readFileSync(join(x.pg.dir, "data", "postmaster.pid"), "utf8").split("\n")[0],
      );
      const ourPg = new Set([postmaster, ...childPids(postmaster)]);
      const file = join(x.work, `sched-${runNo}.data`);
      await recordSched(file, c.traceSecs);
      const text = await readSched(file);
      rmSync(file, { force: true });
      return analyseSchedTrace(text, path.pid, path.pid, sampler.loweredTids(), ourPg);
    };
    let tracing: Promise<SchedTraceSummary | undefined> = Promise.resolve(undefined);
    let cpu0 = cpuNow();
    const relayNs0 = threadSched(path.pid).get(path.pid)?.cpuNs ?? Number.NaN;
    let t0 = performance.now();
    const runs = Promise.all([bench(path.port, "proxy"), bench(x.pg.port, "direct")]);
    runs.catch(() => {}); // awaited below, after the export; a failure must not go unhandled meanwhile
    if (kind === "idle") tracing = traceSoon();
    tracing.catch(() => {});
    let fromUs = Number.NEGATIVE_INFINITY;
    let toUs = Number.POSITIVE_INFINITY;
    let cpu1 = cpu0;
    let sched = { mainWaitNs: Number.NaN, lowCpuNs: Number.NaN, mainSlices: Number.NaN };
    let timeline = "";
    let loop: ProbeFigures | undefined;
    let startMonoUs = Number.NaN;
    let exports: Array<ExportRun<{ rows: number; stopped: boolean; stopMs: number }>> = [];
    if (kind !== "idle") {
      const { opts, n } = EXPORT_OPTS[kind];
      // Let both pgbench runs connect and get going before the export starts (not a test: a
      // fixed lead-in is what this measurement wants).
      await new Promise((r) => setTimeout(r, 1000));
      fromUs = Date.now() * 1000;
      t0 = performance.now();
      const c0 = cpuNow();
      sampler.stop();
      sampler = new SchedSampler(path.pid, reniceHelpers);
      tracing = traceSoon();
      tracing.catch(() => {});
      startMonoUs = (await probeUnit())?.monoUs ?? Number.NaN;
      // c.secs of constant load: n streams of back-to-back exports (docs/isolation.md, "Export
      // windows of a fixed length"); at the window's end its figures are taken and the exports
      // still running are stopped (their rows so far count).
      const untilMs = t0 + c.secs * 1000;
      const windowEnd = (async () => {
        await new Promise((r) => setTimeout(r, Math.max(0, untilMs - performance.now())));
        toUs = Date.now() * 1000;
        cpu1 = cpuNow();
        sched = sampler.stop();
        timeline = sampler.timeline();
      })();
      const all = backToBack({
        streams: n,
        untilMs,
        now: () => performance.now(),
        runOne: () => {
          const prefix = `iso-${++runNo}`;
          const target =
            c.target === "file" ? `file://${join(x.work, "files", prefix)}` : `s3://${x.bucket}/${prefix}`;
          return exportOnce(
            proxy.port,
            x.db,
            c.rows,
            `COPY ${x.table} TO '${target}' WITH (${opts})`,
            windowEnd,
          );
        },
      });
      all.catch(() => {}); // awaited after the window's end
      await windowEnd;
      loop = await probeUnit();
      exports = await all;
      cpu0 = c0;
    }
    const [px, dr] = await runs;
    const trace = await tracing;
    let relayNs = Number.NaN;
    if (kind === "idle") {
      cpu1 = cpuNow();
      relayNs = (threadSched(path.pid).get(path.pid)?.cpuNs ?? Number.NaN) - relayNs0;
      sched = sampler.stop();
      loop = await probeUnit();
    }
    const cpuSecs = kind === "idle" ? (performance.now() - t0) / 1000 : (toUs - fromUs) / 1e6;
    // Only while both runs were active, and (for an export window) the export load ran.
    const [pa, pb] = activeSpanUs(px);
    const [da, db] = activeSpanUs(dr);
    const from = Math.max(fromUs, pa, da);
    const to = Math.min(toUs, pb, db);
    if (!(to > from)) throw new Error(`${key}: no common window (pgbench -T ${secs} too short?)`);
    rmSync(join(x.work, "files"), { recursive: true, force: true });
    mkdirSync(join(x.work, "files"), { recursive: true });
    await x.resetS3();
    const direct = windowStats(dr, from, to);
    const done = exports.filter((e) => !e.result.stopped && e.endMs <= t0 + c.secs * 1000);
    const rows = exports.reduce((a, e) => a + e.result.rows, 0);
    return {
      proxy: windowStats(px, from, to),
      direct,
      slow: slowTransactions(px, from, to, direct.p99Ms * 1000),
      split:
        kind === "idle"
          ? { first: Number.NaN, after: Number.NaN, slowestFirst: Number.NaN }
          : startSplit(px, dr, from, to, START_SPLIT_S * 1e6),
      proxyLat: latenciesIn(px, from, to),
      directLat: latenciesIn(dr, from, to),
      secs: (to - from) / 1e6,
      // Every transaction of the run went through the path while its CPU was counted.
      relayUsPerTx: relayNs / 1e3 / px.endUs.length,
      allUsPerTx: ((cpu1.total - cpu0.total) * 1e6) / px.endUs.length,
      exportSecs: median(done.map((e) => (e.endMs - e.startMs) / 1000)),
      exportsDone: done.length,
      exportRowsPerSec: rows / cpuSecs,
      stopMs: exports.reduce(
        (a, e) => (e.result.stopMs > a || Number.isNaN(a) ? e.result.stopMs : a),
        Number.NaN,
      ),
      // PgBouncer's windows: the exports run through the first proxy, this is PgBouncer's CPU.
      cpuPerMRows: yard ? Number.NaN : ((cpu1.total - cpu0.total) * 1e6) / rows,
      mainCpu: (cpu1.main - cpu0.main) / cpuSecs,
      totalCpu: (cpu1.total - cpu0.total) / cpuSecs,
      hostCpu: Math.max(0, cpu1.total - cpu1.self - (cpu0.total - cpu0.self)) / cpuSecs,
      mainWait: sched.mainWaitNs / 1e9 / cpuSecs,
      mainWaitEach: sched.mainWaitNs / 1e6 / sched.mainSlices,
      lowCpu: sched.lowCpuNs / 1e9 / cpuSecs,
      loopP99: loop?.p99 ?? Number.NaN,
      loopMax: loop?.max ?? Number.NaN,
      gcMs: loop?.gcMs ?? Number.NaN,
      gcMaxMs: loop?.gcMaxMs ?? Number.NaN,
      longestGcs: (loop?.longestGcs ?? [])
        .map(([ms, type, young, old]) => `${ms} ms ${type} new ${young} MB old +${old} MB`)
        .join(", "),
      gcByKind: JSON.stringify(loop?.gcByKind ?? {}, (_k, v: unknown) =>
        typeof v === "number" ? Math.round(v) : v,
      ).replace(/"/g, ""),
      timeline,
      trace,
      startMonoUs,
      ...relayAtStart(kind === "idle" ? [] : (loop?.slices ?? [])),
      stalls:
        (loop?.stalls ?? [])
          .map(
            ([at, ms, what]) =>
              `${(at / 1000 - (kind === "idle" ? Date.now() / 1000 - cpuSecs : fromUs / 1e6)).toFixed(1)}s:${ms}ms ${what}`,
          )
          .join(", ") +
        (exports.length > 0
          ? `; exports ended at ${exports.map((e) => `${((e.endMs - t0) / 1000).toFixed(1)}s`).join(", ")}`
          : ""),
    };
  };
}
