// bench/isolation.ts's report: the log line of each window as it ends, and the tables printed at
// the end (or again from --save files with --from): per proxy and window the medians over rounds
// and their spreads, the two loads beside each other, the start's share, the slow transactions,
// the scheduler trace, the PgBouncer yardstick, and how sure the ratios are (isolation-stats.ts).
import { cpus, loadavg } from "node:os";
import { fmtSpread, type RatioSummary, ratioSummary, spread } from "./export-window.js";
import {
  type IsolationConfig,
  type Load,
  loadTag,
  START_SPLIT_S,
  type WindowKind,
} from "./isolation-args.js";
import {
  type Exceedance,
  exceedance,
  fmtInterval,
  type Interval,
  logCorrelation,
  medianInterval,
  pairedFactor,
  pairedPooledFactor,
  pairedShareDifference,
  pooledRatioInterval,
  type RoundLatencies,
  shareInterval,
} from "./isolation-stats.js";
import type { WindowResult } from "./isolation-window.js";
import { fmtSchedTrace, type SchedTraceSummary, TRACE_CLASSES } from "./sched-trace.js";
import { fmtRate, median, percentileSorted } from "./stats.js";

/** The log line of one window as it ends. */
export function windowLine(
  c: IsolationConfig,
  round: number,
  key: string,
  kind: WindowKind,
  load: Load,
  r: WindowResult,
): string {
  return (
    `  round ${round + 1} ${key.padEnd(26)} window ${r.secs.toFixed(1)} s, ${r.proxy.n}/${r.direct.n} txns` +
    `${kind === "idle" ? "" : `  ${r.exportsDone} exports done (${r.exportSecs.toFixed(1)} s each), ${fmtRate(r.exportRowsPerSec)} rows/s exported, ${r.cpuPerMRows.toFixed(2)} CPU-s per 1M rows, stop ${r.stopMs.toFixed(0)} ms`}` +
    `  proxy p50 ${r.proxy.p50Ms.toFixed(2)} p99 ${r.proxy.p99Ms.toFixed(2)} ms ${fmtRate(r.proxy.tps)} tps` +
    `  direct p50 ${r.direct.p50Ms.toFixed(2)} p99 ${r.direct.p99Ms.toFixed(2)} ms ${fmtRate(r.direct.tps)} tps` +
    (load === "rated"
      ? `  schedule lag p99 proxy ${r.proxy.lagP99Ms.toFixed(2)} direct ${r.direct.lagP99Ms.toFixed(2)} ms`
      : "") +
    `  p99 ratio ${(r.proxy.p99Ms / r.direct.p99Ms).toFixed(2)}` +
    (kind === "idle"
      ? ""
      : ` (first ${START_SPLIT_S} s ${r.split.first.toFixed(2)}, after ${r.split.after.toFixed(2)}; slowest 1% ${(r.split.slowestFirst * 100).toFixed(0)}% in the first ${START_SPLIT_S} s)`) +
    `  ${r.slow.n} slower than direct p99 (${(r.slow.laggedShare * 100).toFixed(0)}% started late, in ${r.slow.buckets} slices of 10 ms)  proxy CPU main ${(r.mainCpu * 100).toFixed(0)}% all ${(r.totalCpu * 100).toFixed(0)}% host ${(r.hostCpu * 100).toFixed(0)}% lowered ${(r.lowCpu * 100).toFixed(0)}%` +
    `  main waits ${(r.mainWait * 100).toFixed(1)}% (${r.mainWaitEach.toFixed(2)} ms each)` +
    (kind === "idle"
      ? `  CPU per transaction main ${r.relayUsPerTx.toFixed(0)} µs all ${r.allUsPerTx.toFixed(0)} µs`
      : "") +
    (c.argv.probe
      ? `  CPU ms per s of the first seconds (main/others at nice 0/lowered): ${r.timeline}  loop delay p99 ${r.loopP99.toFixed(1)} max ${r.loopMax.toFixed(1)} ms, GC ${r.gcMs.toFixed(0)} ms (max ${r.gcMaxMs.toFixed(1)}, by kind ${r.gcByKind}; longest: ${r.longestGcs}); stalls > ${process.env.C2S_LOOP_PROBE_STALL_MS || 50} ms: ${r.stalls || "none"}` +
        (kind === "idle"
          ? ""
          : `  relay in the first ${START_SPLIT_S} s: ran ${r.relayFirst.runMs} ms, ${r.relayFirst.faults} page faults, longest block ${r.relayFirst.lateMs} ms; in the next ${START_SPLIT_S} s: ${r.relayNext.runMs} ms, ${r.relayNext.faults}, ${r.relayNext.lateMs} ms; per 100 ms ran/waited/faults/late: ${r.relayStart}; start at ${r.startMonoUs} µs`)
      : "") +
    (r.trace ? `  ${fmtSchedTrace(r.trace)}` : "") +
    `  load ${loadavg()[0]!.toFixed(1)}`
  );
}

