// bench/isolation.ts --probe: the figures bench/lib/loop-probe.mjs writes from inside a proxy (its
// event-loop delay, GC, stalls, the relay's 100 ms slices), asked for at a window's edges.
import { readFileSync } from "node:fs";
import { START_SPLIT_S } from "./isolation-args.js";
import type { ProxyProc } from "./proxy-process.js";

/** What bench/lib/loop-probe.mjs writes at each SIGUSR2. */
export interface ProbeFigures {
  p99: number;
  max: number;
  gcMs: number;
  gcMaxMs: number;
  gcByKind: object;
  stalls?: Array<[number, number, string]>;
  /** Per 100 ms since the previous report: the relay's [ran, waited, page faults, longest late timer]. */
  slices?: Array<[number, number, number, number]>;
  /** When the report was asked, on a `--cpu-prof` profile's clock (µs). */
  monoUs?: number;
  /** The longest 3 collections: [ms, type, new space before->after MB, old space growth MB]. */
  longestGcs?: Array<[number, string, string, number]>;
}

/** The relay's 100 ms slices from the exports' start (bench/lib/loop-probe.mjs), summed over the
 * first START_SPLIT_S and the next. */
export function relayAtStart(slices: Array<[number, number, number, number]>): {
  relayStart: string;
  relayFirst: { runMs: number; faults: number; lateMs: number };
  relayNext: { runMs: number; faults: number; lateMs: number };
} {
  const n = Math.round((START_SPLIT_S * 1000) / 100);
  const sum = (xs: Array<[number, number, number, number]>) => ({
    runMs: xs.length === n ? xs.reduce((a, x) => a + x[0], 0) : Number.NaN,
    faults: xs.length === n ? xs.reduce((a, x) => a + x[2], 0) : Number.NaN,
    lateMs: xs.length === n ? Math.max(...xs.map((x) => x[3])) : Number.NaN,
  });
  return {
    relayStart: slices.map((x) => x.join("/")).join(" "),
    relayFirst: sum(slices.slice(0, n)),
    relayNext: sum(slices.slice(n, 2 * n)),
  };
}

/** The proxy's loop-probe figures since the previous call (bench/lib/loop-probe.mjs). */
export async function probe(proc: ProxyProc, file: string): Promise<ProbeFigures> {
  const seq = (): number => {
    try {
      return (JSON.parse(readFileSync(file, "utf8")) as { seq: number }).seq;
    } catch {
      return 0;
    }
  };
  const before = seq();
  process.kill(proc.pid, "SIGUSR2");
  for (let i = 0; i < 200 && seq() === before; i++) await new Promise((r) => setTimeout(r, 10));
  return JSON.parse(readFileSync(file, "utf8")) as ProbeFigures;
}
