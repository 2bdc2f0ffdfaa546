// The admin listener (--admin-listen): Prometheus metrics and health checks over plain HTTP, apart
// from the pgwire port, as Materialize serves its metrics on an internal HTTP port
// (docs/metrics.md). It answers three GETs and nothing else, reads no request body, and its
// answers hold counts and states only: no users, targets, queries or settings.
//   GET /metrics  the Prometheus text format
//   GET /healthz  liveness: 200 whenever the event loop gets to answer
//   GET /readyz   readiness: 200 while the proxy accepts clients; 503 before it listens and once
//                 it drains (SIGTERM), so that a load balancer stops sending new clients
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { HostPort } from "../config.js";
import type { Logger } from "../log.js";
import { collectProcessMetrics, registry } from "./metrics.js";

/** Longer request lines are refused with 414 (the paths served are a few bytes). */
const MAX_URL = 1024;
/** Scrapers and probes open one or two connections; more wait in the kernel's backlog. */
const MAX_CONNECTIONS = 32;

export type Readiness = "starting" | "ready" | "draining";

export interface AdminServer {
  readonly address: HostPort;
  close(): Promise<void>;
}

export async function startAdminServer(
  listen: HostPort,
  readiness: () => Readiness,
  log: Logger,
): Promise<AdminServer> {
  collectProcessMetrics();
  const server = createServer(
    {
      // Node's own bounds, tightened: small headers, a request must arrive quickly.
      maxHeaderSize: 16 * 1024,
      requestTimeout: 10_000,
      headersTimeout: 5_000,
      keepAliveTimeout: 5_000,
    },
    (req, res) => {
      answer(req, res, readiness).catch((e: unknown) => {
        log.warn({ err: (e as Error).message }, "admin listener: request failed");
        if (!res.headersSent) reply(res, 500, "internal error\n");
        else res.destroy();
      });
    },
  );
  server.maxConnections = MAX_CONNECTIONS;
  server.maxHeadersCount = 32;
  // Malformed requests, oversized headers, timeouts: Node answers 400/431/408 and closes the socket.
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(listen.port, listen.host, () => {
      server.off("error", reject);
      resolve();
    });
  });
  server.on("error", (e) => log.warn({ err: e.message }, "admin listener error"));
  const a = server.address();
  const address = { host: listen.host, port: typeof a === "object" && a ? a.port : listen.port };
  log.info({ adminListen: address }, "admin listener serving /metrics, /healthz, /readyz");
  let closing: Promise<void> | undefined;
  return {
    address,
    close: () => {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

async function answer(req: IncomingMessage, res: ServerResponse, readiness: () => Readiness): Promise<void> {
  const url = req.url ?? "/";
  if (url.length > MAX_URL) return reply(res, 414, "URI too long\n");
  if (req.method !== "GET" && req.method !== "HEAD") {
    res.setHeader("Allow", "GET, HEAD");
    return reply(res, 405, "method not allowed: the admin listener answers GET only\n");
  }
  // A request body is never read: the connection is not reused after one.
  if (req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined)
    res.setHeader("Connection", "close");
  const path = url.split("?", 1)[0];
  switch (path) {
    case "/metrics": {
      const text = await registry.metrics();
      return reply(res, 200, text, registry.contentType);
    }
    case "/healthz":
      return reply(res, 200, "ok\n");
    case "/readyz": {
      const state = readiness();
      return reply(res, state === "ready" ? 200 : 503, `${state}\n`);
    }
    default:
      return reply(res, 404, "not found: try /metrics, /healthz or /readyz\n");
  }
}

function reply(res: ServerResponse, status: number, body: string, type = "text/plain; charset=utf-8"): void {
  res.statusCode = status;
  res.setHeader("Content-Type", type);
  res.setHeader("Cache-Control", "no-store");
  res.setHeader("Content-Length", Buffer.byteLength(body));
  res.end(res.req.method === "HEAD" ? undefined : body);
}
