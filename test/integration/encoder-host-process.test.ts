// exports.encoderHost = "process": every export's encoder thread runs in one child process of the
// proxy, its encoder host (src/encoders/worker/encoder-host.ts; docs/isolation.md, "Encoders in a
// process of their own"). The files are the same as the threads' (PostgreSQL's own COPY bytes for
// CSV, every value through DuckDB for Parquet); a cancel and the host's death end an export with
// nothing half-done and the session usable; the host is lowered as a whole, in a session of its
// own, and does not outlive a proxy killed with SIGKILL.
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, test } from "vitest";
import { rowRelayTestHooks } from "../../src/copy/row-relay.js";
import {
  encoderHostBudgets,
  encoderHostState,
  encoderHostWriters,
  gateEncoderHost,
  holdEncoderHostReads,
} from "../../src/encoders/worker/encoder-host.js";
import { type EncoderThread, encoderThreadTestHooks } from "../../src/encoders/worker/encoder-thread.js";
import { QUEUE_BYTES } from "../../src/encoders/worker/host-frames.js";
import { HOST_ENV, HOST_MALLOC_ARENAS, HOST_NODE_ARGS } from "../../src/encoders/worker/host-launch.js";
import type { HostBudget } from "../../src/encoders/worker/host-protocol.js";
import { encoderHostTestHooks } from "../../src/encoders/worker/hosted-worker.js";
import { CHUNK_BYTES, RING_BUFFERS } from "../../src/encoders/worker/port-sink.js";
import { WINDOW_BYTES } from "../../src/encoders/worker/row-batcher.js";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import {
  CREATE_WIDE,
  csvFiles,
  type DivertedSession,
  expectFirstRowLargerThanARead,
  expectSessionGoesOn,
  FIRST_READ,
  relayedDuring,
} from "../support/diverted-rows.js";
import { expectNothingLeft, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { createMixedTable, expectMixedParquet } from "../support/mixed-table.js";
import { spawnCopyProxy } from "../support/proxy-process.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import { expectSameCsv, UPSTREAMS } from "../support/upstreams.js";

const DB = "encoder_host_process";
const MiB = 1024 * 1024;
/**
 * Above the default of the threads' (0), low enough that the host, whose autogroup gets it too,
 * is not starved by the machine's other work while the suite runs (docs/isolation.md).
 */
const NICE = 3;
const pgPort = inject("pgPort");
const linux = existsSync("/proc/self/task");

let stack: ProxyStack;
let client: pg.Client;
let direct: pg.Client;
let duck: DuckDBConnection;
let root: string;
const started: EncoderThread[] = [];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "c2s-host-"));
  stack = await startProxyStack({
    database: DB,
    bucket: "host",
    args: ["--file-root", root],
    config: {
      exports: {
        encoderHost: "process",
        workerNice: NICE,
        // One export encodes at a time, whatever the machine's cores: the budget's tests count on it.
        maxEncodingThreads: 1,
        partSize: 5 * MiB,
        s3MaxAttempts: 2,
      },
    },
  });
  const { oracle } = stack;
  // ~40 MB of CSV: many chunks and parts.
  await oracle.query(CREATE_WIDE);
  await oracle.query(createMixedTable(150000));
  client = await stack.connect();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  duck = await (await DuckDBInstance.create(":memory:")).connect();
  encoderThreadTestHooks.started = (t) => started.push(t);
}, 120_000);

afterEach(() => {
  started.length = 0;
});

afterAll(async () => {
  delete encoderThreadTestHooks.started;
  await direct?.end();
  await stack?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

let n = 0;
const freshPrefix = (): string => `h${++n}`;
const session = (): DivertedSession => ({
  client,
  oracle: stack.oracle,
  freshDir: () => join(root, freshPrefix()),
});

async function hostPid(): Promise<number> {
  const state = encoderHostState();
  expect(state).not.toBeNull();
  return (await state!).pid;
}

const alive = (pid: number): boolean => {
  try {
    // A zombie has ended (its parent has not reaped it yet).
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, "utf8"));
  } catch {
    return false;
  }
};

