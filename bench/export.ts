// End-to-end export throughput and memory: `COPY t TO 's3://…' WITH (FORMAT …)` run through the
// proxy (a separate `node dist/cli.js` process, so its peak RSS is its own) against a throwaway
// PostgreSQL and moto, beside the baselines TESTING.md asks for, in the same run, alternating.
//
//   npx tsx bench/export.ts [--rows 1000000,10000000] [--format csv,parquet]
//                           [--compression snappy,zstd] [--rounds 3] [--target s3|file|ceph]
//                           [--cpu-prof] [--no-build] [--no-duckdb] [--ref COMMIT[,COMMIT2]]
//                           [--exports JSON] [--node-args=…] [--proxy-log FILE]
//
// For every row count N a table of 8 mixed columns (int, bigint, text, numeric(12,2), timestamptz,
// boolean, double, date; ~110 bytes of CSV a row) is created. For every (N, variant) — csv, and
// parquet with each --compression — a fresh proxy process is started, then `--rounds` rounds run;
// each round runs the export and its baselines once, in an order rotated every round:
//   csv:     export via proxy        psql -c "COPY t TO 's3://…' WITH (FORMAT = 'csv')"
//            psql \copy → file       psql -c "\copy (select * from t) to stdout csv" > file
//            COPY csv → /dev/null    psql -c "COPY (select * from t) TO STDOUT (FORMAT csv)" > /dev/null
//   parquet: export via proxy        psql -c "COPY t TO 's3://…' WITH (FORMAT = 'parquet', COMPRESSION = …)"
//            COPY binary → /dev/null psql -c "COPY (select * from t) TO STDOUT (FORMAT binary)" > /dev/null
//            DuckDB → Parquet        DuckDB (rows loaded into it first, untimed) COPY … (FORMAT parquet)
// All psql runs are timed from spawn to exit (same psql start-up cost on both sides). Reported:
// medians, rows/s, MB/s (of the bytes each run produced), the median of the per-round throughput
// ratios export/baseline, and the proxy's peak RSS (VmHWM from /proc at the end of the variant).
// Round 1 is each proxy's first export (after its start-up warm-up, exports.warmUp): the targets'
// lines also give the per-round ratios and proxy CPU-s, round 1 apart from the median of the rest.
// Each export's objects are dropped afterwards (moto reset), so moto's memory does not grow.
//
// --target file  exports into file:///tmp/… through `--file-root` instead of moto: separates the
//                proxy's own cost from moto's (a Python server sharing the two cores).
// --target ceph  exports into a throwaway Ceph RadosGW (test/support/ceph.ts; Debian's radosgw,
//                ceph-mon, ceph-osd): a production S3 server instead of moto. Its CPU is reported
//                in the moto column (mon + osd + radosgw).
// --ref COMMIT[,COMMIT2]  builds and runs the proxy of that commit (git archive into a temp dir,
//                this checkout's node_modules) instead of the working tree, which others may be
//                editing. With two or more commits each gets its own proxy process and its export
//                is one more run in the rotation ("export via <commit>"), so old and new alternate
//                in the same rounds; the summary adds their throughput ratio. "." stands for this
//                checkout (e.g. --ref .,4291b8a). C2S_BENCH_BUILD_DIR=DIR keeps the builds for the
//                next run.
// CPU: every run prints the CPU seconds of each party, and per million rows (issue #13 item 2):
//                the proxy (all threads, its main thread in brackets), PostgreSQL, the S3 server,
//                the client (psql; DuckDB in-process). psql talks plain TCP (PGSSLMODE=disable) on
//                every leg, as the proxy does to its upstream here.
// --cpu-prof     runs the proxy with `node --cpu-prof` and prints where its time went per variant
//                (bench/cpuprofile-summary.ts; timings under the profiler are a little slower).
// --node-args="…" extra node/V8 flags for the proxy process, e.g. --node-args=--trace-gc.
// --proxy-log F  appends the proxy processes' stdout and stderr to file F, at log level info, and
//                prints each export's phases (plan, preflight, read, upload, commit: the proxy's
//                own "export complete" timings) beside it and their medians in the summary — the
//                fixed costs of an export apart from its rows. The read phase is split into `first
//                row` (query to first row), `rows` (first to last row) and `tail` (last row to every
//                file encoded); `outside` is psql's time beyond the export (start, session set-up).
// --exports JSON the proxy's "exports" settings, e.g. '{"partSize":5242880,"partsInFlight":2}';
//                or an array of them, one per --ref, to alternate settings in one run, e.g.
//                --ref .,. --exports '[{"encoderThreads":1},{"encoderThreads":2}]' (each proxy is
//                then named by its commit and settings).
import { execFileSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, statSync } from "node:fs";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import { type CephServer, startCeph } from "../test/support/ceph.js";
import { startMoto } from "../test/support/moto.js";
import { startPostgres } from "../test/support/postgres.js";
import { summarizeCpuProfile } from "./cpuprofile-summary.js";
import { tableSql } from "./lib/bench-table.js";
import {
  cpuSeconds,
  findPid,
  findPids,
  postmasterPid,
  threadSched,
  treeCpuSeconds,
  treeStatusKb,
} from "./lib/proc.js";
import {
  buildProxies,
  type ProxyBuild,
  type ProxyProc,
  parseRefs,
  startProxyProcess,
  stopProxy,
} from "./lib/proxy-process.js";
import { psql as psqlAt } from "./lib/psql.js";
import { fmtRate, median } from "./lib/stats.js";
import { benchLog, cleanupOnSignal, printHeaderAndExit } from "./lib/usage.js";

