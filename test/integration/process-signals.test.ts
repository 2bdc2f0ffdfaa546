// Every way the proxy process can end — SIGINT, SIGTERM, a second signal, SIGQUIT, its log reader
// going away, an uncaught exception, an unhandled rejection — ends with the running export cleaned
// up (SPEC §2.2: no object, no multipart upload left, checked with an independent S3 client) and a
// process exit with a sensible code; SIGHUP reloads the configuration and ends nothing.
// The real CLI in its own process (test/support/proxy-process.ts), real PostgreSQL, moto.
import { writeFileSync } from "node:fs";
import { connect } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import type { S3Check } from "../support/copy-proxy.js";
import { expectNothingLeft, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { type ProxyProcess, reloadConfig, reloadExports, spawnCopyProxy } from "../support/proxy-process.js";
import { type ExportDatabase, freshExportDatabase } from "../support/proxy-stack.js";

const DB = "process_signals";
const CRASH = new URL("../support/crash-on-usr2.ts", import.meta.url).pathname;
let db: ExportDatabase;
let check: S3Check;
let bucket: string;
let n = 0;

beforeAll(async () => {
  db = await freshExportDatabase({ database: DB, bucket: "signals" });
  ({ check, bucket } = db);
}, 60_000);
afterAll(async () => {
  await db?.close();
});

const start = (args: string[], more: { imports?: string[]; env?: Record<string, string> } = {}) =>
  spawnCopyProxy({
    upstreamPort: db.pgPort,
    s3: db.s3,
    args,
    config: { exports: { partSize: 5 * 1024 * 1024 } },
    ...more,
  });

async function client(p: ProxyProcess): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: p.url("postgres", DB) });
  c.on("notice", () => {});
  c.on("error", () => {});
  await c.connect();
  return c;
}

/**
 * A slow export (~20 s of rows), resolved once it has a multipart upload open in S3. It sleeps
 * 10 ms every 20th row, not 0.5 ms every row: on a busy machine each wake-up waits for a core, so
 * 40000 short sleeps would take minutes.
 */
async function exportMidFlight(
  c: pg.Client,
): Promise<{ prefix: string; outcome: Promise<{ rows?: number; code?: string }> }> {
  const prefix = `s${++n}`;
  await c.query("SET c2s.wait = '0.01'");
  const outcome = c
    .query(
      `COPY (SELECT CASE WHEN g % 20 = 0 THEN c2s_wait(g) ELSE g END AS g, repeat('x', 4000) AS pad FROM generate_series(1, 40000) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
    )
    .then(
      (r) => ({ rows: r.rowCount ?? -1 }),
      (e: { code?: string }) => ({ code: e.code }),
    );
  // An export that ended first (an error) is said so at once, not after the wait's time is out.
  let ended: { rows?: number; code?: string } | undefined;
  void outcome.then((o) => {
    ended = o;
  });
  await waitUntil("a multipart upload open", async () => {
    if (ended !== undefined)
      throw new Error(`the export ended before its upload opened: ${JSON.stringify(ended)}`);
    return (await check.uploads(bucket, `${prefix}/`)).length > 0 ? true : null;
  });
  return { prefix, outcome };
}

/** Bounded: a process that does not exit fails the test instead of hanging it. */
async function exitOf(p: ProxyProcess): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
  return Promise.race([
    p.exited,
    new Promise<never>((_, reject) =>
      setTimeout(() => reject(new Error(`the proxy did not exit:\n${p.output()}`)), 30_000).unref(),
    ),
  ]);
}

type Ending = {
  name: string;
  args?: string[];
  imports?: string[];
  env?: Record<string, string>;
  end(p: ProxyProcess): Promise<void> | void;
  code: number;
};

const endings: Ending[] = [
  {
    name: "SIGINT (Ctrl-C) past the drain timeout",
    args: ["--drain-timeout", "300"],
    end: (p) => void p.proc.kill("SIGINT"),
    code: 0,
  },
  {
    name: "SIGTERM past the drain timeout",
    args: ["--drain-timeout", "300"],
    end: (p) => void p.proc.kill("SIGTERM"),
    code: 0,
  },
  {
    name: "a second SIGTERM while draining",
    args: ["--drain-timeout", "600000"],
    end: async (p) => {
      p.proc.kill("SIGTERM");
      await waitUntil("the drain to begin", () => p.output().includes('"shutting down"'));
      p.proc.kill("SIGTERM");
    },
    code: 0,
  },
  { name: "SIGQUIT", args: ["--drain-timeout", "600000"], end: (p) => void p.proc.kill("SIGQUIT"), code: 0 },
  {
    name: "its log reader going away (| head, a closed terminal)",
    args: ["--drain-timeout", "300"],
    end: async (p) => {
      p.proc.stdout!.destroy();
      // The next log line meets the closed pipe: a new session logs one.
      const other = new pg.Client({ connectionString: p.url("postgres", DB) });
      other.on("error", () => {});
      await other.connect().catch(() => {});
      await other.end().catch(() => {});
    },
    code: 1,
  },
  {
    name: "an uncaught exception",
    imports: [CRASH],
    env: { C2S_TEST_CRASH: "exception" },
    end: (p) => void p.proc.kill("SIGUSR2"),
    code: 1,
  },
  {
    name: "an unhandled promise rejection",
    imports: [CRASH],
    env: { C2S_TEST_CRASH: "rejection" },
    end: (p) => void p.proc.kill("SIGUSR2"),
    code: 1,
  },
];

describe("an export in flight when the process ends is cleaned up first", () => {
  test.each(endings)("$name", async (e) => {
    const p = await start(e.args ?? [], { imports: e.imports, env: e.env });
    const c = await client(p);
    try {
      const { prefix, outcome } = await exportMidFlight(c);
      await e.end(p);
      expect(await outcome).toEqual({ code: "57P01" });
      expect(await exitOf(p), p.output()).toEqual({ code: e.code, signal: null });
      // Done before the process exited: nothing to wait for.
      expect(await check.keys(bucket, `${prefix}/`)).toEqual([]);
      await expectNothingLeft(check, bucket, prefix);
    } finally {
      await c.end().catch(() => {});
      await p.stop();
    }
  });
});

test("SIGHUP reloads the config file (a new AWS connection) and the export in flight completes", async () => {
  const p = await start(["--drain-timeout", "300"]);
  const c = await client(p);
  try {
    const other = `s${++n}`;
    const viaOther = `COPY (SELECT 1 AS x) TO 's3://${bucket}/${other}' WITH (FORMAT = 'csv', AWS CONNECTION = other)`;
    await expect(c.query(viaOther)).rejects.toMatchObject({ code: "42704" });

    const prefix = `s${++n}`;
    await c.query("SET c2s.wait = '0.0002'");
    const running = c.query(
      `COPY (SELECT c2s_wait(g) AS g, repeat('x', 4000) AS pad FROM generate_series(1, 5000) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
    );
    await waitUntil("the export to write its sentinel", async () =>
      (await check.keys(bucket, `${prefix}/`)).length > 0 ? true : null,
    );
    await reloadConfig<{ connections: Record<string, unknown> }>(p, (cfg) => ({
      ...cfg,
      connections: { ...cfg.connections, other: cfg.connections.default },
    }));

    expect((await running).rowCount).toBe(5000);
    expect((await c.query(viaOther)).rowCount).toBe(1);
    expect(p.proc.exitCode).toBeNull();
    const keys = await check.keys(bucket, `${prefix}/`);
    expect(keys.filter((k) => k.endsWith(".csv"))).toHaveLength(1);
    expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);

    // A broken config file is refused and the running one kept.
    writeFileSync(p.configFile, "{ not json");
    p.proc.kill("SIGHUP");
    await waitUntil("the refused reload", () => p.output().includes("reload failed"));
    expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  } finally {
    await c.end().catch(() => {});
    p.proc.kill("SIGTERM");
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
  }
});

