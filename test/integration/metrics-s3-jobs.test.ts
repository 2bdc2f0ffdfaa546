// The session, S3 and job families of the metrics (docs/metrics.md), read from the process's
// registry exactly as /metrics serves it: sessions and refusals by reason; S3 retries and errors by
// operation, status and code, with S3's faults injected by the fault proxy in front of moto;
// scheduled jobs' state and runs after runs on a clock the test moves. Real PostgreSQL, moto, the
// proxy in this process.
import type { Socket } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createCopyHook } from "../../src/copy/hook.js";
import { createLogger } from "../../src/log.js";
import { watchJobs } from "../../src/metrics/job-metrics.js";
import { registry } from "../../src/metrics/metrics.js";
import { type ProxyServer, startProxy } from "../../src/proxy/server.js";
import { ManualClock } from "../../src/schedule/clock.js";
import { createSchedules, type Schedules } from "../../src/schedule/start.js";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import { Samples } from "../support/prom-text.js";
import { startTestProxy, type TestProxy } from "../support/proxy.js";
import { writeProxyConfig } from "../support/proxy-process.js";
import { RawPg } from "../support/raw-pg.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "metrics_s3_jobs";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
const M = "copy_to_s3_proxy_";
let oracle: RawPg;
let bucket: string;

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  bucket = await check.bucket("metrics-s3");
}, 60_000);
afterAll(async () => {
  await oracle?.close();
});

const samples = async (): Promise<Samples> => new Samples(await registry.metrics());
const delta =
  (before: Samples, after: Samples) =>
  (name: string, labels: Record<string, string> = {}): number =>
    after.n(M + name, labels) - before.n(M + name, labels);

describe("client sessions", () => {
  test("opened, open now, and refused over --max-client-conn", async () => {
    const proxy = await startTestProxy({
      upstreamPort: pgPort,
      args: ["--upstream-tls", "disable", "--max-client-conn", "1"],
    });
    try {
      const before = await samples();
      const first = new pg.Client({ connectionString: proxy.url("postgres", DB) });
      await first.connect();
      const second = new pg.Client({ connectionString: proxy.url("postgres", DB) });
      second.on("error", () => {});
      const refusal = await second.connect().then(
        () => "connected",
        (e: { code?: string }) => e.code,
      );
      expect(refusal).toBe("08P01");
      const during = await samples();
      const d = delta(before, during);
      expect(d("client_sessions_total")).toBe(1);
      expect(d("client_sessions")).toBe(1);
      expect(d("client_connections_refused_total", { reason: "max_client_conn" })).toBe(1);
      expect(
        during.sum(`${M}client_connections_refused_total`) -
          before.sum(`${M}client_connections_refused_total`),
      ).toBe(1);
      await first.end();
      await waitUntil("the session to be closed", async () =>
        (await samples()).n(`${M}client_sessions`) === before.n(`${M}client_sessions`) ? true : null,
      );
    } finally {
      await proxy.shutdown(0);
    }
  });

  test("bytes received and sent on both legs equal the client's own socket counters", async () => {
    const proxy = await startTestProxy({ upstreamPort: pgPort, args: ["--upstream-tls", "disable"] });
    try {
      const before = await samples();
      const c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
      await c.connect();
      await c.query("SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 1000) g");
      const sock = (c as unknown as { connection: { stream: Socket } }).connection.stream;
      const d = delta(before, await samples());
      expect(d("received_bytes_total", { peer: "client" })).toBe(sock.bytesWritten);
      expect(d("sent_bytes_total", { peer: "client" })).toBe(sock.bytesRead);
      expect(sock.bytesRead).toBeGreaterThan(100_000);
      // Forwarded as they are, both ways.
      expect(d("sent_bytes_total", { peer: "upstream" })).toBe(sock.bytesWritten);
      expect(d("received_bytes_total", { peer: "upstream" })).toBe(sock.bytesRead);
      const [written, read] = [sock.bytesWritten, sock.bytesRead];
      await c.end();
      await waitUntil("the session to be closed", async () =>
        (await samples()).n(`${M}client_sessions`) === before.n(`${M}client_sessions`) ? true : null,
      );
      // A closed session's bytes stay counted (its Terminate message too).
      const gone = delta(before, await samples());
      expect(gone("received_bytes_total", { peer: "client" })).toBe(written + 5);
      expect(gone("sent_bytes_total", { peer: "client" })).toBe(read);
    } finally {
      await proxy.shutdown(0);
    }
  });
});