export function summaryText(
  c: IsolationConfig,
  names: string[],
  results: Map<string, WindowResult[]>,
  meta: { started: Date; load0: number[]; load1: number[]; runOf?: number[] },
): string {
  const out: string[] = [];
  out.push(
    `\n## bench/isolation.ts — ${meta.started.toISOString().slice(0, 16).replace("T", " ")} UTC, proxy ${names.join(" vs ")}, ${c.rows.toLocaleString("en-US")} rows, target ${c.target}, ${c.rounds} rounds, export windows of ${c.secs} s, idle windows of ${c.idleSecs} s`,
  );
  out.push(
    `${cpus().length} cores, load average ${meta.load0.map((l) => l.toFixed(1)).join("/")} at start, ${meta.load1.map((l) => l.toFixed(1)).join("/")} at end; ` +
      `pgbench -n -S -c ${c.clients} -j ${c.threads} through the proxy and direct at the same time, scale ${c.argv.scale}` +
      `${c.loads.includes("rated") ? `; rated windows: pgbench -R ${c.rate} (${c.rateArg}), latency from the scheduled start (schedule lag included, as pgbench reports it)` : ""}` +
      `; exports settings ${JSON.stringify(c.exportsCfg)}${c.argv.variants ? `, variants ${c.argv.variants}` : ""}` +
      `; medians over rounds (lowest–highest round in brackets)\n`,
  );
  out.push(
    "| proxy | window | load | transactions per p99 | exported rows/s in the window (all streams); exports done per window | proxy p50 / p99 ms | direct p50 / p99 ms | proxy / direct tps | **p99 proxy/direct** | pooled | target | proxy p99 / its idle p99 | schedule lag p99 proxy / direct ms | proxy CPU main / all / encoder host / lowered threads | CPU-s per 1M rows | main thread waiting for a CPU |" +
      (c.argv.probe ? " event-loop delay p99 / max ms | GC ms |" : ""),
  );
  out.push(
    `|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|${c.argv.probe ? "---:|---:|" : ""}`,
  );
  const m = (rs: WindowResult[], f: (r: WindowResult) => number): number => median(rs.map(f));
  const sp = (rs: WindowResult[], f: (r: WindowResult) => number, digits = 2): string =>
    fmtSpread(spread(rs.map(f)), digits);
  const pct = (rs: WindowResult[], f: (r: WindowResult) => number): string =>
    `${(m(rs, f) * 100).toFixed(0)}%`;
  const ratios: string[] = [];
  /** Per proxy and window: [load] → p99 ratio against direct, against its idle p99, export s. */
  const beside = new Map<string, Map<Load, { ratio: RatioSummary; vsIdle: number; exportSecs: number }>>();
  for (const name of names) {
    for (const kind of c.kinds) {
      for (const load of c.loads) {
        const rs = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!rs) continue;
        const idle = results.get(`${name} idle${loadTag(load)}`);
        const ratio = summary(rs);
        const target = kind === "idle" ? 1.5 : 2;
        const vsIdle =
          idle && kind !== "idle" ? m(rs, (r) => r.proxy.p99Ms) / m(idle, (r) => r.proxy.p99Ms) : Number.NaN;
        const exportSecs = kind === "idle" ? Number.NaN : m(rs, (r) => r.exportRowsPerSec / 1000);
        const b = beside.get(`${name}\t${kind}`) ?? new Map();
        b.set(load, { ratio, vsIdle, exportSecs });
        beside.set(`${name}\t${kind}`, b);
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${c.rate}` : "saturated"} | ${fmtSpread(ratio.txns, 0)} | ` +
            `${kind === "idle" ? "–" : `${sp(rs, (r) => r.exportRowsPerSec / 1000, 0)}k; ${sp(rs, (r) => r.exportsDone, 0)}`} | ` +
            `${m(rs, (r) => r.proxy.p50Ms).toFixed(2)} / ${sp(rs, (r) => r.proxy.p99Ms)} | ` +
            `${m(rs, (r) => r.direct.p50Ms).toFixed(2)} / ${sp(rs, (r) => r.direct.p99Ms)} | ` +
            `${fmtRate(m(rs, (r) => r.proxy.tps))} / ${fmtRate(m(rs, (r) => r.direct.tps))} | ` +
            `**${fmtSpread(ratio.ratio)}** | ${ratio.pooled.toFixed(2)} | ≤ ${target}: ${ratio.ratio.median <= target ? "MET" : "MISSED"} | ` +
            `${Number.isNaN(vsIdle) ? "–" : vsIdle.toFixed(2)} | ` +
            `${load === "rated" ? `${m(rs, (r) => r.proxy.lagP99Ms).toFixed(2)} / ${m(rs, (r) => r.direct.lagP99Ms).toFixed(2)}` : "–"} | ` +
            `${pct(rs, (r) => r.mainCpu)} / ${pct(rs, (r) => r.totalCpu)} / ${pct(rs, (r) => r.hostCpu)} / ${pct(rs, (r) => r.lowCpu)} | ` +
            `${kind === "idle" ? "–" : sp(rs, (r) => r.cpuPerMRows)} | ` +
            `${(m(rs, (r) => r.mainWait) * 100).toFixed(1)}% (${m(rs, (r) => r.mainWaitEach).toFixed(2)} ms each) |` +
            (c.argv.probe
              ? ` ${m(rs, (r) => r.loopP99).toFixed(1)} / ${m(rs, (r) => r.loopMax).toFixed(1)} | ${m(rs, (r) => r.gcMs).toFixed(0)} |`
              : ""),
        );
        ratios.push(
          `${name} ${kind}${loadTag(load)}: ${fmtSpread(ratio.ratio)} (target ≤ ${target})` +
            (kind === "idle"
              ? ""
              : `, after the first ${START_SPLIT_S} s ${fmtSpread(spread(rs.map((r) => r.split.after)))}`),
        );
      }
    }
  }
  if (c.loads.length > 1) {
    // The two loads beside each other: what the machine's CPU shares do to the ratios (saturated)
    // and what a client at a rate both paths can serve sees (rated).
    out.push(
      "\n| proxy | window | p99 proxy/direct saturated | p99 proxy/direct rated | proxy p99 / its idle p99 saturated | rated | exported k rows/s saturated / rated |",
    );
    out.push("|---|---|---:|---:|---:|---:|---:|");
    const f = (x: number | undefined): string => (x === undefined || Number.isNaN(x) ? "–" : x.toFixed(2));
    for (const [k, b] of beside) {
      const [name, kind] = k.split("\t");
      const sat = b.get("saturated");
      const rat = b.get("rated");
      out.push(
        `| ${name} | ${kind} | ${sat ? fmtSpread(sat.ratio.ratio) : "–"} | ${rat ? fmtSpread(rat.ratio.ratio) : "–"} | ${f(sat?.vsIdle)} | ${f(rat?.vsIdle)} | ` +
          `${kind === "idle" ? "–" : `${sat?.exportSecs.toFixed(0) ?? "–"} / ${rat?.exportSecs.toFixed(0) ?? "–"}`} |`,
      );
    }
  }
  if (names.includes("pgbouncer")) out.push(...yardstickTable(c, names, results));
  out.push(...splitTable(c, names, results));
  out.push(
    "\n| proxy | window | load | transactions slower than the direct p99 | … of them started late (schedule lag > half their latency) | 10 ms slices they ended in |",
    "|---|---|---|---:|---:|---:|",
  );
  for (const name of names)
    for (const kind of c.kinds)
      for (const load of c.loads) {
        const rs = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!rs) continue;
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${c.rate}` : "saturated"} | ${sp(rs, (r) => r.slow.n, 0)} | ${sp(rs, (r) => r.slow.laggedShare * 100, 0)}% | ${sp(rs, (r) => r.slow.buckets, 0)} |`,
        );
      }
  if (c.traceSecs > 0) out.push(...traceTable(c, names, results));
  if (c.argv.probe) {
    // Counters of the relay thread itself, which a busy machine distorts less than a p99.
    out.push(
      `\n| proxy | window | load | relay CPU ms, first ${START_SPLIT_S} s / next ${START_SPLIT_S} s | relay page faults, first / next | relay's longest block (10 ms timer late by, ms), first / next |`,
      "|---|---|---|---:|---:|---:|",
    );
    for (const name of names)
      for (const kind of c.kinds)
        for (const load of c.loads) {
          const rs = results.get(`${name} ${kind}${loadTag(load)}`);
          if (!rs || kind === "idle") continue;
          out.push(
            `| ${name} | ${kind} | ${load === "rated" ? `-R ${c.rate}` : "saturated"} | ${sp(rs, (r) => r.relayFirst.runMs, 0)} / ${sp(rs, (r) => r.relayNext.runMs, 0)} | ${sp(rs, (r) => r.relayFirst.faults, 0)} / ${sp(rs, (r) => r.relayNext.faults, 0)} | ${sp(rs, (r) => r.relayFirst.lateMs, 0)} / ${sp(rs, (r) => r.relayNext.lateMs, 0)} |`,
          );
        }
  }
  out.push(
    `\np99 through the proxy / p99 direct in the same window (median of rounds, lowest–highest): ${ratios.join("; ")}`,
  );
  out.push(...confidenceTables(c, names, results, meta.runOf));
  return `${out.join("\n")}\n`;
}

