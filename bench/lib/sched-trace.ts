// Who has the CPUs while the relay waits for one: a trace of the scheduler's switches and wake-ups
// (`perf record -e sched:sched_switch -e sched:sched_waking -a`, root or perf_event_paranoid ≤ 0 and a
// mounted tracefs), read back with `perf script`. bench/isolation.ts --sched-trace runs it in each
// window. From the trace, for the relay thread (the proxy's main thread):
//   - each wait: from its wake-up (sched_waking), or from being preempted while runnable, to the
//     switch that runs it — how long a client's message waits before the relay can even look at it;
//   - each run: from that switch to the next switch away — a proxy for how long one turn of its event
//     loop keeps it (a transaction arriving meanwhile waits behind it);
//   - while it waits, what each CPU is running instead, by class: the proxy's lowered threads (the
//     exports' encoders), its other threads (V8's and libuv's pools), the export's PostgreSQL
//     backend (the busiest task of the bench's PostgreSQL), its other backends (pgbench's), pgbench,
//     psql, the idle task (the relay was woken but a CPU still had to come out of idle), anything
//     else (the machine's other work: other PostgreSQL servers included).
import { spawn } from "node:child_process";
import { percentileSorted } from "./stats.js";

export const TRACE_CLASSES = [
  "encoder",
  "proxy-other",
  "pg-export",
  "pg-other",
  "pgbench",
  "psql",
  "idle",
  "other",
] as const;
export type TraceClass = (typeof TRACE_CLASSES)[number];

export interface SchedTraceSummary {
  /** Traced span, s. */
  secs: number;
  /** The relay's waits for a CPU: count, total ms, percentiles µs. */
  waits: number;
  waitMs: number;
  waitP50Us: number;
  waitP99Us: number;
  waitMaxUs: number;
  /** Waits over 1 ms: how many, and their share of the total wait. */
  waitsOver1ms: number;
  waitShareOver1ms: number;
  /** The relay's runs (switch in to switch out): count, total ms, percentiles µs. */
  runs: number;
  runMs: number;
  runP50Us: number;
  runP99Us: number;
  runMaxUs: number;
  /** CPU ms of each class overlapping the relay's waits (summed over CPUs). */
  duringWaitMs: Record<TraceClass, number>;
  /** The same for the relay's waits over 1 ms only. */
  duringLongWaitMs: Record<TraceClass, number>;
  /** CPU ms of each class over the whole trace. */
  totalMs: Record<TraceClass, number>;
  /**
   * The relay's waits by the task it displaced when it finally ran (the switch's previous task on
   * that CPU): how many, their p50 and p99 µs, and how many of them took it from a task still
   * runnable (preempted rather than gone to sleep). Waits that end by preempting an encoder thread
   * say how long the relay waits behind its own exports' work on a CPU it shares with them.
   */
  endedBy: Record<TraceClass, { n: number; p50Us: number; p99Us: number; preempted: number }>;
}

const zero = (): Record<TraceClass, number> =>
  Object.fromEntries(TRACE_CLASSES.map((c) => [c, 0])) as Record<TraceClass, number>;

interface Ev {
  t: number; // µs
  cpu: number;
  kind: "switch" | "waking" | "fork";
  // switch
  prevTid?: number;
  prevState?: string;
  nextTid?: number;
  nextComm?: string;
  // waking: the task woken; fork: the child
  tid?: number;
}

