// End-to-end export throughput and memory: `COPY t TO 's3://…' WITH (FORMAT …)` run through the
// proxy (a separate `node dist/cli.js` process, so its peak RSS is its own) against a throwaway
// PostgreSQL and moto, beside the baselines TESTING.md asks for, in the same run, alternating.
//
//   npx tsx bench/export.ts [--rows 1000000,10000000] [--format csv,parquet]
//                           [--compression snappy,zstd] [--rounds 3] [--target s3|file]
//                           [--cpu-prof] [--no-build] [--no-duckdb] [--ref COMMIT]
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
// Each export's objects are dropped afterwards (moto reset), so moto's memory does not grow.
//
// --target file  exports into file:///tmp/… through `--file-root` instead of moto: separates the
//                proxy's own cost from moto's (a Python server sharing the two cores).
// --target ceph  exports into a throwaway Ceph RadosGW (test/support/ceph.ts; Debian's radosgw,
//                ceph-mon, ceph-osd): a production S3 server instead of moto. Its CPU is reported
//                in the moto column (mon + osd + radosgw).
// --ref COMMIT   builds and runs the proxy of that commit (git archive into a temp dir, this
//                checkout's node_modules) instead of the working tree, which others may be editing.
// --cpu-prof     runs the proxy with `node --cpu-prof` and prints where its time went per variant
//                (bench/cpuprofile-summary.ts; timings under the profiler are a little slower).
// --node-args="…" extra node/V8 flags for the proxy process, e.g. --node-args=--trace-gc.
// --proxy-log F  appends the proxy processes' stdout and stderr to file F, at log level info
//                (each export's phase timings).
// --exports JSON the proxy's "exports" settings, e.g. '{"partSize":5242880,"partsInFlight":2}'.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  appendFileSync,
  closeSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  openSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { cpus, loadavg, totalmem } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CreateBucketCommand, ListObjectsV2Command, S3Client } from "@aws-sdk/client-s3";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import { type CephServer, startCeph } from "../test/support/ceph.js";
import { startMoto } from "../test/support/moto.js";
import { freePort } from "../test/support/ports.js";
import { startPostgres } from "../test/support/postgres.js";
import { summarizeCpuProfile } from "./cpuprofile-summary.js";

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
if (argv.help) {
  process.stdout.write(
    `${readFileSync(new URL(import.meta.url), "utf8")
      .split("\n")
      .filter((l) => l.startsWith("//"))
      .join("\n")}\n`,
  );
  process.exit(0);
}
const SIZES = argv.rows.split(",").map((s) => Number(s.replace(/_/g, "")));
const FORMATS = argv.format.split(",").map((s) => s.trim());
const COMPRESSIONS = argv.compression.split(",").map((s) => s.trim());
const ROUNDS = Number(argv.rounds);
const TARGET = argv.target;
if (SIZES.some((n) => !Number.isInteger(n) || n <= 0)) throw new Error(`bad --rows ${argv.rows}`);
if (FORMATS.some((f) => f !== "csv" && f !== "parquet")) throw new Error(`bad --format ${argv.format}`);
if (TARGET !== "s3" && TARGET !== "file" && TARGET !== "ceph") throw new Error(`bad --target ${TARGET}`);

const ROOT = new URL("..", import.meta.url).pathname;
const WORK = mkdtempSync("/tmp/c2s-bench-export-");
const DB = "bench";
/** Where the proxy that is measured lives: this checkout, or an exported commit (--ref). */
const PROXY_DIR = argv.ref !== undefined ? join(WORK, "proxy") : ROOT;
const BUCKET = "bench";

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

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const MB = 1024 * 1024;
const fmtRate = (n: number): string =>
  n >= 1e6 ? `${(n / 1e6).toFixed(2)}M` : n >= 1e3 ? `${(n / 1e3).toFixed(0)}k` : n.toFixed(0);
const log = (s: string): void => {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};

interface RunResult {
  ms: number;
  bytes: number;
  /** CPU seconds each party used during the run (all threads; reaped children included). */
  cpu?: CpuSnap;
}

// --------------------------------------------------------------------------------------------- CPU

/** CPU seconds of: the proxy; PostgreSQL (postmaster + its exited backends); moto; this process
 * with its exited children (psql, or DuckDB's threads in-process) — "client". */
