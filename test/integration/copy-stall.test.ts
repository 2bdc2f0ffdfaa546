// The stall watchdog (exports.stallTimeoutMs) names what an export was waiting for when nothing
// moved: rows from the upstream (mz-double-e2e.test.ts), its uploads, or its encoder — which, with
// the encoding budget (exports.maxEncodingThreads), includes waiting for its turn to encode. The
// proxy runs in this process, so the test can hold the budget's one slot itself.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import {
  acquireSlot,
  budgetUse,
  encoderBudget,
  releaseSlot,
} from "../../src/encoders/worker/encoder-budget.js";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { expectNothingLeft, waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { RawPg } from "../support/raw-pg.js";

const DB = "copy_stall";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let oracle: RawPg;
let proxy: TestProxy;
let client: pg.Client;
let bucket: string;

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  proxy = await startCopyProxy({
    upstreamPort: pgPort,
    s3,
    args: ["--stall-timeout", "1000"],
    config: { exports: { maxEncodingThreads: 1 } },
  });
  client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  await client.connect();
  bucket = await check.bucket("stall");
}, 60_000);

afterAll(async () => {
  await client?.end();
  await proxy?.shutdown(0);
  await oracle?.close();
});

describe("what a stalled export was waiting for", () => {
  test("its encoder waited for an encoding turn the whole time: 57014 naming the encoder and the budget, not the uploads", async () => {
    // Nobody waits yet, so this takes the free slot at once (the main thread may not block).
    const budget = encoderBudget(1);
    const holder = 0x7ffffff0; // no real thread's id
    const slot = acquireSlot(budget, holder);
    try {
      const copy = client.query(
        `COPY (SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g) TO 's3://${bucket}/turn' WITH (FORMAT = 'csv')`,
      );
      copy.catch(() => {});
      await waitUntil(
        "the export's encoder thread to wait for the slot",
        () => budgetUse(budget).waiting === 1,
      );
      await expect(copy).rejects.toMatchObject({
        code: "57014",
        message: expect.stringMatching(/^canceling COPY TO: the encoder made no progress for \d+ s$/),
        detail:
          "At most 1 export encodes at once (exports.maxEncodingThreads): this export's encoder was waiting for its turn or still encoding.",
      });
    } finally {
      releaseSlot(budget, slot, holder);
    }
    await expectNothingLeft(check, bucket, "turn");
    expect((await client.query("SELECT 3 AS ok")).rows[0].ok).toBe(3);
  });
});