const { values: argv } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000,10000000" },
    format: { type: "string", default: "csv,parquet" },
    compression: { type: "string", default: "snappy,zstd" },
    rounds: { type: "string", default: "3" },
    target: { type: "string", default: "s3" },
    "cpu-prof": { type: "boolean", default: false },
    "no-build": { type: "boolean", default: false },
    "no-duckdb": { type: "boolean", default: false },
    ref: { type: "string" },
    "node-args": { type: "string", default: "" },
    "proxy-log": { type: "string" },
    exports: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (argv.help) printHeaderAndExit(import.meta.url);
const SIZES = argv.rows.split(",").map((s) => Number(s.replace(/_/g, "")));
const FORMATS = argv.format.split(",").map((s) => s.trim());
const COMPRESSIONS = argv.compression.split(",").map((s) => s.trim());
const ROUNDS = Number(argv.rounds);
const TARGET = argv.target;
/** The proxies measured side by side: this checkout, or each commit of `--ref A[,B…]`. */
const REFS = parseRefs(argv.ref);
type ExportsCfg = Record<string, unknown>;
const EXPORTS_CFG =
  argv.exports === undefined ? undefined : (JSON.parse(argv.exports) as ExportsCfg | ExportsCfg[]);
if (Array.isArray(EXPORTS_CFG) && EXPORTS_CFG.length !== REFS.length)
  throw new Error(`--exports has ${EXPORTS_CFG.length} settings for ${REFS.length} proxies (--ref)`);
/** The `exports` settings of the i-th proxy. */
const exportsOf = (i: number): ExportsCfg | undefined =>
  Array.isArray(EXPORTS_CFG) ? EXPORTS_CFG[i] : EXPORTS_CFG;
if (SIZES.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`bad --rows ${argv.rows}`);
if (FORMATS.some((f) => f !== "csv" && f !== "parquet")) throw new Error(`bad --format ${argv.format}`);
if (TARGET !== "s3" && TARGET !== "file" && TARGET !== "ceph") throw new Error(`bad --target ${TARGET}`);

const WORK = mkdtempSync("/tmp/c2s-bench-export-");
const DB = "bench";
const BUCKET = "bench";
const psql = (port: number, sql: string, out: string, opts: { quiet?: boolean } = {}) =>
  psqlAt(port, DB, sql, out, opts);

interface Variant {
  format: "csv" | "parquet";
  compression: string;
  label: string;
}
const VARIANTS: Variant[] = [];
for (const f of FORMATS) {
  if (f === "csv") VARIANTS.push({ format: "csv", compression: "none", label: "csv" });
  else
    for (const c of COMPRESSIONS) VARIANTS.push({ format: "parquet", compression: c, label: `parquet ${c}` });
}

// ---------------------------------------------------------------------------------------------

