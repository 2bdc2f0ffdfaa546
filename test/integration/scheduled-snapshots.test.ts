// Scheduled snapshots end to end, in front of PostgreSQL and of the Materialize wire double: jobs
// from the config file run on a clock the test moves (no sleeps), each run an ordinary COPY
// through the proxy as the job's own user (SCRAM, password from an env var) into
// `<target>/snapshot=<time>/`; latest.json only ever names a complete snapshot; retention deletes
// only what it should; the console statements show and steer the jobs. The "keep loading the
// latest" recipes of docs/loading.md run here: DuckDB through latest.json, PostgreSQL through the
// manifest latest.json names.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import pg from "pg";
import { serialize } from "pg-protocol";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createCopyHook } from "../../src/copy/hook.js";
import { createLogger } from "../../src/log.js";
import { type ProxyServer, startProxy } from "../../src/proxy/server.js";
import { ManualClock } from "../../src/schedule/clock.js";
import { createSchedules, type Schedules } from "../../src/schedule/start.js";
import { motoAccess, type S3Access, S3Check } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import { UPSTREAMS } from "../support/upstreams.js";
import { type Message, WireClient } from "../support/wire-client.js";

const DB = "scheduled_snapshots";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
const PASSWORD = "scrampass";
let direct: pg.Client;
let duck: DuckDBConnection;
let root: string;