/** A window's figures per round that the confidence tables sum up. */
const perRound = {
  p99: (r: WindowResult): number => percentileSorted(r.proxyLat, 99) / percentileSorted(r.directLat, 99),
  p95: (r: WindowResult): number => percentileSorted(r.proxyLat, 95) / percentileSorted(r.directLat, 95),
  proxyP99Ms: (r: WindowResult): number => percentileSorted(r.proxyLat, 99) / 1000,
  directP99Ms: (r: WindowResult): number => percentileSorted(r.directLat, 99) / 1000,
};
/** The issue's target: p99 through the proxy ≤ this × direct's (idle 1.5, during exports 2). */
const targetOf = (kind: WindowKind): number => (kind === "idle" ? 1.5 : 2);
const over = (rs: WindowResult[], kind: WindowKind): Exceedance[] =>
  rs.map((r) => exceedance(r.proxyLat, r.directLat, targetOf(kind)));
const pct = (i: Interval): Interval => ({ ...i, estimate: i.estimate * 100, lo: i.lo * 100, hi: i.hi * 100 });
const lats = (rs: WindowResult[]): RoundLatencies[] =>
  rs.map((r) => ({ path: r.proxyLat, direct: r.directLat }));

/**
 * How sure the medians are (isolation-stats.ts; docs/isolation.md, "Reading the confidence
 * intervals"): per unit and window the median of the per-round p99 ratios with its 95% bootstrap
 * interval (the issue's figure), and beside it: the p95 ratio (a few rounds' tails sway it less),
 * the share of transactions over target × direct p99 (the issue's question as a count), each
 * side's p99 and how closely they move together over rounds (dividing by direct's p99 takes out
 * what both sides suffered only when they do), the pooled p99 ratio. Then each proxy against the
 * first, paired by round.
 */