const MB = 1024 * 1024;
const log = benchLog;
/** `{"encoderThreads":2}` as `{encoderThreads:2}`: short enough for a run's name. */
const compactJson = (v: unknown): string => JSON.stringify(v ?? {}).replace(/"/g, "");
const exportRun = (b: ProxyBuild): string =>
  REFS.length === 1 ? "export via proxy" : `export via ${b.name}`;

interface RunResult {
  ms: number;
  bytes: number;
  /** The proxy's own phase timings of an export (--proxy-log), ms by phase. */
  phases?: Record<string, number>;
  /** CPU seconds each party used during the run (all threads; reaped children included). */
  cpu?: CpuSnap;
}

/** CPU seconds of: the proxies (all threads); PostgreSQL (postmaster + its exited backends); the S3
 * server; this process with its exited children (psql, or DuckDB's threads in-process) — "client". */
interface CpuSnap {
  proxy: number;
  /** The proxies' main (event loop) threads alone: the rest is workers, GC and libuv threads. */
  proxyMain: number;
  pg: number;
  moto: number;
  client: number;
}
const CPU_KEYS: Array<keyof CpuSnap> = ["proxy", "proxyMain", "pg", "moto", "client"];
const cpuDelta = (a: CpuSnap, b: CpuSnap): CpuSnap =>
  Object.fromEntries(CPU_KEYS.map((k) => [k, b[k] - a[k]])) as unknown as CpuSnap;

// --------------------------------------------------------------------------------------------- setup

const DUCK_COLUMNS =
  "{'id':'INTEGER','big':'BIGINT','label':'VARCHAR','amount':'DECIMAL(12,2)','at':'TIMESTAMPTZ','flag':'BOOLEAN','score':'DOUBLE','day':'DATE'}";

async function main(): Promise<void> {
  // The SDK's Node-version notice, off the documented way (as vitest.config.ts and the CLI do).
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const started = new Date();
  const load0 = loadavg();
  log(
    `bench/export.ts; ${cpus().length} cores, ${(totalmem() / 1024 ** 3).toFixed(0)} GB, load ${load0.map((l) => l.toFixed(2)).join(" ")}`,
  );
  const builds = buildProxies(REFS, WORK, { noBuild: argv["no-build"], log });
  if (Array.isArray(EXPORTS_CFG))
    for (const [i, b] of builds.entries())
      b.name = `${b.name.replace(/#\d+$/, "")}${compactJson(exportsOf(i))}`;
  log(`proxies: ${builds.map((b) => b.name).join(", ")}`);

  log(`starting PostgreSQL and ${TARGET === "ceph" ? "Ceph RadosGW" : "moto"}`);
  const [pg, moto] = await Promise.all([startPostgres(), TARGET === "ceph" ? startCeph() : startMoto()]);
  const pgPid = postmasterPid(pg.dir);
  const motoPort = new URL(moto.endpoint).port;
  // The S3 server's processes: moto, or Ceph's mon, osd and radosgw (all started in its dir).
  const motoPids =
    TARGET === "ceph"
      ? findPids((c) => c.includes((moto as CephServer).dir))
      : [findPid((c) => c.includes("moto.server") && c.includes(` ${motoPort}`))];
  let proxyPids: number[] = [];
  const cpuNow = (): CpuSnap => ({
    proxy: proxyPids.reduce((a, pid) => a + treeCpuSeconds(pid), 0),
    proxyMain: proxyPids.reduce((a, pid) => a + cpuSeconds(pid, false, true), 0),
    pg: cpuSeconds(pgPid, true),
    moto: motoPids.reduce((a, pid) => a + cpuSeconds(pid, true), 0),
    client: cpuSeconds(process.pid, true),
  });
  const cleanups: Array<() => Promise<void> | void> = [
    () => moto.stop(),
    () => pg.stop(),
    () => rmSync(WORK, { recursive: true, force: true }),
  ];
  let liveProxies: ProxyProc[] = [];
  for (const c of [...cleanups].reverse()) cleanupOnSignal(c);
  cleanupOnSignal(() => Promise.all(liveProxies.map(stopProxy)));
  const s3 = new S3Client({
    endpoint: moto.endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: moto.accessKeyId, secretAccessKey: moto.secretAccessKey },
  });
  const resetS3 = async (): Promise<void> => {
    await moto.reset();
    await s3.send(new CreateBucketCommand({ Bucket: BUCKET }));
  };
  const exportedBytes = async (prefix: string): Promise<{ bytes: number; files: number }> => {
    if (TARGET === "file") {
      const dir = join(WORK, "files", prefix);
      const names = readdirSync(dir).filter((f) => f.includes("-batch-"));
      return { bytes: names.reduce((a, f) => a + statSync(join(dir, f)).size, 0), files: names.length };
    }
    let bytes = 0;
    let files = 0;
    let token: string | undefined;
    do {
      const r = await s3.send(
        new ListObjectsV2Command({ Bucket: BUCKET, Prefix: `${prefix}/`, ContinuationToken: token }),
      );
      for (const o of r.Contents ?? [])
        if (o.Key!.includes("-batch-")) {
          bytes += o.Size ?? 0;
          files++;
        }
      token = r.NextContinuationToken;
    } while (token);
    return { bytes, files };
  };

  let duck: { instance: DuckDBInstance; conn: DuckDBConnection } | null = null;
  const results: GroupResult[] = [];
  try {
    execFileSync("psql", [
      "-X",
      "-q",
      "-h",
      "127.0.0.1",
      "-p",
      String(pg.port),
      "-U",
      "postgres",
      "-c",
      `CREATE DATABASE ${DB}`,
    ]);
    await resetS3();
    mkdirSync(join(WORK, "files"), { recursive: true });
    if (VARIANTS.some((v) => v.format === "parquet") && !argv["no-duckdb"]) {
      const instance = await DuckDBInstance.create(":memory:");
      duck = { instance, conn: await instance.connect() };
    }
    let runNo = 0;
    for (const n of SIZES) {
      const table = `t_${n}`;
      log(`creating ${table} (${n} rows)`);
      const t0 = performance.now();
      await psql(pg.port, tableSql(n), "/dev/null", { quiet: true });
      await psql(pg.port, `VACUUM (FREEZE, ANALYZE) ${table}`, "/dev/null", { quiet: true });
      log(`  created in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
      // Warm the cache and learn the binary size once (untimed).
      const binFile = join(WORK, "bin.out");
      await psql(pg.port, `COPY (SELECT * FROM ${table}) TO STDOUT (FORMAT binary)`, binFile, {
        quiet: true,
      });
      const binaryBytes = statSync(binFile).size;
      rmSync(binFile);
      let duckLoaded = false;

      for (const v of VARIANTS) {
        if (v.format === "parquet" && duck && !duckLoaded) {
          log(`  loading ${table} into DuckDB (untimed)`);
          const csv = join(WORK, "load.csv");
          await psql(pg.port, `\\copy ${table} to '${csv}' csv`, "/dev/null", { quiet: true });
          await duck.conn.run(
            `CREATE OR REPLACE TABLE t AS SELECT * FROM read_csv('${csv}', header = false, columns = ${DUCK_COLUMNS})`,
          );
          rmSync(csv);
          duckLoaded = true;
        }
        const profDirs = builds.map((b) =>
          argv["cpu-prof"] ? join(WORK, `prof-${b.name}-${n}-${v.label.replace(/ /g, "-")}`) : null,
        );
        const proxies: ProxyProc[] = [];
        liveProxies = proxies;
        for (const [i, b] of builds.entries()) {
          const profDir = profDirs[i]!;
          proxies.push(
            await startProxyProcess({
              build: b,
              pgPort: pg.port,
              s3: moto,
              work: WORK,
              ...(exportsOf(i) === undefined ? {} : { exports: exportsOf(i) }),
              nodeArgs: [
                ...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []),
                ...argv["node-args"].split(" ").filter((a) => a !== ""),
              ],
              ...(argv["proxy-log"] === undefined ? {} : { logFile: argv["proxy-log"] }),
            }),
          );
        }
        proxyPids = proxies.map((p) => p.pid);
        // Each proxy's start-up work (its exports.warmUp, in the background once it listens) is
        // over before anything is measured: the first round is the first export of a proxy that
        // has been up a while, as a user's first export after a deploy would be.
        const idleCpu = await untilIdle(proxyPids);
        log(`  proxies idle after start-up: CPU-s ${idleCpu.map((c) => c.toFixed(2)).join(", ")}`);
        const rssIdleKb = proxies.map((p) => treeStatusKb(p.pid, "VmRSS"));
        const opts =
          v.format === "csv" ? "FORMAT = 'csv'" : `FORMAT = 'parquet', COMPRESSION = '${v.compression}'`;
        const runs: Record<string, () => Promise<RunResult>> = {};
        for (const [i, b] of builds.entries()) {
          const proxy = proxies[i]!;
          runs[exportRun(b)] = async () => {
            const prefix = `run-${++runNo}`;
            const threads0 = threadSched(proxy.pid, true);
            const target =
              TARGET === "file" ? `file://${join(WORK, "files", prefix)}` : `s3://${BUCKET}/${prefix}`;
            const r = await psql(proxy.port, `COPY ${table} TO '${target}' WITH (${opts})`, "pipe");
            if (!r.stdout.includes(`COPY ${n}`))
              throw new Error(`export printed ${JSON.stringify(r.stdout)}`);
            log(
              `    ${b.name} threads: ${threadBreakdown(proxy.pid, threads0, threadSched(proxy.pid, true))}`,
            );
            const phases = argv["proxy-log"] === undefined ? undefined : await phasesOf(proxy, prefix, r.ms);
            if (phases) log(`    ${b.name} phases (ms): ${fmtPhases(phases)}`);
            const { bytes } = await exportedBytes(prefix);
            if (TARGET === "file") rmSync(join(WORK, "files", prefix), { recursive: true, force: true });
            else await resetS3();
            return { ms: r.ms, bytes, ...(phases ? { phases } : {}) };
          };
        }
        if (v.format === "csv") {
          runs["psql \\copy → file"] = async () => {
            const file = join(WORK, "copy.csv");
            const r = await psql(pg.port, `\\copy (SELECT * FROM ${table}) to stdout csv`, file, {
              quiet: true,
            });
            const bytes = statSync(file).size;
            rmSync(file);
            return { ms: r.ms, bytes };
          };
          runs["COPY csv → /dev/null"] = async () => {
            const r = await psql(
              pg.port,
              `COPY (SELECT * FROM ${table}) TO STDOUT (FORMAT csv)`,
              "/dev/null",
              { quiet: true },
            );
            return { ms: r.ms, bytes: Number.NaN };
          };
        } else {
          runs["COPY binary → /dev/null"] = async () => {
            const r = await psql(
              pg.port,
              `COPY (SELECT * FROM ${table}) TO STDOUT (FORMAT binary)`,
              "/dev/null",
              { quiet: true },
            );
            return { ms: r.ms, bytes: binaryBytes };
          };
          if (duck) {
            const d = duck;
            runs["DuckDB → Parquet"] = async () => {
              const file = join(WORK, "duck.parquet");
              const t0 = performance.now();
              await d.conn.run(`COPY t TO '${file}' (FORMAT parquet, COMPRESSION ${v.compression})`);
              const ms = performance.now() - t0;
              const bytes = statSync(file).size;
              rmSync(file);
              return { ms, bytes };
            };
          }
        }
        const names = Object.keys(runs);
        const got: Record<string, RunResult[]> = Object.fromEntries(names.map((k) => [k, []]));
        for (let round = 0; round < ROUNDS; round++) {
          const order = names.map((_, i) => names[(i + round) % names.length]!);
          for (const name of order) {
            const c0 = cpuNow();
            const r = await runs[name]!();
            // Let PostgreSQL reap the run's backend before reading its CPU (outside the timing).
            await new Promise((res) => setTimeout(res, 150));
            r.cpu = cpuDelta(c0, cpuNow());
            got[name]!.push(r);
            log(
              `  ${n} ${v.label} round ${round + 1}: ${name.padEnd(24)} ${(r.ms / 1000).toFixed(2)} s  ${fmtRate((n * 1000) / r.ms)} rows/s`,
            );
          }
        }
        const rssPeakKb = proxies.map((p) => treeStatusKb(p.pid, "VmHWM"));
        for (const p of proxies) await stopProxy(p);
        proxyPids = [];
        let profile: string | undefined;
        for (const [i, profDir] of profDirs.entries()) {
          if (!profDir) continue;
          // One file per thread: the main thread and any worker (named …<pid>.<thread id>…).
          const files = existsSync(profDir)
            ? readdirSync(profDir)
                .filter((x) => x.endsWith(".cpuprofile"))
                .sort()
            : [];
          const root = builds[i]!.dir.replace(/\/?$/, "/");
          const text =
            files.length === 0
              ? "(no profile written)"
              : files
                  .map((f) => `  ${f}:\n${summarizeCpuProfile(join(profDir, f), { top: 25, root })}`)
                  .join("\n");
          log(`  CPU profile of the proxy ${builds[i]!.name}, ${n} rows ${v.label}:\n${text}`);
          profile = (profile ?? "") + text;
        }
        results.push({ rows: n, variant: v, runs: got, builds, idleCpu, rssIdleKb, rssPeakKb, profile });
        printGroup(results[results.length - 1]!);
      }
      await psql(pg.port, `DROP TABLE ${table}`, "/dev/null", { quiet: true });
    }
  } finally {
    if (duck) {
      duck.conn.closeSync();
      duck.instance.closeSync();
    }
    for (const c of cleanups) await c();
  }
  const load1 = loadavg();
  printSummary(results, { started, builds, load0, load1 });
}

