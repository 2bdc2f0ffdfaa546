import { CreateMultipartUploadCommand, PutObjectCommand, UploadPartCommand } from "@aws-sdk/client-s3";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { awsCli, motoAccess, type S3Access, S3Check } from "../support/copy-proxy.js";
import { C2S_WAIT_FUNCTION, expectBackendGone, waitUntil } from "../support/export-checks.js";
import { runCleanupCli, spawnCopyProxy } from "../support/proxy-process.js";
import { RawPg } from "../support/raw-pg.js";

const DB = "cleanup_command";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let bucket: string;
let oracle: RawPg;

const aws = (...args: string[]): Promise<unknown> => awsCli(s3, ...args);

async function awsObjects(prefix: string): Promise<string[]> {
  const r = (await aws("s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix)) as {
    Contents?: Array<{ Key: string }>;
  };
  return (r.Contents ?? []).map((o) => o.Key).sort();
}

async function awsUploads(prefix: string): Promise<string[]> {
  const r = (await aws("s3api", "list-multipart-uploads", "--bucket", bucket, "--prefix", prefix)) as {
    Uploads?: Array<{ Key: string }>;
  };
  return (r.Uploads ?? []).map((u) => u.Key).sort();
}

/** Objects and open uploads under `prefix`, as the AWS CLI lists them (two CLI runs side by side). */
async function awsState(prefix: string): Promise<{ objects: string[]; uploads: string[] }> {
  const [objects, uploads] = await Promise.all([awsObjects(prefix), awsUploads(prefix)]);
  return { objects, uploads };
}

async function put(key: string, body = "x"): Promise<void> {
  await check.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: body }));
}

async function openUpload(key: string): Promise<string> {
  const { UploadId } = await check.client.send(
    new CreateMultipartUploadCommand({ Bucket: bucket, Key: key }),
  );
  await check.client.send(
    new UploadPartCommand({
      Bucket: bucket,
      Key: key,
      UploadId,
      PartNumber: 1,
      Body: Buffer.alloc(5 * 1024 * 1024, 1),
    }),
  );
  return UploadId!;
}

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  await oracle.query(C2S_WAIT_FUNCTION);
  bucket = await check.bucket("cleanup-cmd");
}, 60_000);

afterAll(async () => {
  await oracle?.close();
});

