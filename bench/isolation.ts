// Isolation (issue #13 item 1): does an export running through the proxy slow down everyone else's
// ordinary queries through the same proxy? pgbench -S (one-row primary-key SELECTs) through the
// proxy and straight to PostgreSQL, idle and while exports run, p50/p99/tps per window.
//
//   npx tsx bench/isolation.ts [--rows 5000000] [--rounds 2] [--secs 15] [--idle-secs 10]
//                              [--windows idle,parquet,csv,parquet4,csv4] [--target file|s3]
//                              [--ref COMMIT[,COMMIT2]] [--exports JSON] [--variants JSON-ARRAY]
//                              [--probe] [--own-session yes|no] [--clients 4] [--threads 2]
//                              [--scale 10] [--rate TPS|P%] [--load saturated,rated] [--no-build]
//                              [--yardstick pgbouncer] [--sched-trace SECS]
//
// --sched-trace SECS: in every window, SECS seconds of the scheduler's switches and wake-ups on all
// CPUs (`perf record -e sched:sched_switch …`, needs root or perf_event_paranoid ≤ 0), starting 1 s
// into the window's load: how long the relay thread waited for a CPU each time it was woken, how
// long it ran each time (a turn of its event loop), and what ran on the CPUs while it waited — the
// exports' encoder threads, the proxy's other threads, the export's PostgreSQL backend, the other
// backends, pgbench, idle CPUs, the machine's other work (bench/lib/sched-trace.ts).
//
// --yardstick pgbouncer: PgBouncer (session mode, as bench/proxy-overhead.sh runs it) as one more
// path, in windows of its own alternating with the proxies' (same rotation, same -T and -R):
// pgbench through PgBouncer and direct at the same time, the exports through the first proxy. Its
// p99 ratio to direct is printed beside each proxy's, and in idle windows the CPU per relayed
// transaction of the proxy's main thread (all its threads) beside PgBouncer's, from their
// schedstat over the whole pgbench run. What any proxy's extra hop costs on this machine, to tell
// it from what is ours (docs/isolation.md, "The PgBouncer yardstick").
//
// --variants '[{"workerPolicy":"nice"},{"workerPolicy":"idle"}]': one proxy per build and entry
// (its settings over --exports; an "env" object is extra environment, "nodeArgs" an array of
// extra node options for the proxy process (e.g. V8's "--single-threaded-gc"), "relaySliceUs" N has the
// bench ask the scheduler for an N µs slice for the proxy's main thread once it runs (sched_setattr
// through perl, with SCHED_FLAG_RESET_ON_FORK; what the proxy's own relaySliceUs setting does, for
// builds that lack it), "reniceHelpers" N
// has the bench renice every thread of the proxy but its main one that runs at niceness 0 (V8's
// compiler and GC threads, libuv's pool: they serve the encoder threads too) to N, every 200 ms
// while a window runs (an experiment from outside, not a proxy setting); "ownSession" overrides
// --own-session), all alternating in the same rounds. --own-session yes starts the proxies with
// setsid (see docs/isolation.md on autogroups). --probe loads bench/lib/loop-probe.mjs into each
// proxy and prints its event-loop delay and GC per window.
//
// Two kinds of load (--load): `saturated`, closed-loop pgbench (each client sends its next query
// as soon as the last one is answered), which keeps both cores busy and so measures the share of
// CPU each path gets as much as the latency the proxy adds; and `rated`, pgbench -R: transactions
// started on a Poisson schedule at --rate per second, the same rate through the proxy and direct,
// below what either path can serve, as an application's traffic arrives. --rate is a number of
// transactions per second per pgbench run, or P% of the lower of the proxy's and direct tps in a
// saturated idle calibration window run first (before the rounds, with the first proxy). As
// pgbench defines it, a rated transaction's latency runs from its scheduled start, so it includes
// the schedule lag (how late pgbench could start it: a client still waiting for its previous
// answer, or pgbench itself waiting for a CPU); that lag's p99 is printed beside it. With --rate
// alone both loads run, every window twice (saturated and rated, alternating).
//
// Set-up: a throwaway PostgreSQL (test/support/postgres.ts) with `pgbench -i -s 10` tables and the
// export table t_<rows> (bench/lib/bench-table.ts, the one bench/export.ts uses), exports going to
// `file://` (the proxy's --file-root; default: no S3 server competing for the two cores) or moto.
// One proxy process (`node dist/cli.js`) per commit of --ref ("." = this checkout; default: this
// checkout alone), each with maxExportsPerUser 4 so four exports of one user run at once.
//
// A window: `pgbench -n -S -c 4 -j 2 -T secs -l` through the proxy AND the same pgbench straight to
// PostgreSQL, started together and running at the same time. Running both at once is what makes
// "the same window" true: the direct run sees exactly the upstream load (the export's backend, the
// other pgbench's backends, the CPU the proxy takes) the proxied run sees, and what the proxied run
// suffers beyond that is the proxy's share. (Alternating short slices within one export would put
// the two runs in different phases of it: planning, reading, file rollover.) Windows:
//   idle       nothing else; latencies of the transactions while both runs were active
//   parquet    one `COPY t TO '…' WITH (FORMAT = 'parquet', COMPRESSION = 'snappy')` through the proxy
//   csv        one `… WITH (FORMAT = 'csv')`
//   parquet4   four Parquet exports at once (one user, four sessions)
//   csv4       four CSV exports at once
// An export window is --secs (default 15) seconds of constant export load, whatever the exports'
// speed: pgbench starts first (-T secs + 2), the export streams 1 s later (one stream, or four for
// parquet4/csv4), each stream starting its next export as soon as its last one ends; at the
// window's end the exports running are stopped (psql's Ctrl-C: the CancelRequest), their rows so
// far taken from their last progress NOTICE (exports.progressIntervalMs 500 here); only
// transactions that ended inside the --secs of load count (from pgbench's per-transaction
// log: latency and completion time, so p50/p99 are computed here, over exactly those). So every
// export window of every round and every proxy has the same length and the same load, and its p99
// rests on --secs worth of transactions (the number is printed) rather than on one export's few
// seconds; --rows sets how long each export is (how often one starts). Until session 9 a window
// was one export (-T: --secs in the first round, the last export time + 2 s after): windows of
// 2–3 s that moved 2–7× between rounds (docs/isolation.md, "Export windows of a fixed length").
// Idle windows are --idle-secs long. Windows run in an order rotated every round, proxies alternating.
//
// Printed per proxy and window, as the median over rounds with the lowest and highest round in
// brackets: p50/p99/tps through the proxy and direct, the number of transactions behind each p99,
// the ratio p99 proxy/direct (the median of the per-window ratios, and beside it the ratio of the
// p99s of all rounds' transactions pooled: bench/lib/export-window.ts says why the first is the
// figure), the proxy's p99 beside its idle p99, the rows exported per second of the window (all
// streams) and the exports that finished in it, the proxy's CPU-s per 1M rows exported in the
// window (its process tree, relaying the window's pgbench included), and its CPU in the window: main thread (the
// event loop) and all threads (its encoder host's included), the encoder host alone, as a share of
// one core (/proc/<pid>/task/<pid>/stat, /proc/<pid>/stat, the host's /proc/<pid>/stat), the CPU of
// the threads with a niceness or a scheduling class of their own (the exports' encoder and writer
// threads, the host's), and how much of the window the main thread was runnable but waiting for a
// CPU (its schedstat). Targets (issue #13): p99(proxy)/p99(direct) ≤ 2 during exports, ≤ 1.5 idle.
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { cpus, loadavg, setPriority, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { startMoto } from "../test/support/moto.js";
import { startPostgres } from "../test/support/postgres.js";
import { tableSql } from "./lib/bench-table.js";
import {
  backToBack,
  type ExportRun,
  fmtSpread,
  latenciesIn,
  type RatioSummary,
  ratioSummary,
  rowsFromProgress,
  type StartSplit,
  slowTransactions,
  spread,
  startSplit,
} from "./lib/export-window.js";
import { activeSpanUs, runPgbench, type Txns, type WindowStats, windowStats } from "./lib/pgbench.js";
import { type Pgbouncer, startPgbouncer } from "./lib/pgbouncer.js";
import { childPids, cpuSeconds, type ThreadSched, threadSched, treeCpuSeconds } from "./lib/proc.js";
import {
  buildProxies,
  type ProxyProc,
  parseRefs,
  ROOT,
  startProxyProcess,
  stopProxy,
} from "./lib/proxy-process.js";
import { psql } from "./lib/psql.js";
import {
  analyseSchedTrace,
  fmtSchedTrace,
  readSched,
  recordSched,
  type SchedTraceSummary,
  TRACE_CLASSES,
} from "./lib/sched-trace.js";
import { fmtRate, median } from "./lib/stats.js";
import { benchLog, cleanupOnSignal, printHeaderAndExit } from "./lib/usage.js";

const { values: argv } = parseArgs({
  options: {
    rows: { type: "string", default: "5000000" },
    rounds: { type: "string", default: "2" },
    secs: { type: "string", default: "15" },
    "idle-secs": { type: "string", default: "10" },
    windows: { type: "string", default: "idle,parquet,csv,parquet4" },
    target: { type: "string", default: "file" },
    ref: { type: "string" },
    exports: { type: "string" },
    variants: { type: "string" },
    probe: { type: "boolean", default: false },
    "own-session": { type: "string", default: "no" },
    clients: { type: "string", default: "4" },
    threads: { type: "string", default: "2" },
    scale: { type: "string", default: "10" },
    rate: { type: "string" },
    load: { type: "string" },
    yardstick: { type: "string" },
    "sched-trace": { type: "string" },
    "no-build": { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (argv.help) printHeaderAndExit(import.meta.url);
const ROWS = Number(argv.rows.replace(/_/g, ""));
const ROUNDS = Number(argv.rounds);
const SECS = Number(argv.secs);
const IDLE_SECS = Number(argv["idle-secs"]);
const CLIENTS = Number(argv.clients);
const THREADS = Number(argv.threads);
const TARGET = argv.target;
const REFS = parseRefs(argv.ref);
const OWN_SESSION = argv["own-session"] === "yes";
const EXPORTS_CFG: Record<string, unknown> = {
  maxConcurrentExports: 4,
  maxExportsPerUser: 4,
  // The rows an export stopped at a window's end got done are its last progress NOTICE's.
  progressIntervalMs: 500,
  ...(argv.exports === undefined ? {} : (JSON.parse(argv.exports) as Record<string, unknown>)),
};
/** Proxies per build: one per --variants entry (its settings over --exports; an `env` key is the
 * proxy process's extra environment), so e.g. two niceness settings alternate in the same rounds. */
interface Variant {
  label: string;
  exports: Record<string, unknown>;
  env: Record<string, string>;
  ownSession: boolean;
  nodeArgs: string[];
  reniceHelpers: number | undefined;
  relaySliceUs: number | undefined;
}
const VARIANTS: Variant[] =
  argv.variants === undefined
    ? [
        {
          label: "",
          exports: EXPORTS_CFG,
          env: {},
          ownSession: OWN_SESSION,
          nodeArgs: [],
          reniceHelpers: undefined,
          relaySliceUs: undefined,
        },
      ]
    : (JSON.parse(argv.variants) as Array<Record<string, unknown>>).map((v) => {
        const { env, ownSession, nodeArgs, reniceHelpers, relaySliceUs, ...exp } = v;
        const label = JSON.stringify(v).replace(/["{}]/g, "").replace(/^env:/, "").replace(/C2S_/g, "");
        return {
          label,
          exports: { ...EXPORTS_CFG, ...exp },
          env: (env ?? {}) as Record<string, string>,
          ownSession: (ownSession as boolean | undefined) ?? OWN_SESSION,
          nodeArgs: (nodeArgs ?? []) as string[],
          reniceHelpers: reniceHelpers as number | undefined,
          relaySliceUs: relaySliceUs as number | undefined,
        };
      });
type WindowKind = "idle" | "parquet" | "csv" | "parquet4" | "csv4";
const KINDS = argv.windows.split(",").map((s) => s.trim()) as WindowKind[];
for (const k of KINDS)
  if (!["idle", "parquet", "csv", "parquet4", "csv4"].includes(k))
    throw new Error(`bad --windows ${argv.windows}`);
if (!Number.isInteger(ROWS) || ROWS <= 0) throw new Error(`bad --rows ${argv.rows}`);
type Load = "saturated" | "rated";
const LOADS = (argv.load ?? (argv.rate === undefined ? "saturated" : "saturated,rated"))
  .split(",")
  .map((s) => s.trim()) as Load[];
for (const l of LOADS) if (l !== "saturated" && l !== "rated") throw new Error(`bad --load ${argv.load}`);
const RATE_ARG = argv.rate ?? "50%";
const RATE_PCT = RATE_ARG.endsWith("%") ? Number(RATE_ARG.slice(0, -1)) : Number.NaN;
if (!(Number(RATE_ARG) > 0) && !(RATE_PCT > 0)) throw new Error(`bad --rate ${argv.rate}`);
/** The rated windows' transactions per second (per pgbench run), once known. */
let rate = RATE_PCT > 0 ? Number.NaN : Number(RATE_ARG);
const loadTag = (l: Load): string => (l === "rated" ? " @rate" : "");
if (TARGET !== "file" && TARGET !== "s3") throw new Error(`bad --target ${TARGET}`);
if (argv.yardstick !== undefined && argv.yardstick !== "pgbouncer")
  throw new Error(`bad --yardstick ${argv.yardstick} (pgbouncer is the one there is)`);
const YARDSTICK = argv.yardstick === "pgbouncer";
const TRACE_SECS = argv["sched-trace"] === undefined ? 0 : Number(argv["sched-trace"]);
if (!(TRACE_SECS >= 0)) throw new Error(`bad --sched-trace ${argv["sched-trace"]}`);

/** Where an export window's p99 is split: its first seconds (new threads, isolates, scans) and the
 * steady state after (docs/isolation.md, "Four exports: the start makes the p99"). */
const START_SPLIT_S = 1.5;

const WORK = mkdtempSync("/tmp/c2s-bench-isolation-");
const DB = "bench";
const BUCKET = "bench";
const TABLE = `t_${ROWS}`;
const log = benchLog;

interface WindowResult {
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

const EXPORT_OPTS: Record<Exclude<WindowKind, "idle">, { opts: string; n: number }> = {
  parquet: { opts: "FORMAT = 'parquet', COMPRESSION = 'snappy'", n: 1 },
  csv: { opts: "FORMAT = 'csv'", n: 1 },
  parquet4: { opts: "FORMAT = 'parquet', COMPRESSION = 'snappy'", n: 4 },
  csv4: { opts: "FORMAT = 'csv'", n: 4 },
};

/** Samples the proxy's threads while a window runs (encoder threads exit with their export, so
 * their last sample stands for them). */
class SchedSampler {
  private first = new Map<number, ThreadSched>();
  private last = new Map<number, ThreadSched>();
  private timer: NodeJS.Timeout;
  private readonly t0 = performance.now();
  /** Per second of the window: CPU ms of the main thread, of the other threads at the relay's
   * priority (V8's and libuv's pools, a new encoder thread before it lowers itself), of the
   * lowered threads. */
  readonly perSecond: Array<[number, number, number]> = [];
  constructor(
    private pid: number,
    private renice?: number,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 200);
  }
  private sample(): void {
    const sec = Math.floor((performance.now() - this.t0) / 1000);
    while (this.perSecond.length <= sec) this.perSecond.push([0, 0, 0]);
    const bucket = this.perSecond[sec]!;
    for (const [tid, s] of threadSched(this.pid, true)) {
      const prev = this.last.get(tid);
      if (prev !== undefined) {
        const ms = (s.cpuNs - prev.cpuNs) / 1e6;
        bucket[tid === this.pid ? 0 : s.nice > 0 || s.policy !== 0 ? 2 : 1] += ms;
      }
      if (!this.first.has(tid)) this.first.set(tid, s);
      this.last.set(tid, s);
      if (this.renice !== undefined && tid !== this.pid && s.nice === 0 && s.policy === 0) {
        try {
          setPriority(tid, this.renice);
        } catch {
          // ended meanwhile
        }
      }
    }
  }
  /** The threads seen with a niceness or scheduling class of their own (the exports' encoders). */
  loweredTids(): Set<number> {
    return new Set([...this.last].filter(([, s]) => s.nice > 0 || s.policy !== 0).map(([tid]) => tid));
  }
  /** The first seconds as "main/others at nice 0/lowered" CPU ms per second. */
  timeline(seconds = 6): string {
    return this.perSecond
      .slice(0, seconds)
      .map((b) => b.map((x) => Math.round(x)).join("/"))
      .join(" ");
  }
  /** Main thread's wait, ns; CPU ns of the lowered threads. */
  stop(): { mainWaitNs: number; lowCpuNs: number; mainSlices: number } {
    clearInterval(this.timer);
    this.sample();
    let lowCpuNs = 0;
    let mainWaitNs = 0;
    let mainSlices = 0;
    for (const [tid, s] of this.last) {
      const f = this.first.get(tid)!;
      if (tid === this.pid) {
        mainWaitNs = s.waitNs - f.waitNs;
        mainSlices = s.slices - f.slices;
      } else if (s.nice > 0 || s.policy !== 0) lowCpuNs += s.cpuNs - f.cpuNs;
    }
    return { mainWaitNs, lowCpuNs, mainSlices };
  }
}

/**
 * An experiment from outside ("relaySliceUs" in --variants): the proxy's main thread asks the
 * scheduler for a slice of `us` µs (sched_setattr(2) with SCHED_OTHER and sched_runtime, Linux
 * 6.12+ EEVDF; unprivileged), through perl's syscall() as Node has no call for it.
 */
function setSlice(tid: number, us: number): void {
  const script = `my $a=pack("LLQlLQQQ",48,0,1,0,0,${Math.round(us * 1000)},0,0); syscall(314,${tid},$a,0)==0 or die "sched_setattr: $!"; my $b="\\0"x56; syscall(315,${tid},$b,56,0); print((unpack("LLQlLQQQ",$b))[5])`;
  const got = execFileSync("perl", ["-e", script], { encoding: "utf8" });
  log(`  pid ${tid}: slice ${Number(got) / 1000} µs`);
}

/** What bench/lib/loop-probe.mjs writes at each SIGUSR2. */
interface ProbeFigures {
  p99: number;
  max: number;
  gcMs: number;
  gcMaxMs: number;
  gcByKind: object;
  stalls?: Array<[number, number, string]>;
  /** Per 100 ms since the previous report: the relay's [ran, waited, page faults, longest late timer]. */
  slices?: Array<[number, number, number, number]>;
  /** When the report was asked, on a `--cpu-prof` profile's clock (µs). */
  monoUs?: number;
  /** The longest 3 collections: [ms, type, new space before->after MB, old space growth MB]. */
  longestGcs?: Array<[number, string, string, number]>;
}

/** The relay's 100 ms slices from the exports' start (bench/lib/loop-probe.mjs), summed over the
 * first START_SPLIT_S and the next. */
function relayAtStart(slices: Array<[number, number, number, number]>): {
  relayStart: string;
  relayFirst: { runMs: number; faults: number; lateMs: number };
  relayNext: { runMs: number; faults: number; lateMs: number };
} {
  const n = Math.round((START_SPLIT_S * 1000) / 100);
  const sum = (xs: Array<[number, number, number, number]>) => ({
    runMs: xs.length === n ? xs.reduce((a, x) => a + x[0], 0) : Number.NaN,
    faults: xs.length === n ? xs.reduce((a, x) => a + x[2], 0) : Number.NaN,
    lateMs: xs.length === n ? Math.max(...xs.map((x) => x[3])) : Number.NaN,
  });
  return {
    relayStart: slices.map((x) => x.join("/")).join(" "),
    relayFirst: sum(slices.slice(0, n)),
    relayNext: sum(slices.slice(n, 2 * n)),
  };
}

/** With --probe: the proxy's loop-probe figures since the previous call (bench/lib/loop-probe.mjs). */
async function probe(proc: ProxyProc, file: string): Promise<ProbeFigures | undefined> {
  if (!argv.probe) return undefined;
  const seq = (): number => {
    try {
      return (JSON.parse(readFileSync(file, "utf8")) as { seq: number }).seq;
    } catch {
      return 0;
    }
  };
  const before = seq();
  process.kill(proc.pid, "SIGUSR2");
  for (let i = 0; i < 200 && seq() === before; i++) await new Promise((r) => setTimeout(r, 10));
  return JSON.parse(readFileSync(file, "utf8")) as ProbeFigures;
}

/** An export through psql (the bench's client everywhere), stopped when `stop` resolves first: psql
 * gets SIGINT, as from Ctrl-C, and sends the CancelRequest. Resolves with the rows exported: all, or
 * as many as its last progress NOTICE said (exports.progressIntervalMs) when it was stopped, and
 * how long the stop took, ms. */
function exportOnce(
  port: number,
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
      DB,
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
    rowsAtStop = rowsFromProgress(stderr, ROWS) ?? 0;
    stoppedAt = performance.now();
    p.kill("SIGINT");
  });
  return new Promise((resolve, reject) => {
    p.on("error", reject);
    p.on("close", (code) => {
      if (code === 0 && stdout.includes(`COPY ${ROWS}`))
        resolve({ rows: ROWS, stopped: false, stopMs: Number.NaN });
      // Stopped: cancelled ("canceling statement due to user request"), or stopped before it got
      // going (psql interrupted while connecting: nothing exported).
      else if (!Number.isNaN(stoppedAt))
        resolve({ rows: rowsAtStop ?? 0, stopped: true, stopMs: performance.now() - stoppedAt });
      else reject(new Error(`export exited ${code}: ${stdout} ${stderr.slice(-2000)}`));
    });
  });
}

async function main(): Promise<void> {
  // The SDK's Node-version notice, off the documented way (as vitest.config.ts and the CLI do).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const started = new Date();
  const load0 = loadavg();
  log(
    `bench/isolation.ts; ${cpus().length} cores, ${(totalmem() / 1024 ** 3).toFixed(0)} GB, load ${load0.map((l) => l.toFixed(2)).join(" ")}`,
  );
  const builds = buildProxies(REFS, WORK, { noBuild: argv["no-build"], log });

  log(`starting PostgreSQL${TARGET === "s3" ? " and moto" : ""}`);
  const [pg, moto] = await Promise.all([startPostgres(), TARGET === "s3" ? startMoto() : undefined]);
  const proxies: ProxyProc[] = [];
  const units: Array<{ name: string; probeFile: string }> = [];
  let bouncer: Pgbouncer | undefined;
  cleanupOnSignal(() => rmSync(WORK, { recursive: true, force: true }));
  cleanupOnSignal(() => pg.stop());
  if (moto) cleanupOnSignal(() => moto.stop());
  cleanupOnSignal(() => Promise.all(proxies.map(stopProxy)));
  cleanupOnSignal(() => bouncer?.stop());
  const results = new Map<string, WindowResult[]>(); // `${build} ${kind}`
  try {
    execFileSync(
      "psql",
      ["-X", "-q", "-h", "127.0.0.1", "-p", String(pg.port), "-U", "postgres"].concat([
        "-c",
        `CREATE DATABASE ${DB}`,
      ]),
    );
    log(`pgbench -i -s ${argv.scale}; creating ${TABLE}`);
    execFileSync(
      "pgbench",
      ["-i", "-q", "-s", argv.scale, "-h", "127.0.0.1", "-p", String(pg.port), "-U", "postgres", DB],
      { stdio: "ignore", env: { ...process.env, PGSSLMODE: "disable" } },
    );
    await psql(pg.port, DB, tableSql(ROWS), "/dev/null", { quiet: true });
    await psql(pg.port, DB, `VACUUM (FREEZE, ANALYZE) ${TABLE}`, "/dev/null", { quiet: true });
    await psql(pg.port, DB, `COPY (SELECT * FROM ${TABLE}) TO STDOUT (FORMAT binary)`, "/dev/null");
    mkdirSync(join(WORK, "files"), { recursive: true });
    const s3 = moto
      ? new S3Client({
          endpoint: moto.endpoint,
          region: "us-east-1",
          forcePathStyle: true,
          credentials: { accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey },
        })
      : undefined;
    const resetS3 = async (): Promise<void> => {
      if (!moto || !s3) return;
      await moto.reset();
      await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    };
    await resetS3();
    const s3Access = moto ?? { endpoint: "http://127.0.0.1:9", accessKeyId: "x", secretAccessKey: "x" };
    for (const b of builds)
      for (const v of VARIANTS) {
        const probeFile = join(WORK, `probe-${units.length}.json`);
        units.push({ name: [b.name, v.label].filter((x) => x !== "").join(" "), probeFile });
        proxies.push(
          await startProxyProcess({
            build: b,
            pgPort: pg.port,
            s3: s3Access,
            work: WORK,
            exports: v.exports,
            ownSession: v.ownSession,
            env: argv.probe ? { ...v.env, C2S_LOOP_PROBE_FILE: probeFile } : v.env,
            nodeArgs: [
              ...v.nodeArgs,
              ...(argv.probe ? ["--import", join(ROOT, "bench/lib/loop-probe.mjs")] : []),
            ],
          }),
        );
      }
    for (const [i, p] of proxies.entries()) {
      const us = VARIANTS[i % VARIANTS.length]!.relaySliceUs;
      if (us !== undefined) setSlice(p.pid, us);
    }
    if (YARDSTICK) {
      // The yardstick is a unit of its own, alternating with the proxies: its windows run pgbench
      // through PgBouncer and direct, and the exports (which only the proxy can run) through the
      // first proxy. Why not a third pgbench in the proxies' windows: docs/isolation.md.
      bouncer = await startPgbouncer(pg.port);
      units.push({ name: "pgbouncer", probeFile: "" });
    }
    log(`proxies: ${units.map((u, i) => `${u.name} pid ${proxies[i]?.pid ?? bouncer?.pid}`).join(", ")}`);
    // One small export of each format through every proxy before any window: the first export of a
    // proxy starts its encoder host (exports.encoderHost "process") and compiles parquet-wasm, a
    // one-off that would otherwise land in whichever window came first.
    for (const p of proxies)
      for (const fmt of new Set(KINDS.filter((k) => k !== "idle").map((k) => EXPORT_OPTS[k].opts))) {
        const target =
          TARGET === "file" ? `file://${join(WORK, "files", "warm-up")}` : `s3://${BUCKET}/warm-up`;
        await psql(
          p.port,
          DB,
          `COPY (SELECT * FROM ${TABLE} LIMIT 10000) TO '${target}' WITH (${fmt})`,
          "/dev/null",
        );
        rmSync(join(WORK, "files"), { recursive: true, force: true });
        mkdirSync(join(WORK, "files"), { recursive: true });
        await resetS3();
      }

    let runNo = 0;
    const oneWindow = async (bi: number, kind: WindowKind, load: Load): Promise<WindowResult> => {
      const yard = bi >= proxies.length;
      /** The proxy that runs the window's exports; pgbench's path (its port, its relay's pid). */
      const proxy = proxies[yard ? 0 : bi]!;
      const path = yard ? bouncer! : proxy;
      const reniceHelpers = yard ? undefined : VARIANTS[bi % VARIANTS.length]!.reniceHelpers;
      const probeUnit = async (): Promise<ProbeFigures | undefined> =>
        yard ? undefined : probe(proxy, units[bi]!.probeFile);
      const key = `${units[bi]!.name} ${kind}${loadTag(load)}`;
      // An export window's pgbench runs: 1 s lead-in, SECS of export load, 1 s to spare.
      const secs = kind === "idle" ? IDLE_SECS : SECS + 2;
      const bench = (port: number, name: string): Promise<Txns> =>
        runPgbench({
          port,
          db: DB,
          clients: CLIENTS,
          threads: THREADS,
          secs,
          ...(load === "rated" ? { rate } : {}),
          logPrefix: join(WORK, `pgbench-${name}-${runNo}`),
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
      /** With --sched-trace: TRACE_SECS of the scheduler, from 1 s into the window's load. */
      const traceSoon = async (): Promise<SchedTraceSummary | undefined> => {
        if (TRACE_SECS === 0) return undefined;
        await new Promise((r) => setTimeout(r, 1000));
        const postmaster = Number(
          readFileSync(join(pg.dir, "data", "postmaster.pid"), "utf8").split("\n")[0],
        );
        const ourPg = new Set([postmaster, ...childPids(postmaster)]);
        const file = join(WORK, `sched-${runNo}.data`);
        await recordSched(file, TRACE_SECS);
        const text = await readSched(file);
        rmSync(file, { force: true });
        return analyseSchedTrace(text, path.pid, path.pid, sampler.loweredTids(), ourPg);
      };
      let tracing: Promise<SchedTraceSummary | undefined> = Promise.resolve(undefined);
      let cpu0 = cpuNow();
      const relayNs0 = threadSched(path.pid).get(path.pid)?.cpuNs ?? Number.NaN;
      let t0 = performance.now();
      const runs = Promise.all([bench(path.port, "proxy"), bench(pg.port, "direct")]);
      runs.catch(() => {}); // awaited below, after the export; a failure must not go unhandled meanwhile
      if (kind === "idle") tracing = traceSoon();
      tracing.catch(() => {});
      let fromUs = Number.NEGATIVE_INFINITY;
      let toUs = Number.POSITIVE_INFINITY;
      let cpu1 = cpu0;
      let sched = { mainWaitNs: Number.NaN, lowCpuNs: Number.NaN, mainSlices: Number.NaN };
      let timeline = "";
      let loop: Awaited<ReturnType<typeof probe>>;
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
        // SECS of constant load: n streams of back-to-back exports (docs/isolation.md, "Export
        // windows of a fixed length"); at the window's end its figures are taken and the exports
        // still running are stopped (their rows so far count).
        const untilMs = t0 + SECS * 1000;
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
              TARGET === "file" ? `file://${join(WORK, "files", prefix)}` : `s3://${BUCKET}/${prefix}`;
            return exportOnce(proxy.port, `COPY ${TABLE} TO '${target}' WITH (${opts})`, windowEnd);
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
      rmSync(join(WORK, "files"), { recursive: true, force: true });
      mkdirSync(join(WORK, "files"), { recursive: true });
      await resetS3();
      const direct = windowStats(dr, from, to);
      const done = exports.filter((e) => !e.result.stopped && e.endMs <= t0 + SECS * 1000);
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

    if (LOADS.includes("rated") && Number.isNaN(rate)) {
      const c = await oneWindow(0, "idle", "saturated");
      rate = Math.max(1, Math.round((Math.min(c.proxy.tps, c.direct.tps) * RATE_PCT) / 100));
      log(
        `  calibration (saturated idle, ${units[0]!.name}): proxy ${fmtRate(c.proxy.tps)} tps, direct ${fmtRate(c.direct.tps)} tps; rated windows at ${RATE_PCT}% of the lower: pgbench -R ${rate}`,
      );
    }
    // Every (proxy, window, load) once a round; order rotated each round, proxies interleaved.
    const slots: Array<[number, WindowKind, Load]> = [];
    for (const k of KINDS)
      for (const l of LOADS) for (let bi = 0; bi < units.length; bi++) slots.push([bi, k, l]);
    for (let round = 0; round < ROUNDS; round++) {
      for (let i = 0; i < slots.length; i++) {
        const [bi, kind, load] = slots[(i + round) % slots.length]!;
        const key = `${units[bi]!.name} ${kind}${loadTag(load)}`;
        const r = await oneWindow(bi, kind, load);
        results.set(key, [...(results.get(key) ?? []), r]);
        log(
          `  round ${round + 1} ${key.padEnd(26)} window ${r.secs.toFixed(1)} s, ${r.proxy.n}/${r.direct.n} txns` +
            `${kind === "idle" ? "" : `  ${r.exportsDone} exports done (${r.exportSecs.toFixed(1)} s each), ${fmtRate(r.exportRowsPerSec)} rows/s exported, ${r.cpuPerMRows.toFixed(2)} CPU-s per 1M rows, stop ${r.stopMs.toFixed(0)} ms`}` +
            `  proxy p50 ${r.proxy.p50Ms.toFixed(2)} p99 ${r.proxy.p99Ms.toFixed(2)} ms ${fmtRate(r.proxy.tps)} tps` +
            `  direct p50 ${r.direct.p50Ms.toFixed(2)} p99 ${r.direct.p99Ms.toFixed(2)} ms ${fmtRate(r.direct.tps)} tps` +
            (load === "rated"
              ? `  schedule lag p99 proxy ${r.proxy.lagP99Ms.toFixed(2)} direct ${r.direct.lagP99Ms.toFixed(2)} ms`
              : "") +
            `  p99 ratio ${(r.proxy.p99Ms / r.direct.p99Ms).toFixed(2)}` +
            (kind === "idle"
              ? ""
              : ` (first ${START_SPLIT_S} s ${r.split.first.toFixed(2)}, after ${r.split.after.toFixed(2)}; slowest 1% ${(r.split.slowestFirst * 100).toFixed(0)}% in the first ${START_SPLIT_S} s)`) +
            `  ${r.slow.n} slower than direct p99 (${(r.slow.laggedShare * 100).toFixed(0)}% started late, in ${r.slow.buckets} slices of 10 ms)  proxy CPU main ${(r.mainCpu * 100).toFixed(0)}% all ${(r.totalCpu * 100).toFixed(0)}% host ${(r.hostCpu * 100).toFixed(0)}% lowered ${(r.lowCpu * 100).toFixed(0)}%` +
            `  main waits ${(r.mainWait * 100).toFixed(1)}% (${r.mainWaitEach.toFixed(2)} ms each)` +
            (kind === "idle"
              ? `  CPU per transaction main ${r.relayUsPerTx.toFixed(0)} µs all ${r.allUsPerTx.toFixed(0)} µs`
              : "") +
            (argv.probe
              ? `  CPU ms per s of the first seconds (main/others at nice 0/lowered): ${r.timeline}  loop delay p99 ${r.loopP99.toFixed(1)} max ${r.loopMax.toFixed(1)} ms, GC ${r.gcMs.toFixed(0)} ms (max ${r.gcMaxMs.toFixed(1)}, by kind ${r.gcByKind}; longest: ${r.longestGcs}); stalls > ${process.env.C2S_LOOP_PROBE_STALL_MS || 50} ms: ${r.stalls || "none"}` +
                (kind === "idle"
                  ? ""
                  : `  relay in the first ${START_SPLIT_S} s: ran ${r.relayFirst.runMs} ms, ${r.relayFirst.faults} page faults, longest block ${r.relayFirst.lateMs} ms; in the next ${START_SPLIT_S} s: ${r.relayNext.runMs} ms, ${r.relayNext.faults}, ${r.relayNext.lateMs} ms; per 100 ms ran/waited/faults/late: ${r.relayStart}; start at ${r.startMonoUs} µs`)
              : "") +
            (r.trace ? `  ${fmtSchedTrace(r.trace)}` : "") +
            `  load ${loadavg()[0]!.toFixed(1)}`,
        );
      }
    }
  } finally {
    for (const p of proxies) await stopProxy(p);
    await bouncer?.stop();
    await moto?.stop();
    await pg.stop();
    rmSync(WORK, { recursive: true, force: true });
  }
  printSummary(
    units.map((u) => u.name),
    results,
    { started, load0, load1: loadavg() },
  );
}

function printSummary(
  names: string[],
  results: Map<string, WindowResult[]>,
  meta: { started: Date; load0: number[]; load1: number[] },
): void {
  const out: string[] = [];
  out.push(
    `\n## bench/isolation.ts — ${meta.started.toISOString().slice(0, 16).replace("T", " ")} UTC, proxy ${names.join(" vs ")}, ${ROWS.toLocaleString("en-US")} rows, target ${TARGET}, ${ROUNDS} rounds, export windows of ${SECS} s, idle windows of ${IDLE_SECS} s`,
  );
  out.push(
    `${cpus().length} cores, load average ${meta.load0.map((l) => l.toFixed(1)).join("/")} at start, ${meta.load1.map((l) => l.toFixed(1)).join("/")} at end; ` +
      `pgbench -n -S -c ${CLIENTS} -j ${THREADS} through the proxy and direct at the same time, scale ${argv.scale}` +
      `${LOADS.includes("rated") ? `; rated windows: pgbench -R ${rate} (${argv.rate ?? "50%"}), latency from the scheduled start (schedule lag included, as pgbench reports it)` : ""}` +
      `; exports settings ${JSON.stringify(EXPORTS_CFG)}${argv.variants ? `, variants ${argv.variants}` : ""}` +
      `; medians over rounds (lowest–highest round in brackets)\n`,
  );
  out.push(
    "| proxy | window | load | transactions per p99 | exported rows/s in the window (all streams); exports done per window | proxy p50 / p99 ms | direct p50 / p99 ms | proxy / direct tps | **p99 proxy/direct** | pooled | target | proxy p99 / its idle p99 | schedule lag p99 proxy / direct ms | proxy CPU main / all / encoder host / lowered threads | CPU-s per 1M rows | main thread waiting for a CPU |" +
      (argv.probe ? " event-loop delay p99 / max ms | GC ms |" : ""),
  );
  out.push(
    `|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|${argv.probe ? "---:|---:|" : ""}`,
  );
  const m = (rs: WindowResult[], f: (r: WindowResult) => number): number => median(rs.map(f));
  const sp = (rs: WindowResult[], f: (r: WindowResult) => number, digits = 2): string =>
    fmtSpread(spread(rs.map(f)), digits);
  const pct = (rs: WindowResult[], f: (r: WindowResult) => number): string =>
    `${(m(rs, f) * 100).toFixed(0)}%`;
  const ratios: string[] = [];
  /** Per proxy and window: [load] → p99 ratio against direct, against its idle p99, export s. */
  const beside = new Map<string, Map<Load, { ratio: RatioSummary; vsIdle: number; exportSecs: number }>>();
  for (const name of names) {
    for (const kind of KINDS) {
      for (const load of LOADS) {
        const rs = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!rs) continue;
        const idle = results.get(`${name} idle${loadTag(load)}`);
        const ratio = summary(rs);
        const target = kind === "idle" ? 1.5 : 2;
        const vsIdle =
          idle && kind !== "idle" ? m(rs, (r) => r.proxy.p99Ms) / m(idle, (r) => r.proxy.p99Ms) : Number.NaN;
        const exportSecs = kind === "idle" ? Number.NaN : m(rs, (r) => r.exportRowsPerSec / 1000);
        const b = beside.get(`${name}\t${kind}`) ?? new Map();
        b.set(load, { ratio, vsIdle, exportSecs });
        beside.set(`${name}\t${kind}`, b);
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${rate}` : "saturated"} | ${fmtSpread(ratio.txns, 0)} | ` +
            `${kind === "idle" ? "–" : `${sp(rs, (r) => r.exportRowsPerSec / 1000, 0)}k; ${sp(rs, (r) => r.exportsDone, 0)}`} | ` +
            `${m(rs, (r) => r.proxy.p50Ms).toFixed(2)} / ${sp(rs, (r) => r.proxy.p99Ms)} | ` +
            `${m(rs, (r) => r.direct.p50Ms).toFixed(2)} / ${sp(rs, (r) => r.direct.p99Ms)} | ` +
            `${fmtRate(m(rs, (r) => r.proxy.tps))} / ${fmtRate(m(rs, (r) => r.direct.tps))} | ` +
            `**${fmtSpread(ratio.ratio)}** | ${ratio.pooled.toFixed(2)} | ≤ ${target}: ${ratio.ratio.median <= target ? "MET" : "MISSED"} | ` +
            `${Number.isNaN(vsIdle) ? "–" : vsIdle.toFixed(2)} | ` +
            `${load === "rated" ? `${m(rs, (r) => r.proxy.lagP99Ms).toFixed(2)} / ${m(rs, (r) => r.direct.lagP99Ms).toFixed(2)}` : "–"} | ` +
            `${pct(rs, (r) => r.mainCpu)} / ${pct(rs, (r) => r.totalCpu)} / ${pct(rs, (r) => r.hostCpu)} / ${pct(rs, (r) => r.lowCpu)} | ` +
            `${kind === "idle" ? "–" : sp(rs, (r) => r.cpuPerMRows)} | ` +
            `${(m(rs, (r) => r.mainWait) * 100).toFixed(1)}% (${m(rs, (r) => r.mainWaitEach).toFixed(2)} ms each) |` +
            (argv.probe
              ? ` ${m(rs, (r) => r.loopP99).toFixed(1)} / ${m(rs, (r) => r.loopMax).toFixed(1)} | ${m(rs, (r) => r.gcMs).toFixed(0)} |`
              : ""),
        );
        ratios.push(
          `${name} ${kind}${loadTag(load)}: ${fmtSpread(ratio.ratio)} (target ≤ ${target})` +
            (kind === "idle"
              ? ""
              : `, after the first ${START_SPLIT_S} s ${fmtSpread(spread(rs.map((r) => r.split.after)))}`),
        );
      }
    }
  }
  if (LOADS.length > 1) {
    // The two loads beside each other: what the machine's CPU shares do to the ratios (saturated)
    // and what a client at a rate both paths can serve sees (rated).
    out.push(
      "\n| proxy | window | p99 proxy/direct saturated | p99 proxy/direct rated | proxy p99 / its idle p99 saturated | rated | exported k rows/s saturated / rated |",
    );
    out.push("|---|---|---:|---:|---:|---:|---:|");
    const f = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(2));
    for (const [k, b] of beside) {
      const [name, kind] = k.split("\t");
      const sat = b.get("saturated");
      const rat = b.get("rated");
      out.push(
        `| ${name} | ${kind} | ${sat ? fmtSpread(sat.ratio.ratio) : "–"} | ${rat ? fmtSpread(rat.ratio.ratio) : "–"} | ${f(sat?.vsIdle)} | ${f(rat?.vsIdle)} | ` +
          `${kind === "idle" ? "–" : `${sat?.exportSecs.toFixed(0) ?? "–"} / ${rat?.exportSecs.toFixed(0) ?? "–"}`} |`,
      );
    }
  }
  if (names.includes("pgbouncer")) out.push(...yardstickTable(names, results));
  out.push(...splitTable(names, results));
  out.push(
    "\n| proxy | window | load | transactions slower than the direct p99 | … of them started late (schedule lag > half their latency) | 10 ms slices they ended in |",
    "|---|---|---|---:|---:|---:|",
  );
  for (const name of names)
    for (const kind of KINDS)
      for (const load of LOADS) {
        const rs = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!rs) continue;
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${rate}` : "saturated"} | ${sp(rs, (r) => r.slow.n, 0)} | ${sp(rs, (r) => r.slow.laggedShare * 100, 0)}% | ${sp(rs, (r) => r.slow.buckets, 0)} |`,
        );
      }
  if (TRACE_SECS > 0) out.push(...traceTable(names, results));
  if (argv.probe) {
    // Counters of the relay thread itself, which a busy machine distorts less than a p99.
    out.push(
      `\n| proxy | window | load | relay CPU ms, first ${START_SPLIT_S} s / next ${START_SPLIT_S} s | relay page faults, first / next | relay's longest block (10 ms timer late by, ms), first / next |`,
      "|---|---|---|---:|---:|---:|",
    );
    for (const name of names)
      for (const kind of KINDS)
        for (const load of LOADS) {
          const rs = results.get(`${name} ${kind}${loadTag(load)}`);
          if (!rs || kind === "idle") continue;
          out.push(
            `| ${name} | ${kind} | ${load === "rated" ? `-R ${rate}` : "saturated"} | ${sp(rs, (r) => r.relayFirst.runMs, 0)} / ${sp(rs, (r) => r.relayNext.runMs, 0)} | ${sp(rs, (r) => r.relayFirst.faults, 0)} / ${sp(rs, (r) => r.relayNext.faults, 0)} | ${sp(rs, (r) => r.relayFirst.lateMs, 0)} / ${sp(rs, (r) => r.relayNext.lateMs, 0)} |`,
          );
        }
  }
  out.push(
    `\np99 through the proxy / p99 direct in the same window (median of rounds, lowest–highest): ${ratios.join("; ")}`,
  );
  process.stdout.write(`${out.join("\n")}\n`);
}

/** Export windows: the p99 ratio of the whole window beside those of its first START_SPLIT_S
 * after the exports' start and of the rest, so the start-up's share is measured. */
function splitTable(names: string[], results: Map<string, WindowResult[]>): string[] {
  const out = [
    `\n| proxy | window | load | p99 proxy/direct, whole window | first ${START_SPLIT_S} s after the exports' start | after the first ${START_SPLIT_S} s | the proxy's slowest 1%: share in the first ${START_SPLIT_S} s |`,
    "|---|---|---|---:|---:|---:|---:|",
  ];
  for (const name of names)
    for (const kind of KINDS)
      for (const load of LOADS) {
        const rs = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!rs || kind === "idle") continue;
        const sp = (f: (r: WindowResult) => number, digits = 2): string =>
          fmtSpread(spread(rs.map(f)), digits);
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${rate}` : "saturated"} | ${fmtSpread(summary(rs).ratio)} | ` +
            `${sp((r) => r.split.first)} | **${sp((r) => r.split.after)}** | ${sp((r) => r.split.slowestFirst * 100, 0)}% |`,
        );
      }
  return out;
}

/** With --sched-trace: per proxy and window, medians over rounds of the relay's waits and runs, and
 * of who ran while it waited (ms per traced second, summed over CPUs). */
function traceTable(names: string[], results: Map<string, WindowResult[]>): string[] {
  const out = [
    `\n| proxy | window | load | relay waits ms/s | wait p99 µs | runs ms/s | run p99 / max µs | waits displacing an encoder: n/s, p50 / p99 µs | … the export's backend | … other tasks of ours (V8, libuv) | while it waited, ms/s: ${TRACE_CLASSES.join(" / ")} |`,
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const name of names)
    for (const kind of KINDS)
      for (const load of LOADS) {
        const rs = (results.get(`${name} ${kind}${loadTag(load)}`) ?? []).filter((r) => r.trace);
        if (rs.length === 0) continue;
        const m = (f: (t: SchedTraceSummary) => number, d = 0): string =>
          median(rs.map((r) => f(r.trace!))).toFixed(d);
        const by = (c: (typeof TRACE_CLASSES)[number]): string =>
          `${m((t) => t.endedBy[c].n / t.secs)}, ${m((t) => t.endedBy[c].p50Us)} / ${m((t) => t.endedBy[c].p99Us)}`;
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${rate}` : "saturated"} | ${m((t) => t.waitMs / t.secs)} | ${m((t) => t.waitP99Us)} | ` +
            `${m((t) => t.runMs / t.secs)} | ${m((t) => t.runP99Us)} / ${m((t) => t.runMaxUs)} | ${by("encoder")} | ${by("pg-export")} | ${by("proxy-other")} | ` +
            `${TRACE_CLASSES.map((c) => m((t) => t.duringWaitMs[c] / t.secs)).join(" / ")} |`,
        );
      }
  return out;
}

