// The proxy as its own process (the real CLI, src/cli.ts through tsx), for what only a process can
// show: SIGTERM handling, kill -9, and the `cleanup` subcommand.
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import type { S3Access } from "./copy-proxy.js";
import { waitUntil } from "./export-checks.js";
import { freePort } from "./ports.js";
import { waitForStart } from "./process-start.js";

const execFileP = promisify(execFile);
const ROOT = new URL("../..", import.meta.url).pathname;
const TSX = ["--import", "tsx"];
const CLI = [...TSX, join(ROOT, "src/cli.ts")];

export interface ProxyProcess {
  port: number;
  proc: ChildProcess;
  url(user?: string, database?: string): string;
  /** The config file it was started with (rewrite it, then SIGHUP, to test a reload). */
  configFile: string;
  /** Everything the process wrote to stdout and stderr so far (JSON log lines). */
  output(): string;
  /** Resolves with the exit code (null when killed by a signal) and the signal. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

/** A config file with the suite's S3 server as the "default" AWS connection (secrets from env). */
export function writeProxyConfig(
  s3: S3Access,
  extra: Record<string, unknown> = {},
): { file: string; env: NodeJS.ProcessEnv } {
  const dir = mkdtempSync(join(tmpdir(), "c2s-proc-"));
  const file = join(dir, "config.json");
  writeFileSync(
    file,
    JSON.stringify({
      ...extra,
      connections: {
        default: {
          endpoint: s3.endpoint,
          region: s3.region,
          accessKeyId: { env: "C2S_TEST_S3_KEY" },
          secretAccessKey: { env: "C2S_TEST_S3_SECRET" },
        },
      },
    }),
  );
  return {
    file,
    env: { ...process.env, C2S_TEST_S3_KEY: s3.accessKeyId, C2S_TEST_S3_SECRET: s3.secretAccessKey },
  };
}

export async function spawnCopyProxy(opts: {
  upstreamPort: number;
  s3: S3Access;
  args?: string[];
  config?: Record<string, unknown>;
  /** Modules loaded into the process before the CLI (`node --import`), e.g. a test's fault hook. */
  imports?: string[];
  env?: Record<string, string>;
  /** Another checkout to run the proxy from (a bench's baseline build); default this one. */
  root?: string;
}): Promise<ProxyProcess> {
  const port = await freePort();
  const { file, env } = writeProxyConfig(opts.s3, opts.config);
  const root = opts.root ?? ROOT;
  const proc = spawn(
    process.execPath,
    [
      ...TSX,
      ...(opts.imports ?? []).flatMap((m) => ["--import", m]),
      join(root, "src/cli.ts"),
      "--listen",
      `127.0.0.1:${port}`,
      "--upstream",
      `127.0.0.1:${opts.upstreamPort}`,
      "--upstream-tls",
      "disable",
      "--log-level",
      "info",
      "--config",
      file,
      ...(opts.args ?? []),
    ],
    { cwd: root, env: { ...env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"] },
  );
  let out = "";
  proc.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  proc.stderr!.on("data", (d: Buffer) => {
    out += d.toString();
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) =>
    proc.once("exit", (code, signal) => r({ code, signal })),
  );
  try {
    // ~2.3 CPU-s on an idle machine (tsx, then the AWS SDK and the rest of the module graph).
    await waitForStart(proc, () => out.includes('"proxy listening"'), {
      what: "the proxy process",
      cpuSeconds: 30,
      output: () => out,
    });
  } catch (e) {
    proc.kill("SIGKILL");
    throw e;
  }
  return {
    port,
    proc,
    configFile: file,
    url: (user = "postgres", database = "postgres") =>
      `postgres://${encodeURIComponent(user)}@127.0.0.1:${port}/${database}`,
    output: () => out,
    exited,
    stop: async () => {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill("SIGKILL");
      await exited;
    },
  };
}

/** How many times `needle` occurs in `haystack`. */
const occurrences = (haystack: string, needle: string): number => haystack.split(needle).length - 1;

/**
 * Rewrites the process's config file with `change` applied to its JSON, sends SIGHUP and resolves
 * once the process has logged that this reload took effect. A reload takes well under a second
 * when the machine is idle; the wait is long for a busy one, and a reload that never comes fails
 * with the process's last lines (what it was doing instead).
 */
export async function reloadConfig<C = Record<string, unknown>>(
  p: ProxyProcess,
  change: (config: C) => C,
): Promise<void> {
  const config = JSON.parse(readFileSync(p.configFile, "utf8")) as C;
  writeFileSync(p.configFile, JSON.stringify(change(config)));
  const before = occurrences(p.output(), '"configuration reloaded"');
  p.proc.kill("SIGHUP");
  try {
    await waitUntil(
      "the reload",
      () => {
        const { exitCode, signalCode } = p.proc;
        if (exitCode !== null || signalCode !== null) {
          throw new Error(`the process ended (${exitCode ?? signalCode}) instead of reloading`);
        }
        return occurrences(p.output(), '"configuration reloaded"') > before;
      },
      30_000,
    );
  } catch (e) {
    throw new Error(`${(e as Error).message}; the process's last lines:\n${p.output().slice(-4000)}`);
  }
}

/** `reloadConfig` that merges `exports` into the file's `exports` section. */
export function reloadExports(p: ProxyProcess, exports: Record<string, unknown>): Promise<void> {
  return reloadConfig<{ exports?: Record<string, unknown> }>(p, (c) => ({
    ...c,
    exports: { ...c.exports, ...exports },
  }));
}

/** Runs `copy-to-s3-proxy cleanup …` with the suite's S3 server as the default connection. */
export async function runCleanupCli(
  s3: S3Access,
  args: string[],
): Promise<{ code: number; stdout: string; stderr: string }> {
  const { file, env } = writeProxyConfig(s3);
  try {
    const r = await execFileP(process.execPath, [...CLI, "cleanup", ...args, "--config", file], {
      cwd: ROOT,
      env,
    });
    return { code: 0, stdout: r.stdout, stderr: r.stderr };
  } catch (e) {
    const x = e as { code?: number; stdout?: string; stderr?: string };
    return { code: typeof x.code === "number" ? x.code : -1, stdout: x.stdout ?? "", stderr: x.stderr ?? "" };
  }
}