/** `perf script -F comm,pid,tid,cpu,time,event,trace` lines → events, and tid → [tgid, comm]. */
export function parsePerfSched(text: string): { evs: Ev[]; tasks: Map<number, [number, string]> } {
  const evs: Ev[] = [];
  const tasks = new Map<number, [number, string]>();
  const head =
    /^\s*(.+?)\s+(-?\d+)\/(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+sched:(sched_switch|sched_waking|sched_process_fork):\s+(.*)$/;
  for (const line of text.split("\n")) {
    const m = head.exec(line);
    if (!m) continue;
    const [, comm, pid, tid, cpu, time, ev, rest] = m;
    if (Number(tid) !== 0) tasks.set(Number(tid), [Number(pid), comm!]);
    const t = Math.round(Number(time) * 1e6);
    if (ev === "sched_switch") {
      const s = /prev_pid=(\d+) .*prev_state=(\S+) ==> next_comm=(.*) next_pid=(\d+)/.exec(rest!);
      if (!s) continue;
      evs.push({
        t,
        cpu: Number(cpu),
        kind: "switch",
        prevTid: Number(s[1]),
        prevState: s[2]!,
        nextComm: s[3]!,
        nextTid: Number(s[4]),
      });
    } else if (ev === "sched_process_fork") {
      const f = /child_pid=(\d+)/.exec(rest!);
      if (f) evs.push({ t, cpu: Number(cpu), kind: "fork", tid: Number(f[1]), prevTid: Number(tid) });
    } else {
      const w = /pid=(\d+)/.exec(rest!.replace(/^comm=.*? pid=/, "pid="));
      if (!w) continue;
      evs.push({ t, cpu: Number(cpu), kind: "waking", tid: Number(w[1]) });
    }
  }
  return { evs, tasks };
}

/**
 * Summarises a trace for the relay thread `relayTid` of process `proxyPid`; `lowered` are the
 * proxy's threads with a niceness or scheduling class of their own (its encoders); `pg` the bench's
 * PostgreSQL processes when the trace began (its postmaster and children: those it forks during
 * the trace are added).
 */
export function analyseSchedTrace(
  text: string,
  relayTid: number,
  proxyPid: number,
  lowered: ReadonlySet<number>,
  pg: ReadonlySet<number>,
): SchedTraceSummary {
  const { evs, tasks } = parsePerfSched(text);
  const ourPg = new Set(pg);
  // Each CPU's runs: [from, to, tid].
  const cur = new Map<number, [number, number]>(); // cpu → [tid, since]
  const runs: Array<[number, number, number, number]> = []; // from, to, tid, cpu
  const perTid = new Map<number, number>();
  const t0 = evs[0]?.t ?? 0;
  const t1 = evs[evs.length - 1]?.t ?? 0;
  const relayRuns: number[] = [];
  const waits: Array<[number, number]> = [];
  /** Per wait: the task the relay displaced, and whether it was still runnable. */
  const displaced: Array<[number, boolean]> = [];
  let runnableSince: number | null = null;
  let runningSince: number | null = null;
  for (const e of evs) {
    if (e.kind === "fork") {
      if (ourPg.has(e.prevTid!)) ourPg.add(e.tid!);
      continue;
    }
    if (e.kind === "waking") {
      if (e.tid === relayTid && runningSince === null && runnableSince === null) runnableSince = e.t;
      continue;
    }
    const c = cur.get(e.cpu);
    const from = c ? c[1] : t0;
    if (e.t > from) runs.push([from, e.t, e.prevTid!, e.cpu]);
    perTid.set(e.prevTid!, (perTid.get(e.prevTid!) ?? 0) + (e.t - from));
    cur.set(e.cpu, [e.nextTid!, e.t]);
    if (e.nextTid !== 0 && !tasks.has(e.nextTid!)) tasks.set(e.nextTid!, [-1, e.nextComm!]);
    if (e.prevTid === relayTid && runningSince !== null) {
      relayRuns.push(e.t - runningSince);
      runningSince = null;
      // Preempted (still runnable: state R, R+): it waits from now.
      if (e.prevState!.startsWith("R")) runnableSince = e.t;
    }
    if (e.nextTid === relayTid) {
      if (runnableSince !== null) {
        waits.push([runnableSince, e.t]);
        displaced.push([e.prevTid!, e.prevState!.startsWith("R")]);
      }
      runnableSince = null;
      runningSince = e.t;
    }
  }
  for (const [cpu, [tid, since]] of cur) {
    if (t1 > since) runs.push([since, t1, tid, cpu]);
    perTid.set(tid, (perTid.get(tid) ?? 0) + (t1 - since));
  }
  // The export's backend: the postgres task that ran the most.
  let pgExport = -1;
  let pgMost = 0;
  for (const [tid, us] of perTid) {
    if (ourPg.has(tid) && us > pgMost) {
      pgMost = us;
      pgExport = tid;
    }
  }
  const classOf = (tid: number): TraceClass => {
    if (tid === 0) return "idle";
    const [tgid, comm] = tasks.get(tid) ?? [-1, ""];
    if (tgid === proxyPid || lowered.has(tid)) return lowered.has(tid) ? "encoder" : "proxy-other";
    if (ourPg.has(tid)) return tid === pgExport ? "pg-export" : "pg-other";
    if (comm === "pgbench") return "pgbench";
    if (comm === "psql") return "psql";
    return "other";
  };
  const totalMs = zero();
  for (const [tid, us] of perTid) if (tid !== relayTid) totalMs[classOf(tid)] += us / 1000;
  // Overlap of the other tasks' runs with the relay's waits (both sorted by start).
  const duringWaitMs = zero();
  const duringLongWaitMs = zero();
  runs.sort((a, b) => a[0] - b[0]);
  let j = 0;
  for (const [a, b] of waits) {
    while (j < runs.length && runs[j]![1] <= a - 200_000) j++; // runs end ≤ 200 ms before: done
    for (let k = j; k < runs.length && runs[k]![0] < b; k++) {
      const [ra, rb, tid] = runs[k]!;
      if (tid === relayTid) continue;
      const ov = Math.min(b, rb) - Math.max(a, ra);
      if (ov <= 0) continue;
      const cls = classOf(tid);
      duringWaitMs[cls] += ov / 1000;
      if (b - a > 1000) duringLongWaitMs[cls] += ov / 1000;
    }
  }
  const byClass = new Map<TraceClass, { us: number[]; preempted: number }>();
  for (let i = 0; i < waits.length; i++) {
    const [tid, runnable] = displaced[i]!;
    const c = classOf(tid);
    const e = byClass.get(c) ?? { us: [], preempted: 0 };
    e.us.push(waits[i]![1] - waits[i]![0]);
    if (runnable) e.preempted++;
    byClass.set(c, e);
  }
  const endedBy = Object.fromEntries(
    TRACE_CLASSES.map((c) => {
      const e = byClass.get(c) ?? { us: [], preempted: 0 };
      const sorted = Float64Array.from(e.us).sort();
      return [
        c,
        {
          n: sorted.length,
          p50Us: percentileSorted(sorted, 50),
          p99Us: percentileSorted(sorted, 99),
          preempted: e.preempted,
        },
      ];
    }),
  ) as SchedTraceSummary["endedBy"];
  const w = Float64Array.from(waits, ([a, b]) => b - a).sort();
  const r = Float64Array.from(relayRuns).sort();
  const sum = (x: Float64Array): number => x.reduce((s, v) => s + v, 0);
  const long = w.filter((x) => x > 1000);
  return {
    secs: (t1 - t0) / 1e6,
    waits: w.length,
    waitMs: sum(w) / 1000,
    waitP50Us: percentileSorted(w, 50),
    waitP99Us: percentileSorted(w, 99),
    waitMaxUs: w.length ? w[w.length - 1]! : Number.NaN,
    waitsOver1ms: long.length,
    waitShareOver1ms: sum(w) > 0 ? sum(long) / sum(w) : 0,
    runs: r.length,
    runMs: sum(r) / 1000,
    runP50Us: percentileSorted(r, 50),
    runP99Us: percentileSorted(r, 99),
    runMaxUs: r.length ? r[r.length - 1]! : Number.NaN,
    duringWaitMs,
    duringLongWaitMs,
    totalMs,
    endedBy,
  };
}

/** Records the scheduler's switches and wake-ups on every CPU for `secs` into `file`. */
export function recordSched(file: string, secs: number): Promise<void> {
  return run("perf", [
    "record",
    "-q",
    "-e",
    "sched:sched_switch",
    "-e",
    "sched:sched_waking",
    "-e",
    "sched:sched_process_fork",
    "-a",
    "-o",
    file,
    "--",
    "sleep",
    String(secs),
  ]).then(() => {});
}

/** The trace's events as text, for analyseSchedTrace. */
export function readSched(file: string): Promise<string> {
  return run("perf", ["script", "-i", file, "-F", "comm,pid,tid,cpu,time,event,trace"]);
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: ["ignore", "pipe", "pipe"] });
    const out: Buffer[] = [];
    let err = "";
    p.stdout.on("data", (d: Buffer) => out.push(d));
    p.stderr.on("data", (d: Buffer) => {
      err = (err + d.toString()).slice(-2000);
    });
    p.on("error", reject);
    p.on("close", (code) =>
      code === 0
        ? resolve(Buffer.concat(out).toString())
        : reject(new Error(`${cmd} exited ${code}: ${err}`)),
    );
  });
}

