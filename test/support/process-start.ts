// Waiting for a child process (the proxy's CLI, moto) to be up. A wall-clock deadline measures
// the machine's load, not the start: on the suite's shared 2 cores at load 18 a process gets about
// a ninth of a core, so the CLI's start (~2.3 CPU-s through tsx, idle) takes 20–30 s of wall time
// and a fixed 30 s deadline failed it. The limits here are the process's own: the CPU time it
// spent without being up (a start that spins), and how long it went without using any CPU (a
// start that waits for something that never comes). Neither grows with the load.
import type { ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";

/** Linux's USER_HZ: the unit of /proc/<pid>/stat's utime and stime (100 on every Linux ABI). */
const CLOCK_TICKS = 100;

/** CPU-seconds (user + system, all threads) the live process `pid` has used; undefined without /proc. */
export function cpuSeconds(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm) ": state is the 3rd field of the line, utime the 14th, stime the 15th.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(f[11]) + Number(f[12])) / CLOCK_TICKS;
  } catch {
    return undefined;
  }
}

export interface StartLimits {
  /** What is starting, for the error. */
  what: string;
  /** CPU-seconds the start may use: several times what it takes on an idle machine. */
  cpuSeconds: number;
  /** How long it may use no CPU at all while not up (default 30 s). */
  stuckMs?: number;
  /** Appended to an error: what the process said (its output so far). */
  output?: () => string;
}

/**
 * Polls `ready` until it is true. Throws (without killing the process; the caller does) once the
 * process has exited, has used `cpuSeconds` without being up, or has used no CPU for `stuckMs`.
 * Without /proc (not Linux) the CPU never seems to move, and the last rule is a 30 s deadline.
 */
export async function waitForStart(
  proc: ChildProcess,
  ready: () => boolean | Promise<boolean>,
  limits: StartLimits,
): Promise<void> {
  const stuckMs = limits.stuckMs ?? 30_000;
  const fail = (why: string): Error =>
    new Error(`${limits.what} ${why}${limits.output ? `: ${limits.output()}` : ""}`);
  let cpu = 0;
  let moved = Date.now();
  for (;;) {
    if (await ready()) return;
    if (proc.exitCode !== null || proc.signalCode !== null) {
      throw fail(`exited (${proc.exitCode ?? proc.signalCode}) before it was up`);
    }
    const used = proc.pid === undefined ? undefined : cpuSeconds(proc.pid);
    if (used !== undefined && used > cpu) {
      cpu = used;
      moved = Date.now();
    }
    if (cpu > limits.cpuSeconds) throw fail(`used ${cpu.toFixed(1)} CPU-s without being up`);
    if (Date.now() - moved > stuckMs) {
      throw fail(`used no CPU for ${stuckMs / 1000} s without being up (${cpu.toFixed(1)} CPU-s in all)`);
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}
