// The benchmarks' own arithmetic (bench/lib): a wrong percentile or a misread pgbench log would
// report a wrong isolation ratio without any visible failure.
import { describe, expect, it } from "vitest";
import { parsePgbenchLog, windowStats } from "../../bench/lib/pgbench.js";
import { median, percentileSorted } from "../../bench/lib/stats.js";

describe("bench statistics", () => {
  it("median of odd and even counts, unsorted input", () => {
    expect(median([3, 1, 2])).toBe(2);
    expect(median([4, 1, 3, 2])).toBe(2.5);
    expect(median([])).toBeNaN();
  });

  it("nearest-rank percentiles", () => {
    const xs = Float64Array.from({ length: 1000 }, (_, i) => i + 1); // 1..1000
    expect(percentileSorted(xs, 50)).toBe(500);
    expect(percentileSorted(xs, 99)).toBe(990);
    expect(percentileSorted(xs, 100)).toBe(1000);
    expect(percentileSorted([7], 99)).toBe(7);
    expect(percentileSorted([1, 2], 50)).toBe(1);
    expect(percentileSorted([], 99)).toBeNaN();
    expect(() => percentileSorted(xs, 0)).toThrow(RangeError);
  });

  it("reads pgbench's per-transaction log and keeps a window's transactions", () => {
    // client_id transaction_no time(µs) script_no time_epoch time_us (PostgreSQL 15's pgbench -l)
    const log = [
      "0 1 250 0 1700000000 100000",
      "1 1 4000 0 1700000000 900000",
      "0 2 300 0 1700000001 500000",
      "",
    ];
    const rows = parsePgbenchLog(log.join("\n"));
    expect(rows).toEqual([
      { endUs: 1700000000100000, latencyUs: 250, lagUs: 0 },
      { endUs: 1700000000900000, latencyUs: 4000, lagUs: 0 },
      { endUs: 1700000001500000, latencyUs: 300, lagUs: 0 },
    ]);
    const txns = {
      endUs: Float64Array.from(rows, (r) => r.endUs),
      latencyUs: Float64Array.from(rows, (r) => r.latencyUs),
      lagUs: Float64Array.from(rows, (r) => r.lagUs),
      spawnedMs: 0,
      exitedMs: 0,
    };
    const w = windowStats(txns, 1700000000000000, 1700000001000000);
    expect(w.n).toBe(2);
    expect(w.tps).toBe(2);
    expect(w.p50Ms).toBe(0.25);
    expect(w.p99Ms).toBe(4);
    expect(() => parsePgbenchLog("0 1 x")).toThrow(/not a pgbench log line/);
  });

  it("under --rate, reads the schedule lag (pgbench's latency already includes it)", () => {
    // client_id transaction_no time script_no time_epoch time_us schedule_lag (pgbench -R -l)
    const rows = parsePgbenchLog("0 1 900 0 1700000000 100000 600\n1 1 200 0 1700000000 200000 5\n", true);
    expect(rows).toEqual([
      { endUs: 1700000000100000, latencyUs: 900, lagUs: 600 },
      { endUs: 1700000000200000, latencyUs: 200, lagUs: 5 },
    ]);
    const w = windowStats(
      {
        endUs: Float64Array.from(rows, (r) => r.endUs),
        latencyUs: Float64Array.from(rows, (r) => r.latencyUs),
        lagUs: Float64Array.from(rows, (r) => r.lagUs),
        spawnedMs: 0,
        exitedMs: 0,
      },
      1700000000000000,
      1700000001000000,
    );
    expect(w.p99Ms).toBe(0.9);
    expect(w.lagP99Ms).toBe(0.6);
    expect(() => parsePgbenchLog("0 1 900 0 1700000000 100000", true)).toThrow(/not a pgbench log line/);
  });
});
