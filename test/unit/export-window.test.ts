// The isolation bench's export windows (bench/lib/export-window.ts): a window that stops its
// exports early or late, or a summary that mixes up windows, would print a plausible wrong ratio.
import { describe, expect, it } from "vitest";
import {
  backToBack,
  fmtSpread,
  latenciesIn,
  ratioSummary,
  rowsFromProgress,
  slowTransactions,
  spread,
  startSplit,
} from "../../bench/lib/export-window.js";
import { progressMessage } from "../../src/copy/progress-notice.js";

/** Latencies 1..n µs scaled by `k`, ascending: p99 of n = 1000 is 990·k. */
const lat = (n: number, k = 1): Float64Array => Float64Array.from({ length: n }, (_, i) => (i + 1) * k);

describe("back-to-back exports", () => {
  it("keeps each stream busy until the window's end and starts nothing at or after it", async () => {
    let clock = 0;
    // Stream 0's exports take 3 ms, stream 1's 4 ms (a fake clock: no timing in the test).
    const runs = await backToBack({
      streams: 2,
      untilMs: 10,
      now: () => clock,
      runOne: async (s) => {
        const ends = clock + (s === 0 ? 3 : 4);
        // Let the other stream run up to the same moment before this one's end is seen.
        await Promise.resolve();
        clock = Math.max(clock, ends);
      },
    });
    const byStream = (s: number): Array<[number, number]> =>
      runs.filter((r) => r.stream === s).map((r) => [r.startMs, r.endMs]);
    // Every start is before 10; each next export starts when the previous one of its stream ended.
    for (const s of [0, 1]) {
      const r = byStream(s);
      expect(r.length).toBeGreaterThan(1);
      for (const [start] of r) expect(start).toBeLessThan(10);
      for (let i = 1; i < r.length; i++) expect(r[i]![0]).toBe(r[i - 1]![1]);
      // The last one started before 10 and ran past it: no gap in the load up to the end.
      expect(r[r.length - 1]![1]).toBeGreaterThanOrEqual(10);
    }
  });

  it("a window whose end has come starts no export", async () => {
    let calls = 0;
    const runs = await backToBack({
      streams: 4,
      untilMs: 5,
      now: () => 5,
      runOne: async () => {
        // The clock stands still: a loop that ignored the end would never stop.
        if (++calls > 3) throw new Error("started exports after the window's end");
      },
    });
    expect(calls).toBe(0);
    expect(runs).toEqual([]);
  });

  it("an export that outlasts the window is the stream's only one", async () => {
    let clock = 0;
    const runs = await backToBack({
      streams: 1,
      untilMs: 10,
      now: () => clock,
      runOne: async () => {
        clock += 25;
      },
    });
    expect(runs).toEqual([{ stream: 0, startMs: 0, endMs: 25 }]);
  });
});

describe("window summaries", () => {
  it("median and range, NaN left out", () => {
    expect(spread([3, 1, 2])).toEqual({ median: 2, min: 1, max: 3 });
    expect(spread([4, Number.NaN, 1])).toEqual({ median: 2.5, min: 1, max: 4 });
    expect(spread([]).median).toBeNaN();
    expect(fmtSpread({ median: 1.5, min: 0.5, max: 3 })).toBe("1.50 (0.50–3.00)");
    expect(fmtSpread({ median: 2, min: 2, max: 2 }, 1)).toBe("2.0");
    expect(fmtSpread(spread([]))).toBe("–");
  });

  it("per-window ratios, their median and range, the pooled ratio, transactions behind each p99", () => {
    const s = ratioSummary([
      { path: lat(1000, 2), direct: lat(1000) }, // 1980 / 990 = 2
      { path: lat(1000, 3), direct: lat(2000) }, // 2970 / 1980 = 1.5
      { path: lat(1000, 4), direct: lat(500, 4) }, // 3960 / 1980 = 2
    ]);
    expect(s.perWindow).toEqual([2, 1.5, 2]);
    expect(s.ratio).toEqual({ median: 2, min: 1.5, max: 2 });
    expect(s.txns).toEqual({ median: 1000, min: 500, max: 1000 });
    // Pooled: 3000 path latencies, their p99 the 2970th smallest; 3500 direct, the 3465th.
    const pathAll = Float64Array.from([...lat(1000, 2), ...lat(1000, 3), ...lat(1000, 4)]).sort();
    const directAll = Float64Array.from([...lat(1000), ...lat(2000), ...lat(500, 4)]).sort();
    expect(s.pooled).toBe(pathAll[2969]! / directAll[3464]!);
    expect(s.pooled).not.toBe(s.ratio.median);
  });

  it("keeps the transactions that ended inside the window, ascending", () => {
    const t = {
      endUs: Float64Array.from([100, 200, 300, 400, 500]),
      latencyUs: Float64Array.from([9, 50, 7, 8, 1]),
    };
    expect([...latenciesIn(t, 200, 500)]).toEqual([7, 8, 50]);
  });
});

