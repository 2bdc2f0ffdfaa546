// The isolation bench's export windows (bench/isolation.ts): a constant export load for a fixed
// time, and how the p99 ratios of several such windows are summed up. Pure logic, unit-tested
// (test/unit/export-window.test.ts): a wrong spread or a window that ends early would print a
// plausible but wrong ratio.
import { median, percentileSorted } from "./stats.js";

/** One export of a window: which stream ran it, when it started and ended (ms, the `now` clock),
 * and what it returned. */
export interface ExportRun<T = void> {
  stream: number;
  startMs: number;
  endMs: number;
  result: T;
}

/**
 * Keeps `streams` exports running until `untilMs`: each stream starts its next export as soon as
 * its last one ends, and starts none at or after `untilMs` (the caller stops the one running then,
 * and stops counting, at `untilMs`). So every window has the same length and, while it lasts, the
 * same number of exports running, whatever the exports' speed. Resolves with every export run, in
 * the order they ended.
 */
export async function backToBack<T>(o: {
  streams: number;
  untilMs: number;
  now: () => number;
  runOne: (stream: number) => Promise<T>;
}): Promise<Array<ExportRun<T>>> {
  const runs: Array<ExportRun<T>> = [];
  await Promise.all(
    Array.from({ length: o.streams }, async (_, stream) => {
      for (let start = o.now(); start < o.untilMs; start = o.now()) {
        const result = await o.runOne(stream);
        runs.push({ stream, startMs: start, endMs: o.now(), result });
      }
    }),
  );
  return runs;
}

/**
 * How many rows an export had read by its last progress NOTICE (the proxy's
 * src/copy/progress-notice.ts words, as psql prints them on stderr), or undefined before the first.
 * For an export stopped at a window's end: what it got done in the window.
 */
export function rowsFromProgress(stderr: string, totalRows: number): number | undefined {
  let rows: number | undefined;
  const re =
    /COPY TO progress: (?:reading: ([\d,]+) rows?\b|uploading: .*?all ([\d,]+) rows? read|(committing))/g;
  for (let m = re.exec(stderr); m !== null; m = re.exec(stderr))
    rows = m[3] !== undefined ? totalRows : Number((m[1] ?? m[2])!.replace(/,/g, ""));
  return rows;
}

/** A median with the lowest and highest value beside it. */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export function spread(xs: readonly number[]): Spread {
  const ok = xs.filter((x) => !Number.isNaN(x));
  if (ok.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN };
  return { median: median(ok), min: Math.min(...ok), max: Math.max(...ok) };
}

/** "1.23 (0.98–1.61)"; one value alone without its brackets; "–" for none. */
export function fmtSpread(s: Spread, digits = 2): string {
  if (Number.isNaN(s.median)) return "–";
  if (s.min === s.max) return s.median.toFixed(digits);
  return `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}–${s.max.toFixed(digits)})`;
}

/** One window's latencies (µs, ascending) through the path measured and straight to the upstream. */
export interface PairedLatencies {
  path: Float64Array;
  direct: Float64Array;
}

export interface RatioSummary {
  /** p99(path) / p99(direct) of each window, in the windows' order. */
  perWindow: number[];
  /** Median and range of `perWindow`: the figure the bench reports against the target. */
  ratio: Spread;
  /** p99 of every window's path latencies pooled / p99 of every window's direct latencies pooled. */
  pooled: number;
  /** Transactions behind each window's p99 (the smaller side of the window). */
  txns: Spread;
}

/**
 * Sums up the windows of one kind. The ratio the bench reports is the median of the per-window
 * ratios: each ratio compares two runs that shared the same seconds of the same machine, and the
 * median keeps one disturbed window (another program's burst) from deciding it. The ratio of the
 * pooled p99s is printed beside it as a check: it rests on every transaction at once, but it pairs
 * the tail of one window's path run with whichever window's direct run had the worst tail.
 */
export function ratioSummary(windows: readonly PairedLatencies[], p = 99): RatioSummary {
  const perWindow = windows.map((w) => percentileSorted(w.path, p) / percentileSorted(w.direct, p));
  const pool = (f: (w: PairedLatencies) => Float64Array): Float64Array => {
    const all = new Float64Array(windows.reduce((n, w) => n + f(w).length, 0));
    let at = 0;
    for (const w of windows) {
      all.set(f(w), at);
      at += f(w).length;
    }
    return all.sort();
  };
  return {
    perWindow,
    ratio: spread(perWindow),
    pooled:
      percentileSorted(
        pool((w) => w.path),
        p,
      ) /
      percentileSorted(
        pool((w) => w.direct),
        p,
      ),
    txns: spread(windows.map((w) => Math.min(w.path.length, w.direct.length))),
  };
}

