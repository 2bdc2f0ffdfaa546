// A running export re-writes its sentinel, so `cleanup` can tell it from one whose proxy died:
// the sentinel's LastModified (as the S3 server reports it) moves forward while the export runs,
// and the sentinel is gone when the COPY has answered. That no refresh lands after the delete is
// test/unit/sentinel-heartbeat.test.ts's (on fake timers: a wait here could only fail to see one).
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test } from "vitest";
import { motoAccess, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
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
  // The export's rows wait for an advisory lock the test holds, so it runs until the test has
  // seen what it looks for, however slow the machine: no race between the export and the polls.
  const gate = new pg.Client({ connectionString: proxy.url() });
  await gate.connect();
  try {
    await gate.query("SELECT pg_advisory_lock(4242)");
    const running = client.query(
      `COPY (SELECT g, pg_advisory_xact_lock_shared(4242) FROM generate_series(1, 2000) g) TO 's3://${bucket}/hb' WITH (FORMAT = 'csv')`,
    );
    running.catch(() => {}); // awaited below; a failure must not go unhandled meanwhile
    // Two distinct LastModified values (S3 has 1 s resolution): the sentinel was re-written.
    const seen = new Set<number>();
    await waitUntil("two LastModified values of the sentinel", async () => {
      const key = (await check.keys(bucket, "hb/")).find((k) => k.endsWith("-INCOMPLETE"));
      if (key !== undefined) {
        const head = await check.client
          .send(new HeadObjectCommand({ Bucket: bucket, Key: key }))
          .catch(() => undefined);
        if (head?.LastModified) seen.add(head.LastModified.getTime());
      }
      return seen.size >= 2;
    });
    await gate.query("SELECT pg_advisory_unlock(4242)");
    expect((await running).rowCount).toBe(2000);
    expect((await check.keys(bucket, "hb/")).filter((k) => k.endsWith("-INCOMPLETE"))).toEqual([]);
  } finally {
    await gate.end();
  }
});
