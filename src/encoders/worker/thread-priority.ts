// An encoder thread's priority, applied by the thread to itself (docs/isolation.md, "Priority").
// Its own module, with nothing but Node's built-ins under it, so that the thread's entry
// (./encoder-worker-start.ts) can apply it before the encoder modules load.
import { execFileSync } from "node:child_process";
import { readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import type { EncoderWorkerData } from "./protocol.js";

/** What the thread runs at: its niceness (NaN where the platform has none per thread) and class. */
export interface ThreadPriority {
  nice: number;
  idle: boolean;
}

let applied: ThreadPriority | null = null;
let startedNice = Number.NaN;

/** Lowers the calling thread as `data` asks, once; later calls return what the first applied. */
export function applyThreadPriority(data: EncoderWorkerData): ThreadPriority {
  if (applied === null) startedNice = currentNice();
  applied ??= { nice: lowerPriority(data.nice), idle: data.idle === true && idleClass() };
  return applied;
}

/**
 * The niceness the thread had when it first applied its priority (its entry's first line: after
 * Node's start-up of the thread). Lowered already when its creator lowered it (./worker-entry.ts,
 * startLowered); the relay's otherwise. Tests.
 */
export function niceAtStart(): number {
  return startedNice;
}

/** The niceness of the calling thread now (NaN where the platform has none per thread). */
export function currentNice(): number {
  try {
    return getPriority();
  } catch {
    return Number.NaN;
  }
}

/**
 * Lowers one thread (`tid`; 0: the calling one) to `nice`. Linux applies setpriority(PRIO_PROCESS,
 * tid) to that thread only, and a thread of ours may lower another (same user). Never raises: that
 * needs privileges, so a thread already nicer than `nice` keeps its own. False where the thread
 * is gone or the platform has no per-thread priorities (it then runs as it is).
 */
export function lowerThread(nice: number, tid = 0): boolean {
  try {
    if (nice > getPriority(tid)) setPriority(tid, nice);
    return true;
  } catch {
    return false;
  }
}

/** Lowers this thread (the Parquet writer runs on it too); its niceness after, NaN if unknown. */
function lowerPriority(nice: number): number {
  return lowerThread(nice) ? currentNice() : Number.NaN;
}

/**
 * Puts this thread in the SCHED_IDLE class: it runs only when no ordinary thread wants the CPU,
 * and an ordinary thread that wakes (the relay, with a client's query) takes the CPU from it at
 * once, where niceness only weighs the shares. Linux lets an unprivileged thread move itself to
 * SCHED_IDLE (sched(7)); Node has no call for it, so util-linux's `chrt` does it for this thread's
 * id (the Parquet writer runs on this thread too). Without /proc, chrt or
 * the permission the thread keeps its niceness alone.
 */
function idleClass(): boolean {
  try {
    const tid = readlinkSync("/proc/thread-self").split("/").pop()!;
    execFileSync("chrt", ["--idle", "--pid", "0", tid], { stdio: "ignore", timeout: 10_000 });
    return true;
  } catch {
    return false;
  }
}
