// Many proxies, one run (docs/schedules.md): the per-occurrence lease rests on S3 conditional
// writes, checked here against the real servers (moto; Ceph RadosGW with C2S_CEPH=1): exactly one
// create wins (If-None-Match: *), a stale ETag loses (If-Match), a holder that stops renewing is
// taken over and what its run left is removed, a finished occurrence is never run again. Then two
// proxies with the same job in front of PostgreSQL: one occurrence, one run.
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PutObjectCommand } from "@aws-sdk/client-s3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { loadConnections } from "../../src/copy/connections.js";
import { createStore } from "../../src/copy/create-store.js";
import { createCopyHook } from "../../src/copy/hook.js";
import { parseTargetUrl } from "../../src/copy/storage/target-url.js";
import { createLogger } from "../../src/log.js";
import { type ProxyServer, startProxy } from "../../src/proxy/server.js";
import { ManualClock } from "../../src/schedule/clock.js";
import type { JobSpec } from "../../src/schedule/jobs.js";
import { StoreLeases } from "../../src/schedule/lease.js";
import type { HeldLease } from "../../src/schedule/occurrence-run.js";
import { createSchedules, type Schedules } from "../../src/schedule/start.js";
import { motoAccess, type S3Access, S3Check } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";

const log = createLogger("silent");
const T0 = Date.parse("2026-12-02T09:59:00Z");
const TTL = 60_000;
const signal = new AbortController().signal;

const servers: Array<[string, S3Access | undefined]> = [
  ["moto", motoAccess()],
  [
    "Ceph RadosGW",
    inject("cephEndpoint")
      ? {
          endpoint: inject("cephEndpoint")!,
          region: inject("cephRegion") ?? "us-east-1",
          accessKeyId: inject("cephAccessKeyId") ?? "",
          secretAccessKey: inject("cephSecretAccessKey") ?? "",
        }
      : undefined,
  ],
];

const job = (target: string): JobSpec => ({
  name: "orders",
  source: "orders",
  target,
  options: "FORMAT 'csv'",
  awsConnection: undefined,
  user: "postgres",
  operators: [],
  password: undefined,
  database: "postgres",
  schedule: { kind: "every", ms: 3_600_000 },
  retries: 0,
  backoffMs: 1000,
  suspendAfter: 3,
  keep: undefined,
  maxAgeMs: undefined,
});

describe.each(servers)("the occurrence lease on %s", (name, s3) => {
  const skip = s3 === undefined;
  let check: S3Check;
  let bucket: string;
  beforeAll(async () => {
    if (skip) return;
    check = new S3Check(s3);
    bucket = await check.bucket(`lease-${name === "moto" ? "moto" : "ceph"}-${Date.now() % 100000}`);
  });

  test.skipIf(skip)(
    "one create wins, renewals hold it, a dead holder is taken over and cleared, done stays done",
    async () => {
      const target = `s3://${bucket}/orders`;
      const conns = loadConnections(
        {
          t: {
            endpoint: s3!.endpoint,
            region: s3!.region,
            accessKeyId: { env: "K" },
            secretAccessKey: { env: "S" },
          },
        },
        { K: s3!.accessKeyId, S: s3!.secretAccessKey },
      );
      const store = createStore(conns.get("t"), parseTargetUrl(target));
      const clockA = new ManualClock(T0);
      const clockB = new ManualClock(T0);
      const a = new StoreLeases(() => store, clockA, log, TTL);
      const b = new StoreLeases(() => store, clockB, log, TTL);
      const j = job(target);
      const snap = "snapshot=2026-12-02T10:00:00Z";
      const held = (await a.acquire(j, snap, signal)) as HeldLease;
      expect(held).toHaveProperty("lost");
      expect(await b.acquire(j, snap, signal)).toEqual({ busyUntil: T0 + TTL });
      // A renews (If-Match on its ETag) before expiry; B still finds it busy, for longer.
      clockA.advance(TTL / 3);
      await waitUntil("A's renewal", async () => {
        const r = await b.acquire(j, snap, signal);
        return r !== null && "busyUntil" in r && r.busyUntil === T0 + TTL / 3 + TTL;
      });
      // A dies mid-run: it stops renewing, its export's sentinel and a data file stay behind.
      const put = (key: string) =>
        check.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "x" }));
      await put(`orders/${snap}/mz-dead-INCOMPLETE`);
      await put(`orders/${snap}/mz-dead-batch-0000-0000.csv`);
      clockB.advance(TTL / 3 + TTL + 1);
      const taken = (await b.acquire(j, snap, signal)) as HeldLease;
      expect(taken).toHaveProperty("lost");
      expect(await check.keys(bucket, `orders/${snap}/`)).toEqual([]);
      // If A were still alive, its next renewal (a stale ETag) fails and stops its run.
      clockA.advance(TTL / 3);
      await waitUntil("A learns it lost the lease", () => held.lost.aborted);
      expect(taken.complete).toBe(false);
      await taken.finish("succeeded");
      const c = new StoreLeases(() => store, new ManualClock(T0 + 10 * TTL), log, TTL);
      expect(await c.acquire(j, snap, signal)).toBeNull();

      // A holder that died after its export completed, before done.json: the snapshot is
      // complete (manifest, no sentinel), so the taker-over is told to publish it, not run it.
      const snap2 = "snapshot=2026-12-02T11:00:00Z";
      expect(await a.acquire(j, snap2, signal)).toHaveProperty("lost");
      await put(`orders/${snap2}/mz-done-batch-0000-0000.csv`);
      await put(`orders/${snap2}/_meta/mz-done-manifest.json`);
      const d = new StoreLeases(() => store, new ManualClock(T0 + 10 * TTL), log, TTL);
      const late = (await d.acquire(j, snap2, signal)) as HeldLease;
      expect(late.complete).toBe(true);
      expect(await check.keys(bucket, `orders/${snap2}/`)).toHaveLength(2);
    },
  );
});