/** One line: the relay's waits and runs, and who ran while it waited (ms, summed over CPUs). */
export function fmtSchedTrace(s: SchedTraceSummary): string {
  const cls = (m: Record<TraceClass, number>): string =>
    TRACE_CLASSES.filter((c) => m[c] >= 0.5)
      .map((c) => `${c} ${m[c].toFixed(0)}`)
      .join(", ");
  return (
    `trace ${s.secs.toFixed(1)} s: relay waits ${s.waits} × p50 ${s.waitP50Us.toFixed(0)} p99 ${s.waitP99Us.toFixed(0)} max ${s.waitMaxUs.toFixed(0)} µs = ${s.waitMs.toFixed(0)} ms ` +
    `(${s.waitsOver1ms} over 1 ms: ${(s.waitShareOver1ms * 100).toFixed(0)}% of it); runs ${s.runs} × p50 ${s.runP50Us.toFixed(0)} p99 ${s.runP99Us.toFixed(0)} max ${s.runMaxUs.toFixed(0)} µs = ${s.runMs.toFixed(0)} ms; ` +
    `on the CPUs while it waited (ms): ${cls(s.duringWaitMs)}; in waits > 1 ms: ${cls(s.duringLongWaitMs)}; whole trace: ${cls(s.totalMs)}; ` +
    `waits by the task displaced (n, preempted, p50/p99 µs): ${TRACE_CLASSES.filter((c) => s.endedBy[c].n > 0)
      .map((c) => {
        const e = s.endedBy[c];
        return `${c} ${e.n} ${e.preempted} ${e.p50Us.toFixed(0)}/${e.p99Us.toFixed(0)}`;
      })
      .join(", ")}`
  );
}
