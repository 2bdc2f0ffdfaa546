// The preflight (SPEC §2): the listing of the prefix and the delete probe go out together (one S3
// round trip instead of two), and the listing's answer is judged first, so a prefix in use is
// refused as such (58000) whatever the probe meets. Real PostgreSQL and S3 (moto) behind the
// fault proxy, which holds or fails the requests.
import type pg from "pg";
import { afterAll, beforeAll, expect, test } from "vitest";
import type { S3Check } from "../support/copy-proxy.js";
import { expectNothingLeft } from "../support/export-checks.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import type { S3FaultProxy } from "../support/s3-fault-proxy.js";

let stack: ProxyStack;
let faults: S3FaultProxy;
let check: S3Check;
let bucket: string;
let client: pg.Client;

beforeAll(async () => {
  stack = await startProxyStack({ database: "copy_preflight", bucket: "preflight" });
  ({ faults, check, bucket } = stack);
  client = await stack.connect();
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

const copy = (prefix: string, format = "csv") =>
  `COPY (SELECT g FROM generate_series(1, 100) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = '${format}')`;

test("the delete probe is sent while the listing is still unanswered; the export then completes", async () => {
  faults.resetStats();
  faults.setRules({ op: "ListObjectsV2", fault: "hold" });
  const done = client.query(copy("both"));
  try {
    await faults.waitFor("ListObjectsV2");
    // Before the listing's answer: sequential, the probe would wait for it.
    await faults.waitFor("DeleteObject", 1, 10_000);
  } finally {
    faults.clear();
  }
  await expect(done).resolves.toMatchObject({ rowCount: 100 });
  const keys = await check.keys(bucket, "both/");
  expect(keys.filter((k) => k.endsWith(".csv"))).toHaveLength(1);
  expect(keys.some((k) => k.includes("delete-probe") || k.endsWith("-INCOMPLETE"))).toBe(false);
});

test("a prefix in use is refused as such (58000) when the probe fails too", async () => {
  await client.query(copy("taken"));
  const before = await check.keys(bucket, "taken/");
  faults.setRules({ op: "DeleteObject", fault: "500" });
  try {
    await expect(client.query(copy("taken", "parquet"))).rejects.toMatchObject({
      code: "58000",
      message: expect.stringMatching(/not empty/),
    });
  } finally {
    faults.clear();
  }
  expect(await check.keys(bucket, "taken/")).toEqual(before);
  expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
});

test("the probe's own failure, in an empty prefix: 58030 naming DeleteObject, nothing written", async () => {
  faults.setRules({ op: "DeleteObject", fault: "500" });
  try {
    await expect(client.query(copy("denied"))).rejects.toMatchObject({
      code: "58030",
      message: "InternalError error when using DeleteObject",
    });
  } finally {
    faults.clear();
  }
  await expectNothingLeft(check, bucket, "denied");
});
