// What /proc says about the processes a benchmark measures: CPU seconds (whole process or its main
// thread), resident memory, and finding a server's pid by its command line.
import { execFileSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";

const TICK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

/** CPU seconds (user + system) of a process: all its threads, including exited ones; with
 * `withChildren` also its reaped children (PostgreSQL's exited backends, psql runs); with `thread`
 * only its main thread (/proc/<pid>/task/<pid>: for Node, the event loop). NaN once it is gone. */
export function cpuSeconds(pid: number, withChildren: boolean, thread = false): number {
  try {
    const stat = readFileSync(thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, "utf8");
    // Fields after "(comm) ": state is field 3; utime 14, stime 15, cutime 16, cstime 17.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    let ticks = Number(f[11]) + Number(f[12]);
    if (withChildren) ticks += Number(f[13]) + Number(f[14]);
    return ticks / TICK;
  } catch {
    return Number.NaN;
  }
}

/**
 * The live child processes of a process (from /proc/<pid>/task/<tid>/children: Linux 3.5+ with
 * CONFIG_PROC_CHILDREN; none where it is missing or the process has ended).
 */
export function childPids(pid: number): number[] {
  const out: number[] = [];
  for (const tid of threadIds(pid)) {
    try {
      for (const c of readFileSync(`/proc/${pid}/task/${tid}/children`, "utf8").split(" "))
        if (c.trim() !== "") out.push(Number(c));
    } catch {
      // the thread ended
    }
  }
  return out;
}

/** A process and its live descendants: a proxy with its encoder host (exports.encoderHost). */
export function processTree(pid: number): number[] {
  const out = [pid];
  for (let i = 0; i < out.length; i++) out.push(...childPids(out[i]!));
  return out;
}

/**
 * CPU seconds of a process and of everything it started: its live descendants read directly (a
 * proxy's encoder host runs the encoders in a process of its own with exports.encoderHost
 * "process": its CPU is the proxy's), its reaped ones through its cutime/cstime. With `thread`,
 * its main thread alone (the relay), as cpuSeconds.
 */
export function treeCpuSeconds(pid: number, thread = false): number {
  if (thread) return cpuSeconds(pid, false, true);
  const [self, ...descendants] = processTree(pid);
  return descendants.reduce((a, d) => a + (cpuSeconds(d, false) || 0), cpuSeconds(self!, true));
}

/** The live threads' ids of a process (none once it has ended). */
function threadIds(pid: number): string[] {
  try {
    return readdirSync(`/proc/${pid}/task`);
  } catch {
    return [];
  }
}

/** CPU seconds per live thread of a process, by thread name (comm), for a one-line breakdown. */
export function threadCpu(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of threadIds(pid)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const name = stat.slice(stat.indexOf("(") + 1, stat.lastIndexOf(")"));
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      out.set(name, (out.get(name) ?? 0) + (Number(f[11]) + Number(f[12])) / TICK);
    } catch {
      // the thread exited
    }
  }
  return out;
}

export function findPids(match: (cmdline: string) => boolean): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (match(readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " "))) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

export const findPid = (match: (cmdline: string) => boolean): number => findPids(match)[0] ?? -1;

/**
 * procStatusKb summed over a process and its live descendants (a proxy and its encoder host). For
 * VmHWM the sum of each one's peak: an upper bound of their peak together.
 */
export function treeStatusKb(pid: number, field: "VmHWM" | "VmRSS"): number {
  return processTree(pid).reduce((a, p) => {
    try {
      return a + procStatusKb(p, field);
    } catch {
      return a; // ended meanwhile
    }
  }, 0);
}

/** VmHWM (peak resident set, what `/usr/bin/time -v` calls maximum resident set size) or VmRSS, kB. */
export function procStatusKb(pid: number, field: "VmHWM" | "VmRSS"): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

/** The postmaster's pid of a throwaway PostgreSQL (test/support/postgres.ts's `dir`). */
export const postmasterPid = (pgDir: string): number =>
  Number(readFileSync(`${pgDir}/data/postmaster.pid`, "utf8").split("\n")[0]);

/** One thread's scheduler figures: CPU time and time spent runnable but waiting for a CPU
 * (/proc/<pid>/task/<tid>/schedstat: run time ns, run-queue wait ns, time slices), its niceness
 * and scheduling policy (0 SCHED_OTHER, 3 SCHED_BATCH, 5 SCHED_IDLE) from its stat. */
export interface ThreadSched {
  cpuNs: number;
  waitNs: number;
  slices: number;
  nice: number;
  policy: number;
}

/** Every live thread of a process by tid; with `descendants`, also those of its live descendants
 * (a proxy's encoder host: tids are unique across processes). */
export function threadSched(pid: number, descendants = false): Map<number, ThreadSched> {
  const out = new Map<number, ThreadSched>();
  for (const p of descendants ? processTree(pid) : [pid]) addThreadSched(p, out);
  return out;
}

function addThreadSched(pid: number, out: Map<number, ThreadSched>): void {
  for (const tid of threadIds(pid)) {
    try {
      const [cpu, wait, slices] = readFileSync(`/proc/${pid}/task/${tid}/schedstat`, "utf8").split(" ");
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      // After "(comm) " index i is field i + 3 of proc(5): nice is field 19, policy field 41.
      out.set(Number(tid), {
        cpuNs: Number(cpu),
        waitNs: Number(wait),
        slices: Number(slices),
        nice: Number(f[16]),
        policy: Number(f[38]),
      });
    } catch {
      // the thread exited
    }
  }
}
