#!/usr/bin/env node
// Entry point: `copy-to-s3-proxy [options]` runs the proxy; `copy-to-s3-proxy cleanup ...` cleans
// up after crashed exports.
import { ConfigError, HELP, loadConfig } from "./config.js";
import { runCleanupCommand } from "./copy/cleanup-command.js";
import { loadConnections } from "./copy/connections.js";
import { createCopyHook } from "./copy/hook.js";
import { PgError } from "./errors.js";
import { createLogger } from "./log.js";
import { startProxy } from "./proxy/server.js";

async function main(): Promise<number> {
  let cli: ReturnType<typeof loadConfig>;
  try {
    cli = loadConfig(process.argv.slice(2), process.env);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`copy-to-s3-proxy: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  if (cli.command === "help") {
    process.stdout.write(HELP);
    return 0;
  }
  const log = createLogger(cli.config.logLevel);
  if (cli.command === "cleanup") {
    if (cli.positionals.length !== 1) {
      process.stderr.write(
        "copy-to-s3-proxy: usage: cleanup s3://bucket/prefix [--yes] [--connection NAME] [--older-than 15m]\n",
      );
      return 2;
    }
    try {
      const e = cli.config.exports;
      return await runCleanupCommand({
        target: cli.positionals[0]!,
        yes: cli.flags.yes,
        olderThan: cli.flags.olderThan,
        sentinelRefreshMs: e.sentinelRefreshMs,
        connection: cli.flags.connection,
        connections: loadConnections(cli.config.connections, process.env, {
          warn: (message) => process.stderr.write(`copy-to-s3-proxy: warning: ${message}\n`),
        }),
        storeOptions: {
          maxAttempts: e.s3MaxAttempts,
          retryMode: e.s3RetryMode,
          requestTimeoutMs: e.s3RequestTimeoutMs,
        },
        out: (line) => process.stdout.write(`${line}\n`),
      });
    } catch (e) {
      const err = PgError.from(e);
      process.stderr.write(
        `copy-to-s3-proxy cleanup: ${err.message}${err.detail ? `\n${err.detail}` : ""}\n`,
      );
      return 1;
    }
  }
  const copy = await createCopyHook(cli.config, log);
  const proxy = await startProxy(cli.config, log, copy);
  let signals = 0;
  const stop = (sig: string): void => {
    signals++;
    if (signals > 1) {
      log.warn({ signal: sig }, "second signal: exiting now");
      process.exit(1);
    }
    log.info({ signal: sig, drainTimeoutMs: cli.config.drainTimeoutMs }, "shutting down");
    void proxy.shutdown().then(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
  return -1;
}

main().then(
  (code) => {
    if (code >= 0) process.exit(code);
  },
  (e: unknown) => {
    process.stderr.write(`copy-to-s3-proxy: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
