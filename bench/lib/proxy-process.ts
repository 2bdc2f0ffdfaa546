// The proxy under measurement as its own process (its bin, dist/cli.js, so its CPU and peak RSS are
// its own), built from this checkout or from any commit (`git archive` into a temporary directory,
// this checkout's node_modules), so the proxies of two commits can run side by side in one bench.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import {
  appendFileSync,
  chmodSync,
  existsSync,
  mkdirSync,
  readFileSync,
  readlinkSync,
  symlinkSync,
  unlinkSync,
  writeFileSync,
} from "node:fs";
import { connect } from "node:net";
import { join } from "node:path";
import { freePort } from "../../test/support/ports.js";

export const ROOT = new URL("../..", import.meta.url).pathname;

export interface ProxyBuild {
  /** Short commit, or "worktree" for this checkout as it is. */
  name: string;
  /** The directory holding dist/cli.js. */
  dir: string;
}

/** Builds the proxy of `ref` (a commit-ish) under `work`, or this checkout when `ref` is undefined
 * (`npm run build` unless `noBuild`). */
export function buildProxy(
  ref: string | undefined,
  work: string,
  opts: { noBuild?: boolean } = {},
): ProxyBuild {
  if (ref === undefined) {
    if (!opts.noBuild) execFileSync("npm", ["run", "build", "--silent"], { cwd: ROOT, stdio: "inherit" });
    if (!existsSync(join(ROOT, "dist/cli.js"))) throw new Error("dist/cli.js missing: npm run build");
    const dirty = execFileSync("git", ["-C", ROOT, "status", "--porcelain", "src"], {
      encoding: "utf8",
    }).trim();
    const head = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", "HEAD"], {
      encoding: "utf8",
    }).trim();
    return { name: dirty ? `${head}+dirty` : head, dir: ROOT };
  }
  const commit = execFileSync("git", ["-C", ROOT, "rev-parse", "--short", ref], { encoding: "utf8" }).trim();
  // A commit's build never changes: C2S_BENCH_BUILD_DIR keeps builds for the next bench run.
  const dir = join(process.env.C2S_BENCH_BUILD_DIR ?? work, `proxy-${commit}`);
  if (!existsSync(join(dir, "dist/cli.js"))) {
    mkdirSync(dir, { recursive: true });
    execFileSync("sh", ["-c", `git -C '${ROOT}' archive ${commit} | tar -x -C '${dir}'`]);
    linkNodeModules(dir);
    execFileSync("npm", ["run", "build", "--silent"], { cwd: dir, stdio: "inherit" });
  }
  // A kept build's link may point into a checkout that is gone (a removed worktree): the proxy
  // then fails to start on its first import. It always runs on this checkout's node_modules.
  linkNodeModules(dir);
  return { name: commit, dir };
}

function linkNodeModules(dir: string): void {
  const link = join(dir, "node_modules");
  const target = join(ROOT, "node_modules");
  let current: string | undefined;
  try {
    current = readlinkSync(link);
  } catch {
    if (existsSync(link)) return; // a real directory, installed there on purpose
  }
  if (current === target) return;
  if (current !== undefined) unlinkSync(link);
  symlinkSync(target, link);
}

export interface ProxyProc {
  port: number;
  pid: number;
  proc: ChildProcess;
  stderr(): string;
}