/**
 * The phase timings the proxy logged for the export into `prefix` ("export complete", info level):
 * the line may reach us a moment after psql has exited, so it is waited for (up to 2 s). The read
 * phase is split where the proxy logs its moments (readMs): `first row` (from the query's start to
 * the first row), `rows` (first to last row) and `tail` (last row to every file encoded); `outside`
 * is the psql run's time beyond the export's own (psql's start, the session through the proxy).
 */
async function phasesOf(
  proxy: ProxyProc,
  prefix: string,
  wallMs: number,
): Promise<Record<string, number> | undefined> {
  const deadline = Date.now() + 2000;
  for (;;) {
    for (const line of proxy.stderr().split("\n")) {
      if (!line.includes('"export complete"') || !line.includes(`/${prefix}"`)) continue;
      let logged: { ms?: number; phaseMs?: Record<string, number>; readMs?: Record<string, number> };
      try {
        logged = JSON.parse(line) as typeof logged;
      } catch {
        continue; // a line cut by the output buffer's start
      }
      const p: Record<string, number> = { ...logged.phaseMs };
      const first = logged.readMs?.firstRow;
      const last = logged.readMs?.lastRow;
      if (first !== undefined && last !== undefined && p.read !== undefined) {
        p["first row"] = first;
        p.rows = last - first;
        p.tail = p.read - last;
      }
      if (logged.ms !== undefined) p.outside = wallMs - logged.ms;
      return p;
    }
    if (Date.now() > deadline) return undefined;
    await new Promise((r) => setTimeout(r, 20));
  }
}

