// Isolation (issue #13 item 1): does an export running through the proxy slow down everyone else's
// ordinary queries through the same proxy? pgbench -S (one-row primary-key SELECTs) through the
// proxy and straight to PostgreSQL, idle and while exports run, p50/p99/tps per window.
//
//   npx tsx bench/isolation.ts [--rows 5000000] [--rounds 2] [--secs 15] [--idle-secs 10]
//                              [--windows idle,parquet,csv,parquet4,csv4] [--target file|s3]
//                              [--ref COMMIT[,COMMIT2]] [--exports JSON] [--variants JSON-ARRAY]
//                              [--probe] [--own-session yes|no] [--clients 4] [--threads 2]
//                              [--scale 10] [--rate TPS|P%] [--load saturated,rated] [--no-build]
//                              [--yardstick pgbouncer] [--sched-trace SECS] [--save FILE]
//   npx tsx bench/isolation.ts --from FILE[,FILE…]
//
// --save FILE keeps every window's figures and latencies (rewritten after each window); --from
// prints the tables of one or more such files again without running anything, their rounds pooled
// (each run's complete rounds, in file order). The intervals are seeded, so the same files print
// the same intervals.
//
// --sched-trace SECS: in every window, SECS seconds of the scheduler's switches and wake-ups on all
// CPUs (`perf record -e sched:sched_switch …`, needs root or perf_event_paranoid ≤ 0), starting 1 s
// into the window's load: how long the relay thread waited for a CPU each time it was woken, how
// long it ran each time (a turn of its event loop), and what ran on the CPUs while it waited — the
// exports' encoder threads, the proxy's other threads, the export's PostgreSQL backend, the other
// backends, pgbench, idle CPUs, the machine's other work (bench/lib/sched-trace.ts).
//
// --yardstick pgbouncer: PgBouncer (session mode, as bench/proxy-overhead.sh runs it) as one more
// path, in windows of its own alternating with the proxies' (same rotation, same -T and -R):
// pgbench through PgBouncer and direct at the same time, the exports through the first proxy. Its
// p99 ratio to direct is printed beside each proxy's, and in idle windows the CPU per relayed
// transaction of the proxy's main thread (all its threads) beside PgBouncer's, from their
// schedstat over the whole pgbench run. What any proxy's extra hop costs on this machine, to tell
// it from what is ours (docs/isolation.md, "The PgBouncer yardstick").
//
// --variants '[{"workerPolicy":"nice"},{"workerPolicy":"idle"}]': one proxy per build and entry
// (its settings over --exports; an "env" object is extra environment, "nodeArgs" an array of
// extra node options for the proxy process (e.g. V8's "--single-threaded-gc"), "relaySliceUs" N has the
// bench ask the scheduler for an N µs slice for the proxy's main thread once it runs (sched_setattr
// through perl, with SCHED_FLAG_RESET_ON_FORK; what the proxy's own relaySliceUs setting does, for
// builds that lack it), "reniceHelpers" N
// has the bench renice every thread of the proxy but its main one that runs at niceness 0 (V8's
// compiler and GC threads, libuv's pool: they serve the encoder threads too) to N, every 200 ms
// while a window runs (an experiment from outside, not a proxy setting); "ownSession" overrides
// --own-session), all alternating in the same rounds. --own-session yes starts the proxies with
// setsid (see docs/isolation.md on autogroups). --probe loads bench/lib/loop-probe.mjs into each
// proxy and prints its event-loop delay and GC per window.
//
// Two kinds of load (--load): `saturated`, closed-loop pgbench (each client sends its next query
// as soon as the last one is answered), which keeps both cores busy and so measures the share of
// CPU each path gets as much as the latency the proxy adds; and `rated`, pgbench -R: transactions
// started on a Poisson schedule at --rate per second, the same rate through the proxy and direct,
// below what either path can serve, as an application's traffic arrives. --rate is a number of
// transactions per second per pgbench run, or P% of the lower of the proxy's and direct tps in a
// saturated idle calibration window run first (before the rounds, with the first proxy). As
// pgbench defines it, a rated transaction's latency runs from its scheduled start, so it includes
// the schedule lag (how late pgbench could start it: a client still waiting for its previous
// answer, or pgbench itself waiting for a CPU); that lag's p99 is printed beside it. With --rate
// alone both loads run, every window twice (saturated and rated, alternating).
//
// Set-up: a throwaway PostgreSQL (test/support/postgres.ts) with `pgbench -i -s 10` tables and the
// export table t_<rows> (bench/lib/bench-table.ts, the one bench/export.ts uses), exports going to
// `file://` (the proxy's --file-root; default: no S3 server competing for the two cores) or moto.
// One proxy process (`node dist/cli.js`) per commit of --ref ("." = this checkout; default: this
// checkout alone), each with maxExportsPerUser 4 so four exports of one user run at once.
//
// A window: `pgbench -n -S -c 4 -j 2 -T secs -l` through the proxy AND the same pgbench straight to
// PostgreSQL, started together and running at the same time. Running both at once is what makes
// "the same window" true: the direct run sees exactly the upstream load (the export's backend, the
// other pgbench's backends, the CPU the proxy takes) the proxied run sees, and what the proxied run
// suffers beyond that is the proxy's share. (Alternating short slices within one export would put
// the two runs in different phases of it: planning, reading, file rollover.) Windows:
//   idle       nothing else; latencies of the transactions while both runs were active
//   parquet    one `COPY t TO '…' WITH (FORMAT = 'parquet', COMPRESSION = 'snappy')` through the proxy
//   csv        one `… WITH (FORMAT = 'csv')`
//   parquet4   four Parquet exports at once (one user, four sessions)
//   csv4       four CSV exports at once
// An export window is --secs (default 15) seconds of constant export load, whatever the exports'
// speed: pgbench starts first (-T secs + 2), the export streams 1 s later (one stream, or four for
// parquet4/csv4), each stream starting its next export as soon as its last one ends; at the
// window's end the exports running are stopped (psql's Ctrl-C: the CancelRequest), their rows so
// far taken from their last progress NOTICE (exports.progressIntervalMs 500 here); only
// transactions that ended inside the --secs of load count (from pgbench's per-transaction
// log: latency and completion time, so p50/p99 are computed here, over exactly those). So every
// export window of every round and every proxy has the same length and the same load, and its p99
// rests on --secs worth of transactions (the number is printed) rather than on one export's few
// seconds; --rows sets how long each export is (how often one starts). Until session 9 a window
// was one export (-T: --secs in the first round, the last export time + 2 s after): windows of
// 2–3 s that moved 2–7× between rounds (docs/isolation.md, "Export windows of a fixed length").
// Idle windows are --idle-secs long. Windows run in an order rotated every round, proxies alternating.
//
// Printed per proxy and window, as the median over rounds with the lowest and highest round in
// brackets: p50/p99/tps through the proxy and direct, the number of transactions behind each p99,
// the ratio p99 proxy/direct (the median of the per-window ratios, and beside it the ratio of the
// p99s of all rounds' transactions pooled: bench/lib/export-window.ts says why the first is the
// figure), the proxy's p99 beside its idle p99, the rows exported per second of the window (all
// streams) and the exports that finished in it, the proxy's CPU-s per 1M rows exported in the
// window (its process tree, relaying the window's pgbench included), and its CPU in the window: main thread (the
// event loop) and all threads (its encoder host's included), the encoder host alone, as a share of
// one core (/proc/<pid>/task/<pid>/stat, /proc/<pid>/stat, the host's /proc/<pid>/stat), the CPU of
// the threads with a niceness or a scheduling class of their own (the exports' encoder and writer
// threads, the host's), and how much of the window the main thread was runnable but waiting for a
// CPU (its schedstat). Targets (issue #13): p99(proxy)/p99(direct) ≤ 2 during exports, ≤ 1.5 idle.
// Then how sure those medians are (bench/lib/isolation-stats.ts; docs/isolation.md, "Reading the
// confidence intervals"): per proxy and window a 95% bootstrap interval of the median ratio over
// rounds, steadier figures beside it (the p95 ratio, the proxy's p99 excess over direct in ms, the
// pooled p99 ratio, each with its interval), and each proxy against the first one, paired by round
// (the rounds alternate the proxies): the median of log(ratio B / ratio A) as a factor, with its
// interval. An interval that excludes 1 separates the builds; one that spans it does not.
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import { startMoto } from "../test/support/moto.js";
import { startPostgres } from "../test/support/postgres.js";
import { tableSql } from "./lib/bench-table.js";
import {
  isolationConfig,
  type Load,
  loadTag,
  parseIsolationArgs,
  type WindowKind,
} from "./lib/isolation-args.js";
import { summaryText, windowLine } from "./lib/isolation-report.js";
import { loadRun, poolRuns, saveRun } from "./lib/isolation-results.js";
import { setSlice } from "./lib/isolation-threads.js";
import { EXPORT_OPTS, type WindowResult, windowRunner } from "./lib/isolation-window.js";
import { type Pgbouncer, startPgbouncer } from "./lib/pgbouncer.js";
import { buildProxies, type ProxyProc, ROOT, startProxyProcess, stopProxy } from "./lib/proxy-process.js";
import { psql } from "./lib/psql.js";
import { fmtRate } from "./lib/stats.js";
import { benchLog, cleanupOnSignal, printHeaderAndExit } from "./lib/usage.js";