function confidenceTables(
  c: IsolationConfig,
  names: string[],
  results: Map<string, WindowResult[]>,
  runOf: number[] | undefined,
): string[] {
  // Pooled runs (--from): draw runs, then rounds within them (isolation-stats.ts, `groups`).
  const o = { groups: runOf !== undefined && new Set(runOf).size > 1 ? runOf : undefined };
  const out = [
    "\n| proxy | window | load | rounds | **p99 proxy/direct**, median [95% interval] | p95 proxy/direct | proxy transactions over target × direct p99, % (≤ 1: met) | proxy p99 ms | direct p99 ms | correlation of log p99 proxy, direct over rounds | pooled p99 ratio |",
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|",
  ];
  const loadCell = (load: Load): string => (load === "rated" ? `-R ${c.rate}` : "saturated");
  const mi = (rs: WindowResult[], g: (r: WindowResult) => number, digits = 2): string =>
    fmtInterval(medianInterval(rs.map(g), o), digits);
  for (const name of names)
    for (const kind of c.kinds)
      for (const load of c.loads) {
        const rs = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!rs) continue;
        out.push(
          `| ${name} | ${kind} | ${loadCell(load)} | ${rs.length} | **${mi(rs, perRound.p99)}** | ${mi(rs, perRound.p95)} | ` +
            `${fmtInterval(pct(shareInterval(over(rs, kind), o)))} | ${mi(rs, perRound.proxyP99Ms, 1)} | ${mi(rs, perRound.directP99Ms, 1)} | ` +
            `${logCorrelation(rs.map(perRound.proxyP99Ms), rs.map(perRound.directP99Ms)).toFixed(2)} | ${fmtInterval(pooledRatioInterval(lats(rs), 99, o))} |`,
        );
      }
  /** The paired p99 ratio's median in each pooled run: how far runs differ beside the rounds. */
  const perRun = (ra: WindowResult[], rb: WindowResult[]): string => {
    if (o.groups === undefined) return "–";
    const runs = [...new Set(o.groups)];
    const of = (rs: WindowResult[], run: number) =>
      rs.filter((_, i) => o.groups![i] === run).map(perRound.p99);
    return runs
      .map((run) => pairedFactor(of(ra, run), of(rb, run), { iterations: 1 }).estimate.toFixed(2))
      .join(" / ");
  };
  const proxies = names.filter((n) => n !== "pgbouncer");
  const a = proxies[0];
  if (a !== undefined && proxies.length > 1) {
    out.push(
      `\n| window | load | proxy B against A = ${a} | pairs | **p99 ratio B / A**, median over rounds [95% interval] | p99 ratio after the first ${START_SPLIT_S} s B / A | p95 ratio B / A | over target, % B − A | proxy p99 B / A | correlation of log p99 ratio A, B over rounds | pooled p99 ratio B / A | p99 ratio B / A in each run (--from) |`,
      "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    );
    for (const kind of c.kinds)
      for (const load of c.loads) {
        const ra = results.get(`${a} ${kind}${loadTag(load)}`);
        if (!ra) continue;
        for (const b of proxies.slice(1)) {
          const rb = results.get(`${b} ${kind}${loadTag(load)}`);
          if (!rb) continue;
          const f = (g: (r: WindowResult) => number) => fmtInterval(pairedFactor(ra.map(g), rb.map(g), o));
          const n = Math.min(ra.length, rb.length);
          out.push(
            `| ${kind} | ${loadCell(load)} | ${b} | ${n} | **${f(perRound.p99)}** | ${kind === "idle" ? "–" : f((r) => r.split.after)} | ${f(perRound.p95)} | ` +
              `${fmtInterval(pct(pairedShareDifference(over(ra, kind), over(rb, kind), o)))} | ${f(perRound.proxyP99Ms)} | ` +
              `${logCorrelation(ra.slice(0, n).map(perRound.p99), rb.slice(0, n).map(perRound.p99)).toFixed(2)} | ${fmtInterval(pairedPooledFactor(lats(ra), lats(rb), 99, o))} | ${perRun(ra.slice(0, n), rb.slice(0, n))} |`,
          );
        }
      }
  }
  out.push(
    `\nIntervals: 95% percentile bootstrap over rounds (10000 resamples, 2000 for the pooled ratio; seeded: the same rounds give the same interval)${o.groups === undefined ? "" : `; ${new Set(o.groups).size} runs pooled: each resample draws runs, then rounds within them`}. ` +
      "B / A pairs round i of B with round i of A (they alternated within that round): an interval that leaves out 1 (0 for a difference) separates the builds, one that holds it does not. " +
      "Each interval on its own: among this many columns one may leave out 1 by chance (1 in 20 when nothing differs), so a build is told apart by the bold column, not by whichever column separates. " +
      "A correlation near 0 says the two figures move independently from round to round: dividing (or pairing) then adds the other side's noise instead of taking out a shared disturbance.",
  );
  return out;
}

