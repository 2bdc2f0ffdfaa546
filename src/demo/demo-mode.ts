// `copy-to-s3-proxy` with no upstream configured (what `npm start` runs on a fresh clone): an
// embedded PostgreSQL with demo tables behind the proxy, file:// exports into a local directory,
// one sample export so files and a manifest appear, and a short text on how to go on.
import { accessSync, constants, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import pg from "pg";
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import { DEMO_TABLES } from "./demo-data.js";
import { type EmbeddedUpstream, startEmbeddedUpstream } from "./embedded-upstream.js";

export interface DemoUpstream {
  /** The configuration to run the proxy with: the embedded upstream, file:// exports allowed. */
  config: Config;
  exportsDir: string;
  stop(): Promise<void>;
  /** Once the proxy listens: runs the sample export through it and prints what to try next. */
  showAround(proxy: { host: string; port: number }): Promise<void>;
}

/**
 * ./exports under the working directory: where the newcomer looks, and it outlives the process
 * (a temp dir would be cleaned away and is hard to find). When the working directory is not
 * writable (a container's /app), the system's temp dir instead.
 */
export function chooseExportsDir(cwd: string, configured: string | undefined): string {
  if (configured !== undefined) return configured;
  for (const dir of [join(cwd, "exports"), join(tmpdir(), "copy-to-s3-proxy-exports")]) {
    try {
      mkdirSync(dir, { recursive: true });
      accessSync(dir, constants.W_OK);
      return dir;
    } catch {
      // try the next place
    }
  }
  throw new Error(`no writable directory for the demo's exports (tried ./exports and ${tmpdir()})`);
}

export async function startDemo(
  config: Config,
  log: Logger,
  say: (text: string) => void,
): Promise<DemoUpstream> {
  const exportsDir = resolve(chooseExportsDir(process.cwd(), config.fileRoot));
  say(
    "No --upstream given: starting an embedded PostgreSQL (PGlite) with demo tables (a few seconds: initdb runs in WebAssembly)…",
  );
  const started = Date.now();
  const upstream: EmbeddedUpstream = await startEmbeddedUpstream();
  log.info(
    { upstream: { host: upstream.host, port: upstream.port }, ms: Date.now() - started, exportsDir },
    "embedded demo upstream ready",
  );
  const demoConfig: Config = {
    ...config,
    upstream: { host: upstream.host, port: upstream.port },
    upstreamTls: "disable",
    upstreamKind: "postgres",
    fileRoot: exportsDir,
  };
  return {
    config: demoConfig,
    exportsDir,
    stop: () => upstream.stop(),
    showAround: (proxy) => showAround(proxy, exportsDir, say),
  };
}

function stamp(d: Date): string {
  return d.toISOString().replace(/[-:]/g, "").replace(/\..*$/, "");
}

async function showAround(
  listening: { host: string; port: number },
  exportsDir: string,
  say: (text: string) => void,
): Promise<void> {
  // A proxy listening on every address (a container) is reached on loopback from inside.
  const host = listening.host === "0.0.0.0" || listening.host === "::" ? "127.0.0.1" : listening.host;
  const proxy = { host, port: listening.port };
  const target = `${pathToFileURL(join(exportsDir, `sample-${stamp(new Date())}`)).href}/orders`;
  const sql = `COPY orders TO '${target}' WITH (FORMAT csv, HEADER true)`;
  const client = new pg.Client({
    host: proxy.host,
    port: proxy.port,
    user: "postgres",
    database: "postgres",
  });
  let result = "";
  try {
    await client.connect();
    const r = await client.query(sql);
    result = `exported ${r.rowCount} rows`;
  } catch (e) {
    result = `the sample export failed: ${(e as Error).message}`;
  } finally {
    await client.end().catch(() => {});
  }
  const psql = `psql "host=${proxy.host} port=${proxy.port} user=postgres dbname=postgres"`;
  say(
    [
      "",
      `copy-to-s3-proxy demo: listening on ${proxy.host}:${proxy.port}, in front of an embedded PostgreSQL`,
      `with the tables ${DEMO_TABLES.join(", ")}.`,
      "",
      `Sample export: ${sql}`,
      `  ${result}: the data files are in ${fileURLToPath(target)}`,
      `  and the manifest (files, rows, bytes, columns) in ${join(fileURLToPath(target), "_meta")}`,
      "",
      "Connect:",
      `  ${psql}`,
      "",
      "Try next (file:// targets must lie below the exports directory):",
      `  COPY (SELECT * FROM orders WHERE status = 'open') TO '${pathToFileURL(exportsDir).href}/open-orders' WITH (FORMAT parquet);`,
      `  COPY revenue_by_region TO '${pathToFileURL(exportsDir).href}/revenue' WITH (FORMAT csv, HEADER true);`,
      "  Against your own database and S3: npm start -- --upstream postgres://HOST:PORT (see --help and README.md).",
      "",
      "Ctrl-C stops the proxy and the demo database (its data lives in memory only).",
      "",
    ].join("\n"),
  );
}
