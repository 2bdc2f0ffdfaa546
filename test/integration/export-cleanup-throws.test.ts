// A cleanup that throws (not merely reports what it left) must not take the export's own error's
// place: the client gets why the export failed — the S3 fault, the cancel's 57014 — with what may
// be left in the DETAIL and the cleanup command in the HINT (SPEC §2.2), and the sentinel stays.
// Real PostgreSQL and moto behind the S3 fault proxy; the proxy in this process, so that the
// store's delete can be made to throw (a defect S3 itself cannot produce).
import type pg from "pg";
import { afterAll, afterEach, beforeAll, expect, test, vi } from "vitest";
import { S3Store } from "../../src/copy/storage/s3-store.js";
import { failure, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";

let stack: ProxyStack;
let client: pg.Client;
let n = 0;

beforeAll(async () => {
  stack = await startProxyStack({
    database: "export_cleanup_throws",
    bucket: "cleanup-throws-error",
    config: { exports: { s3MaxAttempts: 1 } },
  });
  client = await stack.connect();
}, 60_000);

afterEach(() => {
  vi.restoreAllMocks();
  stack.faults.clear();
});

afterAll(async () => {
  await stack?.stop();
});

const copyTo = (prefix: string) =>
  client.query(
    `COPY (SELECT g FROM generate_series(1, 10) g) TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`,
  );

function deleteThrows() {
  return vi.spyOn(S3Store.prototype, "delete").mockImplementation(() => {
    throw new Error("injected: delete threw");
  });
}

/** The error, the DETAIL and the HINT a cleanup that threw leaves: everything of the export may remain. */
async function expectLeftBehind(
  err: { message: string; detail?: string; hint?: string },
  prefix: string,
): Promise<void> {
  const keys = await stack.check.keys(stack.bucket, `${prefix}/`);
  const sentinel = keys.find((k) => k.endsWith("-INCOMPLETE"));
  expect(sentinel).toBeDefined();
  const id = /mz-([0-9a-f-]+)-INCOMPLETE$/.exec(sentinel!)![1];
  expect(err.detail).toContain("cleanup failed (injected: delete threw); left behind: ");
  expect(err.detail).toContain(`objects of s3://${stack.bucket}/${prefix}/mz-${id}-*`);
  expect(err.detail).toContain(`s3://${stack.bucket}/${sentinel}`);
  expect(err.hint).toBe(
    `Remove them with: copy-to-s3-proxy cleanup s3://${stack.bucket}/${prefix} --yes --older-than 0`,
  );
  expect(err.message).not.toContain("injected");
  // The session is usable, out of any transaction.
  expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
}

test("an S3 fault whose cleanup throws: the client gets the S3 fault, and what may be left", async () => {
  // The manifest cannot be written: the export fails after its data file is complete, and the
  // cleanup must delete that file.
  stack.faults.setRules({ op: "PutObject", key: /-manifest\.json$/, fault: "500" });
  const own = (await failure(copyTo(`own-${++n}`), () => 0)).err;
  expect(own.detail ?? "").not.toContain("cleanup failed");

  const del = deleteThrows();
  const prefix = `throws-${++n}`;
  const { err } = await failure(copyTo(prefix), () => 0);
  expect(del).toHaveBeenCalled();
  expect({ code: err.code, message: err.message }).toEqual({ code: own.code, message: own.message });
  await expectLeftBehind(err, prefix);
});

test("a cancel whose cleanup throws: the client gets 57014, and what may be left", async () => {
  // The data file is complete and the manifest's PutObject held: the cancel comes before the
  // commit point, so the cleanup must delete the data file.
  stack.faults.setRules({ op: "PutObject", key: /-manifest\.json$/, fault: "hold" });
  const del = deleteThrows();
  const prefix = `cancel-${++n}`;
  const failed = failure(copyTo(prefix), () => 0);
  await waitUntil("the manifest's PutObject held", () =>
    stack.faults.log.some((r) => r.key.startsWith(`${prefix}/`) && r.key.endsWith("-manifest.json")),
  );
  await sendCancel(stack.proxy.port, keyOf(client));
  // A PutObject is not taken back once sent: the export waits for its answer, then sees the cancel.
  stack.faults.release();
  const { err } = await failed;
  expect(del).toHaveBeenCalled();
  expect({ code: err.code, message: err.message }).toEqual({
    code: "57014",
    message: "canceling statement due to user request",
  });
  await expectLeftBehind(err, prefix);
});