interface CpuSnap {
  proxy: number;
  /** The proxy's main (event loop) thread alone: the rest is its workers, GC and libuv threads. */
  proxyMain: number;
  pg: number;
  moto: number;
  client: number;
}
const TICK = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim()) || 100;

function cpuSeconds(pid: number, withChildren: boolean, thread = false): number {
  try {
    const stat = readFileSync(thread ? `/proc/${pid}/task/${pid}/stat` : `/proc/${pid}/stat`, "utf8");
    // Fields after "(comm) ": state is field 3; utime 14, stime 15, cutime 16, cstime 17.
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    let ticks = Number(f[11]) + Number(f[12]);
    if (withChildren) ticks += Number(f[13]) + Number(f[14]);
    return ticks / TICK;
  } catch {
    return Number.NaN;
  }
}

function findPids(match: (cmdline: string) => boolean): number[] {
  const out: number[] = [];
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (match(readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " "))) out.push(Number(d));
    } catch {
      // gone
    }
  }
  return out;
}

function findPid(match: (cmdline: string) => boolean): number {
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      if (match(readFileSync(`/proc/${d}/cmdline`, "utf8").replace(/\0/g, " "))) return Number(d);
    } catch {
      // gone
    }
  }
  return -1;
}

const cpuDelta = (a: CpuSnap, b: CpuSnap): CpuSnap => ({
  proxy: b.proxy - a.proxy,
  proxyMain: b.proxyMain - a.proxyMain,
  pg: b.pg - a.pg,
  moto: b.moto - a.moto,
  client: b.client - a.client,
});

/** Runs psql with stdout to `out` (a path, "/dev/null", or "pipe" to capture it). */
function psql(
  port: number,
  sql: string,
  out: string,
  opts: { quiet?: boolean } = {},
): Promise<{ ms: number; stdout: string; stderr: string }> {
  const args = ["-X", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", DB];
  args.push("-v", "ON_ERROR_STOP=1");
  if (opts.quiet) args.push("-q");
  args.push("-c", sql);
  const fd = out === "pipe" ? null : openSync(out, "w");
  const t0 = performance.now();
  const p = spawn("psql", args, { stdio: ["ignore", fd ?? "pipe", "pipe"] });
  if (fd !== null) closeSync(fd);
  let stdout = "";
  let stderr = "";
  p.stdout?.on("data", (d: Buffer) => {
    stdout += d.toString();
  });
  p.stderr!.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-8000);
  });
  return new Promise((resolve, reject) => {
    p.on("error", reject);
    p.on("close", (code) => {
      const ms = performance.now() - t0;
      if (code !== 0) reject(new Error(`psql ${JSON.stringify(sql)} exited ${code}: ${stderr}`));
      else resolve({ ms, stdout, stderr });
    });
  });
}

// --------------------------------------------------------------------------------------------- proxy

interface ProxyProc {
  port: number;
  pid: number;
  proc: ChildProcess;
  stderr(): string;
}

async function waitPort(port: number, proc: ChildProcess, stderr: () => string): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`proxy exited ${proc.exitCode}: ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`proxy did not listen on ${port}: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function startProxyProcess(
  pgPort: number,
  s3: { endpoint: string; accessKeyId: string; secretAccessKey: string },
  profDir: string | null,
): Promise<ProxyProc> {
  const s3Endpoint = s3.endpoint;
  const port = await freePort();
  const configFile = join(WORK, "proxy-config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      connections: {
        default: {
          endpoint: s3Endpoint,
          region: "us-east-1",
          accessKeyId: { env: "K" },
          secretAccessKey: { env: "S" },
        },
      },
      ...(argv.exports === undefined ? {} : { exports: JSON.parse(argv.exports) as unknown }),
    }),
  );
  const nodeArgs = [
    ...(profDir ? ["--cpu-prof", `--cpu-prof-dir=${profDir}`] : []),
    ...argv["node-args"].split(" ").filter((a) => a !== ""),
  ];
  const proc = spawn(
    process.execPath,
    [
      ...nodeArgs,
      join(PROXY_DIR, "dist/cli.js"),
      "--listen",
      `127.0.0.1:${port}`,
      "--upstream",
      `127.0.0.1:${pgPort}`,
      "--upstream-tls",
      "disable",
      "--log-level",
      argv["proxy-log"] === undefined ? "warn" : "info",
      "--file-root",
      join(WORK, "files"),
      "--config",
      configFile,
    ],
    { stdio: ["ignore", "pipe", "pipe"], env: { ...process.env, K: s3.accessKeyId, S: s3.secretAccessKey } },
  );
  let err = "";
  const log = argv["proxy-log"];
  const keep = (d: Buffer): void => {
    err = (err + d.toString()).slice(-8000);
    if (log !== undefined) appendFileSync(log, d);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  await waitPort(port, proc, () => err);
  return { port, pid: proc.pid!, proc, stderr: () => err };
}