describe("cleanup on a prefix laid out by hand", () => {
  const A = "11111111-1111-4111-8111-111111111111";
  const B = "22222222-2222-4222-8222-222222222222";
  const C = "33333333-3333-4333-8333-333333333333";
  const D = "44444444-4444-4444-8444-444444444444";
  const E = "55555555-5555-4555-8555-555555555555";
  // What beforeAll lays out under "p" (and "p2", which a listing of "p" also shows), sorted:
  // the tests compare with it rather than with a listing of their own before the command.
  const objectsLaidOut = [
    `p/mz-${A}-INCOMPLETE`,
    `p/mz-${A}-batch-0000-0000.csv`,
    `p/mz-${B}-batch-0000-0000.csv`,
    `p/_meta/mz-${B}-manifest.json`,
    `p/sub/mz-${C}-INCOMPLETE`,
    `p/sub/mz-${C}-batch-0000-0000.parquet`,
    `p/sub/_meta/mz-${C}-manifest.json`,
    "p/other/notes.txt",
    `p2/mz-${E}-INCOMPLETE`,
    `p2/mz-${E}-batch-0000-0000.csv`,
  ].sort();
  const uploadsLaidOut = [
    `p/mz-${A}-batch-0000-0001.csv`,
    `p/mz-${D}-batch-0001-10003.parquet`,
    "p/other/big.bin",
  ].sort();

  beforeAll(async () => {
    // Unfinished export A: a completed file, an open upload, the sentinel.
    await put(`p/mz-${A}-INCOMPLETE`, "");
    await put(`p/mz-${A}-batch-0000-0000.csv`);
    await openUpload(`p/mz-${A}-batch-0000-0001.csv`);
    // Finished export B: no sentinel, must stay.
    await put(`p/mz-${B}-batch-0000-0000.csv`);
    await put(`p/_meta/mz-${B}-manifest.json`, "{}");
    // Unfinished export C one level down, with its manifest already written (in _meta/, beside
    // its data files).
    await put(`p/sub/mz-${C}-INCOMPLETE`, "");
    await put(`p/sub/mz-${C}-batch-0000-0000.parquet`);
    await put(`p/sub/_meta/mz-${C}-manifest.json`, "{}");
    // An upload named like an export's file whose export has no sentinel: orphaned (batch 1 of an
    // export with encoderThreads > 1, past file 9999).
    await openUpload(`p/mz-${D}-batch-0001-10003.parquet`);
    // Someone else's upload and object under the prefix, and another export next to the prefix.
    await openUpload("p/other/big.bin");
    await put("p/other/notes.txt");
    await put(`p2/mz-${E}-INCOMPLETE`, "");
    await put(`p2/mz-${E}-batch-0000-0000.csv`);
  });

  test("by default a fresh sentinel (an export that may still be running) is left alone, files and uploads too", async () => {
    const r = await runCleanupCli(s3, [`s3://${bucket}/p`, "--yes"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`may still be running): export ${A} in s3://${bucket}/p`);
    expect(r.stdout).toContain(`may still be running): export ${C} in s3://${bucket}/p/sub`);
    // Only the upload whose export has no sentinel at all is an orphan.
    expect(r.stdout).toContain(`aborted multipart upload s3://${bucket}/p/mz-${D}-batch-0001-10003.parquet`);
    expect(await awsState("p")).toEqual({
      objects: objectsLaidOut,
      uploads: uploadsLaidOut.filter((k) => !k.includes(D)),
    });
    // Put the orphan back for the tests below, which expect the layout as laid out.
    await openUpload(`p/mz-${D}-batch-0001-10003.parquet`);
  });

  test("the dry run lists what it would do and changes nothing", async () => {
    const r = await runCleanupCli(s3, [`s3://${bucket}/p`, "--older-than", "0"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `s3://${bucket}/p: 2 unfinished exports, 2 multipart uploads and 5 objects to remove`,
    );
    expect(r.stdout).toContain(`would abort multipart upload s3://${bucket}/p/mz-${A}-batch-0000-0001.csv`);
    expect(r.stdout).toContain(
      `would abort multipart upload s3://${bucket}/p/mz-${D}-batch-0001-10003.parquet`,
    );
    expect(r.stdout).toContain(`would delete s3://${bucket}/p/sub/_meta/mz-${C}-manifest.json`);
    expect(r.stdout).toContain(
      `left alone (not an export's): multipart upload s3://${bucket}/p/other/big.bin`,
    );
    expect(r.stdout).toContain("dry run: nothing was changed");
    expect(r.stdout).not.toContain(B);
    expect(r.stdout).not.toContain(E);
    expect(await awsState("p")).toEqual({ objects: objectsLaidOut, uploads: uploadsLaidOut });
  });

  test("--yes removes what unfinished exports left, and only that", async () => {
    const r = await runCleanupCli(s3, [`s3://${bucket}/p`, "--yes", "--older-than", "0"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain("done: 2 multipart uploads aborted, 5 objects deleted");
    // The sentinel goes last.
    const lines = r.stdout.split("\n");
    const sentinelAt = lines.findIndex((l) => l.includes(`deleted s3://${bucket}/p/mz-${A}-INCOMPLETE`));
    const fileAt = lines.findIndex((l) => l.includes(`deleted s3://${bucket}/p/mz-${A}-batch-0000-0000.csv`));
    const uploadAt = lines.findIndex((l) =>
      l.includes(`aborted multipart upload s3://${bucket}/p/mz-${A}-batch-0000-0001.csv`),
    );
    expect(uploadAt).toBeGreaterThan(-1);
    expect(fileAt).toBeGreaterThan(uploadAt);
    expect(sentinelAt).toBeGreaterThan(fileAt);
    expect(await awsState("p")).toEqual({
      objects: [
        `p/mz-${B}-batch-0000-0000.csv`,
        `p/_meta/mz-${B}-manifest.json`,
        "p/other/notes.txt",
        `p2/mz-${E}-INCOMPLETE`,
        `p2/mz-${E}-batch-0000-0000.csv`,
      ].sort(),
      uploads: ["p/other/big.bin"],
    });
  });

  test("a second run has nothing to do", async () => {
    const r = await runCleanupCli(s3, [`s3://${bucket}/p`, "--yes", "--older-than", "0"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toContain("nothing to do");
  });

  test("usage errors exit 2", async () => {
    // Three processes side by side: each one's start-up is most of its time.
    const [r, bad, empty] = await Promise.all([
      runCleanupCli(s3, []),
      runCleanupCli(s3, ["https://x/y"]),
      runCleanupCli(s3, [`s3://${bucket}/a//b`]),
    ]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("usage: cleanup s3://bucket/prefix");
    expect(bad.code).toBe(1);
    // The statement's checks, in the words of the command: a prefix, not a "COPY TO target".
    expect(bad.stderr).toContain("only 's3://...' and 'gs://...' urls are supported as the cleanup prefix");
    expect(empty.code).toBe(1);
    expect(empty.stderr).toContain("cleanup prefix path must not contain empty segments");
    expect(`${bad.stderr}${empty.stderr}`).not.toContain("COPY TO");
  });

  test("an unknown --connection is named as such, with the configured connections", async () => {
    const r = await runCleanupCli(s3, [`s3://${bucket}/p`, "--connection", "nope"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('unknown AWS connection "nope" (--connection)');
    expect(r.stderr).toContain("hint: Configured connections: default.");
    expect(r.stderr).not.toContain("catalog item");
  });

  test("one of each is singular", async () => {
    const key = "single/mz-abc-INCOMPLETE";
    await check.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "" }));
    const r = await runCleanupCli(s3, [`s3://${bucket}/single`, "--older-than", "0"]);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(
      `s3://${bucket}/single: 1 unfinished export, 0 multipart uploads and 1 object to remove`,
    );
  });
});

describe("after kill -9 of a proxy mid-export", () => {
  test("the export's sentinel, files and open uploads are left; cleanup --yes removes them all", async () => {
    const proxy = await spawnCopyProxy({
      upstreamPort: pgPort,
      s3,
      config: { exports: { partSize: 5 * 1024 * 1024, partsInFlight: 1 } },
    });
    const c = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    c.on("notice", () => {});
    c.on("error", () => {});
    const prefix = "killed";
    try {
      await c.connect();
      const pid = (await c.query("SELECT pg_backend_pid() AS p")).rows[0].p;
      await c.query("SET c2s.wait = '0.001'");
      void c
        .query(
          `COPY (SELECT CASE WHEN g % 10 = 0 THEN c2s_wait(g) ELSE g END AS g, repeat(md5(g::text), 60) AS pad FROM generate_series(1, 40000) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
        )
        .catch(() => {});
      // One file complete and the next one's multipart upload open.
      await waitUntil(
        "a completed file and an open upload",
        async () =>
          (await check.keys(bucket, `${prefix}/`)).some((k) => k.endsWith("-0000.csv")) &&
          (await check.uploads(bucket, `${prefix}/`)).length > 0,
        60_000,
      );
      proxy.proc.kill("SIGKILL");
      expect((await proxy.exited).signal).toBe("SIGKILL");
      await expectBackendGone(oracle, pid);
    } finally {
      await c.end().catch(() => {});
      await proxy.stop();
    }
    const left = await awsState(`${prefix}/`);
    expect(left.objects.some((k) => k.endsWith("-INCOMPLETE"))).toBe(true);
    expect(left.objects.some((k) => k.endsWith("-batch-0000-0000.csv"))).toBe(true);
    expect(left.uploads.length).toBeGreaterThan(0);

    const r = await runCleanupCli(s3, [`s3://${bucket}/${prefix}`, "--yes", "--older-than", "0"]);
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toMatch(/done: [1-9]\d* multipart uploads? aborted, [1-9]\d* objects? deleted/);
    expect(await awsState(`${prefix}/`)).toEqual({ objects: [], uploads: [] });
    // Two processes started (the proxy, the CLI), 21 MB exported, four AWS CLI runs: 27 s at load 11,
    // 48 s at load 19.
  }, 120_000);
});