/** Field `n` of proc(5)'s stat (6 session, 19 niceness) of a process's thread `tid` (or the process). */
function statField(pid: number, n: number, tid?: string): number {
  const stat = readFileSync(
    tid === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${tid}/stat`,
    "utf8",
  );
  return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[n - 3]);
}

/**
 * A COPY of wide's rows and then a slow tail, running until a test ends it. If it never gets going
 * it is cancelled and c2s.wait reset before the failure is thrown: the session is free for the
 * next test either way.
 */
async function runningExport(prefix: string): Promise<{ copy: Promise<pg.QueryResult> }> {
  await client.query("SET c2s.wait = '0.05'");
  const copy = client.query(
    `COPY (SELECT g, h, pad FROM wide UNION ALL SELECT c2s_wait(g), '', '' FROM generate_series(1, 100000) g)
     TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`,
  );
  copy.catch(() => {});
  try {
    await waitUntil(
      "a multipart upload under way",
      async () => (await stack.check.uploads(stack.bucket, `${prefix}/`)).length > 0,
      90_000,
    );
  } catch (e) {
    await sendCancel(stack.proxy.port, keyOf(client));
    await copy.catch(() => {});
    await client.query("RESET c2s.wait");
    throw e;
  }
  return { copy }; // not the promise itself: the caller's await would wait for the COPY
}

/** The host's budget of one slot (the stack's exports.maxEncodingThreads) as the host sees it. */
async function hostBudget(): Promise<HostBudget | undefined> {
  return (await encoderHostBudgets())?.find((b) => b.slots === 1);
}

describe("the same files as encoder threads in the proxy's process", () => {
  test("CSV equals PostgreSQL's COPY output byte for byte, encoded in the host", async () => {
    const prefix = freshPrefix();
    const buffers = encoderHostTestHooks.chunkBuffers;
    const { result: r, relayed } = await relayedDuring(() =>
      client.query(`COPY wide TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv', HEADER)`),
    );
    expect(r.rowCount).toBe(120000);
    // ~40 chunks came back into the relay's few pooled buffers, not one new 1 MiB buffer each.
    expect(encoderHostTestHooks.chunkBuffers - buffers).toBeLessThanOrEqual(RING_BUFFERS);
    // ~40 MB of rows, read by the host: the relay's thread handled only the first read's.
    expect(relayed).toBeGreaterThan(0);
    expect(relayed).toBeLessThanOrEqual(FIRST_READ);
    const keys = (await stack.check.keys(stack.bucket, `${prefix}/`)).filter((k) => k.endsWith(".csv"));
    const got = Buffer.concat(await Promise.all(keys.map((k) => stack.check.get(stack.bucket, k))));
    const want = (await stack.oracle.query("COPY wide TO STDOUT (FORMAT csv, HEADER)")).copyData;
    expectSameCsv(got, want, UPSTREAMS[0]!, { header: true });
    // The thread was the host's: it ran at the host's niceness, in another process.
    expect(started[0]?.nice).toBe(NICE);
    expect(await hostPid()).not.toBe(process.pid);
  }, 120_000);

  test("Parquet: DuckDB reads every value of the source", async () => {
    const dir = join(root, freshPrefix());
    const { result, relayed } = await relayedDuring(() =>
      client.query(`COPY mixed TO 'file://${dir}' WITH (FORMAT = 'parquet')`),
    );
    expect(result.rowCount).toBe(150000);
    expect(relayed).toBeLessThanOrEqual(FIRST_READ);
    await expectMixedParquet(duck, direct, dir);
    expect(started[0]?.nice).toBe(NICE);
  }, 120_000);
});

