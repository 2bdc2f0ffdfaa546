// The demo's upstream: PostgreSQL compiled to WebAssembly (PGlite) inside this process, served on
// a loopback port by pglite-socket, loaded with the demo tables.
//
// Both packages are loaded only in demo mode (a proxy in front of a real database never loads
// the WASM), through specifiers the compiler does not follow and typed by the few calls made
// here: the type check does not need them installed, and a checkout whose node_modules predates
// them gets a sentence instead of a stack trace.
import { DEMO_SQL } from "./demo-data.js";

export interface EmbeddedUpstream {
  host: string;
  port: number;
  stop(): Promise<void>;
}

interface PGliteDb {
  exec(sql: string): Promise<unknown>;
  close(): Promise<void>;
}
interface PgliteModule {
  PGlite: { create(): Promise<PGliteDb> };
}
interface PgliteSocketModule {
  PGLiteSocketServer: new (options: {
    db: PGliteDb;
    host: string;
    port: number;
    maxConnections: number;
  }) => { start(): Promise<void>; stop(): Promise<void>; getServerConn(): string };
}

const PGLITE: string = "@electric-sql/pglite";
const PGLITE_SOCKET: string = "@electric-sql/pglite-socket";

/**
 * PGlite is one PostgreSQL backend: pglite-socket multiplexes connections onto it, statement by
 * statement, and keeps an open transaction to the connection that began it. Enough for a demo
 * (a psql session and an export at once), not for real concurrency.
 */
const MAX_CONNECTIONS = 8;

async function load<T>(specifier: string): Promise<T> {
  try {
    return (await import(specifier)) as T;
  } catch (e) {
    throw new Error(
      `the embedded demo needs ${specifier} (${(e as Error).message}); run npm ci, or give --upstream`,
    );
  }
}

export async function startEmbeddedUpstream(): Promise<EmbeddedUpstream> {
  const { PGlite } = await load<PgliteModule>(PGLITE);
  const { PGLiteSocketServer } = await load<PgliteSocketModule>(PGLITE_SOCKET);
  const db = await PGlite.create();
  await db.exec(DEMO_SQL);
  const server = new PGLiteSocketServer({ db, host: "127.0.0.1", port: 0, maxConnections: MAX_CONNECTIONS });
  await server.start();
  const conn = server.getServerConn();
  const port = Number(conn.slice(conn.lastIndexOf(":") + 1));
  return {
    host: "127.0.0.1",
    port,
    async stop() {
      await server.stop();
      await db.close();
    },
  };
}