/** The windows' p99 ratios summed up (bench/lib/export-window.ts: why the median of the per-window
 * ratios, and the pooled ratio beside it). */
const summary = (rs: WindowResult[]): RatioSummary =>
  ratioSummary(rs.map((r) => ({ path: r.proxyLat, direct: r.directLat })));

/** Each proxy's p99 ratio to direct beside PgBouncer's (each against the direct run of its own
 * windows), and in idle windows the relay's CPU per transaction beside PgBouncer's. */
function yardstickTable(names: string[], results: Map<string, WindowResult[]>): string[] {
  const out = [
    "\n| window | load | proxy | p99 proxy/direct | p99 pgbouncer/direct | proxy ratio / pgbouncer ratio | CPU per transaction µs: proxy main thread (all threads) / pgbouncer |",
    "|---|---|---|---:|---:|---:|---:|",
  ];
  const m = (rs: WindowResult[], f: (r: WindowResult) => number): number => median(rs.map(f));
  for (const kind of KINDS)
    for (const load of LOADS) {
      const bs = results.get(`pgbouncer ${kind}${loadTag(load)}`);
      if (!bs) continue;
      const b = summary(bs);
      for (const name of names) {
        if (name === "pgbouncer") continue;
        const ps = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!ps) continue;
        const p = summary(ps);
        const cpu =
          kind === "idle"
            ? `${m(ps, (r) => r.relayUsPerTx).toFixed(0)} (${m(ps, (r) => r.allUsPerTx).toFixed(0)}) / ${m(bs, (r) => r.relayUsPerTx).toFixed(0)}`
            : "–";
        out.push(
          `| ${kind} | ${load === "rated" ? `-R ${rate}` : "saturated"} | ${name} | ${fmtSpread(p.ratio)} | ` +
            `${fmtSpread(b.ratio)} | ${(p.ratio.median / b.ratio.median).toFixed(2)} | ${cpu} |`,
        );
      }
    }
  return out;
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/isolation.ts: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
