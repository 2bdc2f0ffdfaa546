// The commit phase against an S3 that behaves like S3 (SPEC §2, §2.2): whatever happens, the
// client's answer is true — `COPY n` with the manifest in place, no sentinel, every file complete
// and no multipart upload left; or an error with the prefix as it was found. Checked after every
// export with an independent S3 client (the SDK directly, and the AWS CLI), against real
// PostgreSQL and a real S3 server (moto) behind the fault-injecting proxy:
// - what real S3 does that a plain moto does not (s3-fault-proxy.ts cites AWS for each): requests
//   executed whose answer is lost, 200 OK carrying an error, 503 SlowDown bursts, answers that come
//   seconds late, a Complete retried after it succeeded (NoSuchUpload);
// - a cancel at every request of the upload tail and the commit, with that request parked before
//   the server sees it and after the server executed it;
// - a moto whose CompleteMultipartUpload really takes seconds (moto-slow-complete.py), cancelled
//   after it consumed the upload and before it stored the object.
import type pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { awsCli, awsCliKeys, type S3Access, S3Check } from "../support/copy-proxy.js";
import { expectNothingLeft, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { startMoto } from "../support/moto.js";
import type { TestProxy } from "../support/proxy.js";
import {
  type FaultyProxy,
  type ProxyStack,
  startFaultyProxy,
  startProxyStack,
} from "../support/proxy-stack.js";
import type { RawPg } from "../support/raw-pg.js";
import type { FaultRule, S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "copy_commit";
const MiB = 1024 * 1024;
const ROWS = 200000;
const exportsConfig = {
  partSize: 5 * MiB,
  partsInFlight: 2,
  filesCompleting: 1,
  s3MaxAttempts: 4,
  s3RequestTimeoutMs: 5000,
};

let stack: ProxyStack;
let s3: S3Access;
let check: S3Check;
let faults: S3FaultProxy;
let proxy: TestProxy;
let oracle: RawPg;
let client: pg.Client;
let bucket: string;
let csvOracle: Buffer;

beforeAll(async () => {
  stack = await startProxyStack({ database: DB, bucket: "commit", config: { exports: exportsConfig } });
  ({ s3, check, bucket, oracle, faults, proxy } = stack);
  // ~21 MB of CSV: a 16 MB file of four 5 MiB parts (multipart) and a ~4 MB one (one PutObject).
  await oracle.query(
    `CREATE TABLE mid AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, ${ROWS}) g`,
  );
  await oracle.query("SET synchronize_seqscans = off");
  csvOracle = (await oracle.query("COPY mid TO STDOUT (FORMAT csv)")).copyData;
  client = await stack.connect();
  await client.query("SET synchronize_seqscans = off");
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

let n = 0;
const freshPrefix = (): string => `m${++n}`;
const COPY = (b: string, p: string) =>
  `COPY mid TO 's3://${b}/${p}' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`;

type Answer = { rows: number } | { err: pg.DatabaseError };

async function answer(q: Promise<pg.QueryResult>): Promise<Answer> {
  try {
    return { rows: (await q).rowCount ?? -1 };
  } catch (e) {
    return { err: e as pg.DatabaseError };
  }
}

/** COPY n ⇒ everything committed; an error ⇒ the prefix as it was found (empty). */
async function expectTrueAnswer(a: Answer, p: string, c: S3Check = check, b: string = bucket): Promise<void> {
  if ("err" in a) {
    await expectNothingLeft(c, b, p);
    return;
  }
  expect(a.rows).toBe(ROWS);
  const keys = await c.keys(b, `${p}/`);
  expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
  expect(keys.filter((k) => k.endsWith("-manifest.json"))).toHaveLength(1);
  const files = keys.filter((k) => k.endsWith(".csv"));
  expect(files).toHaveLength(2);
  const got = Buffer.concat(await Promise.all(files.map((k) => c.get(b, k))));
  expect(got.equals(csvOracle)).toBe(true);
  expect(await c.uploads(b, `${p}/`)).toEqual([]);
}

async function exportWith(...rules: FaultRule[]): Promise<{ a: Answer; prefix: string }> {
  const prefix = freshPrefix();
  faults.resetStats();
  faults.setRules(...rules);
  try {
    return { a: await answer(client.query(COPY(bucket, prefix))), prefix };
  } finally {
    faults.clear();
  }
}

describe("what real S3 does: the export still answers truly", () => {
  test("CreateMultipartUpload executed, its answer lost: COPY n, and the first upload is aborted too", async () => {
    const { a, prefix } = await exportWith({ op: "CreateMultipartUpload", nth: 1, fault: "lost" });
    expect(faults.faultCount("lost")).toBe(1);
    expect(faults.count("CreateMultipartUpload")).toBe(2); // the SDK's retry made a second upload
    expect(a).toEqual({ rows: ROWS });
    await expectTrueAnswer(a, prefix);
  });

  test("CreateMultipartUpload's answer lost, then the export fails: the upload nobody knew of goes too", async () => {
    const { a, prefix } = await exportWith(
      { op: "CreateMultipartUpload", nth: 1, fault: "lost" },
      { op: "CompleteMultipartUpload", fault: "500" },
    );
    expect(faults.count("CreateMultipartUpload")).toBe(2);
    expect(a).toMatchObject({
      err: { code: "58030", message: "InternalError error when using CompleteMultipartUpload" },
    });
    await expectTrueAnswer(a, prefix);
  });

  test("CompleteMultipartUpload executed, its answer lost; the retry answered 200 (AWS, moto): COPY n", async () => {
    const { a, prefix } = await exportWith({ op: "CompleteMultipartUpload", nth: 1, fault: "lost" });
    expect(faults.count("CompleteMultipartUpload")).toBe(2); // one multipart file, and the retry
    expect(a).toEqual({ rows: ROWS });
    await expectTrueAnswer(a, prefix);
  });

  test("CompleteMultipartUpload executed, its answer lost; the retry meets NoSuchUpload: HeadObject shows it done, COPY n", async () => {
    const { a, prefix } = await exportWith(
      { op: "CompleteMultipartUpload", nth: 1, fault: "lost" },
      // A rule sees only the requests no earlier rule took: this is the second Complete, the retry.
      { op: "CompleteMultipartUpload", nth: 1, fault: "no-such-upload" },
    );
    expect(faults.faultCount("no-such-upload")).toBe(1);
    expect(a).toEqual({ rows: ROWS });
    const ops = faults.log.map((r) => r.op);
    const retry = ops.indexOf("CompleteMultipartUpload", ops.indexOf("CompleteMultipartUpload") + 1);
    expect(ops.indexOf("HeadObject", retry)).toBeGreaterThan(retry);
    await expectTrueAnswer(a, prefix);
  });

  test("every other request of the export executed with its answer lost once: COPY n", async () => {
    const { a, prefix } = await exportWith(
      { op: "PutObject", key: /-INCOMPLETE$/, nth: 1, fault: "lost" },
      { op: "UploadPart", nth: 2, fault: "lost" },
      { op: "PutObject", key: /\.csv$/, nth: 1, fault: "lost" },
      { op: "ListMultipartUploads", nth: 1, fault: "lost" },
      { op: "PutObject", key: /-manifest\.json$/, nth: 1, fault: "lost" },
      { op: "DeleteObjects", nth: 1, fault: "lost" },
    );
    expect(faults.faultCount("lost")).toBe(6);
    await expectTrueAnswer(a, prefix);
    expect(a).toEqual({ rows: ROWS });
  });

  test("a 200 OK whose body is an error (CompleteMultipartUpload): retried, COPY n", async () => {
    const { a, prefix } = await exportWith({ op: "CompleteMultipartUpload", nth: 1, fault: "error-200" });
    expect(faults.faultCount("error-200")).toBe(1);
    expect(a).toEqual({ rows: ROWS });
    await expectTrueAnswer(a, prefix);
  });

  test("every CompleteMultipartUpload answered 200 with an error: 58030 naming it, nothing left", async () => {
    const { a, prefix } = await exportWith({ op: "CompleteMultipartUpload", fault: "error-200" });
    expect(faults.faultCount("error-200")).toBe(exportsConfig.s3MaxAttempts);
    expect(a).toMatchObject({
      err: { code: "58030", message: "InternalError error when using CompleteMultipartUpload" },
    });
    await expectTrueAnswer(a, prefix);
  });

  test("a burst of 503 SlowDown across requests: retried with backoff, COPY n", async () => {
    const { a, prefix } = await exportWith({ fault: "503", from: 4, times: 3 });
    expect(faults.faultCount("503")).toBe(3);
    expect(a).toEqual({ rows: ROWS });
    await expectTrueAnswer(a, prefix);
  });

  test("503 SlowDown on every upload request from the Complete on: 58030 SlowDown, nothing left", async () => {
    const { a, prefix } = await exportWith({
      op: ["CompleteMultipartUpload", "PutObject"],
      key: /\.csv$/,
      fault: "503",
    });
    expect(a).toMatchObject({ err: { code: "58030", message: /^SlowDown error when using / } });
    await expectTrueAnswer(a, prefix);
  });

  test("a CompleteMultipartUpload answered seconds after the server executed it: COPY n", async () => {
    const { a, prefix } = await exportWith({
      op: "CompleteMultipartUpload",
      fault: "delay-after",
      stallMs: 1500,
    });
    expect(a).toEqual({ rows: ROWS });
    await expectTrueAnswer(a, prefix);
  });
});

describe("a cancel at every request of the upload tail and the commit", () => {
  // The requests of one export, each by its identity (operation, object name without the export's
  // id, part number), not by its place in the sequence: under load an UploadPart or a held answer
  // can outlast s3RequestTimeoutMs, and the SDK's retry then moves every later request one place
  // on (seen at load 18: six UploadParts for four parts). The k-th request of one export is not
  // the k-th of the next.
  let requests: string[] = [];
  beforeAll(async () => {
    const { a, prefix } = await exportWith();
    await expectTrueAnswer(a, prefix);
    // From the sentinel's PutObject on: the listing and the delete probe before it go out together.
    const from = faults.log.findIndex((r) => r.op === "PutObject" && r.key.endsWith("-INCOMPLETE"));
    requests = [...new Set(faults.log.slice(from).map((r) => r.id))];
  }, 60_000);

  for (const mode of ["hold", "hold-after"] as const) {
    test(`each request parked ${mode === "hold" ? "before the server sees it" : "after the server executed it"}, cancel, release`, async () => {
      expect(requests.at(-1)).toMatch(/^DeleteObjects /); // the sentinel's removal ends an export
      const seen: string[] = [];
      for (const request of requests) {
        const prefix = freshPrefix();
        faults.resetStats();
        faults.setRules({ request, nth: 1, fault: mode });
        const q = answer(client.query(COPY(bucket, prefix)));
        let answered = false;
        void q.then(() => {
          answered = true;
        });
        let a: Answer;
        try {
          await waitUntil(`${request} parked`, () => faults.faultCount(mode) > 0 || answered, 60_000);
          expect(faults.faultCount(mode), `${request} never came`).toBe(1);
          await sendCancel(proxy.port, keyOf(client));
          faults.release();
          a = await q;
        } finally {
          faults.clear();
          await q;
        }
        seen.push(`${request.trim()}: ${"err" in a ? a.err.code : `COPY ${a.rows}`}`);
        if ("err" in a) expect(a.err.code, request).toBe("57014");
        await expectTrueAnswer(a, prefix);
      }
      // Both answers occur: cancels before the commit point win, after it they change nothing.
      expect(seen.join("\n")).toMatch(/57014/);
      expect(seen.join("\n")).toMatch(/^DeleteObjects: COPY/m);
    }, 600_000);
  }
});

describe("a moto whose CompleteMultipartUpload takes 2 s (a real slow server)", () => {
  let slow: Awaited<ReturnType<typeof startMoto>>;
  let slowStack: FaultyProxy;
  let slowFaults: S3FaultProxy;
  let slowProxy: TestProxy;
  let c: pg.Client;
  let slowS3: S3Access;
  let slowCheck: S3Check;
  let b: string;

  beforeAll(async () => {
    slow = await startMoto({ completeDelayS: 2 });
    slowS3 = { ...s3, endpoint: slow.endpoint };
    slowCheck = new S3Check(slowS3);
    slowStack = await startFaultyProxy({ s3: slowS3, database: DB, config: { exports: exportsConfig } });
    ({ faults: slowFaults, proxy: slowProxy } = slowStack);
    c = await slowStack.connect();
    await c.query("SET synchronize_seqscans = off");
    b = await slowCheck.bucket("slow");
  }, 120_000);

  afterAll(async () => {
    await slowStack?.stop();
    await slow?.stop();
  });

  test("Ctrl-C after the server consumed the upload, before it stored the object: 57014 and the prefix as found", async () => {
    const prefix = "cancelled";
    slowFaults.resetStats();
    const q = answer(c.query(COPY(b, prefix)));
    await slowFaults.waitFor("CompleteMultipartUpload");
    // The server took the upload in (no longer listed) and is now storing the object.
    await waitUntil("the upload consumed", async () =>
      (await slowCheck.uploads(b, `${prefix}/`)).length === 0 ? true : null,
    );
    await sendCancel(slowProxy.port, keyOf(c));
    const a = await q;
    expect(a).toMatchObject({ err: { code: "57014" } });
    // Whatever the export did, the server's Complete has finished by now or will: wait for it.
    await waitUntil("the Complete answered by the server", () =>
      slowFaults.log.some((r) => r.op === "CompleteMultipartUpload" && r.answered !== undefined)
        ? true
        : null,
    );
    expect(await awsCliKeys(slowS3, b, `${prefix}/`)).toEqual([]);
    const uploads = (await awsCli(slowS3, "s3api", "list-multipart-uploads", "--bucket", b)) as {
      Uploads?: unknown[];
    };
    expect(uploads.Uploads ?? []).toEqual([]);
    // The same COPY runs again at once.
    const again = await answer(c.query(COPY(b, prefix)));
    await expectTrueAnswer(again, prefix, slowCheck, b);
  }, 120_000);
});