beforeAll(async () => {
  const admin = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB}`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  await direct.query(
    "CREATE TABLE orders AS SELECT g AS id, 'item ' || g AS item, (g * 1.5)::numeric(10,2) AS amount FROM generate_series(1, 500) g",
  );
  await direct.query("GRANT SELECT ON orders TO scramuser, plainuser");
  root = mkdtempSync(join(tmpdir(), "schedules-"));
  chmodSync(root, 0o755);
  duck = await (await DuckDBInstance.create(":memory:")).connect();
}, 60_000);

afterAll(async () => {
  await direct?.end();
  if (root) rmSync(root, { recursive: true, force: true });
});

const HOUR = 3_600_000;
const T0 = Date.parse("2026-12-02T09:30:00Z");

describe.each(UPSTREAMS)("scheduled snapshots through the proxy in front of $name", (up) => {
  let upstream: { port: number; stop(): Promise<void> };
  let proxy: ProxyServer;
  let schedules: Schedules;
  let clock: ManualClock;
  let bucket: string;
  let fileTarget: string;
  const logLines: string[] = [];

  beforeAll(async () => {
    // Each upstream's round starts from the same rows.
    await direct.query("DELETE FROM orders WHERE id > 500");
    upstream = await up.start(pgPort);
    bucket = await check.bucket(up.ordered ? "sched-pg" : "sched-mz");
    fileTarget = join(root, up.ordered ? "pg" : "mz");
    const dir = mkdtempSync(join(tmpdir(), "c2s-sched-"));
    const configFile = join(dir, "config.json");
    const job = {
      user: jobUser(),
      password: { env: "C2S_TEST_JOB_PASSWORD" },
      database: DB,
      every: "1h",
      retries: 0,
    };
    writeFileSync(
      configFile,
      JSON.stringify({
        connections: {
          default: {
            endpoint: s3.endpoint,
            region: s3.region,
            accessKeyId: { env: "C2S_TEST_S3_KEY" },
            secretAccessKey: { env: "C2S_TEST_S3_SECRET" },
          },
        },
        jobs: [
          {
            ...job,
            view: "orders",
            name: "orders_csv",
            target: `s3://${bucket}/orders`,
            options: { format: "csv", header: true },
            keep: 2,
          },
          {
            ...job,
            view: "orders",
            name: "orders_pq",
            target: `file://${fileTarget}`,
            options: { format: "parquet" },
          },
          {
            ...job,
            name: "broken",
            query: "SELECT * FROM no_such_table",
            target: `s3://${bucket}/broken`,
            options: { format: "csv" },
            suspendAfter: 1,
          },
        ],
      }),
    );
    const env = {
      ...process.env,
      C2S_TEST_S3_KEY: s3.accessKeyId,
      C2S_TEST_S3_SECRET: s3.secretAccessKey,
      C2S_TEST_JOB_PASSWORD: PASSWORD,
    };
    process.env.C2S_TEST_S3_KEY = s3.accessKeyId;
    process.env.C2S_TEST_S3_SECRET = s3.secretAccessKey;
    const { config } = loadConfig(
      [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        `127.0.0.1:${upstream.port}`,
        "--upstream-tls",
        "disable",
        "--file-root",
        root,
        // The three jobs run as one user at the same instant, over the per-user cap (2 by
        // default): the third queues in the scheduler instead of being refused.
        "--config",
        configFile,
      ],
      env,
    );
    // Everything the proxy and the scheduler log, to show the password never appears.
    const log = createLogger(
      "info",
      new Writable({
        write(chunk, _enc, cb) {
          logLines.push(String(chunk));
          cb();
        },
      }),
    );
    clock = new ManualClock(T0);
    schedules = await createSchedules(config, log, await createCopyHook(config, log), { clock, env });
    proxy = await startProxy(config, log, schedules.hook);
    schedules.start(() => proxy.address);
  }, 60_000);

  afterAll(async () => {
    await schedules?.stop();
    await proxy?.shutdown(0);
    await upstream?.stop();
  });

  // The double speaks trust authentication only.
  const jobUser = (): string => (up.ordered ? "scramuser" : "plainuser");
  const runs = (job: string) => schedules.scheduler!.history(job);
  const finished = (job: string, n: number) =>
    waitUntil(`${n} finished runs of ${job}`, () => {
      const done = runs(job).filter((r) => r.state === "succeeded" || r.state === "failed");
      return done.length >= n ? done : null;
    });
  const latestOf = async (): Promise<{ snapshot: string; manifest: string; files: string[] }> =>
    JSON.parse((await check.get(bucket, "orders/latest.json")).toString());
  const console = async <T extends pg.QueryResultRow>(
    sql: string,
    user = "postgres",
  ): Promise<pg.QueryResult<T>> => {
    const c = new pg.Client({
      host: "127.0.0.1",
      port: proxy.address.port,
      user,
      password: PASSWORD,
      database: DB,
    });
    await c.connect();
    try {
      return await c.query<T>(sql);
    } finally {
      await c.end();
    }
  };

  test("nothing runs before the first occurrence; then every job runs once, as its user, into its snapshot= prefix", async () => {
    clock.advance(HOUR / 2 - 1);
    expect(runs("orders_csv")).toEqual([]);
    clock.advance(1);
    const [r] = await finished("orders_csv", 1);
    expect(r).toMatchObject({
      state: "succeeded",
      rows: 500,
      snapshot: "snapshot=2026-12-02T10:00:00Z",
      trigger: "schedule",
    });
    await finished("orders_pq", 1);
    // Three jobs of one user at one instant, over the per-user cap: none was refused (53300).
    expect((await finished("broken", 1))[0]!.error).toMatch(/no_such_table/);
    expect([...runs("orders_csv"), ...runs("orders_pq")].map((x) => [x.state, x.attempts])).toEqual([
      ["succeeded", 1],
      ["succeeded", 1],
    ]);
    const keys = await check.keys(bucket, "orders/");
    expect(
      keys.some((k) => k.startsWith("orders/snapshot=2026-12-02T10:00:00Z/mz-") && k.endsWith(".csv")),
    ).toBe(true);
    expect(keys.some((k) => k.includes("INCOMPLETE"))).toBe(false);
    const latest = await latestOf();
    expect(latest.snapshot).toBe("snapshot=2026-12-02T10:00:00Z");
    expect(latest.manifest).toMatch(
      new RegExp(`^s3://${bucket}/orders/snapshot=2026-12-02T10:00:00Z/_meta/mz-.*-manifest\\.json$`),
    );
    expect(logLines.join("")).not.toContain(PASSWORD);
  });

  test("a failing job is suspended after its limit, shows why, and RESUME restarts it", async () => {
    await finished("broken", 1);
    const jobs = await console<{
      job: string;
      suspended: string;
      last_error: string;
      next_run: string | null;
    }>("SHOW COPY_TO_S3 JOBS");
    const broken = jobs.rows.find((r) => r.job === "broken")!;
    expect(broken.suspended).toBe("true");
    expect(broken.next_run).toBeNull();
    expect(broken.last_error).toMatch(/no_such_table/);
    const csv = jobs.rows.find((r) => r.job === "orders_csv")!;
    expect(csv).toMatchObject({
      suspended: "false",
      next_run: "2026-12-02T11:00:00.000Z",
      last_state: "succeeded",
      last_rows: "500",
    });
    // Steering is for the job's user (and its operators), not for everyone who may look.
    await expect(console("RESUME COPY_TO_S3 JOB broken", "postgres")).rejects.toMatchObject({
      code: "42501",
    });
    const r = await console("RESUME COPY_TO_S3 JOB broken", jobUser());
    expect(r.command).toBe("RESUME");
    expect(
      (await console<{ job: string; suspended: string }>("SHOW COPY_TO_S3 JOBS")).rows.find(
        (x) => x.job === "broken",
      )!.suspended,
    ).toBe("false");
  });

  test("DuckDB keeps reading the latest snapshot through latest.json (docs/loading.md)", async () => {
    const latest = join(fileTarget, "latest.json");
    const read = async (): Promise<unknown[]> => {
      await duck.run(`SET VARIABLE latest_files = (SELECT files FROM read_json('${latest}'))`);
      const r = await duck.runAndReadAll(
        "SELECT count(*)::INTEGER, sum(amount)::VARCHAR FROM read_parquet(getvariable('latest_files'))",
      );
      return r.getRows()[0]!;
    };
    expect(await read()).toEqual([500, "187875.00"]);
    await direct.query("INSERT INTO orders VALUES (501, 'item 501', 1000)");
    clock.advance(HOUR);
    await finished("orders_pq", 2);
    await finished("orders_csv", 2);
    expect(await read()).toEqual([501, "188875.00"]);
    expect(JSON.parse(readFileSync(latest, "utf8")).snapshot).toBe("snapshot=2026-12-02T11:00:00Z");
  });

  test("PostgreSQL (the stand-in warehouse) reloads the snapshot latest.json names, with its manifest's dialect", async () => {
    const latest = await latestOf();
    const manifestKey = latest.manifest.replace(`s3://${bucket}/`, "");
    const m = JSON.parse((await check.get(bucket, manifestKey)).toString()) as {
      csv: { header: boolean; delimiter: string; quote: string; escape: string; null: string };
      files: Array<{ key: string; url: string }>;
    };
    expect(m.files.map((f) => f.url)).toEqual(latest.files);
    await direct.query("DROP TABLE IF EXISTS orders_copy; CREATE TABLE orders_copy (LIKE orders)");
    const q = (s: string) => `'${s.replaceAll("'", "''")}'`;
    for (const f of m.files) {
      const path = join(root, `load-${up.ordered ? "pg" : "mz"}-${f.key}`);
      writeFileSync(path, await check.get(bucket, f.url.replace(`s3://${bucket}/`, "")), { mode: 0o644 });
      await direct.query(
        `COPY orders_copy FROM ${q(path)} WITH (FORMAT csv, HEADER ${m.csv.header}, DELIMITER ${q(m.csv.delimiter)}, QUOTE ${q(m.csv.quote)}, ESCAPE ${q(m.csv.escape)}, NULL ${q(m.csv.null)})`,
      );
    }
    const diff = await direct.query(
      "SELECT count(*)::int AS n FROM ((TABLE orders EXCEPT ALL TABLE orders_copy) UNION ALL (TABLE orders_copy EXCEPT ALL TABLE orders)) x",
    );
    expect(diff.rows[0].n).toBe(0);
  });

  test("RUN COPY_TO_S3 JOB runs now; retention keeps the newest 2 and never the one latest names", async () => {
    clock.advance(5_000); // 11:00:05, between occurrences
    const r = await console<{ job: string; snapshot: string }>("RUN COPY_TO_S3 JOB orders_csv", jobUser());
    expect(r.command).toBe("RUN");
    expect(r.rows).toEqual([{ job: "orders_csv", snapshot: "snapshot=2026-12-02T11:00:05Z" }]);
    await finished("orders_csv", 3);
    const dirs = [...new Set((await check.keys(bucket, "orders/")).map((k) => k.split("/")[1]))];
    expect(dirs).toEqual([
      "_leases",
      "latest.json",
      "snapshot=2026-12-02T11:00:00Z",
      "snapshot=2026-12-02T11:00:05Z",
    ]);
    // The pruned snapshot's lease went with it.
    const leased = new Set((await check.keys(bucket, "orders/_leases/")).map((k) => k.split("/")[2]));
    expect([...leased].sort()).toEqual(["snapshot=2026-12-02T11:00:00Z", "snapshot=2026-12-02T11:00:05Z"]);
    expect((await latestOf()).snapshot).toBe("snapshot=2026-12-02T11:00:05Z");
    const history = await console<{ job: string; trigger: string; state: string }>(
      "SHOW COPY_TO_S3 RUNS orders_csv",
    );
    expect(history.rows.map((x) => [x.trigger, x.state])).toEqual([
      ["manual", "succeeded"],
      ["schedule", "succeeded"],
      ["schedule", "succeeded"],
    ]);
  });

  test("the console over the extended protocol (node-postgres with parameters, postgres.js): columns at Describe, rows at Execute, errors end at Sync, a transaction block is no obstacle", async () => {
    const jobColumns = [
      "job",
      "schedule",
      "target",
      "next_run",
      "running",
      "suspended",
      "consecutive_failures",
      "last_snapshot",
      "last_state",
      "last_rows",
      "last_error",
      "last_success",
    ];
    // queryMode "extended" makes node-postgres send Parse/Bind/Describe/Execute/Sync (`values: []`
    // does not); @types/pg does not know the option yet.
    const ext = (text: string, name?: string) => ({ text, name, queryMode: "extended" }) as pg.QueryConfig;
    const where = { host: "127.0.0.1", port: proxy.address.port, password: PASSWORD, database: DB };
    const c = new pg.Client({ ...where, user: "postgres" });
    await c.connect();
    try {
      const jobs = await c.query(ext("SHOW COPY_TO_S3 JOBS"));
      expect(jobs.command).toBe("SHOW");
      expect(jobs.fields.map((f) => f.name)).toEqual(jobColumns);
      expect(jobs.rows.map((r) => r.job).sort()).toEqual(["broken", "orders_csv", "orders_pq"]);
      // A named statement: parsed and described once, executed twice.
      const named = ext("SHOW COPY_TO_S3 RUNS orders_csv", "runs_csv");
      for (let i = 0; i < 2; i++) {
        const r = await c.query(named);
        expect(r.rows.map((x) => [x.trigger, x.state])).toEqual([
          ["manual", "succeeded"],
          ["schedule", "succeeded"],
          ["schedule", "succeeded"],
        ]);
      }
      // Errors in the extended flow: an ErrorResponse, the rest skipped to Sync, the session usable.
      await expect(c.query(ext("SHOW COPY_TO_S3 JOBZ"))).rejects.toMatchObject({
        code: "42601",
      });
      await expect(c.query(ext("SUSPEND COPY_TO_S3 JOB orders_csv"))).rejects.toMatchObject({
        code: "42501",
      });
      await expect(c.query(ext("RUN COPY_TO_S3 JOB nope"))).rejects.toMatchObject({
        code: "42704",
      });
      if (up.ordered) {
        // The console touches no transaction: it answers inside one, and the transaction goes on.
        await c.query("BEGIN");
        expect((await c.query(ext("SHOW COPY_TO_S3 JOBS"))).rows).toHaveLength(3);
        expect((await c.query("SHOW COPY_TO_S3 RUNS broken")).rows.length).toBeGreaterThan(0);
        expect((await c.query({ text: "SELECT $1::int AS one", values: [1] })).rows).toEqual([{ one: 1 }]);
        await c.query("COMMIT");
      }
    } finally {
      await c.end();
    }
    const steer = new pg.Client({ ...where, user: jobUser() });
    await steer.connect();
    try {
      const r = await steer.query(ext("SUSPEND COPY_TO_S3 JOB broken"));
      expect(r.command).toBe("SUSPEND");
      expect(r.fields).toEqual([]);
      await steer.query(ext("RESUME COPY_TO_S3 JOB broken"));
    } finally {
      await steer.end();
    }

    // Message by message, as PostgreSQL answers a SHOW: the columns at Describe (statement and
    // portal), rows only at Execute, nothing but the error and ReadyForQuery after an error.
    const w = await WireClient.connect(proxy.address.port, { database: DB });
    const types = (ms: Message[]): string => ms.map((m) => m.type).join("");
    try {
      w.send(
        serialize.parse({ name: "j", text: "SHOW COPY_TO_S3 JOBS", types: [] }),
        serialize.describe({ type: "S", name: "j" }),
        serialize.sync(),
      );
      expect(types(await w.untilReady())).toBe("1tTZ");
      w.send(
        serialize.bind({ statement: "j", portal: "p" }),
        serialize.describe({ type: "P", name: "p" }),
        serialize.execute({ portal: "p" }),
        serialize.sync(),
      );
      expect(types(await w.untilReady())).toBe("2TDDDCZ");
      w.send(serialize.bind({ statement: "j" }), serialize.execute({}), serialize.sync());
      expect(types(await w.untilReady())).toBe("2DDDCZ");
      w.send(
        serialize.parse({ text: "SUSPEND COPY_TO_S3 JOB orders_csv", types: [] }),
        serialize.bind({}),
        serialize.describe({ type: "P", name: "" }),
        serialize.execute({}),
        serialize.parse({ text: "SHOW COPY_TO_S3 JOBS", types: [] }),
        serialize.sync(),
      );
      expect(types(await w.untilReady())).toBe("12nEZ");
      // Behind a forwarded statement in one Sync segment it is refused after the server's replies,
      // in words that name it, not a COPY.
      w.send(
        serialize.parse({ text: "SELECT 1 AS one", types: [] }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.bind({ statement: "j" }),
        serialize.execute({}),
        serialize.sync(),
      );
      const mixed = await w.untilReady();
      expect(types(mixed)).toBe("12DCEZ");
      const fields = mixed.find((m) => m.type === "E")!.body.toString("utf8");
      expect(fields).toContain("C0A000\0");
      expect(fields).toContain(
        "MSHOW COPY_TO_S3 JOBS cannot be combined with other statements in one extended-protocol Sync segment\0",
      );
      expect(fields).toContain("HSend a Sync before SHOW COPY_TO_S3 JOBS.\0");
      w.send(serialize.close({ type: "S", name: "j" }), serialize.sync());
      expect(types(await w.untilReady())).toBe("3Z");
      w.send(serialize.query("SHOW COPY_TO_S3 RUNS orders_pq"));
      expect(types(await w.untilReady())).toMatch(/^TD+CZ$/);
    } finally {
      await w.close();
    }

    // postgres.js prepares every statement (Parse, Describe, then Bind/Execute).
    const sql = postgres({ ...where, username: "postgres", max: 1, onnotice: () => {} });
    try {
      const rows = await sql`SHOW COPY_TO_S3 JOBS`;
      expect(rows.columns.map((x) => x.name)).toEqual(jobColumns);
      expect(rows.find((x) => x.job === "orders_csv")).toMatchObject({
        last_state: "succeeded",
        suspended: "false",
      });
      expect((await sql`SHOW COPY_TO_S3 RUNS orders_csv`).length).toBe(3);
      expect((await sql`SHOW COPY_TO_S3 RUNS orders_csv`).length).toBe(3);
      await expect(sql`RESUME COPY_TO_S3 JOB orders_csv`).rejects.toMatchObject({ code: "42501" });
      expect((await sql.unsafe("SHOW COPY_TO_S3 RUNS broken")).length).toBeGreaterThan(0);
      if (up.ordered) expect(await sql`SELECT ${2}::int AS two`).toEqual([{ two: 2 }]);
    } finally {
      await sql.end();
    }
  });
});
