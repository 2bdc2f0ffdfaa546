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
 * The idle thread kept for the next export, at most one. A thread that has encoded an export is
 * kept rather than ended: a fresh one costs its start-up (~0.1 CPU-s, 170–270 ms here) and, more,
 * its first rows run cold code — the first 100k CSV rows took 200–250 ms in a fresh isolate and
 * 60–90 ms in a warm one. Idle, it is unref'd (it never keeps the process alive) and does nothing.
 */
let spare: PooledThread | null = null;
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

/**
 * A proxy keeps an idle encoder thread for its next export from now until the returned function
 * is called (at the start of its shutdown, which also ends the idle thread). Without a keeper
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
    retireEncoderHost();
  };
}

/** Tests only: the idle thread's id, if there is one. */
export function spareEncoderThreadId(): number | null {
  return spare?.worker.threadId ?? null;
}

function takeSpare(nice: number, idle: boolean, host: EncoderHostKind): PooledThread | null {
  const p = spare;
  spare = null;
  if (p === null) return null;
  unlisten(p.worker);
  if (p.nice === nice && p.idle === idle && p.host === host) return p;
  endIdle(p); // started before the settings changed (SIGHUP)
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

/** Keeps `p` for the next export if a proxy wants one and none is kept yet; else ends it. */
export function returnThread(p: PooledThread): void {
  unlisten(p.worker);
  if (spareKeepers === 0 || spare !== null) {
    void p.worker.terminate();
    return;
  }
  const gone = (): void => {
    if (spare === p) spare = null;
  };
  p.worker.on("exit", gone);
  p.worker.on("error", gone);
  p.worker.unref();
  spare = p;
}