describe("rows of a stopped export", () => {
  // The proxy's own words (src/copy/progress-notice.ts), as psql prints a NOTICE on stderr.
  const notice = (p: Parameters<typeof progressMessage>[0]): string => `NOTICE:  ${progressMessage(p)}\n`;
  const base = { bytes: 5_000_000, files: 2, filesDone: 1, readingMs: 2000 };
  it("takes the last progress NOTICE's rows", () => {
    const stderr =
      notice({ ...base, phase: "preparing", rows: 0 }) +
      notice({ ...base, phase: "reading", rows: 1 }) +
      notice({ ...base, phase: "reading", rows: 1_234_567 }) +
      "ERROR:  canceling statement due to user request\n";
    expect(rowsFromProgress(stderr, 2_000_000)).toBe(1_234_567);
  });
  it("after the read: all rows, whether uploading or committing", () => {
    const reading = notice({ ...base, phase: "reading", rows: 900_000 });
    expect(
      rowsFromProgress(reading + notice({ ...base, phase: "uploading", rows: 1_999_999 }), 2_000_000),
    ).toBe(1_999_999);
    expect(rowsFromProgress(reading + notice({ ...base, phase: "committing", rows: 5 }), 2_000_000)).toBe(
      2_000_000,
    );
  });
  it("none before the first NOTICE", () => {
    expect(rowsFromProgress(notice({ ...base, phase: "preparing", rows: 0 }), 10)).toBeUndefined();
    expect(rowsFromProgress("", 10)).toBeUndefined();
  });
});

describe("slowTransactions", () => {
  it("counts the slow ones in the window, those that started late, and the slices they ended in", () => {
    // µs: four slow (> 1000) in the window, two of them ending in the same 10 ms slice and late
    // against the schedule; one slow outside the window; the rest fast.
    const endUs = Float64Array.from([5_000, 21_000, 22_000, 23_000, 55_000, 60_000, 99_000]);
    const latencyUs = Float64Array.from([200, 3_000, 2_500, 300, 1_500, 200, 9_000]);
    const lagUs = Float64Array.from([0, 100, 2_000, 0, 1_200, 0, 0]);
    expect(slowTransactions({ endUs, latencyUs, lagUs }, 0, 90_000, 1_000)).toEqual({
      n: 3,
      laggedShare: 2 / 3,
      buckets: 2,
    });
    expect(slowTransactions({ endUs, latencyUs, lagUs }, 0, 90_000, 10_000).n).toBe(0);
  });
});

describe("startSplit", () => {
  it("p99 ratios before and after the split, and where the path's slowest 1% ended", () => {
    // 1000 transactions each way, one every ms from 0 to 999 ms after the exports' start (µs);
    // the path's latencies are 100 µs but 5000 µs for ten in the first 150 ms, direct 100 µs.
    const endUs = Float64Array.from({ length: 1000 }, (_, i) => 1_000_000 + i * 1000);
    const pathLat = Float64Array.from({ length: 1000 }, (_, i) => (i >= 100 && i < 110 ? 5000 : 100));
    const directLat = new Float64Array(1000).fill(100);
    const s = startSplit(
      { endUs, latencyUs: pathLat },
      { endUs, latencyUs: directLat },
      1_000_000,
      2_000_000,
      150_000,
    );
    // First 150 transactions: 10 slow > 1%, so the first part's p99 is 5000; the rest all 100.
    expect(s).toEqual({ first: 50, after: 1, slowestFirst: 1 });
    // Split before them: they fall after it.
    const early = startSplit(
      { endUs, latencyUs: pathLat },
      { endUs, latencyUs: directLat },
      1_000_000,
      2_000_000,
      50_000,
    );
    expect(early.first).toBe(1);
    expect(early.after).toBe(50);
    expect(early.slowestFirst).toBe(0);
  });
});