const PHASES = ["plan", "preflight", "read", "first row", "rows", "tail", "upload", "commit", "outside"];
const fmtPhases = (p: Record<string, number>): string =>
  PHASES.map((k) => `${k} ${p[k] === undefined || Number.isNaN(p[k]) ? "–" : Math.round(p[k])}`).join(", ");

/** Medians by phase over the runs that have them (--proxy-log), or undefined. */
function medianPhases(rs: RunResult[]): Record<string, number> | undefined {
  const withPhases = rs.filter((r) => r.phases !== undefined);
  if (withPhases.length === 0) return undefined;
  return Object.fromEntries(
    PHASES.map((k) => [k, median(withPhases.map((r) => r.phases![k] ?? Number.NaN))]),
  );
}

/**
 * The proxy's CPU seconds during one export, per thread, largest first: its main thread (the relay),
 * then the others by thread id (the encoder thread is usually the largest; the rest are V8's GC
 * helpers and libuv's file I/O pool, which all share the name "node", so a name would not tell them
 * apart). Threads that started during the run count from zero.
 */
/**
 * Waits (up to 15 s) until every proxy's process tree has used under 20 ms of CPU in 500 ms;
 * returns the CPU-s each used from its start until then.
 */
async function untilIdle(pids: readonly number[]): Promise<number[]> {
  for (let i = 0; i < 30; i++) {
    const a = pids.map((p) => treeCpuSeconds(p));
    await new Promise((r) => setTimeout(r, 500));
    if (pids.every((p, k) => treeCpuSeconds(p) - a[k]! < 0.02)) break;
  }
  return pids.map((p) => treeCpuSeconds(p));
}