/** Resolves once `proc` (named `what` in errors) accepts connections on `port`; throws if it exits first or takes over 15 s. */
export async function waitPort(
  port: number,
  proc: ChildProcess,
  stderr: () => string,
  what = "proxy",
): Promise<void> {
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${what} exited ${proc.exitCode}: ${stderr()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = connect(port, "127.0.0.1");
      s.once("connect", () => {
        s.destroy();
        resolve(true);
      });
      s.once("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${what} did not listen on ${port}: ${stderr()}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export interface StartProxyOptions {
  build: ProxyBuild;
  pgPort: number;
  /** The S3 server of the `default` AWS connection. */
  s3: { endpoint: string; accessKeyId: string; secretAccessKey: string };
  /** Where the config file goes and `--file-root` points (a `files` directory below it). */
  work: string;
  /** The config's `exports` object (e.g. from `--exports JSON`). */
  exports?: Record<string, unknown>;
  nodeArgs?: string[];
  /** More environment for the proxy process (and so its threads). */
  env?: Record<string, string>;
  /** Start the proxy in a session of its own (setsid), as a service runs: with the kernel's
   * autogroup scheduling (sched_autogroup_enabled) a session's threads share one CPU share, so a
   * proxy left in the bench's session shares it with the bench's pgbench clients. */
  ownSession?: boolean;
  /** Append the proxy's stdout/stderr here, at log level info (else level warn, kept in memory). */
  logFile?: string;
}

export async function startProxyProcess(o: StartProxyOptions): Promise<ProxyProc> {
  const port = await freePort();
  const configFile = join(o.work, `proxy-config-${port}.json`);
  writeFileSync(
    configFile,
    JSON.stringify({
      connections: {
        default: {
          endpoint: o.s3.endpoint,
          region: "us-east-1",
          accessKeyId: { env: "K" },
          secretAccessKey: { env: "S" },
        },
      },
      ...(o.exports === undefined ? {} : { exports: o.exports }),
    }),
  );
  // As users start it: the package's bin (`npx copy-to-s3-proxy`, a global install, `npm start`),
  // so the proxy has the environment its launcher gives (src/cli.ts: MALLOC_ARENA_MAX) and the
  // bench's peak RSS is theirs; a build without the launcher runs as its `#!/usr/bin/env node`
  // did. Node flags (a profile, a probe) need node's command line: those runs start node
  // directly, with the environment and the node flags a launcher would have given (MALLOC_ARENA_MAX=2
  // unless set; its `exec node <flags>`).
  const cli = join(o.build.dir, "dist/cli.js");
  const nodeArgs = o.nodeArgs ?? [];
  const launched = nodeArgs.length === 0;
  const launcherEnv: Record<string, string> =
    !launched && process.env.MALLOC_ARENA_MAX === undefined && hasLauncher(cli)
      ? { MALLOC_ARENA_MAX: "2" }
      : {};
  if (launched) chmodSync(cli, 0o755); // tsc writes it without the bit npm's install sets
  const proc = spawn(
    launched ? cli : process.execPath,
    [
      ...(launched ? [] : [...launcherNodeArgs(cli), ...nodeArgs, cli]),
      "--listen",
      `127.0.0.1:${port}`,
      "--upstream",
      `127.0.0.1:${o.pgPort}`,
      "--upstream-tls",
      "disable",
      "--log-level",
      o.logFile === undefined ? "warn" : "info",
      "--file-root",
      join(o.work, "files"),
      "--config",
      configFile,
    ],
    {
      stdio: ["ignore", "pipe", "pipe"],
      detached: o.ownSession ?? false,
      env: { ...process.env, ...launcherEnv, ...o.env, K: o.s3.accessKeyId, S: o.s3.secretAccessKey },
    },
  );
  let err = "";
  const keep = (d: Buffer): void => {
    err = (err + d.toString()).slice(-8000);
    if (o.logFile !== undefined) appendFileSync(o.logFile, d);
  };
  proc.stdout!.on("data", keep);
  proc.stderr!.on("data", keep);
  await waitPort(port, proc, () => err);
  return { port, pid: proc.pid!, proc, stderr: () => err };
}

/** Whether the build's bin starts with a shell launcher (src/cli.ts) rather than node. */
const hasLauncher = (cli: string): boolean => readFileSync(cli, "utf8").startsWith("#!/bin/sh\n");

/** The node flags of a build's launcher line (`exec node <flags> "$0"`), none without a launcher. */
function launcherNodeArgs(cli: string): string[] {
  if (!hasLauncher(cli)) return [];
  const m = /exec node ((?:--[\w-]+(?:=\S+)? )*)"\$0"/.exec(readFileSync(cli, "utf8").split("\n")[1] ?? "");
  return (
    m?.[1]
      ?.trim()
      .split(" ")
      .filter((a) => a !== "") ?? []
  );
}

export async function stopProxy(p: ProxyProc): Promise<void> {
  if (p.proc.exitCode !== null) return;
  const exited = new Promise((r) => p.proc.once("exit", r));
  p.proc.kill("SIGTERM"); // the CLI drains and exits 0, which also writes a --cpu-prof profile
  await Promise.race([exited, new Promise((r) => setTimeout(r, 15_000))]);
  if (p.proc.exitCode === null && p.proc.signalCode === null) {
    p.proc.kill("SIGKILL");
    await exited;
  }
}

/** `--ref A,B,…` → the commits to build; "." (or no --ref at all) is this checkout. */
export const parseRefs = (arg: string | undefined): Array<string | undefined> =>
  arg === undefined ? [undefined] : arg.split(",").map((r) => (r.trim() === "." ? undefined : r.trim()));

/** Builds every proxy of `refs`; names stay unique (the same commit twice, e.g. this checkout and
 * its HEAD, gets "#2"), since results are keyed by them. */
export function buildProxies(
  refs: Array<string | undefined>,
  work: string,
  opts: { noBuild?: boolean; log?: (s: string) => void } = {},
): ProxyBuild[] {
  const builds = refs.map((ref) => {
    opts.log?.(ref === undefined ? "npm run build" : `building the proxy of ${ref} (git archive)`);
    return buildProxy(ref, work, opts);
  });
  for (const [i, b] of builds.entries())
    if (builds.findIndex((o) => o.name === b.name) !== i) b.name = `${b.name}#${i + 1}`;
  return builds;
}
