// How sure bench/isolation.ts's medians are. A window's p99 ratio moves 0.4–8 from one round to the
// next (docs/benchmarks.md, session 14), so a median over a handful of rounds moves too, and two
// builds' medians can differ by chance alone. Here: a percentile bootstrap interval of a median over
// rounds, and two builds compared round by round (the bench alternates them within each round, so
// round i of A and round i of B shared the machine's state of that minute; how much that takes out
// depends on how far their ratios move together, which the bench prints beside). Seeded, so the
// same rounds give the same interval. Pure; unit-tested (test/unit/isolation-stats.test.ts).
import { median, percentileSorted } from "./stats.js";

/** mulberry32: a small seeded generator of uniforms in [0, 1) (the intervals must repeat exactly). */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface BootstrapOptions {
  /** Resamples (default 10000). */
  iterations?: number;
  seed?: number;
  /** Coverage of the interval (default 0.95). */
  level?: number;
  /**
   * The run each item came from (rounds pooled from several runs, bench/isolation.ts --from): a
   * resample then draws runs with replacement and rounds within each drawn run (a two-level
   * bootstrap). A run's rounds share its proxy processes (one per build for the whole run) and the
   * machine's state of those minutes; resampling rounds alone would treat them as independent and
   * give too narrow an interval when runs differ.
   */
  groups?: readonly number[];
}

/** A figure with its interval. */
export interface Interval {
  estimate: number;
  lo: number;
  hi: number;
  /** How many rounds (or pairs) it rests on. */
  n: number;
}

const DEFAULT_SEED = 1;

/**
 * Percentile bootstrap: `stat` of `iterations` resamples of n items (indices drawn with replacement,
 * or runs then rounds with `groups`; `stat` gets the index array, reused between calls), and the
 * interval between the (1 − level)/2 and (1 + level)/2 quantiles of those: lo is the ⌊B·α/2⌋-th
 * smallest (0-based), hi the ⌈B·(1 − α/2)⌉-th (1-based). Resamples whose statistic is NaN (no
 * usable item drawn) are left out.
 */
export function bootstrapInterval(
  n: number,
  stat: (idx: Uint32Array) => number,
  o: BootstrapOptions = {},
): { lo: number; hi: number } {
  if (n === 0) return { lo: Number.NaN, hi: Number.NaN };
  const iterations = o.iterations ?? 10000;
  const alpha = 1 - (o.level ?? 0.95);
  const rnd = seededRandom(o.seed ?? DEFAULT_SEED);
  const runs = runsOf(n, o.groups);
  const idx = new Uint32Array(runs.length * Math.max(...runs.map((r) => r.length)));
  const all: number[] = [];
  for (let b = 0; b < iterations; b++) {
    let len = 0;
    if (runs.length === 1) for (let i = 0; i < n; i++) idx[len++] = Math.floor(rnd() * n);
    else
      for (let g = 0; g < runs.length; g++) {
        const run = runs[Math.floor(rnd() * runs.length)]!;
        for (let i = 0; i < run.length; i++) idx[len++] = run[Math.floor(rnd() * run.length)]!;
      }
    const x = stat(idx.subarray(0, len));
    if (!Number.isNaN(x)) all.push(x);
  }
  if (all.length === 0) return { lo: Number.NaN, hi: Number.NaN };
  const stats = Float64Array.from(all).sort();
  return {
    lo: stats[Math.floor((stats.length * alpha) / 2)]!,
    hi: stats[Math.ceil(stats.length * (1 - alpha / 2)) - 1]!,
  };
}

/** The items 0..n-1 by run (one run without groups). */
function runsOf(n: number, groups: readonly number[] | undefined): number[][] {
  if (groups === undefined) return [Array.from({ length: n }, (_, i) => i)];
  if (groups.length < n) throw new Error(`bootstrap: ${n} items but ${groups.length} run numbers`);
  const by = new Map<number, number[]>();
  for (let i = 0; i < n; i++) by.set(groups[i]!, [...(by.get(groups[i]!) ?? []), i]);
  return [...by.values()];
}

/** The median of `xs` (NaNs left out) and its bootstrap interval (rounds resampled). */
export function medianInterval(xs: readonly number[], o: BootstrapOptions = {}): Interval {
  const ok = xs.filter((x) => !Number.isNaN(x));
  let pick = new Float64Array(xs.length);
  const { lo, hi } = bootstrapInterval(
    xs.length,
    (idx) => {
      if (idx.length > pick.length) pick = new Float64Array(idx.length);
      let m = 0;
      for (const i of idx) if (!Number.isNaN(xs[i]!)) pick[m++] = xs[i]!;
      return m === 0 ? Number.NaN : medianOf(pick.subarray(0, m));
    },
    o,
  );
  return { estimate: median(ok), lo, hi, n: ok.length };
}

