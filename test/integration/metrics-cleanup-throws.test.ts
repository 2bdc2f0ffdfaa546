// exports_running counts an export as ended however its cleanup ends, also when the cleanup itself
// throws (not merely reports what it left behind). Real PostgreSQL and moto behind the S3 fault
// proxy, the proxy in this process so that its metrics registry is the one scraped here.
import pg from "pg";
import { afterAll, beforeAll, expect, test, vi } from "vitest";
import { S3Store } from "../../src/copy/storage/s3-store.js";
import { registry } from "../../src/metrics/metrics.js";
import { Samples } from "../support/prom-text.js";
import type { TestProxy } from "../support/proxy.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import type { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "metrics_cleanup_throws";
const M = "copy_to_s3_proxy_";
let stack: ProxyStack;
let faults: S3FaultProxy;
let proxy: TestProxy;
let bucket: string;

beforeAll(async () => {
  stack = await startProxyStack({
    database: DB,
    bucket: "cleanup-throws",
    config: { exports: { s3MaxAttempts: 1 } },
  });
  ({ faults, proxy, bucket } = stack);
}, 60_000);

afterAll(async () => {
  vi.restoreAllMocks();
  await stack?.stop();
});

test("an export whose cleanup throws is no longer counted as running", async () => {
  const scrape = async (): Promise<Samples> => new Samples(await registry.metrics());
  const before = await scrape();
  // The manifest cannot be written, so the export fails after its data file is complete and the
  // cleanup must delete that file. A network fault there is caught and reported as "left behind";
  // only a throw (a defect in the store, injected here: S3 cannot produce one) escapes the cleanup.
  faults.setRules({ op: "PutObject", key: /-manifest\.json$/, fault: "500" });
  const del = vi.spyOn(S3Store.prototype, "delete").mockImplementation(() => {
    throw new Error("injected: delete threw");
  });
  const c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  c.on("notice", () => {});
  await c.connect();
  try {
    await expect(
      c.query(`COPY (SELECT g FROM generate_series(1, 10) g) TO 's3://${bucket}/p' WITH (FORMAT = 'csv')`),
    ).rejects.toThrow();
    expect(del).toHaveBeenCalled();
    // The session stays usable.
    expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  } finally {
    del.mockRestore();
    faults.clear();
    await c.end();
  }
  const after = await scrape();
  expect(after.n(`${M}exports_running`)).toBe(0);
  expect(
    after.sum(`${M}exports_finished_total`, { outcome: "failed" }) -
      before.sum(`${M}exports_finished_total`, { outcome: "failed" }),
  ).toBe(1);
});