function threadBreakdown(
  pid: number,
  before: ReturnType<typeof threadSched>,
  after: ReturnType<typeof threadSched>,
): string {
  const used: Array<[number, number]> = [];
  for (const [tid, t] of after) used.push([tid, (t.cpuNs - (before.get(tid)?.cpuNs ?? 0)) / 1e9]);
  const main = used.find(([tid]) => tid === pid)?.[1] ?? 0;
  const others = used.filter(([tid, s]) => tid !== pid && s >= 0.005).sort((a, b) => b[1] - a[1]);
  const shown = others.slice(0, 6).map(([tid, s]) => `${tid}:${s.toFixed(2)}`);
  const rest = others.slice(6).reduce((a, [, s]) => a + s, 0);
  const total = used.reduce((a, [, s]) => a + Math.max(s, 0), 0);
  return `total ${total.toFixed(2)} CPU-s, main ${main.toFixed(2)} s, others ${shown.join(" ")}${rest > 0 ? ` +${rest.toFixed(2)}` : ""}`;
}

interface GroupResult {
  rows: number;
  variant: Variant;
  runs: Record<string, RunResult[]>;
  builds: ProxyBuild[];
  /** Per build, in the order of `builds`: CPU-s from the proxy's start until idle (its warm-up). */
  idleCpu: number[];
  /** Per build, in the order of `builds`. */
  rssIdleKb: number[];
  rssPeakKb: number[];
  profile: string | undefined;
}

function stats(rows: number, rs: RunResult[]): { s: number; rowsPerS: number; mbPerS: number } {
  const ms = median(rs.map((r) => r.ms));
  const bytes = median(rs.map((r) => r.bytes));
  return { s: ms / 1000, rowsPerS: (rows * 1000) / ms, mbPerS: bytes / MB / (ms / 1000) };
}

/** The paired throughput ratio run/baseline (= baseline time / run time) of each round. */
function roundRatios(g: GroupResult, run: string, baseline: string): number[] {
  const ex = g.runs[run]!;
  const b = g.runs[baseline]!;
  return ex.map((e, i) => b[i]!.ms / e.ms);
}

/** Median over rounds of the paired throughput ratio run/baseline. */
function ratio(g: GroupResult, run: string, baseline: string): number {
  return median(roundRatios(g, run, baseline));
}

/**
 * Round 1 is each proxy's first export (its thread started, its code cold unless the warm-up
 * prepared it), the later rounds reuse what it left: the per-round ratios and CPU-s, and the
 * median of rounds 2+ beside round 1, so a median of 3 rounds is read knowing which it is.
 */