describe("S3 retries and errors, through the fault proxy", () => {
  let faults: S3FaultProxy;
  let proxy: TestProxy;
  let c: pg.Client;
  let n = 0;
  const copy = () =>
    c.query(
      `COPY (SELECT g FROM generate_series(1, 100) g) TO 's3://${bucket}/f${++n}' WITH (FORMAT = 'csv')`,
    );

  beforeAll(async () => {
    faults = await S3FaultProxy.start(s3.endpoint);
    proxy = await startCopyProxy({
      upstreamPort: pgPort,
      s3: { ...s3, endpoint: faults.endpoint },
      config: { exports: { partSize: 5 * 1024 * 1024, s3MaxAttempts: 3 } },
    });
    c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    c.on("notice", () => {});
    await c.connect();
  }, 60_000);
  afterAll(async () => {
    await c?.end();
    await proxy?.shutdown(0);
    await faults?.close();
  });

  test("a 503 SlowDown and a connection reset are retried: counted as attempts and retries, not errors", async () => {
    faults.setRules(
      { op: "PutObject", fault: "503", times: 1 },
      { op: "ListObjectsV2", fault: "reset", times: 1 },
    );
    const before = await samples();
    expect((await copy()).rowCount).toBe(100);
    expect(faults.faultCount()).toBe(2);
    const d = delta(before, await samples());
    expect(d("s3_requests_total", { operation: "PutObject", status: "503" })).toBe(1);
    expect(d("s3_requests_total", { operation: "ListObjectsV2", status: "network" })).toBe(1);
    expect(d("s3_requests_total", { operation: "ListObjectsV2", status: "200" })).toBe(1);
    expect(d("s3_retries_total", { operation: "PutObject" })).toBe(1);
    expect(d("s3_retries_total", { operation: "ListObjectsV2" })).toBe(1);
    const after = await samples();
    expect(after.sum(`${M}s3_errors_total`) - before.sum(`${M}s3_errors_total`)).toBe(0);
    expect(d("exports_finished_total", { outcome: "completed", sqlstate: "" })).toBe(1);
  });

  test("a PutObject failing on every attempt: each attempt, the retries, one InternalError, one 58030 export", async () => {
    faults.setRules({ op: "PutObject", fault: "500" });
    const before = await samples();
    const code = await copy().then(
      () => "ok",
      (e: { code?: string }) => e.code,
    );
    expect(code).toBe("58030");
    faults.clear();
    const d = delta(before, await samples());
    // s3MaxAttempts = 3: the sentinel's PutObject, three times, then the export gives up.
    expect(d("s3_requests_total", { operation: "PutObject", status: "500" })).toBe(3);
    expect(d("s3_retries_total", { operation: "PutObject" })).toBe(2);
    expect(d("s3_errors_total", { operation: "PutObject", code: "InternalError" })).toBe(1);
    expect(d("exports_finished_total", { outcome: "failed", sqlstate: "58030" })).toBe(1);
  });
});

