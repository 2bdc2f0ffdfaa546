// The stall watchdog (exports.stallTimeoutMs) names what an export was waiting for when nothing
// moved: rows from the upstream (mz-double-e2e.test.ts), its uploads, or its encoder — which, with
// the encoding budget (exports.maxEncodingThreads), includes waiting for its turn to encode. The
// proxy runs in this process, so the test can hold the budget's one slot itself; the uploads are
// held by the S3 fault proxy.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import {
  acquireSlot,
  budgetUse,
  encoderBudget,
  releaseSlot,
} from "../../src/encoders/worker/encoder-budget.js";
import { expectNothingLeft, waitUntil } from "../support/export-checks.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";

const MiB = 1024 * 1024;
let stack: ProxyStack;
let client: pg.Client;

beforeAll(async () => {
  stack = await startProxyStack({
    database: "copy_stall",
    bucket: "stall",
    // Longer than any pause the test does not arrange, on a loaded machine: an encoder thread
    // starting, or falling behind, pauses the row stream too (the "encoder" cause), and at 1 s the
    // uploads test ended on that instead of on its held uploads (load 8).
    args: ["--stall-timeout", "5000"],
    // One part uploading and one filling: ~45 MB of rows need many more.
    config: { exports: { maxEncodingThreads: 1, partSize: 5 * MiB, partsInFlight: 1 } },
  });
  client = await stack.connect();
}, 60_000);

afterAll(async () => {
  await client?.end();
  await stack?.stop();
});

/** How `p` ended, once it has: a failed test then says what ended the export. */
function settled(p: Promise<unknown>): { error?: string } {
  const out: { error?: string } = {};
  p.then(
    () => {
      out.error = "it completed";
    },
    (e: { code?: string; message?: string }) => {
      out.error = `${e.code} ${e.message}`;
    },
  );
  return out;
}

/** ~45 MB of CSV rows: many times an encoder thread's queue and an upload's buffers. */
const BIG = (prefix: string): string =>
  `COPY (SELECT g, repeat('x', 200) FROM generate_series(1, 200000) g) TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`;

describe("what a stalled export was waiting for", () => {
  test("its encoder waited for an encoding turn the whole time: 57014 naming the encoder and the budget, not the uploads", async () => {
    // Nobody waits yet, so this takes the free slot at once (the main thread may not block).
    const budget = encoderBudget(1);
    const holder = 0x7ffffff0; // no real thread's id
    const slot = acquireSlot(budget, holder);
    try {
      const copy = client.query(BIG("turn"));
      const ended = settled(copy);
      await waitUntil("the export's encoder thread to wait for the slot", () => {
        if (ended.error !== undefined)
          throw new Error(`the export ended before its encoder waited for the slot: ${ended.error}`);
        return budgetUse(budget).waiting === 1;
      });
      await expect(copy).rejects.toMatchObject({
        code: "57014",
        message: expect.stringMatching(/^canceling COPY TO: the encoder made no progress for \d+ s$/),
        detail:
          "At most 1 export encodes at once (exports.maxEncodingThreads): this export's encoder was waiting for its turn or still encoding.",
      });
    } finally {
      releaseSlot(budget, slot, holder);
    }
    await expectNothingLeft(stack.check, stack.bucket, "turn");
    expect((await client.query("SELECT 3 AS ok")).rows[0].ok).toBe(3);
  });

  test("its uploads got no answer: 57014 naming the uploads", async () => {
    stack.faults.setRules({ op: "UploadPart", fault: "hold" });
    try {
      await expect(client.query(BIG("held"))).rejects.toMatchObject({
        code: "57014",
        message: expect.stringMatching(/^canceling COPY TO: the uploads made no progress for \d+ s$/),
        detail: undefined,
      });
    } finally {
      stack.faults.clear();
    }
    await expectNothingLeft(stack.check, stack.bucket, "held");
    expect((await client.query("SELECT 3 AS ok")).rows[0].ok).toBe(3);
  });
});