function procStatusKb(pid: number, field: "VmHWM" | "VmRSS"): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(readFileSync(`/proc/${pid}/status`, "utf8"));
  if (!m) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]);
}

async function stopProxy(p: ProxyProc): Promise<void> {
  if (p.proc.exitCode !== null) return;
  const exited = new Promise((r) => p.proc.once("exit", r));
  p.proc.kill("SIGTERM"); // the CLI drains and exits 0, which also writes a --cpu-prof profile
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  if (p.proc.exitCode === null && p.proc.signalCode === null) {
    p.proc.kill("SIGKILL");
    await exited;
  }
}

// --------------------------------------------------------------------------------------------- setup

function tableSql(n: number): string {
  // ~110 CSV bytes a row; every 17th label NULL, every 5th needs CSV quoting.
  return `CREATE UNLOGGED TABLE t_${n} AS SELECT
    g::int AS id,
    g::bigint * 2654435761 AS big,
    CASE WHEN g % 17 = 0 THEN NULL
         WHEN g % 5 = 0 THEN md5(g::text) || ', "q"'
         ELSE md5(g::text) END AS label,
    ((g % 10000000) / 100.0)::numeric(12,2) AS amount,
    timestamptz '2024-01-01 00:00:00+00' + g * interval '1 second' AS at,
    g % 3 = 0 AS flag,
    g / 7.0::float8 AS score,
    date '2000-01-01' + g % 10000 AS day
  FROM generate_series(1, ${n}) g`;
}

const DUCK_COLUMNS =
  "{'id':'INTEGER','big':'BIGINT','label':'VARCHAR','amount':'DECIMAL(12,2)','at':'TIMESTAMPTZ','flag':'BOOLEAN','score':'DOUBLE','day':'DATE'}";