describe("failures", () => {
  test("a cancel mid-export: 57014 promptly, no object and no multipart upload left", async () => {
    const prefix = freshPrefix();
    const before = rowRelayTestHooks.relayedBytes;
    const { copy } = await runningExport(prefix);
    try {
      await sendCancel(stack.proxy.port, keyOf(client));
      await expect(copy).rejects.toMatchObject({ code: "57014" });
    } finally {
      await client.query("RESET c2s.wait");
    }
    // The host read the rows, and the ErrorResponse of the cancel, which it gave back.
    expect(rowRelayTestHooks.relayedBytes - before).toBeLessThanOrEqual(FIRST_READ);
    await expectNothingLeft(stack.check, stack.bucket, prefix);
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  }, 120_000);

  test("the host killed while it reads the rows: XX000 naming the encoder, then the session ends (its upstream stream is lost), nothing left, other sessions unaffected, the next export starts a new host", async () => {
    const prefix = freshPrefix();
    const other = await stack.connect();
    const killed = client;
    const ended = new Promise<void>((resolve) => {
      killed.on("error", () => resolve());
      killed.on("end", () => resolve());
    });
    const { copy } = await runningExport(prefix);
    const pid = await hostPid();
    try {
      process.kill(pid, "SIGKILL");
      // The host had read bytes of the row stream it cannot give back: the session's upstream can
      // no longer be trusted, so after the export's own error the session ends.
      await expect(copy).rejects.toMatchObject({ code: "XX000", message: expect.stringMatching(/encoder/) });
      await ended;
      await expectNothingLeft(stack.check, stack.bucket, prefix);
      expect((await other.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    } finally {
      client = await stack.connect();
      await killed.end().catch(() => {});
    }
    const next = freshPrefix();
    expect(
      (await other.query(`COPY (SELECT 1 AS x) TO 's3://${stack.bucket}/${next}' WITH (FORMAT = 'csv')`))
        .rowCount,
    ).toBe(1);
    const again = await hostPid();
    expect(again).not.toBe(pid);
    expect(alive(again)).toBe(true);
    await other.end();
  }, 120_000);

  test("the host killed after the rows were given back (the thread still encoding): XX000, the session usable", async () => {
    const backend = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
    expect(gateEncoderHost(true)).toBe(true);
    const prefix = freshPrefix();
    const copy = client.query(
      `COPY (SELECT g, md5(g::text) FROM generate_series(1, 20000) g) TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`,
    );
    copy.catch(() => {});
    let pid = 0;
    try {
      await waitUntil(
        "the thread encoding (held by the gate)",
        async () => (await hostBudget())?.encoding === 1,
      );
      // Every row read and the snapshot's transaction ended: the stream is the relay's again.
      await waitUntil(
        "the export's backend idle",
        async () =>
          (await direct.query("SELECT state FROM pg_stat_activity WHERE pid = $1", [backend])).rows[0]
            ?.state === "idle",
      );
      pid = await hostPid();
      process.kill(pid, "SIGKILL");
    } finally {
      gateEncoderHost(false);
    }
    await expect(copy).rejects.toMatchObject({ code: "XX000", message: expect.stringMatching(/encoder/) });
    await expectNothingLeft(stack.check, stack.bucket, prefix);
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    await waitUntil("the killed host reaped", () => !alive(pid));
  }, 120_000);
});

describe("the host's encoding budget", () => {
  test("a thread cancelled holding its slot, and one cancelled waiting for it, leave the budget as found: the next export runs", async () => {
    // A host up, and the gate set in it: the next exports' threads block inside their first batch.
    await client.query(`COPY (SELECT 1 AS x) TO 'file://${join(root, freshPrefix())}' WITH (FORMAT = 'csv')`);
    started.length = 0;
    expect(gateEncoderHost(true)).toBe(true);
    const other = await stack.connect();
    const prefix = freshPrefix();
    try {
      const holding = client.query(`COPY wide TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`);
      holding.catch(() => {});
      await waitUntil("the first export's thread encoding, its slot taken", async () => {
        const b = await hostBudget();
        return (started[0]?.inFlight ?? 0) > 0 && b?.holders.length === 1 && b.encoding === 1;
      });
      const waiting = other.query(`COPY wide TO 'file://${join(root, freshPrefix())}' WITH (FORMAT = 'csv')`);
      waiting.catch(() => {});
      // Rows sent (so a cancel terminates the thread) while it waits for the slot.
      await waitUntil(
        "the second export's thread waiting for the slot",
        async () => (started[1]?.inFlight ?? 0) > 0 && (await hostBudget())?.waiting === 1,
      );

      await sendCancel(stack.proxy.port, keyOf(other));
      await expect(waiting).rejects.toMatchObject({ code: "57014" });
      // A waiter left behind would make every holder hand its slot on after each turn, for nobody.
      await waitUntil("the cancelled waiter counted off", async () => {
        const b = await hostBudget();
        return b?.waiting === 0 && b.holders.length === 1;
      });

      await sendCancel(stack.proxy.port, keyOf(client));
      await expect(holding).rejects.toMatchObject({ code: "57014" });
      // A slot left to a dead thread would block every later export in the host for good.
      await waitUntil("the cancelled holder's slot free", async () => {
        const b = await hostBudget();
        return b?.encoding === 0 && b.holders.length === 0 && b.waiting === 0;
      });
      await expectNothingLeft(stack.check, stack.bucket, prefix);
    } finally {
      gateEncoderHost(false);
      await other.end();
    }
    const dir = join(root, freshPrefix());
    expect((await client.query(`COPY wide TO 'file://${dir}' WITH (FORMAT = 'csv')`)).rowCount).toBe(120000);
  }, 120_000);
});

describe.skipIf(!linux)("the host process (Linux)", () => {
  test("every thread of the host at exports.workerNice, its autogroup too, in a session of its own", async () => {
    await client.query(
      `COPY (SELECT 1 AS x) TO 'file://${join(root, freshPrefix())}' WITH (FORMAT = 'parquet')`,
    );
    const pid = await hostPid();
    const tids = readdirSync(`/proc/${pid}/task`);
    expect(tids.length).toBeGreaterThan(4); // V8's platform threads, libuv's, the encoder thread
    for (const tid of tids) expect(statField(pid, 19, tid)).toBeGreaterThanOrEqual(NICE);
    // setsid(): the host leads a session (so an autogroup) of its own, not the proxy's.
    expect(statField(pid, 6)).toBe(pid);
    expect(statField(process.pid, 6)).not.toBe(pid);
    if (readFileSync("/proc/sys/kernel/sched_autogroup_enabled", "utf8").trim() === "1")
      expect(readFileSync(`/proc/${pid}/autogroup`, "utf8")).toMatch(new RegExp(`nice ${NICE}\\b`));
  });

  test("the host holds none of the proxy's environment but HOST_ENV (no credentials), and ends when its proxy is killed with SIGKILL", async () => {
    const secrets = {
      AWS_ACCESS_KEY_ID: "AKIAHOSTENVTEST",
      AWS_SECRET_ACCESS_KEY: "host-env-test-secret",
      PGPASSWORD: "host-env-test-password",
    };
    const p = await spawnCopyProxy({
      upstreamPort: pgPort,
      s3: motoAccess(),
      args: ["--file-root", root],
      config: { exports: { encoderHost: "process" } },
      env: secrets,
    });
    try {
      const c = new pg.Client({ connectionString: p.url("postgres", DB) });
      await c.connect();
      await c.query(`COPY (SELECT 1 AS x) TO 'file://${join(root, freshPrefix())}' WITH (FORMAT = 'csv')`);
      await c.end();
      const host = readdirSync("/proc")
        .filter((d) => /^\d+$/.test(d))
        .map(Number)
        .find((pid) => {
          try {
            const cmd = readFileSync(`/proc/${pid}/cmdline`, "utf8");
            return statField(pid, 4) === p.proc.pid && cmd.includes("encoder-host-main");
          } catch {
            return false; // ended meanwhile
          }
        });
      expect(host).toBeDefined();
      // proc(5): the environment the host was started with (the proxy's own holds the secrets).
      const env = (pid: number): Map<string, string> =>
        new Map(
          readFileSync(`/proc/${pid}/environ`, "utf8")
            .split("\0")
            .filter((kv) => kv.includes("="))
            .map((kv) => [kv.slice(0, kv.indexOf("=")), kv.slice(kv.indexOf("=") + 1)]),
        );
      expect(env(p.proc.pid!).get("AWS_SECRET_ACCESS_KEY")).toBe(secrets.AWS_SECRET_ACCESS_KEY);
      // fork() adds its channel's own (NODE_CHANNEL_FD, NODE_CHANNEL_SERIALIZATION_MODE).
      const hostVars = [...env(host!).keys()].filter((k) => !k.startsWith("NODE_CHANNEL_"));
      expect(hostVars.filter((k) => !(HOST_ENV as readonly string[]).includes(k))).toEqual([]);
      expect(hostVars).toContain("PATH");
      // Its malloc arenas and its own isolate's young generation are small (peak RSS): the
      // operator's MALLOC_ARENA_MAX if the proxy has one, else the proxy's default.
      expect(env(host!).get("MALLOC_ARENA_MAX")).toBe(
        env(p.proc.pid!).get("MALLOC_ARENA_MAX") ?? HOST_MALLOC_ARENAS,
      );
      expect(readFileSync(`/proc/${host}/cmdline`, "utf8").split("\0")).toEqual(
        expect.arrayContaining([...HOST_NODE_ARGS]),
      );
      const values = [...env(host!).values()].join("\n");
      for (const secret of Object.values(secrets)) expect(values).not.toContain(secret);
      p.proc.kill("SIGKILL");
      await p.exited;
      await waitUntil("the encoder host gone", () => !alive(host!));
    } finally {
      await p.stop();
    }
  }, 60_000);
});

describe("the host reads the rows itself (the upstream socket lent to it)", () => {
  test("rows the relay had read past the first ones are not lost: a first row larger than a read, then small rows", async () => {
    await expectFirstRowLargerThanARead(session());
  }, 120_000);

  test("the session goes on as before after the rows are given back: a query, another export, a transaction with an export in it", async () => {
    await expectSessionGoesOn(session(), "loan_tx");
  }, 120_000);

  test("a TLS upstream is not lent (its TLS state is the proxy's): the relay reads the rows, the files are the same", async () => {
    const p = await startCopyProxy({
      upstreamPort: pgPort,
      s3: motoAccess(),
      args: ["--file-root", root, "--upstream-tls", "require"],
      config: { exports: { encoderHost: "process", workerNice: NICE } },
    });
    const c = new pg.Client({ connectionString: p.url("postgres", DB) });
    await c.connect();
    try {
      expect((await c.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).rows).toEqual([
        { ssl: true },
      ]);
      const dir = join(root, freshPrefix());
      const { result, relayed } = await relayedDuring(() =>
        c.query(`COPY wide TO 'file://${dir}' WITH (FORMAT = 'csv')`),
      );
      expect(result.rowCount).toBe(120000);
      expect(relayed).toBeGreaterThan(30 * MiB);
      const got = csvFiles(dir);
      const want = (await stack.oracle.query("COPY wide TO STDOUT (FORMAT csv)")).copyData;
      expectSameCsv(got, want, UPSTREAMS[0]!, { header: false });
    } finally {
      await c.end();
      await p.shutdown(0);
    }
  }, 120_000);

  test("a row over exports.maxRowBytes in the middle of the lent stream: 54000 as with threads, nothing left, the session usable", async () => {
    const limit = 256 * 1024;
    const sql = `SELECT g, CASE WHEN g = 30000 THEN repeat('y', ${2 * limit}) ELSE md5(g::text) END AS v FROM generate_series(1, 60000) g`;
    const results: Record<string, string | undefined> = {};
    for (const encoderHost of ["thread", "process"]) {
      const p = await startCopyProxy({
        upstreamPort: pgPort,
        s3: motoAccess(),
        args: ["--file-root", root],
        config: { exports: { encoderHost, workerNice: NICE, maxRowBytes: limit } },
      });
      const c = new pg.Client({ connectionString: p.url("postgres", DB) });
      await c.connect();
      try {
        const prefix = freshPrefix();
        const err = await c
          .query(`COPY (${sql}) TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`)
          .then(
            () => null,
            (e: { code?: string }) => e,
          );
        results[encoderHost] = err?.code;
        await expectNothingLeft(stack.check, stack.bucket, prefix);
        expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
      } finally {
        await c.end();
        await p.shutdown(0);
      }
    }
    expect(results).toEqual({ thread: "54000", process: "54000" });
  }, 120_000);
});

describe("backpressure on the data channel", () => {
  test("a relay that stops reading the host's frames: what waits in the host's socket stays bounded (the upstream waits in ClientWrite), and the export completes byte for byte once it reads again", async () => {
    // A host up (this test may run alone).
    await client.query(`COPY (SELECT 1 AS x) TO 'file://${join(root, freshPrefix())}' WITH (FORMAT = 'csv')`);
    const backend = (await client.query("SELECT pg_backend_pid() AS pid")).rows[0].pid as number;
    // ~80 MB of CSV: many times the bound.
    const sql = "SELECT g, h, pad FROM wide, generate_series(1, 2) AS k(k)";
    const dir = join(root, freshPrefix());
    expect(holdEncoderHostReads(true)).toBe(true);
    let copy: Promise<pg.QueryResult> | null = null;
    try {
      copy = client.query(`COPY (${sql}) TO 'file://${dir}' WITH (FORMAT = 'csv')`);
      copy.catch(() => {});
      // Held: the host stops feeding its thread, its loan stops reading, so PostgreSQL waits to
      // write. Without the hold the host reads on, and its socket queues the whole export.
      let last = -1;
      let steady = 0;
      const held = await waitUntil(
        "the upstream waiting to write, the host's queue steady",
        async () => {
          const w = (await encoderHostWriters())?.host;
          const wait = (
            await direct.query("SELECT wait_event FROM pg_stat_activity WHERE pid = $1", [backend])
          ).rows[0]?.wait_event;
          steady =
            w !== null && w !== undefined && w.queued === last && wait === "ClientWrite" ? steady + 1 : 0;
          last = w?.queued ?? -1;
          return steady >= 10 ? w : undefined;
        },
        60_000,
      );
      expect(held.congested).toBe(true);
      // The bound, then what the thread encodes of the rows it already has (a window), a chunk over.
      expect(held.most).toBeGreaterThanOrEqual(QUEUE_BYTES);
      expect(held.most).toBeLessThanOrEqual(QUEUE_BYTES + WINDOW_BYTES + CHUNK_BYTES);
    } finally {
      holdEncoderHostReads(false);
    }
    expect((await copy!).rowCount).toBe(240000);
    const got = csvFiles(dir);
    const want = (await stack.oracle.query(`COPY (${sql}) TO STDOUT (FORMAT csv)`)).copyData;
    expectSameCsv(got, want, UPSTREAMS[0]!, { header: false });
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  }, 120_000);
});