describe("scheduled jobs, on a clock the test moves", () => {
  const HOUR = 3_600_000;
  const T0 = Date.parse("2026-12-02T09:30:00Z");
  const TEN = Date.parse("2026-12-02T10:00:00Z");
  let proxy: ProxyServer;
  let schedules: Schedules;
  let clock: ManualClock;

  beforeAll(async () => {
    await oracle.query("CREATE TABLE IF NOT EXISTS orders AS SELECT g AS id FROM generate_series(1, 50) g");
    const job = { user: "postgres", database: DB, every: "1h", retries: 0, options: { format: "csv" } };
    const { file: configFile, env } = writeProxyConfig(s3, {
      jobs: [
        { ...job, name: "good", view: "orders", target: `s3://${bucket}/jobs/good` },
        {
          ...job,
          name: "broken",
          query: "SELECT * FROM no_such_table",
          target: `s3://${bucket}/jobs/broken`,
          suspendAfter: 1,
        },
      ],
    });
    const { config } = loadConfig(
      [
        "--listen",
        "127.0.0.1:0",
        "--upstream",
        `127.0.0.1:${pgPort}`,
        "--upstream-tls",
        "disable",
        "--log-level",
        "silent",
        "--config",
        configFile,
      ],
      env,
    );
    const log = createLogger("silent");
    clock = new ManualClock(T0);
    schedules = await createSchedules(config, log, await createCopyHook(config, log), { clock, env });
    // As src/cli.ts wires it.
    watchJobs(() => schedules.scheduler!.status());
    proxy = await startProxy(config, log, schedules.hook);
    schedules.start(() => proxy.address);
  }, 60_000);

  afterAll(async () => {
    await schedules?.stop();
    await proxy?.shutdown(0);
  });

  test("state and runs by outcome: a success, and a failure that suspends its job; RESUME clears it", async () => {
    const before = await samples();
    const g = { job: "good" };
    const b = { job: "broken" };
    expect(before.get(`${M}job_runs_total`, { ...g, outcome: "succeeded" })).toBe(0);
    expect(before.get(`${M}job_next_run_timestamp_seconds`, g)).toBe(TEN / 1000);
    expect(before.get(`${M}job_last_success_timestamp_seconds`, g)).toBeUndefined();
    expect(before.get(`${M}job_suspended`, b)).toBe(0);

    clock.advance(HOUR / 2);
    const s = schedules.scheduler!;
    await waitUntil("both runs to end", () =>
      s.history("good")[0]?.endedAt !== undefined && s.history("broken")[0]?.endedAt !== undefined
        ? true
        : null,
    );
    expect(s.history("good")[0]!.state).toBe("succeeded");
    const after = await samples();
    const d = delta(before, after);
    expect(d("job_runs_total", { ...g, outcome: "succeeded" })).toBe(1);
    expect(d("job_runs_total", { ...g, outcome: "failed" })).toBe(0);
    expect(d("job_runs_total", { ...b, outcome: "failed" })).toBe(1);
    expect(d("job_runs_total", { ...b, outcome: "succeeded" })).toBe(0);
    expect(after.get(`${M}job_last_success_timestamp_seconds`, g)).toBe(TEN / 1000);
    expect(after.get(`${M}job_next_run_timestamp_seconds`, g)).toBe((TEN + HOUR) / 1000);
    expect(after.get(`${M}job_suspended`, g)).toBe(0);
    expect(after.get(`${M}job_running`, g)).toBe(0);
    expect(after.get(`${M}job_suspended`, b)).toBe(1);
    expect(after.get(`${M}job_consecutive_failures`, b)).toBe(1);
    expect(after.get(`${M}job_next_run_timestamp_seconds`, b)).toBeUndefined();
    // The job's own export is an export like any.
    expect(d("exports_finished_total", { outcome: "completed", sqlstate: "" })).toBe(1);
    expect(d("exported_rows_total", { format: "csv" })).toBe(50);

    s.resume("broken");
    const resumed = await samples();
    expect(resumed.get(`${M}job_suspended`, b)).toBe(0);
    expect(resumed.get(`${M}job_consecutive_failures`, b)).toBe(0);
    expect(resumed.get(`${M}job_next_run_timestamp_seconds`, b)).toBe((TEN + HOUR) / 1000);
  }, 60_000);
});
