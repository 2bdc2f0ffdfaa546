// bench/lib/sched-trace.ts: the relay's waits, runs and who ran meanwhile, from `perf script` lines
// in the format perf prints for the sched tracepoints (include/trace/events/sched.h's TP_printk).
import { describe, expect, test } from "vitest";
import { analyseSchedTrace, parsePerfSched } from "../../bench/lib/sched-trace.js";

const RELAY = 100; // the proxy's pid and main thread
const ENC = 101; // its encoder thread (lowered)
const V8 = 102; // a V8 helper thread
const PM = 200; // the bench's postmaster
const BACKEND = 201; // forked during the trace: the export's backend
const OTHER = 300; // another process

const sw = (
  t: string,
  cpu: number,
  prev: [string, number, number],
  state: string,
  next: [string, number],
): string =>
  `${prev[0].padStart(16)} ${prev[1]}/${prev[2]} [00${cpu}] ${t}:       sched:sched_switch: prev_comm=${prev[0]} prev_pid=${prev[2]} prev_prio=120 prev_state=${state} ==> next_comm=${next[0]} next_pid=${next[1]} next_prio=120`;
const wake = (t: string, cpu: number, by: [string, number, number], woken: [string, number]): string =>
  `${by[0].padStart(16)} ${by[1]}/${by[2]} [00${cpu}] ${t}:       sched:sched_waking: comm=${woken[0]} pid=${woken[1]} prio=120 target_cpu=00${cpu}`;

// CPU 0: the encoder runs; the relay wakes at .000100 and runs from .000600 (displacing the
// encoder, still runnable) to .000700, then sleeps. CPU 1: the postmaster forks the backend, which
// runs .000000–.001000, then another process. The relay wakes again at .000800 and runs at
// .001000 on CPU 1 (the backend went to sleep), until .001050.
const TRACE = [
  sw("1.000000", 0, ["swapper/0", 0, 0], "R", ["node", ENC]),
  `        postgres ${PM}/${PM} [001] 1.000000: sched:sched_process_fork: comm=postgres pid=${PM} child_comm=postgres child_pid=${BACKEND}`,
  sw("1.000000", 1, ["swapper/1", 0, 0], "R", ["postgres", BACKEND]),
  wake("1.000100", 0, ["node", RELAY, ENC], ["node", RELAY]),
  sw("1.000600", 0, ["node", RELAY, ENC], "R", ["node", RELAY]),
  sw("1.000700", 0, ["node", RELAY, RELAY], "S", ["node", V8]),
  wake("1.000800", 0, ["node", RELAY, V8], ["node", RELAY]),
  sw("1.001000", 1, ["postgres", BACKEND, BACKEND], "S", ["node", RELAY]),
  sw("1.001050", 1, ["node", RELAY, RELAY], "S", ["other", OTHER]),
  sw("1.002000", 0, ["node", RELAY, V8], "S", ["swapper/0", 0]),
  sw("1.002000", 1, ["other", OTHER, OTHER], "S", ["swapper/1", 0]),
].join("\n");

describe("sched-trace", () => {
  test("parses the switch, waking and fork lines", () => {
    const { evs, tasks } = parsePerfSched(TRACE);
    expect(evs.filter((e) => e.kind === "switch")).toHaveLength(8);
    expect(evs.filter((e) => e.kind === "waking").map((e) => e.tid)).toEqual([RELAY, RELAY]);
    expect(evs.filter((e) => e.kind === "fork").map((e) => [e.prevTid, e.tid])).toEqual([[PM, BACKEND]]);
    expect(tasks.get(ENC)).toEqual([RELAY, "node"]);
  });

  test("the relay's waits and runs, what ran meanwhile and what it displaced", () => {
    const s = analyseSchedTrace(TRACE, RELAY, RELAY, new Set([ENC]), new Set([PM]));
    expect(s.waits).toBe(2);
    expect(s.waitMs).toBeCloseTo(0.5 + 0.2, 6);
    expect(s.waitMaxUs).toBe(500);
    expect(s.runs).toBe(2);
    expect(s.runMs).toBeCloseTo(0.1 + 0.05, 6);
    // Wait 1 (.0001–.0006): encoder on CPU 0, the backend on CPU 1; wait 2 (.0008–.0010): the V8
    // thread on CPU 0, the backend on CPU 1.
    expect(s.duringWaitMs.encoder).toBeCloseTo(0.5, 6);
    expect(s.duringWaitMs["pg-export"]).toBeCloseTo(0.7, 6);
    expect(s.duringWaitMs["proxy-other"]).toBeCloseTo(0.2, 6);
    expect(s.duringWaitMs.other).toBe(0);
    expect(s.totalMs.other).toBeCloseTo(0.95, 6);
    expect(s.endedBy.encoder).toMatchObject({ n: 1, preempted: 1, p50Us: 500 });
    expect(s.endedBy["pg-export"]).toMatchObject({ n: 1, preempted: 0, p50Us: 200 });
  });
});
