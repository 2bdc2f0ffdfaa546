// pgbench with per-transaction logging (`-l`): every transaction's latency and completion time, so
// a benchmark can take the percentiles of exactly the transactions that ended inside a window
// (pgbench's own summary covers its whole run and has no p99).
import { spawn } from "node:child_process";
import { readdirSync, readFileSync, rmSync } from "node:fs";
import { basename, dirname, join } from "node:path";
import { percentileSorted } from "./stats.js";

/** One pgbench run's transactions, in completion order per client: µs since the epoch, µs. */
export interface Txns {
  endUs: Float64Array;
  /** pgbench's latency: with --rate, from the transaction's scheduled start (schedule lag included). */
  latencyUs: Float64Array;
  /** With --rate: how late each transaction started against its schedule (µs); else zeros. */
  lagUs: Float64Array;
  /** Spawn and exit of pgbench, ms since the epoch (Date.now()). */
  spawnedMs: number;
  exitedMs: number;
}

/** Parses pgbench's per-transaction log (PostgreSQL 12+ format, one line a transaction):
 * `client_id transaction_no time script_no time_epoch time_us [schedule_lag] [retries]`, where
 * `time` is the latency in µs and `time_epoch`.`time_us` the moment the transaction ended. Under
 * --rate pgbench measures `time` from the transaction's scheduled start, so it includes
 * `schedule_lag` (the start's delay behind the schedule), which the 7th field gives alone. */
export function parsePgbenchLog(
  text: string,
  rated = false,
): Array<{ endUs: number; latencyUs: number; lagUs: number }> {
  const out: Array<{ endUs: number; latencyUs: number; lagUs: number }> = [];
  for (const line of text.split("\n")) {
    if (line === "") continue;
    const f = line.split(" ");
    const lat = Number(f[2]);
    const end = Number(f[4]) * 1e6 + Number(f[5]);
    const lag = rated ? Number(f[6]) : 0;
    if (f.length < (rated ? 7 : 6) || !Number.isFinite(lat) || !Number.isFinite(end) || !Number.isFinite(lag))
      throw new Error(`not a pgbench log line: ${JSON.stringify(line)}`);
    out.push({ endUs: end, latencyUs: lat, lagUs: lag });
  }
  return out;
}

export interface PgbenchOptions {
  port: number;
  db: string;
  clients: number;
  threads: number;
  secs: number;
  /** Transactions per second for the whole run (all clients), Poisson-scheduled (`-R`); none:
   * as fast as each client can (closed loop). */
  rate?: number;
  /** Directory and file-name prefix of the logs (`--log-prefix`); the files are removed after. */
  logPrefix: string;
  /** pgbench's stderr (connection errors, -P progress) goes here too. */
  onStderr?: (s: string) => void;
}

/** `pgbench -n -S -c C -j J -T secs -l [-R rate]`, plain TCP; resolves with every transaction. */
export function runPgbench(o: PgbenchOptions): Promise<Txns> {
  const args = ["-n", "-S", "-c", String(o.clients), "-j", String(o.threads), "-T", String(o.secs)];
  if (o.rate !== undefined) args.push("-R", String(Math.round(o.rate)));
  args.push("-P", "1", "-l", `--log-prefix=${o.logPrefix}`);
  args.push("-h", "127.0.0.1", "-p", String(o.port), "-U", "postgres", o.db);
  const spawnedMs = Date.now();
  const p = spawn("pgbench", args, {
    stdio: ["ignore", "pipe", "pipe"],
    env: { ...process.env, PGSSLMODE: "disable" },
  });
  let out = "";
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-8000);
    o.onStderr?.(d.toString());
  };
  p.stdout.on("data", keep);
  p.stderr.on("data", keep);
  return new Promise((resolve, reject) => {
    p.on("error", reject);
    p.on("close", (code) => {
      const exitedMs = Date.now();
      const dir = dirname(o.logPrefix);
      const prefix = `${basename(o.logPrefix)}.`;
      let files: string[] = [];
      try {
        files = readdirSync(dir).filter((f) => f.startsWith(prefix));
        // A pgbench that did not finish (killed with the bench) may leave a half-written line.
        if (code !== 0) throw new Error(`pgbench on port ${o.port} exited ${code}: ${out}`);
        const rows = files.flatMap((f) =>
          parsePgbenchLog(readFileSync(join(dir, f), "utf8"), o.rate !== undefined),
        );
        resolve({
          endUs: Float64Array.from(rows, (r) => r.endUs),
          latencyUs: Float64Array.from(rows, (r) => r.latencyUs),
          lagUs: Float64Array.from(rows, (r) => r.lagUs),
          spawnedMs,
          exitedMs,
        });
      } catch (e) {
        reject(e);
      } finally {
        for (const f of files) rmSync(join(dir, f), { force: true });
      }
    });
  });
}

export interface WindowStats {
  n: number;
  tps: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
  /** p99 of the schedule lag (under --rate; else 0). */
  lagP99Ms: number;
}

/** Latency percentiles and throughput of the transactions that ended in [fromUs, toUs). */
export function windowStats(t: Txns, fromUs: number, toUs: number): WindowStats {
  const lat: number[] = [];
  const lag: number[] = [];
  for (let i = 0; i < t.endUs.length; i++) {
    const e = t.endUs[i]!;
    if (e >= fromUs && e < toUs) {
      lat.push(t.latencyUs[i]!);
      lag.push(t.lagUs[i]!);
    }
  }
  const sorted = Float64Array.from(lat).sort();
  const lagSorted = Float64Array.from(lag).sort();
  return {
    n: sorted.length,
    tps: sorted.length / ((toUs - fromUs) / 1e6),
    p50Ms: percentileSorted(sorted, 50) / 1000,
    p99Ms: percentileSorted(sorted, 99) / 1000,
    maxMs: sorted.length ? sorted[sorted.length - 1]! / 1000 : Number.NaN,
    lagP99Ms: percentileSorted(lagSorted, 99) / 1000,
  };
}

/** When a run was in full swing: from its first transaction's end to its last's. */
export function activeSpanUs(t: Txns): [number, number] {
  let lo = Number.POSITIVE_INFINITY;
  let hi = Number.NEGATIVE_INFINITY;
  for (const e of t.endUs) {
    if (e < lo) lo = e;
    if (e > hi) hi = e;
  }
  return [lo, hi];
}
