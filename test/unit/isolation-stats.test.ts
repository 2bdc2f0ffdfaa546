// The isolation bench's intervals (bench/lib/isolation-stats.ts): a wrong interval or a comparison
// that pairs the wrong rounds would tell the lead two builds differ (or do not) when the rounds say
// otherwise, with nothing visibly wrong in the table.
import { describe, expect, it } from "vitest";
import { ratioSummary } from "../../bench/lib/export-window.js";
import {
  exceedance,
  logCorrelation,
  medianInterval,
  pairedFactor,
  pairedPooledFactor,
  pairedShareDifference,
  pooledPercentile,
  pooledRatioInterval,
  seededRandom,
  shareInterval,
} from "../../bench/lib/isolation-stats.js";
import { percentileSorted } from "../../bench/lib/stats.js";

/** P(the median of a resample of n distinct values is ≤ the j-th smallest), n odd: at least
 * (n + 1) / 2 of the n draws land on the j smallest, each with probability j / n. */
function bootMedianCdf(n: number, j: number): number {
  const p = j / n;
  let sum = 0;
  let comb = 1; // C(n, k), built up as k grows
  for (let k = 0; k <= n; k++) {
    if (k > 0) comb = (comb * (n - k + 1)) / k;
    if (k >= (n + 1) / 2) sum += comb * p ** k * (1 - p) ** (n - k);
  }
  return sum;
}

/** The exact 2.5% and 97.5% points of the bootstrap median's distribution, as order statistics. */
function exactInterval(n: number): [number, number] {
  let lo = 0;
  let hi = 0;
  for (let j = n; j >= 1; j--) if (bootMedianCdf(n, j) > 0.025) lo = j;
  for (let j = n; j >= 1; j--) if (bootMedianCdf(n, j) >= 0.975) hi = j;
  return [lo, hi];
}