/** Export windows: the p99 ratio of the whole window beside those of its first START_SPLIT_S
 * after the exports' start and of the rest, so the start-up's share is measured. */
function splitTable(c: IsolationConfig, names: string[], results: Map<string, WindowResult[]>): string[] {
  const out = [
    `\n| proxy | window | load | p99 proxy/direct, whole window | first ${START_SPLIT_S} s after the exports' start | after the first ${START_SPLIT_S} s | the proxy's slowest 1%: share in the first ${START_SPLIT_S} s |`,
    "|---|---|---|---:|---:|---:|---:|",
  ];
  for (const name of names)
    for (const kind of c.kinds)
      for (const load of c.loads) {
        const rs = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!rs || kind === "idle") continue;
        const sp = (f: (r: WindowResult) => number, digits = 2): string =>
          fmtSpread(spread(rs.map(f)), digits);
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${c.rate}` : "saturated"} | ${fmtSpread(summary(rs).ratio)} | ` +
            `${sp((r) => r.split.first)} | **${sp((r) => r.split.after)}** | ${sp((r) => r.split.slowestFirst * 100, 0)}% |`,
        );
      }
  return out;
}

/** With --sched-trace: per proxy and window, medians over rounds of the relay's waits and runs, and
 * of who ran while it waited (ms per traced second, summed over CPUs). */
