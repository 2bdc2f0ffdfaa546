// How the proxy process reacts to the world outside it: signals, a log reader that goes away, and
// its own unexpected errors. Every way of ending goes through the proxy's shutdown, so that running
// exports are cleaned up (uploads aborted, objects deleted, sentinel dropped) before the process
// exits; only SIGKILL skips that. The choices are PgBouncer's where they fit (docs/decisions.md,
// "Signals"):
//   SIGHUP           reload the config file's reloadable settings (jobs too); never stops the proxy
//   SIGINT, SIGTERM  drain: running statements and exports get --drain-timeout, then are aborted
//   again, SIGQUIT   abort every running export now (still cleaning up), then exit
//   log output lost  (EPIPE, EIO) the same drain as SIGTERM, exit code 1
//   uncaught error   abort now, clean up, exit code 1
import { type Config, ConfigError, loadConfig } from "./config.js";
import type { CopyToHook } from "./copy/hook.js";
import type { Logger, LogOutput } from "./log.js";
import type { ProxyServer } from "./proxy/server.js";
import type { Schedules } from "./schedule/start.js";

export interface Lifecycle {
  argv: readonly string[];
  env: NodeJS.ProcessEnv;
  config: Config;
  log: Logger;
  output: LogOutput;
  proxy: ProxyServer;
  copy: CopyToHook;
  /** Scheduled snapshots: their `jobs` are reloaded too. */
  schedules?: Pick<Schedules, "reload">;
  /** The admin listener: it answers (readiness 503) through the drain and closes after it. */
  admin?: { close(): Promise<void> } | undefined;
}

/** Settings a reload cannot change: they are bound to the listener or the sessions. */
const RESTART_ONLY = [
  "listen",
  "adminListen",
  "upstream",
  "upstreamTls",
  "upstreamCaFile",
  "upstreamKind",
  "fileRoot",
  "cancelTimeoutMs",
  "connectTimeoutMs",
  "exports.warmUp",
] as const;

/** How long the last log lines may take to reach a slow reader before the process exits anyway. */
const LOG_CLOSE_MS = 2000;

export interface ProcessControl {
  /** Begins (or hurries) the shutdown; the process exits once it is done. */
  stop(reason: string, drainTimeoutMs: number, exitCode: number): void;
  reload(): void;
  /** The log output failed: called by its owner (see logOutput). */
  logBroken(err: Error): void;
}

export function controlProcess(l: Lifecycle): ProcessControl {
  const { config } = l;
  let drainTimeoutMs = config.drainTimeoutMs;
  let stopping = false;
  let exitCode = 0;
  let signals = 0;
  const { log, proxy } = l;

  const stop = (reason: string, drainTimeoutMs: number, code: number): void => {
    exitCode = Math.max(exitCode, code);
    // Also if the event loop empties before the exit below is reached.
    process.exitCode = exitCode;
    if (stopping) {
      const running = [...proxy.sessions].filter((s) => s.exporting !== null).length;
      log.warn(
        { reason, exportsCleaningUp: running },
        drainTimeoutMs === 0
          ? "aborting running exports now; the process exits once they are cleaned up (kill -9 would leave their objects behind)"
          : "already shutting down",
      );
      void proxy.shutdown(drainTimeoutMs);
      return;
    }
    stopping = true;
    log.info({ reason, drainTimeoutMs }, "shutting down");
    void proxy
      .shutdown(drainTimeoutMs)
      .catch((e: unknown) => {
        exitCode = Math.max(exitCode, 1);
        log.error({ err: e }, "shutdown failed");
      })
      .then(() => l.admin?.close())
      .then(() => l.output.close(LOG_CLOSE_MS))
      .then(() => process.exit(exitCode));
  };

  const onSignal = (sig: NodeJS.Signals): void => {
    signals++;
    // The first SIGINT/SIGTERM drains; any further one (or SIGQUIT) stops waiting.
    stop(sig, sig === "SIGQUIT" || signals > 1 ? 0 : drainTimeoutMs, 0);
  };

  const reload = (): void => {
    let next: Config;
    try {
      next = loadConfig(l.argv, l.env).config;
    } catch (e) {
      const err = e instanceof ConfigError ? e.message : (e as Error).message;
      log.warn({ err }, "reload failed: the running configuration is kept");
      return;
    }
    const reloaded: string[] = [];
    const failed: Record<string, string> = {};
    try {
      proxy.reloadTls(next.tlsCertFile, next.tlsKeyFile);
      reloaded.push("tlsCertFile", "tlsKeyFile");
    } catch (e) {
      failed.tls = (e as Error).message;
    }
    try {
      l.copy.reload(next);
      reloaded.push("connections", "exports");
    } catch (e) {
      failed.connections = (e as Error).message;
    }
    if (l.schedules !== undefined) {
      try {
        const jobs = l.schedules.reload(next);
        reloaded.push("jobs");
        log.info(jobs, "scheduled snapshot jobs reloaded");
      } catch (e) {
        failed.jobs = (e as Error).message;
        log.error({ err: failed.jobs }, "reload: the new jobs are invalid; the running jobs are kept");
      }
    }
    log.level = next.logLevel;
    drainTimeoutMs = next.drainTimeoutMs;
    reloaded.push("logLevel", "drainTimeoutMs");
    // Compared with what the proxy started with: these never change while it runs.
    const restart = RESTART_ONLY.filter(
      (k) => JSON.stringify(pick(config, k)) !== JSON.stringify(pick(next, k)),
    );
    if (Object.keys(failed).length > 0)
      log.warn({ failed }, "reload: some settings could not be applied and were kept");
    if (restart.length > 0)
      log.warn({ settings: restart }, "reload: these settings change only with a restart");
    log.info({ reloaded }, "configuration reloaded");
  };

  const fatal = (kind: string, e: unknown): void => {
    log.fatal({ err: e }, kind);
    stop(kind, 0, 1);
  };

  process.on("SIGINT", onSignal);
  process.on("SIGTERM", onSignal);
  process.on("SIGQUIT", onSignal);
  process.on("SIGHUP", () => reload());
  process.on("uncaughtException", (e) => fatal("uncaught exception", e));
  process.on("unhandledRejection", (e) => fatal("unhandled promise rejection", e));

  return {
    stop,
    reload,
    logBroken: (err) => {
      try {
        process.stderr.write(`copy-to-s3-proxy: log output failed (${describe(err)}); shutting down\n`);
      } catch {
        // stderr may be gone with stdout (a closed terminal)
      }
      stop("log output failed", drainTimeoutMs, 1);
    },
  };
}

function pick(c: Config, path: string): unknown {
  let v: unknown = c;
  for (const k of path.split(".")) v = (v as Record<string, unknown> | undefined)?.[k];
  return v;
}

function describe(err: Error): string {
  const code = (err as NodeJS.ErrnoException).code;
  return code ?? err.message;
}
