// A running export re-writes its sentinel, so `cleanup` can tell it from one whose proxy died:
// the sentinel's LastModified (as the S3 server reports it) moves forward while the export runs,
// and no refresh lands after the sentinel is removed at the end.
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test } from "vitest";
import { motoAccess, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";

const s3 = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let client: pg.Client;
let bucket: string;

beforeAll(async () => {
  proxy = await startCopyProxy({
    upstreamPort: inject("pgPort"),
    s3,
    config: { exports: { sentinelRefreshMs: 1000 } },
  });
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  bucket = await check.bucket("heartbeat");
});
afterAll(async () => {
  await client?.end();
  await proxy?.shutdown(0);
});

test("the sentinel is refreshed while the export runs and gone after it", async () => {
  const running = client.query(
    `COPY (SELECT g, pg_sleep(0.0012) FROM generate_series(1, 2000) g) TO 's3://${bucket}/hb' WITH (FORMAT = 'csv')`,
  );
  let done = false;
  void running.finally(() => {
    done = true;
  });
  const seen = new Set<number>();
  while (!done) {
    const key = (await check.keys(bucket, "hb/")).find((k) => k.endsWith("-INCOMPLETE"));
    if (key !== undefined) {
      const head = await check.client
        .send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
        .catch(() => undefined);
      if (head?.LastModified) seen.add(head.LastModified.getTime());
    }
    await new Promise((r) => setTimeout(r, 150));
  }
  expect((await running).rowCount).toBe(2000);
  // Several distinct LastModified values (S3 has 1 s resolution): the sentinel was re-written.
  expect(seen.size).toBeGreaterThanOrEqual(2);
  await new Promise((r) => setTimeout(r, 1500));
  expect((await check.keys(bucket, "hb/")).filter((k) => k.endsWith("-INCOMPLETE"))).toEqual([]);
});