describe("isolation bench statistics", () => {
  it("the seeded generator repeats and spreads", () => {
    const a = seededRandom(7);
    const b = seededRandom(7);
    const xs = Array.from({ length: 1000 }, () => a());
    expect(Array.from({ length: 1000 }, () => b())).toEqual(xs);
    expect(Math.min(...xs)).toBeGreaterThanOrEqual(0);
    expect(Math.max(...xs)).toBeLessThan(1);
    const mean = xs.reduce((s, x) => s + x, 0) / xs.length;
    expect(mean).toBeGreaterThan(0.45);
    expect(mean).toBeLessThan(0.55);
  });

  it("the median's interval is the bootstrap distribution's 2.5% and 97.5% points", () => {
    // For n distinct values (n odd) the resampled median's distribution is known exactly: for
    // n = 11 its 2.5% point is the 3rd smallest value, its 97.5% point the 9th (CDF 0.0072 → 0.0512
    // and 0.9488 → 0.9928: far from the cut, so 10000 resamples land on them).
    expect(exactInterval(11)).toEqual([3, 9]);
    expect(exactInterval(13)).toEqual([4, 10]);
    // n = 17 and 19: a 90% interval would be one order statistic narrower at each end.
    expect(exactInterval(17)).toEqual([5, 13]);
    expect(exactInterval(19)).toEqual([6, 14]);
    for (const n of [11, 13, 17, 19]) {
      const sorted = Array.from({ length: n }, (_, i) => 0.5 + i * i * 0.25); // unevenly spaced
      const shuffled = [...sorted].sort((x, y) => Math.sin(x * 99) - Math.sin(y * 99));
      const [lo, hi] = exactInterval(n);
      const r = medianInterval(shuffled, { seed: 3 });
      expect(r.estimate).toBe(sorted[(n - 1) / 2]);
      expect(r.n).toBe(n);
      expect([r.lo, r.hi]).toEqual([sorted[lo - 1], sorted[hi - 1]]);
    }
  });

  it("the same rounds and seed give the same interval; NaN rounds are left out", () => {
    const xs = [2.1, 0.4, 8.1, 1.5, 1.9, 2.6, 1.2, Number.NaN, 3.3];
    const a = medianInterval(xs);
    expect(medianInterval(xs)).toEqual(a);
    expect(a.n).toBe(8);
    expect(a.estimate).toBe(2);
    expect(a.lo).toBeLessThanOrEqual(a.estimate);
    expect(a.hi).toBeGreaterThanOrEqual(a.estimate);
    // A resample's NaNs are skipped, not sorted in: with six NaN rounds of nine, the median of the
    // numbers drawn is still as often 1 as 3.
    const sparse = medianInterval([
      1,
      Number.NaN,
      2,
      Number.NaN,
      Number.NaN,
      3,
      Number.NaN,
      Number.NaN,
      Number.NaN,
    ]);
    expect([sparse.estimate, sparse.lo, sparse.hi, sparse.n]).toEqual([2, 1, 3, 3]);
    const one = medianInterval([1.7]);
    expect([one.estimate, one.lo, one.hi]).toEqual([1.7, 1.7, 1.7]);
    expect(Number.isNaN(medianInterval([]).lo)).toBe(true);
  });

  it("pooled runs: a resample draws runs, then rounds within them", () => {
    // Three runs of 16 rounds each, every round of a run alike but the runs apart (1.0, 1.1, 1.2):
    // resampling rounds alone finds the median at 1.1 nearly always; drawing runs first, two of the
    // three drawn are the first run with probability 7/27, so the interval spans the runs.
    const xs = [1.0, 1.1, 1.2].flatMap((v) => Array(16).fill(v) as number[]);
    const runOf = [0, 1, 2].flatMap((r) => Array(16).fill(r) as number[]);
    const flat = medianInterval(xs);
    expect([flat.lo, flat.hi]).toEqual([1.1, 1.1]);
    const grouped = medianInterval(xs, { groups: runOf });
    expect([grouped.estimate, grouped.lo, grouped.hi, grouped.n]).toEqual([1.1, 1.0, 1.2, 48]);
    // The same for a paired comparison, whose rounds carry their run along.
    const f = pairedFactor(
      xs.map(() => 1),
      xs,
      { groups: runOf },
    );
    expect([f.lo, f.hi].map((x) => x.toFixed(6))).toEqual(["1.000000", "1.200000"]);
    // One run only: the plain bootstrap.
    expect(medianInterval(xs, { groups: xs.map(() => 0) })).toEqual(flat);
  });

  it("B against A pairs round i with round i", () => {
    // Each round's state of the machine moves both builds' ratios by the same factor (0.4 to 8);
    // B is 1.2 or 1.3 times A in every round. Paired, B/A is 1.2–1.3 whatever the rounds' swing;
    // pairing any other way (shifted, reversed, each side sorted) mixes the swing back in.
    const state = [0.4, 3.1, 1.0, 8.0, 0.7, 2.2, 5.5, 1.4, 0.9, 4.1, 1.8, 0.5, 2.9];
    const gain = state.map((_, i) => (i % 2 === 0 ? 1.2 : 1.3));
    const a = state;
    const b = state.map((s, i) => s * gain[i]!);
    const f = pairedFactor(a, b);
    expect(f.n).toBe(13);
    expect(f.estimate).toBeCloseTo(1.2, 10); // 7 rounds at 1.2, 6 at 1.3
    expect(f.lo).toBeGreaterThanOrEqual(1.2 - 1e-9);
    expect(f.hi).toBeLessThanOrEqual(1.3 + 1e-9);
    // The same comparison with B's rounds reversed is not B against A any more.
    const wrong = pairedFactor(a, [...b].reverse());
    expect(wrong.hi / wrong.lo).toBeGreaterThan(3);
    // A build missing a round, or a NaN, drops that pair.
    const d = pairedFactor([10, 20, 30, Number.NaN], [12, 24, 36, 50, 60]);
    expect(d.n).toBe(3);
    expect([d.estimate, d.lo, d.hi].map((x) => x.toFixed(9))).toEqual([
      "1.200000000",
      "1.200000000",
      "1.200000000",
    ]);
  });

  it("a pooled percentile of weighted rounds is the percentile of their concatenation", () => {
    const rnd = seededRandom(11);
    const rounds = Array.from({ length: 6 }, (_, r) =>
      Float64Array.from({ length: 50 + r * 37 }, () => Math.round(rnd() ** 3 * 1e5) / (r + 1)).sort(),
    );
    const values = Float64Array.from(rounds.flatMap((r) => Array.from(r))).sort();
    for (const w of [
      [1, 1, 1, 1, 1, 1],
      [0, 3, 1, 0, 2, 0],
      [6, 0, 0, 0, 0, 0],
      [0, 0, 0, 0, 1, 5],
    ])
      for (const p of [50, 95, 99, 100]) {
        const concat = Float64Array.from(
          rounds.flatMap((r, i) => Array(w[i]!).fill(Array.from(r)).flat()),
        ).sort();
        expect(pooledPercentile(rounds, w, p, values)).toBe(percentileSorted(concat, p));
      }
  });

  it("the pooled ratio's estimate is the bench's pooled p99 ratio, paired pooled factors pair rounds", () => {
    const rnd = seededRandom(5);
    const mk = (scale: number): Float64Array =>
      Float64Array.from({ length: 400 }, () => 100 + rnd() ** 8 * 1e4 * scale).sort();
    const rounds = [1, 3, 0.5, 2, 6].map((s) => ({ path: mk(2 * s), direct: mk(s) }));
    const r = pooledRatioInterval(rounds);
    expect(r.estimate).toBe(ratioSummary(rounds).pooled);
    expect(r.lo).toBeLessThanOrEqual(r.estimate);
    expect(r.hi).toBeGreaterThanOrEqual(r.estimate);
    // B's rounds are A's: the factor is 1 in every resample.
    const same = pairedPooledFactor(rounds, rounds);
    expect([same.estimate, same.lo, same.hi]).toEqual([1, 1, 1]);
  });

  it("over target × direct p99 at most 1% exactly when the p99 ratio is within target", () => {
    const rnd = seededRandom(9);
    for (let t = 0; t < 200; t++) {
      const direct = Float64Array.from({ length: 300 }, () => 100 + rnd() ** 6 * 5000).sort();
      const stretch = 0.5 + rnd() * 3;
      const path = Float64Array.from({ length: 250 + Math.floor(rnd() * 100) }, () =>
        Math.round(100 + rnd() ** 6 * 5000 * stretch),
      ).sort();
      const e = exceedance(path, direct, 2);
      expect(e.n).toBe(path.length);
      expect(e.over / e.n <= 0.01).toBe(percentileSorted(path, 99) <= 2 * percentileSorted(direct, 99));
    }
  });

  it("the correlation of logs: 1 for figures that move together, -1 against, NaN for too few", () => {
    const x = [1, 4, 2, 8, 0.5];
    expect(
      logCorrelation(
        x,
        x.map((v) => 3 * v ** 2),
      ),
    ).toBeCloseTo(1, 12);
    expect(
      logCorrelation(
        x,
        x.map((v) => 1 / v),
      ),
    ).toBeCloseTo(-1, 12);
    // 0 when y is high at both ends of x and low in its middle (no linear relation in logs).
    expect(logCorrelation([1, 2, 4], [2, 1, 2])).toBeCloseTo(0, 12);
    expect(logCorrelation([1, 2], [1, 2])).toBeNaN();
    expect(logCorrelation([1, 2, 4, 0], [1, 2, 4, 99])).toBeCloseTo(1, 12); // a 0 round left out
  });

  it("the share over target pools counts over rounds; B − A pairs rounds", () => {
    const a = [
      { over: 10, n: 1000 },
      { over: 50, n: 1000 },
      { over: 0, n: 1000 },
    ];
    const s = shareInterval(a);
    expect(s.estimate).toBeCloseTo(0.02, 12);
    expect(s.lo).toBeGreaterThanOrEqual(0);
    expect(s.hi).toBeLessThanOrEqual(0.05);
    const b = a.map((r) => ({ over: r.over + 5, n: r.n }));
    const d = pairedShareDifference(a, b);
    expect(d.estimate).toBeCloseTo(0.005, 12);
    expect(d.lo).toBeCloseTo(0.005, 12);
    expect(d.hi).toBeCloseTo(0.005, 12);
  });
});
