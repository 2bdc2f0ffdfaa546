// bench/isolation.ts --save / --from: every window's figures and latencies in a JSON file, so a run's
// tables (and its confidence intervals, seeded) can be printed again, and several runs' rounds pooled.
import { readFileSync, writeFileSync } from "node:fs";
import type { IsolationArgv } from "./isolation-args.js";
import type { WindowResult } from "./isolation-window.js";

export interface SavedRun {
  /** The command line's options (isolationConfig() turns them into the settings again). */
  args: IsolationArgv;
  /** The rated windows' transactions per second. */
  rate: number;
  /** The units (proxies, PgBouncer) in the order they alternated. */
  names: string[];
  started: string;
  load0: number[];
  load1?: number[];
  /** `${unit} ${kind}${loadTag}` → the windows, in round order. */
  results: Record<string, WindowResult[]>;
}

/** Writes the run so far (rewritten after every window, so a stopped run keeps its rounds). */
export function saveRun(
  file: string,
  run: Omit<SavedRun, "results">,
  results: Map<string, WindowResult[]>,
): void {
  const json = JSON.stringify({ ...run, results: Object.fromEntries(results) }, (_k, v: unknown) =>
    v instanceof Float64Array ? Array.from(v) : v,
  );
  writeFileSync(file, json);
}

/** Reads a saved run: the latencies as Float64Array again, and JSON's null as the NaN it was (a
 * window's figure that does not apply, e.g. an idle window's export rate). */
export function loadRun(file: string): SavedRun {
  return JSON.parse(readFileSync(file, "utf8"), (k, v: unknown) =>
    (k === "proxyLat" || k === "directLat") && Array.isArray(v)
      ? Float64Array.from(v as number[])
      : v === null
        ? Number.NaN
        : v,
  ) as SavedRun;
}

/** Several saved runs of the same units and windows as one: each key's rounds in file order (a
 * round's windows stay pairs across builds, as rounds are appended run by run). */
export function poolRuns(runs: SavedRun[]): {
  names: string[];
  results: Map<string, WindowResult[]>;
  rounds: number;
  /** The run (0, 1, …) each pooled round came from, in round order. */
  runOf: number[];
} {
  const names = runs[0]!.names;
  for (const r of runs)
    if (r.names.join(",") !== names.join(","))
      throw new Error(`--from: runs of different proxies (${r.names.join(",")} vs ${names.join(",")})`);
  const results = new Map<string, WindowResult[]>();
  let rounds = 0;
  const runOf: number[] = [];
  for (const [ri, r] of runs.entries()) {
    // A stopped run may end mid-round: keep only its complete rounds, so round i of every key
    // is the same round of the same run (the pairing of isolation-stats.ts relies on it).
    const n = Math.min(...Object.values(r.results).map((ws) => ws.length));
    rounds += n;
    for (let i = 0; i < n; i++) runOf.push(ri);
    for (const [k, ws] of Object.entries(r.results))
      results.set(k, [...(results.get(k) ?? []), ...ws.slice(0, n)]);
  }
  return { names, results, rounds, runOf };
}