/** Median of a scratch array (sorted in place). */
function medianOf(xs: Float64Array): number {
  xs.sort();
  const m = xs.length >> 1;
  return xs.length % 2 ? xs[m]! : (xs[m - 1]! + xs[m]!) / 2;
}

/**
 * B against A, round by round, for a figure where a factor is the natural comparison (a p99 ratio):
 * the median over rounds of log(b_i / a_i), with its bootstrap interval (pairs resampled), given
 * back as factors (exp). 1.30 [1.05–1.62]: in the median round B's ratio was 30% above A's, and
 * the interval leaves 1 out, so the rounds separate the builds; an interval holding 1 does not.
 * Pairing by round takes out what the round shared (the machine's load that minute), as far as the
 * two builds' ratios rise and fall together: idle and with four exports hardly at all in session
 * 15's runs (docs/isolation.md, "Reading the confidence intervals").
 */
export function pairedFactor(a: readonly number[], b: readonly number[], o: BootstrapOptions = {}): Interval {
  // Round by round (NaN where a round lacks either side), so `o.groups` stays aligned with rounds.
  const logs = Array.from({ length: Math.min(a.length, b.length) }, (_, i) =>
    a[i]! > 0 && b[i]! > 0 ? Math.log(b[i]! / a[i]!) : Number.NaN,
  );
  const r = medianInterval(logs, o);
  return { estimate: Math.exp(r.estimate), lo: Math.exp(r.lo), hi: Math.exp(r.hi), n: r.n };
}

/**
 * Pearson's correlation of log x and log y over the rounds where both are positive: whether two
 * figures of a window (the proxy's p99 and direct's, or build A's ratio and B's) rise and fall
 * together from round to round. Near 1, a ratio (or a pairing) takes out what they shared; near 0
 * it only adds the other's noise. NaN for fewer than 3 rounds.
 */
export function logCorrelation(xs: readonly number[], ys: readonly number[]): number {
  const lx: number[] = [];
  const ly: number[] = [];
  for (let i = 0; i < Math.min(xs.length, ys.length); i++)
    if (xs[i]! > 0 && ys[i]! > 0) {
      lx.push(Math.log(xs[i]!));
      ly.push(Math.log(ys[i]!));
    }
  if (lx.length < 3) return Number.NaN;
  const mean = (v: number[]): number => v.reduce((s, x) => s + x, 0) / v.length;
  const mx = mean(lx);
  const my = mean(ly);
  let sxy = 0;
  let sxx = 0;
  let syy = 0;
  for (let i = 0; i < lx.length; i++) {
    sxy += (lx[i]! - mx) * (ly[i]! - my);
    sxx += (lx[i]! - mx) ** 2;
    syy += (ly[i]! - my) ** 2;
  }
  return sxy / Math.sqrt(sxx * syy);
}