function traceTable(c: IsolationConfig, names: string[], results: Map<string, WindowResult[]>): string[] {
  const out = [
    `\n| proxy | window | load | relay waits ms/s | wait p99 µs | runs ms/s | run p99 / max µs | waits displacing an encoder: n/s, p50 / p99 µs | … the export's backend | … other tasks of ours (V8, libuv) | while it waited, ms/s: ${TRACE_CLASSES.join(" / ")} |`,
    "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|",
  ];
  for (const name of names)
    for (const kind of c.kinds)
      for (const load of c.loads) {
        const rs = (results.get(`${name} ${kind}${loadTag(load)}`) ?? []).filter((r) => r.trace);
        if (rs.length === 0) continue;
        const m = (f: (t: SchedTraceSummary) => number, d = 0): string =>
          median(rs.map((r) => f(r.trace!))).toFixed(d);
        const by = (c: (typeof TRACE_CLASSES)[number]): string =>
          `${m((t) => t.endedBy[c].n / t.secs)}, ${m((t) => t.endedBy[c].p50Us)} / ${m((t) => t.endedBy[c].p99Us)}`;
        out.push(
          `| ${name} | ${kind} | ${load === "rated" ? `-R ${c.rate}` : "saturated"} | ${m((t) => t.waitMs / t.secs)} | ${m((t) => t.waitP99Us)} | ` +
            `${m((t) => t.runMs / t.secs)} | ${m((t) => t.runP99Us)} / ${m((t) => t.runMaxUs)} | ${by("encoder")} | ${by("pg-export")} | ${by("proxy-other")} | ` +
            `${TRACE_CLASSES.map((c) => m((t) => t.duringWaitMs[c] / t.secs)).join(" / ")} |`,
        );
      }
  return out;
}

/** The windows' p99 ratios summed up (bench/lib/export-window.ts: why the median of the per-window
 * ratios, and the pooled ratio beside it). */
const summary = (rs: WindowResult[]): RatioSummary =>
  ratioSummary(rs.map((r) => ({ path: r.proxyLat, direct: r.directLat })));

/** Each proxy's p99 ratio to direct beside PgBouncer's (each against the direct run of its own
 * windows), and in idle windows the relay's CPU per transaction beside PgBouncer's. */
function yardstickTable(c: IsolationConfig, names: string[], results: Map<string, WindowResult[]>): string[] {
  const out = [
    "\n| window | load | proxy | p99 proxy/direct | p99 pgbouncer/direct | proxy ratio / pgbouncer ratio | CPU per transaction µs: proxy main thread (all threads) / pgbouncer |",
    "|---|---|---|---:|---:|---:|---:|",
  ];
  const m = (rs: WindowResult[], f: (r: WindowResult) => number): number => median(rs.map(f));
  for (const kind of c.kinds)
    for (const load of c.loads) {
      const bs = results.get(`pgbouncer ${kind}${loadTag(load)}`);
      if (!bs) continue;
      const b = summary(bs);
      for (const name of names) {
        if (name === "pgbouncer") continue;
        const ps = results.get(`${name} ${kind}${loadTag(load)}`);
        if (!ps) continue;
        const p = summary(ps);
        const cpu =
          kind === "idle"
            ? `${m(ps, (r) => r.relayUsPerTx).toFixed(0)} (${m(ps, (r) => r.allUsPerTx).toFixed(0)}) / ${m(bs, (r) => r.relayUsPerTx).toFixed(0)}`
            : "–";
        out.push(
          `| ${kind} | ${load === "rated" ? `-R ${c.rate}` : "saturated"} | ${name} | ${fmtSpread(p.ratio)} | ` +
            `${fmtSpread(b.ratio)} | ${(p.ratio.median / b.ratio.median).toFixed(2)} | ${cpu} |`,
        );
      }
    }
  return out;
}