describe("two proxies with the same job", () => {
  const pgPort = inject("pgPort");
  const s3 = motoAccess();
  const check = new S3Check(s3);
  let bucket: string;
  const proxies: Array<{ proxy: ProxyServer; schedules: Schedules; clock: ManualClock }> = [];

  beforeAll(async () => {
    const admin = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: "postgres" });
    await admin.connect();
    await admin.query(
      "DROP TABLE IF EXISTS lease_orders; CREATE TABLE lease_orders AS SELECT g AS id FROM generate_series(1, 1000) g",
    );
    await admin.end();
    bucket = await check.bucket("lease-two-proxies");
    const dir = mkdtempSync(join(tmpdir(), "c2s-lease-"));
    const configFile = join(dir, "config.json");
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
            name: "orders",
            view: "lease_orders",
            target: `s3://${bucket}/orders`,
            options: { format: "csv" },
            user: "postgres",
            database: "postgres",
            every: "1h",
          },
        ],
      }),
    );
    process.env.C2S_TEST_S3_KEY = s3.accessKeyId;
    process.env.C2S_TEST_S3_SECRET = s3.secretAccessKey;
    const env = process.env;
    for (let i = 0; i < 2; i++) {
      const { config } = loadConfig(
        [
          "--listen",
          "127.0.0.1:0",
          "--upstream",
          `127.0.0.1:${pgPort}`,
          "--upstream-tls",
          "disable",
          "--config",
          configFile,
        ],
        env,
      );
      const clock = new ManualClock(T0);
      const schedules = await createSchedules(config, log, await createCopyHook(config, log), { clock, env });
      const proxy = await startProxy(config, log, schedules.hook);
      schedules.start(() => proxy.address);
      proxies.push({ proxy, schedules, clock });
    }
  }, 60_000);

  afterAll(async () => {
    for (const p of proxies) {
      await p.schedules.stop();
      await p.proxy.shutdown(0);
    }
  });

  test("an occurrence due on both runs once: one proxy runs it, the other waits for the lease and then skips it", async () => {
    for (const p of proxies) p.clock.advance(60_000);
    const states = () => proxies.map((p) => p.schedules.scheduler!.history("orders")[0]?.state);
    await waitUntil("one run succeeded, the other waiting", () => {
      const s = states().sort();
      return s[0] === "succeeded" && s[1] === "waiting";
    });
    // The waiting one asks again when the lease would have expired: it is done by then.
    for (const p of proxies) p.clock.advance(TTL + 1);
    await waitUntil("the other skipped it", () => states().sort().join() === "skipped,succeeded");
    const dirs = new Set((await check.keys(bucket, "orders/")).map((k) => k.split("/")[1]));
    expect([...dirs].sort()).toEqual(["_leases", "latest.json", "snapshot=2026-12-02T10:00:00Z"]);
  });
});
