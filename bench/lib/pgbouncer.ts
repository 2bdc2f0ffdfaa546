// A throwaway PgBouncer in session mode in front of a bench's PostgreSQL: the proxy a reader knows,
// as a yardstick for what any proxy's extra hop costs (configured as bench/proxy-overhead.sh does).
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { chmodSync, chownSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "../../test/support/ports.js";
import { waitPort } from "./proxy-process.js";

export interface Pgbouncer {
  port: number;
  /** PgBouncer is one thread: this pid's CPU is all of its CPU. */
  pid: number;
  stop(): Promise<void>;
}

const isRoot = process.getuid?.() === 0;

/** Starts `pgbouncer` (session mode, trust auth, plain TCP on 127.0.0.1) forwarding every database
 * to 127.0.0.1:pgPort; its files go to a directory of its own under the system's temp directory
 * (removed by `stop`). As root it runs as the `postgres` OS user (`-u`): PgBouncer refuses to run
 * as root, and that user must reach its files (a bench's 0700 work directory would not do). */
export async function startPgbouncer(pgPort: number): Promise<Pgbouncer> {
  const dir = mkdtempSync(join(tmpdir(), "c2s-pgbouncer-"));
  chmodSync(dir, 0o755);
  const port = await freePort();
  const ini = join(dir, "pgbouncer.ini");
  const users = join(dir, "userlist.txt");
  writeFileSync(
    ini,
    [
      "[databases]",
      `* = host=127.0.0.1 port=${pgPort}`,
      "[pgbouncer]",
      "listen_addr = 127.0.0.1",
      `listen_port = ${port}`,
      "unix_socket_dir =",
      "auth_type = trust",
      `auth_file = ${users}`,
      "pool_mode = session",
      "max_client_conn = 100",
      "default_pool_size = 20",
      `logfile = ${join(dir, "pgbouncer.log")}`,
      "pidfile =",
      "ignore_startup_parameters = extra_float_digits",
      "",
    ].join("\n"),
  );
  writeFileSync(users, '"postgres" ""\n');
  if (isRoot) {
    const uid = Number(execId("-u"));
    const gid = Number(execId("-g"));
    for (const f of [dir, ini, users]) chownSync(f, uid, gid);
  }
  const proc: ChildProcess = spawn("pgbouncer", isRoot ? ["-u", "postgres", ini] : [ini], {
    stdio: ["ignore", "pipe", "pipe"],
  });
  let out = "";
  const keep = (d: Buffer): void => {
    out = (out + d.toString()).slice(-4000);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  await waitPort(port, proc, () => out, "pgbouncer");
  return {
    port,
    pid: proc.pid!,
    stop: async () => {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        rmSync(dir, { recursive: true, force: true });
        return;
      }
      const exited = new Promise((r) => proc.once("exit", r));
      proc.kill("SIGTERM"); // PgBouncer's immediate shutdown
      await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill("SIGKILL");
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The postgres OS user's ids (test/support/postgres.ts runs the server as that user too). */
const execId = (flag: "-u" | "-g"): string =>
  execFileSync("id", [flag, "postgres"], { encoding: "utf8" }).trim();