/** The latencies (µs, ascending) of the transactions that ended in [fromUs, toUs). */
export function latenciesIn(
  t: { endUs: Float64Array; latencyUs: Float64Array },
  fromUs: number,
  toUs: number,
): Float64Array {
  const out: number[] = [];
  for (let i = 0; i < t.endUs.length; i++) {
    const e = t.endUs[i]!;
    if (e >= fromUs && e < toUs) out.push(t.latencyUs[i]!);
  }
  return Float64Array.from(out).sort();
}

/**
 * Whether a window's slow transactions through the proxy came in bursts (a stall of the relay:
 * every transaction in flight or arriving meanwhile is late, and at a fixed rate the next ones
 * start late too) or spread out (each slow on its own: a wait here and there). Slow: a latency
 * above `thresholdUs` (the direct run's p99 in the same window). Returns how many there were, the
 * share of them that started late against pgbench's schedule by more than half their latency
 * (queued behind an earlier slow one: schedule lag), and how many distinct `bucketMs` slices of
 * the window they ended in (few slices for many slow transactions: bursts).
 */
export function slowTransactions(
  t: { endUs: Float64Array; latencyUs: Float64Array; lagUs: Float64Array },
  fromUs: number,
  toUs: number,
  thresholdUs: number,
  bucketMs = 10,
): { n: number; laggedShare: number; buckets: number } {
  let n = 0;
  let lagged = 0;
  const buckets = new Set<number>();
  for (let i = 0; i < t.endUs.length; i++) {
    const e = t.endUs[i]!;
    if (e < fromUs || e >= toUs || !(t.latencyUs[i]! > thresholdUs)) continue;
    n++;
    if (t.lagUs[i]! > t.latencyUs[i]! / 2) lagged++;
    buckets.add(Math.floor(e / (bucketMs * 1000)));
  }
  return { n, laggedShare: n > 0 ? lagged / n : Number.NaN, buckets: buckets.size };
}

/** A window's p99 ratio split at `splitUs` after the exports' start (their first seconds, where
 * new encoder threads, isolates and scans start, against the steady state after). */
export interface StartSplit {
  /** p99(path) / p99(direct) of the transactions that ended in [fromUs, fromUs + splitUs). */
  first: number;
  /** … that ended in [fromUs + splitUs, toUs). */
  after: number;
  /** Of the path's slowest 1% in the whole window, the share that ended in the first part. */
  slowestFirst: number;
}

/**
 * Where a window's p99 through the path comes from: its first `splitUs` after the exports' start
 * or the rest (issue 13, session 12: in 11 of 12 four-export windows nearly all of the slowest 1%
 * ended in the first 1.5 s). Measured here rather than inferred from the window's p99 alone.
 */
export function startSplit(
  path: { endUs: Float64Array; latencyUs: Float64Array },
  direct: { endUs: Float64Array; latencyUs: Float64Array },
  fromUs: number,
  toUs: number,
  splitUs = 1_500_000,
  p = 99,
): StartSplit {
  const cut = fromUs + splitUs;
  const ratio = (a: number, b: number): number =>
    percentileSorted(latenciesIn(path, a, b), p) / percentileSorted(latenciesIn(direct, a, b), p);
  // The slowest 1% (ties broken by order: the same count whatever the latencies' resolution).
  const inWindow: number[] = [];
  for (let i = 0; i < path.endUs.length; i++) {
    const e = path.endUs[i]!;
    if (e >= fromUs && e < toUs) inWindow.push(i);
  }
  inWindow.sort((a, b) => path.latencyUs[b]! - path.latencyUs[a]!);
  const slowest = inWindow.slice(0, Math.ceil((inWindow.length * (100 - p)) / 100));
  const slowFirst = slowest.filter((i) => path.endUs[i]! < cut).length;
  return {
    first: ratio(fromUs, Math.min(cut, toUs)),
    after: cut < toUs ? ratio(cut, toUs) : Number.NaN,
    slowestFirst: slowest.length > 0 ? slowFirst / slowest.length : Number.NaN,
  };
}
