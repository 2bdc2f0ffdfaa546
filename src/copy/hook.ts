// Wires the COPY TO S3 feature into the proxy's CopyHook seam.
import type { Config } from "../config.js";
import { warmUpEncoders } from "../encoders/worker/encoder-warm-up.js";
import { keepSpareEncoderThread } from "../encoders/worker/thread-pool.js";
import type { Logger } from "../log.js";
import type { CopyHook } from "../proxy/copy-hook.js";
import { ConnectionSource } from "./connection-source.js";
import { loadConnections } from "./connections.js";
import { runCopyExport } from "./export.js";
import { ExportLimiter } from "./export-limiter.js";
import { initParser } from "./sql-tokens.js";
import { type CopyToStatement, parseCopyTo } from "./statement.js";
import { upstreamKindOf } from "./upstream-kind.js";

export interface CopyToHook extends CopyHook<CopyToStatement> {
  /**
   * SIGHUP: exports started from now on use `next`'s AWS connections and export settings, the
   * caps and the queue timeout included (running exports keep their slots). Throws, changing
   * nothing, if a connection is invalid.
   */
  reload(next: Config): void;
  /** The AWS connections, also the scheduled jobs' (one loading per configuration for both). */
  readonly connections: ConnectionSource;
}

export async function createCopyHook(config: Config, log: Logger): Promise<CopyToHook> {
  // Before the proxy listens: the parser's warm-up runs on this thread (the relay's), and with
  // `warmUp: none` a proxy prepares nothing for exports it may never run.
  await initParser({ warmUp: config.exports.warmUp !== "none" });
  const load = (c: Config) =>
    loadConnections(c.connections, process.env, {
      warn: (message) => log.warn(message),
      catalog: c.catalogConnections,
    });
  const limiter = new ExportLimiter(
    config.exports.maxConcurrentExports,
    config.exports.queueTimeoutMs,
    config.exports.maxExportsPerUser,
  );
  const connections = new ConnectionSource(config, load);
  const deps = { config, connections: connections.current, limiter };
  // An export's encoder thread is kept for the next export until the proxy shuts down.
  const releaseSpare = keepSpareEncoderThread();
  // The warm-up (exports.warmUp) runs once the proxy listens; the shutdown ends it.
  const warm = new AbortController();
  const listening = (): void => {
    const { warmUp, workerNice, workerPolicy, encoderHost } = config.exports;
    if (warmUp === "none") return;
    // On the next turn of the loop, not now: its synchronous start (reading and handing over
    // parquet-wasm's MBs) would delay the rest of the proxy's start, the CLI's signal handlers
    // (lifecycle.ts) among them.
    setImmediate(() => {
      const t0 = performance.now();
      void warmUpEncoders(
        warmUp,
        { nice: workerNice, idle: workerPolicy === "idle", host: encoderHost },
        warm.signal,
      ).then((outcome) =>
        log.info({ warmUp, outcome, ms: Math.round(performance.now() - t0) }, "exports warm-up ended"),
      );
    });
  };
  return {
    recognize: (sql, upstreamParameters) =>
      parseCopyTo(sql, { dialect: upstreamKindOf(config.upstreamKind, upstreamParameters) }),
    run: (stmt, ctx) => runCopyExport(stmt, ctx, deps),
    parameters: (stmt) => (stmt.target.kind === "expression" ? stmt.target.params : 0),
    reload: (next) => {
      deps.connections = connections.use(next);
      deps.config = { ...config, exports: next.exports };
      limiter.reconfigure(next.exports);
    },
    listening,
    shutdown: () => {
      warm.abort();
      releaseSpare();
    },
    connections,
  };
}