/** The first index of ascending `xs` holding a value > v (the count of values ≤ v). */
function upperBound(xs: ArrayLike<number>, v: number): number {
  let lo = 0;
  let hi = xs.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (xs[mid]! <= v) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * The p-th percentile (nearest rank, as stats.ts's percentileSorted) of the multiset that holds
 * round r's latencies `weights[r]` times: what percentileSorted gives on their concatenation,
 * without building it (a bootstrap resample of rounds is such a multiset). `rounds` ascending
 * each; `values` every latency of every round, ascending (the candidates).
 */
export function pooledPercentile(
  rounds: readonly Float64Array[],
  weights: ArrayLike<number>,
  p: number,
  values: Float64Array,
): number {
  let total = 0;
  for (let r = 0; r < rounds.length; r++) total += weights[r]! * rounds[r]!.length;
  if (total === 0) return Number.NaN;
  const rank = Math.max(1, Math.ceil((p / 100) * total));
  // The smallest candidate v with at least `rank` values ≤ v.
  let lo = 0;
  let hi = values.length - 1;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    let count = 0;
    for (let r = 0; r < rounds.length; r++)
      if (weights[r]! > 0) count += weights[r]! * upperBound(rounds[r]!, values[mid]!);
    if (count >= rank) hi = mid;
    else lo = mid + 1;
  }
  return values[lo]!;
}

/** One round of one unit and window: its latencies through the path and direct, µs ascending. */
export interface RoundLatencies {
  path: Float64Array;
  direct: Float64Array;
}

/** Every latency of every round, ascending (pooledPercentile's candidates). */
function allValues(rs: readonly Float64Array[]): Float64Array {
  const all = new Float64Array(rs.reduce((n, r) => n + r.length, 0));
  let at = 0;
  for (const r of rs) {
    all.set(r, at);
    at += r.length;
  }
  return all.sort();
}

/** The pooled p-th percentile ratio of `rounds`, each round drawn `w[r]` times. */
function pooledRatioOf(rounds: readonly RoundLatencies[], p: number): (w: ArrayLike<number>) => number {
  const path = rounds.map((r) => r.path);
  const direct = rounds.map((r) => r.direct);
  const pathAll = allValues(path);
  const directAll = allValues(direct);
  return (w) => pooledPercentile(path, w, p, pathAll) / pooledPercentile(direct, w, p, directAll);
}

/**
 * The ratio of the pooled p-th percentiles (every round's path latencies against every round's
 * direct ones), with a bootstrap interval over rounds (a round's transactions go together: they
 * shared its seconds). It rests on all the transactions at once, but its tail is the worst one or
 * two rounds' tail, so it is no steadier than the median of the rounds' ratios (session 15).
 */
export function pooledRatioInterval(
  rounds: readonly RoundLatencies[],
  p = 99,
  o: BootstrapOptions = {},
): Interval {
  const pr = pooledRatioOf(rounds, p);
  const w = new Uint32Array(rounds.length);
  const { lo, hi } = bootstrapInterval(
    rounds.length,
    (idx) => {
      w.fill(0);
      for (const i of idx) w[i]!++;
      return pr(w);
    },
    { iterations: 2000, ...o },
  );
  return { estimate: pr(new Uint32Array(rounds.length).fill(1)), lo, hi, n: rounds.length };
}

/** B's pooled ratio over A's, the rounds resampled in pairs (the same rounds drawn for both). */
export function pairedPooledFactor(
  a: readonly RoundLatencies[],
  b: readonly RoundLatencies[],
  p = 99,
  o: BootstrapOptions = {},
): Interval {
  const n = Math.min(a.length, b.length);
  const pa = pooledRatioOf(a.slice(0, n), p);
  const pb = pooledRatioOf(b.slice(0, n), p);
  const w = new Uint32Array(n);
  const { lo, hi } = bootstrapInterval(
    n,
    (idx) => {
      w.fill(0);
      for (const i of idx) w[i]!++;
      return pb(w) / pa(w);
    },
    { iterations: 2000, ...o },
  );
  const ones = new Uint32Array(n).fill(1);
  return { estimate: pb(ones) / pa(ones), lo, hi, n };
}

/** How many of a window's path transactions were slower than `k` times its direct p99, of how many. */
export interface Exceedance {
  over: number;
  n: number;
}

/**
 * The question put as a count: p99(path) ≤ k·p99(direct) holds exactly when at most 1% of
 * the path's transactions took longer than k·p99(direct) (nearest rank). Counted per window
 * against that window's own direct p99; summed over rounds it is a share of all transactions, a
 * mean rather than a tail of tails, so a few bad rounds move it in proportion to what they cost.
 */
export function exceedance(path: Float64Array, direct: Float64Array, k: number): Exceedance {
  const limit = k * percentileSorted(direct, 99);
  return { over: path.length - upperBound(path, limit), n: path.length };
}

/** Σ over / Σ n of `rounds`, each drawn `w[r]` times. */
function shareOf(rounds: readonly Exceedance[], w: ArrayLike<number>): number {
  let over = 0;
  let n = 0;
  for (let r = 0; r < rounds.length; r++) {
    over += w[r]! * rounds[r]!.over;
    n += w[r]! * rounds[r]!.n;
  }
  return n > 0 ? over / n : Number.NaN;
}

/** The pooled share of exceeding transactions over rounds, with its bootstrap interval (rounds
 * resampled: a round's transactions go together). */
export function shareInterval(rounds: readonly Exceedance[], o: BootstrapOptions = {}): Interval {
  const w = new Uint32Array(rounds.length);
  const { lo, hi } = bootstrapInterval(
    rounds.length,
    (idx) => {
      w.fill(0);
      for (const i of idx) w[i]!++;
      return shareOf(rounds, w);
    },
    o,
  );
  return { estimate: shareOf(rounds, new Uint32Array(rounds.length).fill(1)), lo, hi, n: rounds.length };
}

/** B's pooled share minus A's, the rounds resampled in pairs. */
export function pairedShareDifference(
  a: readonly Exceedance[],
  b: readonly Exceedance[],
  o: BootstrapOptions = {},
): Interval {
  const n = Math.min(a.length, b.length);
  const w = new Uint32Array(n);
  const d = (ws: ArrayLike<number>): number => shareOf(b.slice(0, n), ws) - shareOf(a.slice(0, n), ws);
  const { lo, hi } = bootstrapInterval(
    n,
    (idx) => {
      w.fill(0);
      for (const i of idx) w[i]!++;
      return d(w);
    },
    o,
  );
  return { estimate: d(new Uint32Array(n).fill(1)), lo, hi, n };
}

/** "1.47 [1.12–2.03]"; "–" for nothing to show. */
export function fmtInterval(i: Interval, digits = 2): string {
  if (Number.isNaN(i.estimate)) return "–";
  return `${i.estimate.toFixed(digits)} [${i.lo.toFixed(digits)}–${i.hi.toFixed(digits)}]`;
}
