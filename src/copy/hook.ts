// Wires the COPY TO S3 feature into the proxy's CopyHook seam.
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import type { CopyHook } from "../proxy/copy-hook.js";
import { loadConnections } from "./connections.js";
import { runCopyExport } from "./export.js";
import { ExportLimiter } from "./export-limiter.js";
import { type CopyToStatement, initParser, parseCopyTo } from "./statement.js";
import { upstreamKindOf } from "./upstream-kind.js";

export async function createCopyHook(config: Config, log: Logger): Promise<CopyHook<CopyToStatement>> {
  await initParser();
  const connections = loadConnections(config.connections, process.env, {
    warn: (message) => log.warn(message),
    catalog: config.catalogConnections,
  });
  const limiter = new ExportLimiter(config.exports.maxConcurrentExports, config.exports.queueTimeoutMs);
  const deps = { config, connections, limiter };
  return {
    recognize: (sql, upstreamParameters) =>
      parseCopyTo(sql, { dialect: upstreamKindOf(config.upstreamKind, upstreamParameters) }),
    run: (stmt, ctx) => runCopyExport(stmt, ctx, deps),
  };
}
