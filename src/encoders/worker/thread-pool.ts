// Where an export's encoder thread comes from and where it goes after: started (in this process,
// or in the encoder host process), or taken from the one kept idle since the last export; given
// back at the end of an export to be kept for the next one, or ended.
import { Worker } from "node:worker_threads";
import { type EncoderWorker, hostedWorker, retireEncoderHost } from "./encoder-host.js";
import type { EncoderWorkerData } from "./protocol.js";
import { profilerArgs, startLowered, workerEntry } from "./worker-entry.js";

/** Where encoder threads run: in this process, or in its encoder host process (exports.encoderHost). */
export type EncoderHostKind = "thread" | "process";

/** A started encoder thread: serving an export, or idle between two. */
export interface PooledThread {
  worker: EncoderWorker;
  host: EncoderHostKind;
  /** The niceness it was started with (it cannot be lowered again without privileges). */
  nice: number;
  /** Whether it was asked to run in SCHED_IDLE (it cannot leave that class without privileges). */
  idle: boolean;
  /** parquet-wasm has been sent to it (once per thread). */
  hasWasm: boolean;
}

/**
 * The idle thread kept for the next export. A thread that has encoded an export is kept rather
 * than ended: a fresh one costs its start-up (~0.1 CPU-s, 170–270 ms here) and, more, its first
 * rows run cold code — the first 100k CSV rows took 200–250 ms in a fresh isolate and 60–90 ms in
 * a warm one. Idle, it is unref'd (it never keeps the process alive) and does nothing.
 */
let spare: PooledThread | null = null;

/**
 * More idle threads, kept after exports ran at once (at most MAX_IDLE_THREADS idle in all), each
 * ended once idle for SPARE_IDLE_MS: the next burst of exports takes them warm instead of starting
 * new threads at the same moment. Four Parquet exports of 100k rows starting at once with one
 * thread kept: 3.3 s and ~650 ms of CPU at the relay's niceness (V8's platform threads optimizing
 * three new isolates' code), ~1.5 CPU-s in the encoders; with four kept: 0.9 s, ~170 ms and ~0.3
 * CPU-s (bench/start-cpu.ts; docs/isolation.md, "Warm threads for a burst of exports"). What they
 * hold meanwhile (~25 MB each: an isolate and its parquet-wasm memory) is what the burst held.
 * Most recently used last.
 */
const extras: Array<{ p: PooledThread; timer: ReturnType<typeof setTimeout> }> = [];

/** Idle threads kept at most: the spare and the extras (the default exports.maxConcurrentExports). */
export const MAX_IDLE_THREADS = 4;

/** How long an extra idle thread is kept (the spare is kept for as long as a proxy runs). */
export const SPARE_IDLE_MS = 60_000;

/** Tests only: the extras' idle time (SPARE_IDLE_MS unless set). */
export const threadPoolTestHooks: { idleMs?: number } = {};

/** Proxies running and not shutting down: a spare is kept only while there is one. */
let spareKeepers = 0;

/**
 * Removes the listeners of whoever used the thread last. Not removeAllListeners(): Worker's own
 * 'newListener'/'removeListener' hooks, which ref its message port, must stay.
 */
function unlisten(w: EncoderWorker): void {
  for (const event of ["message", "error", "exit"]) w.removeAllListeners(event);
}

function endIdle(p: PooledThread): void {
  unlisten(p.worker);
  void p.worker.terminate();
}

/** Takes the most recently used extra out of the pool (its timer stopped), if there is one. */
function takeExtra(): PooledThread | null {
  const e = extras.pop();
  if (e === undefined) return null;
  clearTimeout(e.timer);
  return e.p;
}

function endExtras(): void {
  for (let p = takeExtra(); p !== null; p = takeExtra()) endIdle(p);
}

/**
 * A proxy keeps an idle encoder thread for its next export from now until the returned function
 * is called (at the start of its shutdown, which also ends the idle threads). Without a keeper
 * (tests of the thread alone, the cleanup command) every thread ends with its export.
 */
export function keepSpareEncoderThread(): () => void {
  spareKeepers++;
  let released = false;
  return () => {
    if (released) return;
    released = true;
    spareKeepers--;
    if (spareKeepers > 0) return;
    if (spare !== null) {
      endIdle(spare);
      spare = null;
    }
    endExtras();
    retireEncoderHost();
  };
}

/** Tests only: the idle thread's id, if there is one. */
export function spareEncoderThreadId(): number | null {
  return spare?.worker.threadId ?? null;
}

/** Tests only: the ids of every idle thread kept (the spare first). */
export function idleEncoderThreadIds(): number[] {
  return [...(spare === null ? [] : [spare]), ...extras.map((e) => e.p)].map((p) => p.worker.threadId);
}

function takeSpare(nice: number, idle: boolean, host: EncoderHostKind): PooledThread | null {
  // The extras first: the spare stays, theirs is the time that runs out.
  let p = takeExtra();
  if (p === null) {
    p = spare;
    spare = null;
  }
  if (p === null) return null;
  unlisten(p.worker);
  if (p.nice === nice && p.idle === idle && p.host === host) return p;
  // Started before the settings changed (SIGHUP): so were the other idle ones.
  endIdle(p);
  endExtras();
  return null;
}

function startThread(nice: number, idle: boolean, host: EncoderHostKind): PooledThread {
  if (host === "process") return { worker: hostedWorker(nice, idle), host, nice, idle, hasWasm: false };
  const data: EncoderWorkerData = { nice, idle };
  // None of the process's node options but the profiler's: inherited ones break the thread —
  // `--input-type` (`node --input-type=module -e …`) is refused for a file, and `--import`
  // modules (instrumentation, a test's hook) would run again in every export's thread.
  // Lowered from here as it is created: Node's start-up of the thread runs lowered too.
  // (The entry first: from the sources it is bundled once, by esbuild, in a thread of its own.)
  const entry = workerEntry();
  const worker = startLowered(nice, () => new Worker(entry, { workerData: data, execArgv: profilerArgs() }));
  return { worker, host, nice, idle, hasWasm: false };
}

/** A thread for an export with these settings: the kept one if it has them, else a new one. */
export function takeThread(nice: number, idle: boolean, host: EncoderHostKind): PooledThread {
  return takeSpare(nice, idle, host) ?? startThread(nice, idle, host);
}

/**
 * Keeps `p` for the next export if a proxy wants one: as the spare, or as an extra ended after
 * SPARE_IDLE_MS idle while fewer than MAX_IDLE_THREADS are idle; else ends it.
 */
export function returnThread(p: PooledThread): void {
  unlisten(p.worker);
  if (spareKeepers === 0 || (spare !== null && extras.length >= MAX_IDLE_THREADS - 1)) {
    void p.worker.terminate();
    return;
  }
  p.worker.unref();
  if (spare === null) {
    const gone = (): void => {
      if (spare === p) spare = null;
    };
    p.worker.on("exit", gone);
    p.worker.on("error", gone);
    spare = p;
    return;
  }
  const timer = setTimeout(() => {
    const i = extras.findIndex((e) => e.p === p);
    if (i < 0) return;
    extras.splice(i, 1);
    endIdle(p);
  }, threadPoolTestHooks.idleMs ?? SPARE_IDLE_MS);
  timer.unref();
  const gone = (): void => {
    const i = extras.findIndex((e) => e.p === p);
    if (i < 0) return;
    clearTimeout(extras[i]!.timer);
    extras.splice(i, 1);
  };
  p.worker.on("exit", gone);
  p.worker.on("error", gone);
  extras.push({ p, timer });
}
