// An export test's surroundings, started in one call: a fresh database on the suite's PostgreSQL
// (with c2s_wait(), export-checks.ts), a bucket on the suite's S3 server (moto unless another is
// given), and the proxy in this process in front of them with its S3 traffic passing through the
// fault-injecting proxy (s3-fault-proxy.ts), so a test can fail, hold or count any S3 request.
// Checks read S3 directly (`check`), never through the fault proxy.
import pg from "pg";
import { inject } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "./copy-proxy.js";
import { C2S_WAIT_FUNCTION } from "./export-checks.js";
import type { TestProxy } from "./proxy.js";
import { RawPg } from "./raw-pg.js";
import { S3FaultProxy } from "./s3-fault-proxy.js";

export interface ExportDatabase {
  pgPort: number;
  /** The database's name: clients of the proxy connect to it. */
  database: string;
  /** A direct connection to it (not through the proxy): the tests' own set-up and oracle. */
  oracle: RawPg;
  s3: S3Access;
  /** An independent S3 client on the S3 server itself. */
  check: S3Check;
  bucket: string;
  close(): Promise<void>;
}

/** A fresh database with c2s_wait() and a fresh bucket on `s3` (default: the suite's moto). */
export async function freshExportDatabase(o: {
  database: string;
  bucket: string;
  s3?: S3Access;
}): Promise<ExportDatabase> {
  const pgPort = inject("pgPort");
  const s3 = o.s3 ?? motoAccess();
  const check = new S3Check(s3);
  const oracle = await RawPg.freshDatabase(pgPort, o.database);
  try {
    await oracle.query(C2S_WAIT_FUNCTION);
    const bucket = await check.bucket(o.bucket);
    return { pgPort, database: o.database, oracle, s3, check, bucket, close: () => oracle.close() };
  } catch (e) {
    await oracle.close();
    throw e;
  }
}

export interface FaultyProxy {
  faults: S3FaultProxy;
  proxy: TestProxy;
  /** One more proxy like `proxy` (same S3 behind the same fault proxy, same config) with more flags. */
  startProxy(args: string[]): Promise<TestProxy>;
  /** A client of `proxy` on the database, NOTICEs ignored. */
  connect(): Promise<pg.Client>;
  /** Ends the clients connect() made, shuts the proxies down, closes the fault proxy. */
  stop(): Promise<void>;
}

export interface ProxyOptions {
  /** Config-file keys next to the "default" connection (e.g. `exports`). */
  config?: Record<string, unknown>;
  args?: string[];
}

/** The proxy in this process in front of the suite's PostgreSQL, its S3 traffic through a fault proxy. */
export async function startFaultyProxy(
  o: ProxyOptions & { s3: S3Access; database: string },
): Promise<FaultyProxy> {
  const pgPort = inject("pgPort");
  const faults = await S3FaultProxy.start(o.s3.endpoint);
  const proxies: TestProxy[] = [];
  const clients: pg.Client[] = [];
  const startProxy = async (args: string[]): Promise<TestProxy> => {
    const p = await startCopyProxy({
      upstreamPort: pgPort,
      s3: { ...o.s3, endpoint: faults.endpoint },
      config: o.config,
      args: [...(o.args ?? []), ...args],
    });
    proxies.push(p);
    return p;
  };
  const stop = async (): Promise<void> => {
    for (const c of clients.splice(0)) await c.end();
    for (const p of proxies.splice(0)) await p.shutdown(0);
    await faults.close();
  };
  try {
    const proxy = await startProxy([]);
    const connect = async (): Promise<pg.Client> => {
      const c = new pg.Client({ connectionString: proxy.url("postgres", o.database) });
      c.on("notice", () => {});
      clients.push(c);
      await c.connect();
      return c;
    };
    return { faults, proxy, startProxy, connect, stop };
  } catch (e) {
    await stop();
    throw e;
  }
}

export type ProxyStack = Omit<ExportDatabase, "close"> & FaultyProxy;

/** A fresh database and bucket, and the proxy in front of them behind a fault proxy; stop() ends all. */
export async function startProxyStack(
  o: ProxyOptions & { database: string; bucket: string; s3?: S3Access },
): Promise<ProxyStack> {
  const db = await freshExportDatabase(o);
  let proxy: FaultyProxy;
  try {
    proxy = await startFaultyProxy({ ...o, s3: db.s3 });
  } catch (e) {
    await db.close();
    throw e;
  }
  return {
    ...db,
    ...proxy,
    stop: async () => {
      try {
        await proxy.stop();
      } finally {
        await db.close();
      }
    },
  };
}
