// The admin listener of the real CLI process (docs/metrics.md): /metrics counts what happened by
// exactly the expected amounts (a completed CSV export to moto, a 58000 and a 22012 failure, a
// cancelled export, a session), /healthz answers, /readyz goes 503 during a SIGTERM drain while
// the export still runs, bad requests get 405/414/431/400 and nothing breaks; an unreachable
// upstream is counted. Real PostgreSQL, moto, the proxy in its own process.
import { execFile } from "node:child_process";
import { connect } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check } from "../support/copy-proxy.js";
import { C2S_WAIT_FUNCTION, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { freePort } from "../support/ports.js";
import { type Samples, scrape } from "../support/prom-text.js";
import { type ProxyProcess, spawnCopyProxy } from "../support/proxy-process.js";
import { RawPg } from "../support/raw-pg.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "metrics_e2e";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
const M = "copy_to_s3_proxy_";
let oracle: RawPg;
let bucket: string;

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  await oracle.query(C2S_WAIT_FUNCTION);
  bucket = await check.bucket("metrics");
}, 60_000);
afterAll(async () => {
  await oracle?.close();
});

/** A job that never runs during the test (New Year, 00:00 UTC): its state is in the metrics. */
const YEARLY = {
  name: "yearly",
  user: "postgres",
  database: DB,
  query: "SELECT 1 AS x",
  target: "s3://metrics/yearly",
  options: { format: "csv" },
  cron: "0 0 1 1 *",
};

async function startWithAdmin(
  upstreamPort = pgPort,
  s3Access: S3Access = s3,
): Promise<{ p: ProxyProcess; base: string }> {
  const adminPort = await freePort();
  const p = await spawnCopyProxy({
    upstreamPort,
    s3: s3Access,
    args: ["--admin-listen", `127.0.0.1:${adminPort}`, "--drain-timeout", "600000"],
    config: { exports: { partSize: 5 * 1024 * 1024 }, jobs: [YEARLY] },
  });
  return { p, base: `http://127.0.0.1:${adminPort}` };
}

async function client(p: ProxyProcess): Promise<pg.Client> {
  const c = new pg.Client({ connectionString: p.url("postgres", DB) });
  c.on("notice", () => {});
  c.on("error", () => {});
  await c.connect();
  return c;
}

const codeOf = (q: Promise<unknown>): Promise<string | undefined> =>
  q.then(
    () => undefined,
    (e: { code?: string }) => e.code,
  );

/** The raw answer of the admin listener to bytes written on a fresh connection. */
function rawRequest(port: number, bytes: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: "127.0.0.1", port });
    let out = "";
    s.on("data", (d) => {
      out += d.toString("latin1");
    });
    s.on("error", () => resolve(out));
    s.on("close", () => resolve(out));
    s.on("connect", () => s.write(bytes));
    setTimeout(() => reject(new Error(`no answer to ${bytes.slice(0, 40)}`)), 15_000).unref();
  });
}