function firstAndLater(g: GroupResult, run: string, baseline: string): string {
  const r = roundRatios(g, run, baseline);
  const cpu = g.runs[run]!.map((x) => x.cpu?.proxy ?? Number.NaN);
  if (r.length < 2) return "";
  const f = (xs: number[]): string => xs.map((x) => x.toFixed(2)).join(", ");
  return (
    `; per round ${f(r)} (proxy CPU-s ${f(cpu)}): round 1, the proxy's first export, ${r[0]!.toFixed(2)}` +
    ` (${cpu[0]!.toFixed(2)} CPU-s), rounds 2+ median ${median(r.slice(1)).toFixed(2)} (${median(cpu.slice(1)).toFixed(2)} CPU-s)`
  );
}

/** Median CPU seconds of one party over the rounds. */
const cpuMedian = (rs: RunResult[], k: keyof CpuSnap): number =>
  median(rs.map((r) => r.cpu?.[k] ?? Number.NaN));

/** Median CPU seconds per party: proxy (main thread)/pg/S3 server/client; per million rows when
 * `rows` is given. */
function cpuText(rs: RunResult[], rows?: number): string {
  const scale = rows === undefined ? 1 : 1e6 / rows;
  const m = (k: keyof CpuSnap): string => (cpuMedian(rs, k) * scale).toFixed(rows === undefined ? 1 : 2);
  return `${m("proxy")} (${m("proxyMain")})/${m("pg")}/${m("moto")}/${m("client")}`;
}

function printGroup(g: GroupResult): void {
  const lines = [`\n${g.rows} rows, ${g.variant.label}:`];
  for (const [name, rs] of Object.entries(g.runs)) {
    const s = stats(g.rows, rs);
    const r = g.builds
      .filter((b) => exportRun(b) !== name)
      .map(
        (b) =>
          `  ${exportRun(b).slice("export via ".length)}/this ${ratio(g, exportRun(b), name).toFixed(2)}`,
      )
      .join("");
    lines.push(
      `  ${name.padEnd(24)} ${s.s.toFixed(2).padStart(7)} s ${fmtRate(s.rowsPerS).padStart(7)} rows/s ${Number.isNaN(s.mbPerS) ? "      -" : s.mbPerS.toFixed(1).padStart(7)} MB/s  CPU s ${cpuText(rs)}  per 1M rows ${cpuText(rs, g.rows)}${r}`,
    );
  }
  for (const [i, b] of g.builds.entries())
    lines.push(
      `  proxy ${b.name} RSS: idle ${(g.rssIdleKb[i]! / 1024).toFixed(0)} MB, peak ${(g.rssPeakKb[i]! / 1024).toFixed(0)} MB; CPU-s from start to idle ${g.idleCpu[i]!.toFixed(2)}`,
    );
  for (const [name, rs] of Object.entries(g.runs)) {
    const p = medianPhases(rs);
    if (p) lines.push(`  ${name} phases, median ms: ${fmtPhases(p)}`);
  }
  process.stdout.write(`${lines.join("\n")}\n`);
}