async function main(): Promise<void> {
  const commit = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", argv.ref ?? "HEAD"], {
    encoding: "utf8",
  }).trim();
  const dirty =
    argv.ref !== undefined
      ? ""
      : execFileSync("git", ["-C", ROOT, "status", "--porcelain", "src"], { encoding: "utf8" }).trim();
  const started = new Date();
  const load0 = loadavg();
  log(
    `bench/export.ts at ${commit}${dirty ? " (src/ has uncommitted changes)" : ""}; ${cpus().length} cores, ` +
      `${(totalmem() / 1024 ** 3).toFixed(0)} GB, load ${load0.map((l) => l.toFixed(2)).join(" ")}`,
  );
  if (argv.ref !== undefined) {
    log(`building the proxy of ${commit} in ${PROXY_DIR}`);
    mkdirSync(PROXY_DIR, { recursive: true });
    execFileSync("sh", ["-c", `git -C '${ROOT}' archive ${commit} | tar -x -C '${PROXY_DIR}'`]);
    symlinkSync(join(ROOT, "node_modules"), join(PROXY_DIR, "node_modules"));
    execFileSync("npm", ["run", "build", "--silent"], { cwd: PROXY_DIR, stdio: "inherit" });
  } else if (!argv["no-build"]) {
    log("npm run build");
    execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" });
  }
  if (!existsSync(join(PROXY_DIR, "dist/cli.js"))) throw new Error("dist/cli.js missing: npm run build");

  log(`starting PostgreSQL and ${TARGET === "ceph" ? "Ceph RadosGW" : "moto"}`);
  const [pg, moto] = await Promise.all([startPostgres(), TARGET === "ceph" ? startCeph() : startMoto()]);
  const postmasterPid = Number(readFileSync(join(pg.dir, "data", "postmaster.pid"), "utf8").split("\n")[0]);
  const motoPort = new URL(moto.endpoint).port;
  // The S3 server's processes: moto, or Ceph's mon, osd and radosgw (all started in its dir).
  const motoPids =
    TARGET === "ceph"
      ? findPids((c) => c.includes((moto as CephServer).dir))
      : [findPid((c) => c.includes("moto.server") && c.includes(` ${motoPort}`))];
  let proxyPid = -1;
  const cpuNow = (): CpuSnap => ({
    proxy: proxyPid > 0 ? cpuSeconds(proxyPid, false) : 0,
    proxyMain: proxyPid > 0 ? cpuSeconds(proxyPid, false, true) : 0,
    pg: cpuSeconds(postmasterPid, true),
    moto: motoPids.reduce((a, pid) => a + cpuSeconds(pid, true), 0),
    client: cpuSeconds(process.pid, true),
  });
  const cleanups: Array<() => Promise<void> | void> = [
    () => moto.stop(),
    () => pg.stop(),
    () => rmSync(WORK, { recursive: true, force: true }),
  ];
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
        const profDir = argv["cpu-prof"] ? join(WORK, `prof-${n}-${v.label.replace(/ /g, "-")}`) : null;
        const proxy = await startProxyProcess(pg.port, moto, profDir);
        proxyPid = proxy.pid;
        const rssIdleKb = procStatusKb(proxy.pid, "VmRSS");
        const opts =
          v.format === "csv" ? "FORMAT = 'csv'" : `FORMAT = 'parquet', COMPRESSION = '${v.compression}'`;
        const runs: Record<string, () => Promise<RunResult>> = {
          "export via proxy": async () => {
            const prefix = `run-${++runNo}`;
            const target =
              TARGET === "file" ? `file://${join(WORK, "files", prefix)}` : `s3://${BUCKET}/${prefix}`;
            const r = await psql(proxy.port, `COPY ${table} TO '${target}' WITH (${opts})`, "pipe");
            if (!r.stdout.includes(`COPY ${n}`))
              throw new Error(`export printed ${JSON.stringify(r.stdout)}`);
            const { bytes } = await exportedBytes(prefix);
            if (TARGET === "file") rmSync(join(WORK, "files", prefix), { recursive: true, force: true });
            else await resetS3();
            return { ms: r.ms, bytes };
          },
        };
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
        const rssPeakKb = procStatusKb(proxy.pid, "VmHWM");
        await stopProxy(proxy);
        let profile: string | undefined;
        if (profDir) {
          // One file per thread: the main thread and any worker (named …<pid>.<thread id>…).
          const files = readdirSync(profDir)
            .filter((x) => x.endsWith(".cpuprofile"))
            .sort();
          profile =
            files.length === 0
              ? "(no profile written)"
              : files
                  .map(
                    (f) =>
                      `  ${f}:\n${summarizeCpuProfile(join(profDir, f), { top: 25, root: PROXY_DIR.replace(/\/?$/, "/") })}`,
                  )
                  .join("\n");
          log(`  CPU profile of the proxy, ${n} rows ${v.label}:\n${profile}`);
        }
        results.push({ rows: n, variant: v, runs: got, rssIdleKb, rssPeakKb, profile });
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
  printSummary(results, { started, commit, dirty: dirty !== "", load0, load1 });
}

interface GroupResult {
  rows: number;
  variant: Variant;
  runs: Record<string, RunResult[]>;
  rssIdleKb: number;
  rssPeakKb: number;
  profile: string | undefined;
}

function stats(rows: number, rs: RunResult[]): { s: number; rowsPerS: number; mbPerS: number } {
  const ms = median(rs.map((r) => r.ms));
  const bytes = median(rs.map((r) => r.bytes));
  return { s: ms / 1000, rowsPerS: (rows * 1000) / ms, mbPerS: bytes / MB / (ms / 1000) };
}

/** Median over rounds of the paired throughput ratio export/baseline (= baseline time / export time). */
function ratio(g: GroupResult, baseline: string): number {
  const ex = g.runs["export via proxy"]!;
  const b = g.runs[baseline]!;
  return median(ex.map((e, i) => b[i]!.ms / e.ms));
}

/** Median CPU seconds per party: proxy (main thread)/pg/moto/client. */
function cpuText(rs: RunResult[]): string {
  const m = (k: keyof CpuSnap): string => median(rs.map((r) => r.cpu?.[k] ?? Number.NaN)).toFixed(1);
  return `${m("proxy")} (${m("proxyMain")})/${m("pg")}/${m("moto")}/${m("client")}`;
}

