// Starts the proxy in this process, in front of the suite's PostgreSQL (or any upstream).
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/log.js";
import type { CopyHook } from "../../src/proxy/copy-hook.js";
import { type ProxyServer, startProxy } from "../../src/proxy/server.js";

export interface TestProxy extends ProxyServer {
  port: number;
  url(user?: string, database?: string, password?: string): string;
}

export async function startTestProxy(opts: {
  upstreamPort: number;
  args?: string[];
  copy?: CopyHook | null;
  logLevel?: string;
}): Promise<TestProxy> {
  const { config } = loadConfig(
    [
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      `127.0.0.1:${opts.upstreamPort}`,
      "--log-level",
      opts.logLevel ?? process.env.C2S_TEST_LOG ?? "silent",
      ...(opts.args ?? []),
    ],
    {},
  );
  const log = createLogger(config.logLevel);
  const p = await startProxy(config, log, opts.copy ?? null);
  const port = p.address.port;
  return Object.assign(p, {
    port,
    url: (user = "postgres", database = "postgres", password?: string) =>
      `postgres://${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ""}@127.0.0.1:${port}/${database}`,
  });
}