test("a SIGHUP sent as soon as the process logs that it listens reloads it, never ends it", async () => {
  // "proxy listening" is what operators and tests take for ready: a signal sent on it must meet
  // the proxy's handlers, not Node's default action for SIGHUP (the process killed).
  const p = await start(["--drain-timeout", "300"]);
  try {
    await reloadConfig(p, (cfg) => cfg);
    expect(p.proc.exitCode).toBeNull();
    expect(p.proc.signalCode).toBeNull();
  } finally {
    p.proc.kill("SIGTERM");
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
  }
});

test("SIGHUP applies new export caps to the exports that start after it; a running export keeps its slot", async () => {
  const p = await spawnCopyProxy({
    upstreamPort: db.pgPort,
    s3: db.s3,
    args: ["--drain-timeout", "300"],
    config: { exports: { partSize: 5 * 1024 * 1024, maxConcurrentExports: 4, maxExportsPerUser: 1 } },
  });
  const a = await client(p);
  const b = await client(p);
  const small = (): Promise<string> =>
    b.query(`COPY (SELECT 1 AS x) TO 's3://${bucket}/s${++n}' WITH (FORMAT = 'csv')`).then(
      () => "ok",
      (e: { code?: string; message?: string }) => `${e.code} ${e.message}`,
    );
  try {
    const slow = await exportMidFlight(a);
    expect(await small()).toBe(
      '53300 too many COPY ... TO exports running for role "postgres" (the limit is 1)',
    );
    await reloadExports(p, { maxExportsPerUser: 2 });
    expect(await small()).toBe("ok");
    // Below what runs now: the running export goes on, a new one is refused by the new cap.
    await reloadExports(p, { maxConcurrentExports: 1, maxExportsPerUser: 1 });
    expect(await small()).toBe("53300 too many COPY ... TO exports running (the limit is 1)");
    expect(p.output()).not.toContain("these settings change only with a restart");
    await sendCancel(p.port, keyOf(a));
    // Still running until cancelled: it kept its slot through both reloads.
    expect(await slow.outcome).toEqual({ code: "57014" });
    expect(await small()).toBe("ok");
  } finally {
    await a.end().catch(() => {});
    await b.end().catch(() => {});
    p.proc.kill("SIGTERM");
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
  }
});

test("a log reader that stops reading costs dropped lines, never a blocked proxy: SIGTERM still ends it", async () => {
  const p = await start(["--log-level", "debug", "--drain-timeout", "300"]);
  try {
    // Nobody reads the proxy's stdout any more: the pipe (64 KiB) fills with the lines below, one
    // warning per startup packet with an invalid length (no upstream connection needed).
    p.proc.stdout!.pause();
    for (let i = 0; i < 1500; i++) {
      const sock = connect({ host: "127.0.0.1", port: p.port });
      sock.on("error", () => {});
      sock.end(Buffer.from([0, 0, 0, 2]));
      await new Promise((r) => sock.once("close", r));
    }
    // Still serving while its log output is stuck.
    const c = await client(p);
    expect((await c.query("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);
    await c.end();
    p.proc.kill("SIGTERM");
    expect(await exitOf(p)).toEqual({ code: 0, signal: null });
  } finally {
    await p.stop();
  }
});