function printGroup(g: GroupResult): void {
  const lines = [`\n${g.rows} rows, ${g.variant.label}:`];
  for (const [name, rs] of Object.entries(g.runs)) {
    const s = stats(g.rows, rs);
    const r = name === "export via proxy" ? "" : `  export/this ${ratio(g, name).toFixed(2)}`;
    lines.push(
      `  ${name.padEnd(24)} ${s.s.toFixed(2).padStart(7)} s ${fmtRate(s.rowsPerS).padStart(7)} rows/s ${Number.isNaN(s.mbPerS) ? "      -" : s.mbPerS.toFixed(1).padStart(7)} MB/s  CPU s ${cpuText(rs)}${r}`,
    );
  }
  lines.push(
    `  proxy RSS: idle ${(g.rssIdleKb / 1024).toFixed(0)} MB, peak ${(g.rssPeakKb / 1024).toFixed(0)} MB`,
  );
  process.stdout.write(`${lines.join("\n")}\n`);
}

function printSummary(
  results: GroupResult[],
  meta: { started: Date; commit: string; dirty: boolean; load0: number[]; load1: number[] },
): void {
  const out: string[] = [];
  out.push(
    `\n## bench/export.ts — ${meta.started.toISOString().slice(0, 16).replace("T", " ")} UTC, commit ${meta.commit}${meta.dirty ? "+dirty src/" : ""}, target ${TARGET}, ${ROUNDS} rounds`,
  );
  out.push(
    `${cpus().length} cores, load average ${meta.load0.map((l) => l.toFixed(1)).join("/")} at start, ${meta.load1.map((l) => l.toFixed(1)).join("/")} at end (1/5/15 min)\n`,
  );
  out.push(
    "| rows | format | run | median s | rows/s | MB/s | export/baseline | proxy peak RSS | CPU s proxy (main thread)/pg/moto/client |",
  );
  out.push("|---:|---|---|---:|---:|---:|---:|---:|---|");
  for (const g of results) {
    for (const [name, rs] of Object.entries(g.runs)) {
      const s = stats(g.rows, rs);
      const isExport = name === "export via proxy";
      out.push(
        `| ${g.rows.toLocaleString("en-US")} | ${g.variant.label} | ${name} | ${s.s.toFixed(2)} | ${fmtRate(s.rowsPerS)} | ${Number.isNaN(s.mbPerS) ? "–" : s.mbPerS.toFixed(1)} | ${isExport ? "" : ratio(g, name).toFixed(2)} | ${isExport ? `${(g.rssPeakKb / 1024).toFixed(0)} MB` : ""} | ${cpuText(rs)} |`,
      );
    }
  }
  out.push("\nTargets:");
  const byVariant = new Map<string, GroupResult[]>();
  for (const g of results) byVariant.set(g.variant.label, [...(byVariant.get(g.variant.label) ?? []), g]);
  for (const [label, gs] of byVariant) {
    const isCsv = label === "csv";
    const baseline = isCsv ? "psql \\copy → file" : "COPY binary → /dev/null";
    const minRatio = isCsv ? 0.8 : 0.5;
    const maxRss = isCsv ? 200 : 300;
    for (const g of gs) {
      const r = ratio(g, baseline);
      const rss = g.rssPeakKb / 1024;
      const ratioTarget = isCsv || g.variant.compression === "snappy";
      out.push(
        `- ${label}, ${g.rows.toLocaleString("en-US")} rows: ratio to ${baseline} ${r.toFixed(2)}` +
          (ratioTarget
            ? ` (target ≥ ${minRatio}: ${r >= minRatio ? "MET" : "MISSED"})`
            : " (no ratio target)") +
          `; peak RSS ${rss.toFixed(0)} MB (target < ${maxRss} MB: ${rss < maxRss ? "MET" : "MISSED"})`,
      );
    }
    const small = gs.reduce((a, b) => (a.rows < b.rows ? a : b));
    const big = gs.reduce((a, b) => (a.rows > b.rows ? a : b));
    if (small !== big) {
      const growth = big.rssPeakKb / small.rssPeakKb - 1;
      out.push(
        `- ${label}: peak RSS ${big.rows.toLocaleString("en-US")} vs ${small.rows.toLocaleString("en-US")} rows ${growth >= 0 ? "+" : ""}${(growth * 100).toFixed(1)}% (target flat ±15%: ${Math.abs(growth) <= 0.15 ? "MET" : "MISSED"})`,
      );
    }
  }
  process.stdout.write(`${out.join("\n")}\n`);
}

main().catch((e: unknown) => {
  process.stderr.write(`bench/export.ts: ${(e as Error).stack ?? String(e)}\n`);
  process.exit(1);
});
