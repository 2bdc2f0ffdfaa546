// Loaded into a proxy under measurement with `node --import <this file>` (bench/isolation.ts
// --probe): the relay's event-loop delay (perf_hooks.monitorEventLoopDelay, 1 ms resolution) and
// its garbage collections, per window. On SIGUSR2 it writes what it saw since the previous SIGUSR2
// to $C2S_LOOP_PROBE_FILE as one JSON line (with a sequence number the bench waits for) and starts
// over. Encoder threads start without the process's node options, so this runs on the main
// thread only. It also lists the long stalls (a 10 ms timer late by more than STALL_MS, and GC
// pauses longer than that) with their wall-clock time, so a bench can place them in its window
// (an export's start, its end) — a rate-limited p99 is made by the few longest stalls.
import { readFileSync, renameSync, writeFileSync } from "node:fs";
import { monitorEventLoopDelay, PerformanceObserver } from "node:perf_hooks";
import { GCProfiler } from "node:v8";

const file = process.env.C2S_LOOP_PROBE_FILE;
if (file) {
  const h = monitorEventLoopDelay({ resolution: 1 });
  h.enable();
  let gc = { n: 0, ms: 0, maxMs: 0, byKind: {} };
  const STALL_MS = Number(process.env.C2S_LOOP_PROBE_STALL_MS) || 50;
  /**
   * [wall-clock ms at the stall's end, its length ms, what], since the last report; what: "gc<kind>",
   * or for a late timer "loop run R wait W": of the stall, R ms this thread ran (busy: JS, GC,
   * I/O callbacks) and W ms it was runnable but waiting for a CPU (proc(5) schedstat of this
   * thread; the rest it slept).
   */
  let stalls = [];
  const TICK_MS = 10;
  const schedstat = () => {
    try {
      const [run, wait] = readFileSync("/proc/thread-self/schedstat", "utf8").split(" ");
      return [Number(run) / 1e6, Number(wait) / 1e6];
    } catch {
      return [Number.NaN, Number.NaN];
    }
  };
  /** This thread's page faults so far (proc(5) stat: minflt, majflt). */
  const faults = () => {
    try {
      const s = readFileSync("/proc/thread-self/stat", "utf8");
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ");
      return Number(f[7]) + Number(f[9]);
    } catch {
      return Number.NaN;
    }
  };
  /**
   * Per SLICE_MS of the first SLICES slices since the last report (an export window's start: the
   * bench asks at the exports' start): [ran ms, waited for a CPU ms, page faults, longest late
   * timer ms] of this thread, load-proof counters of what the relay itself did then.
   */
  const SLICE_MS = 100;
  const SLICES = 30;
  let slices = [];
  let sliceFrom = performance.now();
  let sliceAt = { sched: schedstat(), faults: faults(), late: 0 };
  let last = performance.now();
  let lastSched = schedstat();
  let lastFaults = faults();
  setInterval(() => {
    const now = performance.now();
    const late = now - last - TICK_MS;
    const sched = schedstat();
    const flt = faults();
    if (late > STALL_MS && stalls.length < 200)
      stalls.push([
        Date.now(),
        Math.round(late),
        `loop run ${Math.round(sched[0] - lastSched[0])} wait ${Math.round(sched[1] - lastSched[1])} faults ${flt - lastFaults}`,
      ]);
    sliceAt.late = Math.max(sliceAt.late, late);
    if (now - sliceFrom >= SLICE_MS && slices.length < SLICES) {
      slices.push([
        Math.round(sched[0] - sliceAt.sched[0]),
        Math.round(sched[1] - sliceAt.sched[1]),
        flt - sliceAt.faults,
        Math.round(sliceAt.late),
      ]);
      sliceFrom = now;
      sliceAt = { sched, faults: flt, late: 0 };
    }
    last = now;
    lastSched = sched;
    lastFaults = flt;
  }, TICK_MS).unref();
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      gc.n++;
      // detail.kind: 1 minor (scavenge), 2 major (mark-compact), 4 incremental marking, 8 weak callbacks
      const k = e.detail?.kind ?? 0;
      gc.byKind[k] = (gc.byKind[k] ?? 0) + e.duration;
      gc.ms += e.duration;
      gc.maxMs = Math.max(gc.maxMs, e.duration);
      if (e.duration > STALL_MS && stalls.length < 200)
        stalls.push([
          Math.round(performance.timeOrigin + e.startTime + e.duration),
          Math.round(e.duration),
          `gc${k}`,
        ]);
    }
  }).observe({ entryTypes: ["gc"] });
  /**
   * The window's longest collections with what they found (v8.GCProfiler): [ms, type, new space
   * used before → after MB (after: the survivors), old space growth MB (promoted)], the longest 3.
   */
  let profiler = new GCProfiler();
  profiler.start();
  const longestGcs = () => {
    const mb = (x) => Math.round((x / 2 ** 20) * 10) / 10;
    const space = (s, name) => s.heapSpaceStatistics.find((x) => x.spaceName === name)?.spaceUsedSize ?? 0;
    const stats = profiler.stop()?.statistics ?? [];
    profiler = new GCProfiler();
    profiler.start();
    return stats
      .sort((a, b) => b.cost - a.cost)
      .slice(0, 3)
      .map((g) => [
        Math.round(g.cost / 100) / 10,
        g.gcType,
        `${mb(space(g.beforeGC, "new_space"))}->${mb(space(g.afterGC, "new_space"))}`,
        mb(space(g.afterGC, "old_space") - space(g.beforeGC, "old_space")),
      ]);
  };
  let seq = 0;
  process.on("SIGUSR2", () => {
    const ms = (ns) => ns / 1e6;
    // Whole or not at all: the bench reads the file as soon as it changes.
    writeFileSync(
      `${file}.tmp`,
      `${JSON.stringify({
        seq: ++seq,
        p50: ms(h.percentile(50)),
        p99: ms(h.percentile(99)),
        max: ms(h.max),
        mean: ms(h.mean),
        gcN: gc.n,
        gcMs: gc.ms,
        gcMaxMs: gc.maxMs,
        gcByKind: gc.byKind,
        heapMB: process.memoryUsage().heapUsed / 2 ** 20,
        externalMB: process.memoryUsage().external / 2 ** 20,
        stalls,
        slices,
        longestGcs: longestGcs(),
        // When this report was asked, on the clock of a `node --cpu-prof` profile (µs).
        monoUs: Number(process.hrtime.bigint() / 1000n),
      })}\n`,
    );
    renameSync(`${file}.tmp`, file);
    h.reset();
    gc = { n: 0, ms: 0, maxMs: 0, byKind: {} };
    stalls = [];
    slices = [];
    sliceFrom = performance.now();
    sliceAt = { sched: schedstat(), faults: faults(), late: 0 };
  });
}
