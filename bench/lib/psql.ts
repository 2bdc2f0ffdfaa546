// psql as the benchmarks' client: the same client, and the same start-up cost, on every side of a
// comparison (through the proxy, straight to PostgreSQL, \copy).

import { spawn } from "node:child_process";
import { closeSync, openSync } from "node:fs";

/** Runs `psql -c sql` with stdout to `out` (a path, "/dev/null", or "pipe" to capture it); timed from
 * spawn to exit. Rejects on a non-zero exit with psql's stderr. */
export function psql(
  port: number,
  db: string,
  sql: string,
  out: string,
  opts: { quiet?: boolean } = {},
): Promise<{ ms: number; stdout: string; stderr: string }> {
  const args = ["-X", "-h", "127.0.0.1", "-p", String(port), "-U", "postgres", "-d", db];
  args.push("-v", "ON_ERROR_STOP=1");
  if (opts.quiet) args.push("-q");
  args.push("-c", sql);
  const fd = out === "pipe" ? null : openSync(out, "w");
  const t0 = performance.now();
  const p = spawn("psql", args, {
    stdio: ["ignore", fd ?? "pipe", "pipe"],
    env: { ...process.env, PGSSLMODE: "disable" },
  });
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