function printSummary(
  results: GroupResult[],
  meta: { started: Date; builds: ProxyBuild[]; load0: number[]; load1: number[] },
): void {
  const out: string[] = [];
  out.push(
    `\n## bench/export.ts — ${meta.started.toISOString().slice(0, 16).replace("T", " ")} UTC, proxy ${meta.builds.map((b) => b.name).join(" vs ")}, target ${TARGET}, ${ROUNDS} rounds`,
  );
  out.push(
    `${cpus().length} cores, load average ${meta.load0.map((l) => l.toFixed(1)).join("/")} at start, ${meta.load1.map((l) => l.toFixed(1)).join("/")} at end (1/5/15 min)` +
      `; exports settings ${EXPORTS_CFG === undefined ? "(defaults)" : JSON.stringify(EXPORTS_CFG)}` +
      `${argv["node-args"] ? `; node ${argv["node-args"]}` : ""}\n`,
  );
  const exportNames = meta.builds.map(exportRun);
  out.push(
    `| rows | format | run | median s | rows/s | MB/s | ${exportNames.map((e) => `${e.slice("export via ".length)}/this`).join(" | ")} | proxy peak RSS | CPU s proxy (main thread)/pg/S3/client | CPU-s per 1M rows |`,
  );
  out.push(`|---:|---|---|---:|---:|---:|${exportNames.map(() => "---:|").join("")}---:|---|---|`);
  for (const g of results) {
    for (const [name, rs] of Object.entries(g.runs)) {
      const s = stats(g.rows, rs);
      const bi = exportNames.indexOf(name);
      const ratios = exportNames.map((e) => (e === name ? "" : ratio(g, e, name).toFixed(2))).join(" | ");
      out.push(
        `| ${g.rows.toLocaleString("en-US")} | ${g.variant.label} | ${name} | ${s.s.toFixed(2)} | ${fmtRate(s.rowsPerS)} | ${Number.isNaN(s.mbPerS) ? "–" : s.mbPerS.toFixed(1)} | ${ratios} | ${bi >= 0 ? `${(g.rssPeakKb[bi]! / 1024).toFixed(0)} MB` : ""} | ${cpuText(rs)} | ${cpuText(rs, g.rows)} |`,
      );
    }
  }
  const phaseLines = results.flatMap((g) =>
    Object.entries(g.runs).flatMap(([name, rs]) => {
      const p = medianPhases(rs);
      return p
        ? [
            `| ${g.rows.toLocaleString("en-US")} | ${g.variant.label} | ${name} | ${PHASES.map((k) => (Number.isNaN(p[k]!) ? "–" : Math.round(p[k]!))).join(" | ")} |`,
          ]
        : [];
    }),
  );
  if (phaseLines.length > 0) {
    out.push(`\nThe proxy's phases (its "export complete" log), median ms:\n`);
    out.push(
      `| rows | format | run | ${PHASES.join(" | ")} |`,
      `|---:|---|---|${PHASES.map(() => "---:|").join("")}`,
    );
    out.push(...phaseLines);
  }
  out.push("\nTargets (issue #13 items 2 and 4):");
  const byVariant = new Map<string, GroupResult[]>();
  for (const g of results) byVariant.set(g.variant.label, [...(byVariant.get(g.variant.label) ?? []), g]);
  const met = (ok: boolean): string => (ok ? "MET" : "MISSED");
  for (const [label, gs] of byVariant) {
    const isCsv = label === "csv";
    const baseline = isCsv ? "psql \\copy → file" : "COPY binary → /dev/null";
    const minRatio = isCsv ? 1.0 : 0.9;
    const maxRss = 300;
    // CPU yardstick: PostgreSQL's own CPU for COPY … (FORMAT csv); DuckDB's CPU writing the rows.
    const cpuRun = isCsv ? "COPY csv → /dev/null" : "DuckDB → Parquet";
    const cpuParty: keyof CpuSnap = isCsv ? "pg" : "client";
    for (const [bi, b] of meta.builds.entries()) {
      const ex = exportRun(b);
      for (const g of gs) {
        const r = ratio(g, ex, baseline);
        const rss = g.rssPeakKb[bi]! / 1024;
        const ratioTarget = isCsv || g.variant.compression === "snappy";
        const per1M = 1e6 / g.rows;
        const proxyCpu = cpuMedian(g.runs[ex]!, "proxy") * per1M;
        const yard = g.runs[cpuRun] ? cpuMedian(g.runs[cpuRun]!, cpuParty) * per1M : Number.NaN;
        out.push(
          `- ${b.name} ${label}, ${g.rows.toLocaleString("en-US")} rows: ratio to ${baseline} ${r.toFixed(2)}` +
            (ratioTarget ? ` (target ≥ ${minRatio}: ${met(r >= minRatio)})` : " (no ratio target)") +
            `; peak RSS ${rss.toFixed(0)} MB (target < ${maxRss} MB: ${met(rss < maxRss)})` +
            `; proxy ${proxyCpu.toFixed(2)} CPU-s per 1M rows` +
            (Number.isNaN(yard)
              ? ""
              : ` vs ${isCsv ? "PostgreSQL's for COPY csv" : "DuckDB's"} ${yard.toFixed(2)} (target ≤: ${met(proxyCpu <= yard)})`) +
            firstAndLater(g, ex, baseline),
        );
      }
      const small = gs.reduce((a, c) => (a.rows < c.rows ? a : c));
      const big = gs.reduce((a, c) => (a.rows > c.rows ? a : c));
      if (small !== big) {
        const growth = big.rssPeakKb[bi]! / small.rssPeakKb[bi]! - 1;
        out.push(
          `- ${b.name} ${label}: peak RSS ${big.rows.toLocaleString("en-US")} vs ${small.rows.toLocaleString("en-US")} rows ${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(1)}% (target flat ±15%: ${met(Math.abs(growth) <= 0.15)})`,
        );
      }
    }
    if (meta.builds.length > 1) {
      const [a, b] = [exportRun(meta.builds[0]!), exportRun(meta.builds[1]!)];
      for (const g of gs)
        out.push(
          `- ${label}, ${g.rows.toLocaleString("en-US")} rows: ${a.slice(11)} / ${b.slice(11)} throughput ${ratio(g, a, b).toFixed(2)} (median of per-round ratios)`,
        );
    }
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/export.ts: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