if (process.argv.includes("--help") || process.argv.includes("-h")) printHeaderAndExit(import.meta.url);
const c = parseIsolationArgs(process.argv.slice(2));
const WORK = c.argv.from === undefined ? mkdtempSync("/tmp/c2s-bench-isolation-") : "";
const DB = "bench";
const BUCKET = "bench";
const TABLE = `t_${c.rows}`;
const log = benchLog;

async function main(): Promise<void> {
  if (c.argv.from !== undefined) return printSaved(c.argv.from.split(","));
  // The SDK's Node-version notice, off the documented way (as vitest.config.ts and the CLI do).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const started = new Date();
  const load0 = loadavg();
  log(
    `bench/isolation.ts; ${cpus().length} cores, ${(totalmem() / 1024 ** 3).toFixed(0)} GB, load ${load0.map((l) => l.toFixed(2)).join(" ")}`,
  );
  const builds = buildProxies(c.refs, WORK, { noBuild: c.argv["no-build"], log });

  log(`starting PostgreSQL${c.target === "s3" ? " and moto" : ""}`);
  const [pg, moto] = await Promise.all([startPostgres(), c.target === "s3" ? startMoto() : undefined]);
  const proxies: ProxyProc[] = [];
  const units: Array<{ name: string; probeFile: string }> = [];
  let bouncer: Pgbouncer | undefined;
  cleanupOnSignal(() => rmSync(WORK, { recursive: true, force: true }));
  cleanupOnSignal(() => pg.stop());
  if (moto) cleanupOnSignal(() => moto.stop());
  cleanupOnSignal(() => Promise.all(proxies.map(stopProxy)));
  cleanupOnSignal(() => bouncer?.stop());
  const results = new Map<string, WindowResult[]>(); // `${build} ${kind}`
  const savedMeta = () => ({
    args: c.argv,
    rate: c.rate,
    names: units.map((u) => u.name),
    started: started.toISOString(),
    load0,
  });
  try {
    execFileSync(
      "psql",
      ["-X", "-q", "-h", "127.0.0.1", "-p", String(pg.port), "-U", "postgres"].concat([
        "-c",
        `CREATE DATABASE ${DB}`,
      ]),
    );
    log(`pgbench -i -s ${c.argv.scale}; creating ${TABLE}`);
    execFileSync(
      "pgbench",
      ["-i", "-q", "-s", c.argv.scale, "-h", "127.0.0.1", "-p", String(pg.port), "-U", "postgres", DB],
      { stdio: "ignore", env: { ...process.env, PGSSLMODE: "disable" } },
    );
    await psql(pg.port, DB, tableSql(c.rows), "/dev/null", { quiet: true });
    await psql(pg.port, DB, `VACUUM (FREEZE, ANALYZE) ${TABLE}`, "/dev/null", { quiet: true });
    await psql(pg.port, DB, `COPY (SELECT * FROM ${TABLE}) TO STDOUT (FORMAT binary)`, "/dev/null");
    mkdirSync(join(WORK, "files"), { recursive: true });
    const s3 = moto
      ? new S3Client({
          endpoint: moto.endpoint,
          region: "us-east-1",
          forcePathStyle: true,
          credentials: { accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey },
        })
      : undefined;
    const resetS3 = async (): Promise<void> => {
      if (!moto || !s3) return;
      await moto.reset();
      await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
    };
    await resetS3();
    const s3Access = moto ?? { endpoint: "http://127.0.0.1:9", accessKeyId: "x", secretAccessKey: "x" };
    for (const b of builds)
      for (const v of c.variants) {
        const probeFile = join(WORK, `probe-${units.length}.json`);
        units.push({ name: [b.name, v.label].filter((x) => x !== "").join(" "), probeFile });
        proxies.push(
          await startProxyProcess({
            build: b,
            pgPort: pg.port,
            s3: s3Access,
            work: WORK,
            exports: v.exports,
            ownSession: v.ownSession,
            env: c.argv.probe ? { ...v.env, C2S_LOOP_PROBE_FILE: probeFile } : v.env,
            nodeArgs: [
              ...v.nodeArgs,
              ...(c.argv.probe ? ["--import", join(ROOT, "bench/lib/loop-probe.mjs")] : []),
            ],
          }),
        );
      }
    for (const [i, p] of proxies.entries()) {
      const us = c.variants[i % c.variants.length]!.relaySliceUs;
      if (us !== undefined) setSlice(p.pid, us);
    }
    if (c.yardstick) {
      // The yardstick is a unit of its own, alternating with the proxies: its windows run pgbench
      // through PgBouncer and direct, and the exports (which only the proxy can run) through the
      // first proxy. Why not a third pgbench in the proxies' windows: docs/isolation.md.
      bouncer = await startPgbouncer(pg.port);
      units.push({ name: "pgbouncer", probeFile: "" });
    }
    log(`proxies: ${units.map((u, i) => `${u.name} pid ${proxies[i]?.pid ?? bouncer?.pid}`).join(", ")}`);
    // One small export of each format through every proxy before any window: the first export of a
    // proxy starts its encoder host (exports.encoderHost "process") and compiles parquet-wasm, a
    // one-off that would otherwise land in whichever window came first.
    for (const p of proxies)
      for (const fmt of new Set(c.kinds.filter((k) => k !== "idle").map((k) => EXPORT_OPTS[k].opts))) {
        const target =
          c.target === "file" ? `file://${join(WORK, "files", "warm-up")}` : `s3://${BUCKET}/warm-up`;
        await psql(
          p.port,
          DB,
          `COPY (SELECT * FROM ${TABLE} LIMIT 10000) TO '${target}' WITH (${fmt})`,
          "/dev/null",
        );
        rmSync(join(WORK, "files"), { recursive: true, force: true });
        mkdirSync(join(WORK, "files"), { recursive: true });
        await resetS3();
      }

    const runWindow = windowRunner({
      c,
      pg,
      db: DB,
      table: TABLE,
      bucket: BUCKET,
      work: WORK,
      proxies,
      bouncer,
      units,
      resetS3,
    });
    if (c.loads.includes("rated") && Number.isNaN(c.rate)) {
      const r = await runWindow(0, "idle", "saturated");
      c.rate = Math.max(1, Math.round((Math.min(r.proxy.tps, r.direct.tps) * c.ratePct) / 100));
      log(
        `  calibration (saturated idle, ${units[0]!.name}): proxy ${fmtRate(r.proxy.tps)} tps, direct ${fmtRate(r.direct.tps)} tps; rated windows at ${c.ratePct}% of the lower: pgbench -R ${c.rate}`,
      );
    }
    // Every (proxy, window, load) once a round; order rotated each round, proxies interleaved.
    const slots: Array<[number, WindowKind, Load]> = [];
    for (const k of c.kinds)
      for (const l of c.loads) for (let bi = 0; bi < units.length; bi++) slots.push([bi, k, l]);
    for (let round = 0; round < c.rounds; round++) {
      for (let i = 0; i < slots.length; i++) {
        const [bi, kind, load] = slots[(i + round) % slots.length]!;
        const key = `${units[bi]!.name} ${kind}${loadTag(load)}`;
        const r = await runWindow(bi, kind, load);
        results.set(key, [...(results.get(key) ?? []), r]);
        if (c.argv.save !== undefined) saveRun(c.argv.save, savedMeta(), results);
        log(windowLine(c, round, key, kind, load, r));
      }
    }
  } finally {
    for (const p of proxies) await stopProxy(p);
    await bouncer?.stop();
    await moto?.stop();
    await pg.stop();
    rmSync(WORK, { recursive: true, force: true });
  }
  const load1 = loadavg();
  if (c.argv.save !== undefined) saveRun(c.argv.save, { ...savedMeta(), load1 }, results);
  process.stdout.write(
    summaryText(
      c,
      units.map((u) => u.name),
      results,
      { started, load0, load1 },
    ),
  );
}

/** --from: the tables of saved runs, their rounds pooled. */
function printSaved(files: string[]): void {
  const runs = files.map(loadRun);
  const first = runs[0]!;
  const { names, results, rounds, runOf } = poolRuns(runs);
  const saved = isolationConfig(first.args);
  saved.rate = first.rate;
  saved.rounds = rounds;
  log(`--from ${files.length} run(s): ${rounds} complete rounds of ${names.join(", ")}`);
  process.stdout.write(
    summaryText(saved, names, results, {
      started: new Date(first.started),
      load0: first.load0,
      load1: runs.at(-1)!.load1 ?? [Number.NaN, Number.NaN, Number.NaN],
      runOf,
    }),
  );
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/isolation.ts: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