describe("the admin listener of the real CLI", () => {
  let p: ProxyProcess;
  let base: string;
  let c: pg.Client;
  // Between the proxy and moto, so the cancelled export's UploadPart can be held in flight.
  let faults: S3FaultProxy;

  beforeAll(async () => {
    faults = await S3FaultProxy.start(s3.endpoint);
    ({ p, base } = await startWithAdmin(pgPort, { ...s3, endpoint: faults.endpoint }));
    c = await client(p);
  }, 60_000);
  afterAll(async () => {
    await c?.end().catch(() => {});
    await p?.stop();
    await faults?.close();
  });

  test("/healthz and /readyz answer 200; /metrics is Prometheus text with the process metrics", async () => {
    const h = await fetch(`${base}/healthz`);
    expect([h.status, await h.text()]).toEqual([200, "ok\n"]);
    const r = await fetch(`${base}/readyz`);
    expect([r.status, await r.text()]).toEqual([200, "ready\n"]);
    const m = await fetch(`${base}/metrics`);
    expect(m.headers.get("content-type")).toMatch(/^text\/plain; version=0\.0\.4/);
    const s = await scrape(base);
    expect(s.types.get(`${M}exports_finished_total`)).toBe("counter");
    expect(s.types.get(`${M}export_duration_seconds`)).toBe("histogram");
    expect(s.types.get(`${M}client_sessions`)).toBe("gauge");
    expect(s.get("process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(s.get("nodejs_eventloop_lag_seconds")).toBeDefined();
    expect(s.n(`${M}client_sessions`)).toBe(1);
    // The scheduler's state, as SHOW COPY_TO_S3 JOBS has it.
    const job = { job: "yearly" };
    expect(s.get(`${M}job_suspended`, job)).toBe(0);
    expect(s.get(`${M}job_running`, job)).toBe(0);
    expect(s.get(`${M}job_consecutive_failures`, job)).toBe(0);
    expect(s.get(`${M}job_runs_total`, { ...job, outcome: "succeeded" })).toBe(0);
    const next = new Date(Date.UTC(new Date().getUTCFullYear() + 1, 0, 1)).getTime() / 1000;
    expect(s.get(`${M}job_next_run_timestamp_seconds`, job)).toBe(next);
    expect(s.get(`${M}job_last_success_timestamp_seconds`, job)).toBeUndefined();
    // The Docker HEALTHCHECK: a wildcard bind is asked on loopback.
    expect(await healthcheck(`0.0.0.0:${new URL(base).port}`)).toBe(0);
    expect(await healthcheck(`127.0.0.1:${await freePort()}`)).toBe(1);
  });

  test("exports are counted by outcome and SQLSTATE, rows and bytes by format, once each", async () => {
    const before = await scrape(base);
    // Completed: 1000 rows of CSV.
    const ok = await c.query(
      `COPY (SELECT g, 'row ' || g AS t FROM generate_series(1, 1000) g) TO 's3://${bucket}/ok' WITH (FORMAT = 'csv')`,
    );
    expect(ok.rowCount).toBe(1000);
    const dataKeys = (await check.keys(bucket, "ok/")).filter((k) => k.endsWith(".csv"));
    const bytes = (await Promise.all(dataKeys.map((k) => check.get(bucket, k)))).reduce(
      (n, b) => n + b.length,
      0,
    );
    // Failed twice: the prefix is not empty (58000), a division by zero while reading (22012).
    expect(await codeOf(c.query(`COPY (SELECT 1 AS x) TO 's3://${bucket}/ok' WITH (FORMAT = 'csv')`))).toBe(
      "58000",
    );
    expect(
      await codeOf(
        c.query(
          `COPY (SELECT 1 / (g - 3) AS x FROM generate_series(1, 5) g) TO 's3://${bucket}/div' WITH (FORMAT = 'csv')`,
        ),
      ),
    ).toBe("22012");
    // Cancelled (57014) while its upload is open.
    await c.query("SET c2s.wait = '0.0005'");
    const slow = codeOf(
      c.query(
        `COPY (SELECT c2s_wait(g) AS g, repeat('x', 4000) AS pad FROM generate_series(1, 40000) g) TO 's3://${bucket}/cancelled' WITH (FORMAT = 'csv')`,
      ),
    );
    // Its first part is held on its way to S3, so the cancel meets an UploadPart in flight (when
    // parts were left to race the cancel, some runs had none in flight and counted no "aborted").
    faults.setRules({ op: "UploadPart", fault: "hold" });
    try {
      await faults.waitFor("UploadPart", 1);
      expect((await check.uploads(bucket, "cancelled/")).length).toBe(1);
      const during = await scrape(base);
      expect(during.n(`${M}exports_running`)).toBe(1);
      await sendCancel(p.port, keyOf(c));
      expect(await slow).toBe("57014");
    } finally {
      faults.clear();
    }

    const after = await scrape(base);
    const d = (name: string, labels: Record<string, string> = {}): number =>
      after.n(M + name, labels) - before.n(M + name, labels);
    expect(d("exports_finished_total", { outcome: "completed", sqlstate: "" })).toBe(1);
    expect(d("exports_finished_total", { outcome: "failed", sqlstate: "58000" })).toBe(1);
    expect(d("exports_finished_total", { outcome: "failed", sqlstate: "22012" })).toBe(1);
    expect(d("exports_finished_total", { outcome: "cancelled", sqlstate: "57014" })).toBe(1);
    expect(after.sum(`${M}exports_finished_total`) - before.sum(`${M}exports_finished_total`)).toBe(4);
    expect(d("exported_rows_total", { format: "csv" })).toBe(1000);
    expect(d("exported_bytes_total", { format: "csv" })).toBe(bytes);
    expect(bytes).toBeGreaterThan(0);
    expect(d("export_duration_seconds_count", { outcome: "completed" })).toBe(1);
    expect(d("export_duration_seconds_count", { outcome: "failed" })).toBe(2);
    expect(d("export_duration_seconds_count", { outcome: "cancelled" })).toBe(1);
    expect(d("export_queue_wait_seconds_count")).toBe(4);
    expect(after.n(`${M}exports_running`)).toBe(0);
    expect(d("exports_refused_total")).toBe(0);
    // One session all along (a CancelRequest is not one).
    expect(d("client_sessions_total")).toBe(0);
    expect(after.n(`${M}client_sessions`)).toBe(1);
    // The S3 side: the sentinels and the completed export's manifests and data (PutObject), the
    // cancelled export's upload (multipart, then aborted).
    expect(d("s3_requests_total", { operation: "PutObject", status: "200" })).toBeGreaterThanOrEqual(3);
    expect(
      d("s3_requests_total", { operation: "CreateMultipartUpload", status: "200" }),
    ).toBeGreaterThanOrEqual(1);
    expect(
      d("s3_requests_total", { operation: "AbortMultipartUpload", status: "204" }),
    ).toBeGreaterThanOrEqual(1);
    // The cancel stopped the parts in flight: aborted attempts, not network failures.
    expect(d("s3_requests_total", { operation: "UploadPart", status: "network" })).toBe(0);
    expect(d("s3_requests_total", { operation: "UploadPart", status: "aborted" })).toBeGreaterThanOrEqual(1);
    // No label carries a user, a bucket or a target.
    const text = await (await fetch(`${base}/metrics`)).text();
    expect(text).not.toContain(bucket);
    expect(text).not.toContain('"postgres"');
  }, 120_000);

  test("bad requests get 405, 414, 431, 400 or 404, and the proxy keeps serving", async () => {
    const post = await fetch(`${base}/metrics`, { method: "POST", body: "x".repeat(10_000) });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
    expect((await fetch(`${base}/healthz`, { method: "DELETE" })).status).toBe(405);
    expect((await fetch(`${base}/metrics?${"a".repeat(4000)}`)).status).toBe(414);
    expect((await fetch(`${base}/nothing`)).status).toBe(404);
    const head = await fetch(`${base}/readyz`, { method: "HEAD" });
    expect([head.status, await head.text()]).toEqual([200, ""]);
    const port = Number(new URL(base).port);
    expect(
      await rawRequest(port, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(64 * 1024)}\r\n\r\n`),
    ).toMatch(/^HTTP\/1\.1 431 /);
    expect(await rawRequest(port, "NOT HTTP AT ALL\r\n\r\n")).toMatch(/^HTTP\/1\.1 400 /);
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    expect(p.proc.exitCode).toBeNull();
  });

  test("SIGTERM: /readyz goes 503 while the drain lets an export run, /healthz stays 200; then the listener closes", async () => {
    await c.query("SET c2s.wait = '0.0005'");
    const slow = codeOf(
      c.query(
        `COPY (SELECT c2s_wait(g) AS g, repeat('x', 4000) AS pad FROM generate_series(1, 40000) g) TO 's3://${bucket}/drained' WITH (FORMAT = 'csv')`,
      ),
    );
    await waitUntil("a multipart upload open", async () =>
      (await check.uploads(bucket, "drained/")).length > 0 ? true : null,
    );
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    p.proc.kill("SIGTERM");
    const draining = await waitUntil("readiness to go 503", async () => {
      const r = await fetch(`${base}/readyz`);
      return r.status === 503 ? r.text() : null;
    });
    expect(draining).toBe("draining\n");
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    // The export is still running: the drain waits for it.
    expect((await scrape(base)).n(`${M}exports_running`)).toBe(1);
    expect(p.proc.exitCode).toBeNull();
    // A second SIGTERM stops waiting: the export is aborted and cleaned up, the process exits.
    p.proc.kill("SIGTERM");
    expect(await slow).toBe("57P01");
    expect((await p.exited).code).toBe(0);
    await expect(fetch(`${base}/healthz`)).rejects.toThrow();
  }, 120_000);
});

/** The Docker HEALTHCHECK's command (src/metrics/healthcheck.ts), with the image's kind of setting. */
function healthcheck(adminListen: string): Promise<number> {
  const script = new URL("../../src/metrics/healthcheck.ts", import.meta.url).pathname;
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      ["--import", "tsx", script],
      { env: { ...process.env, C2S_ADMIN_LISTEN: adminListen } },
      (err) => resolve(err === null ? 0 : typeof err.code === "number" ? err.code : -1),
    );
  });
}

describe("an unreachable upstream", () => {
  test("each failed connect is counted, and the client's refusal by reason", async () => {
    const dead = await freePort();
    const { p, base } = await startWithAdmin(dead);
    try {
      // The start-up probe is the first failure.
      await waitUntil("the start-up probe", () => p.output().includes("is unreachable") || null);
      const before: Samples = await scrape(base);
      const c = new pg.Client({ connectionString: p.url("postgres", DB) });
      c.on("error", () => {});
      expect(await codeOf(c.connect())).toBe("08006");
      const after = await scrape(base);
      const d = (name: string, labels: Record<string, string> = {}): number =>
        after.n(M + name, labels) - before.n(M + name, labels);
      expect(d("upstream_connect_failures_total", { step: "connect" })).toBe(1);
      expect(d("upstream_connect_failures_total", { step: "tls" })).toBe(0);
      expect(d("client_connections_refused_total", { reason: "upstream_unavailable" })).toBe(1);
      expect(d("client_sessions_total")).toBe(0);
      // Readiness does not follow the upstream (docs/metrics.md).
      expect((await fetch(`${base}/readyz`)).status).toBe(200);
    } finally {
      await p.stop();
    }
  }, 60_000);
});
