// S3Store against the real moto server the suite starts; what landed is checked with the AWS CLI,
// an independent S3 client. C2S_TEST_S3_ENDPOINT (+ _ACCESS_KEY_ID, _SECRET_ACCESS_KEY) runs the
// same tests against another S3 server, e.g. Ceph RadosGW (TESTING.md).

import { execFile } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { mkdtemp, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect, promisify } from "node:util";
import { CreateBucketCommand, HeadObjectCommand, type S3Client } from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { loadConnections } from "../../src/copy/connections.js";
import { createStore } from "../../src/copy/create-store.js";
import type { ObjectStore, ObjectUpload, StoreOptions } from "../../src/copy/storage/object-store.js";
import { createS3Client } from "../../src/copy/storage/s3-client.js";
import { S3Store } from "../../src/copy/storage/s3-store.js";
import { PgError } from "../../src/errors.js";
import { startMoto } from "../support/moto.js";

const run = promisify(execFile);
const external = process.env.C2S_TEST_S3_ENDPOINT;
const endpoint = external ?? inject("s3Endpoint");
const KEY_ID = external ? (process.env.C2S_TEST_S3_ACCESS_KEY_ID ?? "") : "test";
// moto takes any secret: a distinctive one shows whether it leaks.
const SECRET = external ? (process.env.C2S_TEST_S3_SECRET_ACCESS_KEY ?? "") : "s3cr3t-Value-never-shown-42";
const MiB = 1024 * 1024;
const small: StoreOptions = { partSize: 5 * MiB, partsInFlight: 2, maxAttempts: 2 };

const registry = loadConnections(
  {
    moto: { endpoint, region: "us-east-1", accessKeyId: KEY_ID, secretAccessKey: { env: "MOTO_SECRET" } },
    role: {
      endpoint,
      accessKeyId: KEY_ID,
      secretAccessKey: { env: "MOTO_SECRET" },
      assumeRoleArn: "arn:aws:iam::123456789012:role/exporter",
      assumeRoleSessionName: "store-test",
    },
  },
  { MOTO_SECRET: SECRET },
);
const conn = registry.get("moto");
const client: S3Client = conn.s3Client({ maxAttempts: 2, requestTimeoutMs: 30_000 });

function store(bucket: string, prefix = "", opts: StoreOptions = small): ObjectStore {
  return createStore(conn, { scheme: "s3", bucket, prefix }, opts);
}

async function aws(...args: string[]): Promise<string> {
  const { stdout } = await run("aws", ["--endpoint-url", endpoint, ...args], {
    env: {
      ...process.env,
      AWS_ACCESS_KEY_ID: KEY_ID,
      AWS_SECRET_ACCESS_KEY: external ? SECRET : "test",
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_CONFIG_FILE: "/dev/null",
      AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
    },
    maxBuffer: 64 * MiB,
  });
  return stdout;
}

/** Uploads still open for a bucket according to the AWS CLI. */
async function cliUploads(bucket: string): Promise<unknown[]> {
  const out = await aws("s3api", "list-multipart-uploads", "--bucket", bucket, "--output", "json");
  return out.trim() === "" ? [] : ((JSON.parse(out) as { Uploads?: unknown[] }).Uploads ?? []);
}

async function cliGet(bucket: string, key: string): Promise<Buffer> {
  const file = join(work, `get-${randomBytes(4).toString("hex")}`);
  await aws("s3", "cp", "--only-show-errors", `s3://${bucket}/${key}`, file);
  return readFile(file);
}

/**
 * Every object under `prefix` (ending in "/") as the AWS CLI downloads it, by key: one CLI run
 * (each one costs seconds of CPU on a busy machine) instead of one per object.
 */
async function cliGetAll(bucket: string, prefix: string): Promise<Map<string, Buffer>> {
  const dir = join(work, `get-${randomBytes(4).toString("hex")}`);
  await aws("s3", "cp", "--recursive", "--only-show-errors", `s3://${bucket}/${prefix}`, dir);
  const files = await readdir(dir, { recursive: true, withFileTypes: true });
  const out = new Map<string, Buffer>();
  for (const f of files.filter((e) => e.isFile())) {
    const path = join(f.parentPath, f.name);
    out.set(prefix + path.slice(dir.length + 1), await readFile(path));
  }
  return out;
}

/** Size and ETag of every object under `prefix` as the AWS CLI lists them (one CLI run), by key. */
async function cliList(bucket: string, prefix: string): Promise<Map<string, { Size: number; ETag: string }>> {
  const out = await aws(
    "s3api",
    "list-objects-v2",
    "--bucket",
    bucket,
    "--prefix",
    prefix,
    "--output",
    "json",
  );
  const r =
    out.trim() === ""
      ? {}
      : (JSON.parse(out) as { Contents?: Array<{ Key: string; Size: number; ETag: string }> });
  return new Map((r.Contents ?? []).map((o) => [o.Key, o]));
}

async function cliHead(bucket: string, key: string): Promise<{ ContentLength: number; ETag: string }> {
  return JSON.parse(await aws("s3api", "head-object", "--bucket", bucket, "--key", key, "--output", "json"));
}

async function exists(bucket: string, key: string): Promise<boolean> {
  try {
    await client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
    return true;
  } catch (err) {
    if ((err as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) return false;
    throw err;
  }
}

/** Polls until `f` holds (abort must finish without anyone sleeping for a guessed delay). */
async function eventually(f: () => Promise<boolean>, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await f())) {
    if (Date.now() > deadline) throw new Error("condition not reached");
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Writes `data` in `chunk`-sized pieces, honouring backpressure; returns the peak of `buffered`. */
async function feed(up: ObjectUpload, data: Buffer, chunk = 256 * 1024): Promise<number> {
  let peak = 0;
  for (let off = 0; off < data.length; off += chunk) {
    const ok = up.write(data.subarray(off, off + chunk));
    peak = Math.max(peak, up.buffered);
    if (!ok) await up.drained();
  }
  return peak;
}

const sha = (b: Buffer) => createHash("sha256").update(b).digest("hex");
const signal = () => new AbortController().signal;
let work: string;
let n = 0;
async function bucket(): Promise<string> {
  const name = `store-${process.pid}-${n++}`;
  await client.send(new CreateBucketCommand({ Bucket: name }));
  return name;
}

beforeAll(async () => {
  work = await mkdtemp(join(tmpdir(), "s3-store-test-"));
});
afterAll(async () => {
  registry.close();
  await rm(work, { recursive: true, force: true });
});

describe("listing", () => {
  test("a prefix is a directory: x does not match x2/, the object x, or the x/ folder marker", async () => {
    const b = await bucket();
    const root = store(b);
    for (const k of ["x/a", "x/b/c", "x2/d", "x", "xa"]) await root.put(k, k, signal());
    await client.send(
      new (await import("@aws-sdk/client-s3")).PutObjectCommand({ Bucket: b, Key: "x/", Body: "" }),
    );

    expect(await root.list("x", signal())).toEqual({ keys: ["x/a", "x/b/c"], count: 2 });
    expect(await root.list("x/", signal())).toEqual({ keys: ["x/a", "x/b/c"], count: 2 });
    expect(await root.list("x2", signal())).toEqual({ keys: ["x2/d"], count: 1 });
    expect(await root.list("nothing", signal())).toEqual({ keys: [], count: 0 });
    expect((await root.list("", signal())).count).toBe(6); // the bucket root lists everything

    const x = store(b, "x");
    expect(x.location).toBe(`s3://${b}/x`);
    expect(await x.list("", signal())).toEqual({ keys: ["a", "b/c"], count: 2 });
    expect(await x.list("b", signal())).toEqual({ keys: ["b/c"], count: 1 });
    expect(await store(b, "x2").list("", signal())).toEqual({ keys: ["d"], count: 1 });
  });

  test("counts every key beyond 1000 while returning only `limit`, and deletes them in batches", async () => {
    const b = await bucket();
    const s = store(b, "many");
    const keys = Array.from({ length: 1205 }, (_, i) => `k${String(i).padStart(5, "0")}`);
    let next = 0;
    await Promise.all(
      Array.from({ length: 16 }, async () => {
        while (next < keys.length) await s.put(keys[next++]!, "", signal());
      }),
    );
    const listed = await s.list("", signal(), 10);
    expect(listed.count).toBe(1205);
    expect(listed.keys).toEqual(keys.slice(0, 10));
    expect((await s.list("", signal())).keys).toHaveLength(1000); // the default limit

    await s.delete([...keys, "never-existed"]);
    expect((await s.list("", signal())).count).toBe(0);
    // 1205 PutObjects and a listing to moto: 11–25 s at load 7–9, 39 s at load 19.
  }, 120_000);

  test("keys cannot leave the target prefix", async () => {
    const s = store("store-any", "p");
    for (const bad of ["../q", "a/../../b", "/abs", "", "a//b", "./a"]) {
      await expect(s.put(bad, "x", signal())).rejects.toMatchObject({ code: "22023" });
    }
    expect(() => s.upload("../x", signal())).toThrow(PgError);
  });
});

describe("single objects", () => {
  test("probeDelete on a missing key succeeds; a missing bucket is named", async () => {
    const b = await bucket();
    await store(b, "p").probeDelete("mz-probe-does-not-exist", signal());
    const err = await store(`${b}-missing`, "p")
      .probeDelete("k", signal())
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(PgError);
    expect(err).toMatchObject({ code: "58030", message: "NoSuchBucket error when using DeleteObject" });
  });

  test("put and delete", async () => {
    const b = await bucket();
    const s = store(b, "pd");
    await s.put("a.txt", "hello", signal());
    await s.put("b.bin", new Uint8Array([0, 1, 2, 255]), signal());
    await s.put("c", "", signal());
    const got = await cliGetAll(b, "pd/");
    expect(got.get("pd/a.txt")?.toString()).toBe("hello");
    expect([...(got.get("pd/b.bin") ?? [])]).toEqual([0, 1, 2, 255]);
    await s.delete(["a.txt", "c", "missing"]);
    expect(await s.list("", signal())).toEqual({ keys: ["b.bin"], count: 1 });
  });

  test("S3 errors carry 58030, the operation and the code, and never the secret", async () => {
    const s = store(`store-missing-${process.pid}`, "p");
    const errs = await Promise.all([
      s.list("", signal()).catch((e: unknown) => e),
      s.put("k", "v", signal()).catch((e: unknown) => e),
    ]);
    expect(errs[0]).toMatchObject({ code: "58030", message: "NoSuchBucket error when using ListObjectsV2" });
    expect(errs[1]).toMatchObject({ code: "58030", message: "NoSuchBucket error when using PutObject" });
    for (const e of errs) {
      const pg = e as PgError;
      expect(pg.detail).toContain(`s3://store-missing-${process.pid}/p`);
      if (!external) expect(JSON.stringify({ ...pg.fields, stack: pg.stack })).not.toContain(SECRET);
      // The SDK error keeps the signed request; a logger walking `cause` must not find it.
      expect(inspect(pg, { depth: 50 })).not.toMatch(/authorization|Signature=|Credential=/i);
    }
  });
});

describe("streaming uploads", () => {
  test("20 MB multipart upload reads back byte-exact with the AWS CLI", async () => {
    const b = await bucket();
    const s = store(b, "big");
    const data = randomBytes(20_000_000);
    const up = s.upload("mz-1-batch-0000-0000.csv", signal());
    await feed(up, data, 100_000);
    expect(await up.end()).toEqual({ bytes: data.length });
    expect(up.buffered).toBe(0);

    const [back, head, uploads] = await Promise.all([
      cliGet(b, "big/mz-1-batch-0000-0000.csv"),
      cliHead(b, "big/mz-1-batch-0000-0000.csv"),
      cliUploads(b),
    ]);
    expect(back.length).toBe(data.length);
    expect(sha(back)).toBe(sha(data));
    expect(head.ETag).toMatch(/-4"$/); // 5 MiB + 5 MiB + 5 MiB + the rest
    expect(await s.listUploads("")).toEqual([]);
    expect(uploads).toEqual([]);
  });

  test("an object smaller than one part is a single PutObject; zero bytes work", async () => {
    const b = await bucket();
    const s = store(b, "small");
    const data = randomBytes(MiB + 17);
    const up = s.upload("one.csv", signal());
    await feed(up, data, 4096);
    expect(await up.end()).toEqual({ bytes: data.length });

    const exact = randomBytes(5 * MiB); // exactly one part: still no multipart upload
    const up2 = s.upload("exact.csv", signal());
    up2.write(exact);
    await up2.end();

    const empty = s.upload("empty.csv", signal());
    expect(await empty.end()).toEqual({ bytes: 0 });

    const [listed, got] = await Promise.all([cliList(b, "small/"), cliGetAll(b, "small/")]);
    expect(sha(got.get("small/one.csv")!)).toBe(sha(data));
    expect(listed.get("small/one.csv")?.ETag).not.toContain("-"); // a multipart ETag ends in -<parts>
    expect(sha(got.get("small/exact.csv")!)).toBe(sha(exact));
    expect(listed.get("small/exact.csv")?.ETag).not.toContain("-");
    expect(listed.get("small/empty.csv")?.Size).toBe(0);
    expect(got.get("small/empty.csv")?.length).toBe(0);
  });

  test("a chunk written with release() is copied into its part: released at once, scribbling over it changes nothing", async () => {
    const b = await bucket();
    const s = store(b, "reuse");
    const data = randomBytes(12 * MiB + 5);
    const up = s.upload("r.csv", signal());
    for (let off = 0; off < data.length; off += MiB) {
      const chunk = Buffer.from(data.subarray(off, off + MiB));
      let released = false;
      const more = up.write(chunk, () => {
        chunk.fill(0x58);
        released = true;
      });
      expect(released).toBe(true);
      if (!more) await up.drained();
    }
    expect(await up.end()).toEqual({ bytes: data.length });
    expect(sha(await cliGet(b, "reuse/r.csv"))).toBe(sha(data));
  });

  test("part buffers are reused from part to part and across files, and every object reads back byte-exact", async () => {
    const b = await bucket();
    // A client of its own, so that recording the part bodies touches no other test.
    const own = createS3Client({
      endpoint,
      region: "us-east-1",
      credentials: { accessKeyId: KEY_ID, secretAccessKey: SECRET },
      maxAttempts: 2,
      requestTimeoutMs: 30_000,
    });
    const ops: string[] = [];
    own.middlewareStack.add(
      (next, context) => async (args) => {
        ops.push(context.commandName ?? "?");
        return next(args);
      },
      { step: "initialize", name: "recordCommands" },
    );
    const partsInFlight = 1;
    const s = new S3Store({ client: own, bucket: b, prefix: "pool", partSize: 5 * MiB, partsInFlight });
    const files = [randomBytes(16 * MiB + 3), randomBytes(6 * MiB), randomBytes(MiB + 1)];
    for (const [i, data] of files.entries()) {
      const up = s.upload(`f${i}.csv`, signal());
      await feed(up, data, MiB);
      expect(await up.end()).toEqual({ bytes: data.length });
    }
    // 4 + 2 UploadParts (from the upload thread, with the buffers lent there and back) and a PutObject.
    expect(ops.filter((o) => o === "PutObjectCommand")).toHaveLength(1);
    expect(ops.filter((o) => o === "CompleteMultipartUploadCommand")).toHaveLength(2);
    // One part filling, `partsInFlight` sending, one full and waiting for a slot: never more
    // buffers than that, however many parts and files.
    expect(s.parts.allocated).toBeLessThanOrEqual(partsInFlight + 2);
    const dir = join(work, `pool-${randomBytes(4).toString("hex")}`);
    await aws("s3", "cp", "--recursive", "--only-show-errors", `s3://${b}/pool`, dir); // one CLI start
    for (const [i, data] of files.entries())
      expect(sha(await readFile(join(dir, `f${i}.csv`)))).toBe(sha(data));
    expect(await s.listUploads("")).toEqual([]);
    own.destroy();
  }, 120_000);

  test("abort() mid-upload leaves no multipart upload and no object", async () => {
    const b = await bucket();
    const s = store(b, "ab");
    const up = s.upload("mz-2-batch-0000-0000.csv", signal());
    up.write(randomBytes(12 * MiB)); // two parts go out at once
    expect(up.buffered).toBeGreaterThan(10 * MiB);
    await eventually(async () => (await s.listUploads("")).length === 1); // it really started
    await up.abort();
    // abort() resolves only once it is all gone: no polling needed, and none done.
    expect(await s.listUploads("")).toEqual([]);
    expect(await cliUploads(b)).toEqual([]);
    expect(await exists(b, "ab/mz-2-batch-0000-0000.csv")).toBe(false);
    expect(() => up.write(Buffer.from("more"))).toThrow(/aborted/);
    await expect(up.end()).rejects.toThrow();
    await up.abort(); // idempotent
  });

  test("the export's signal aborting mid-upload cleans up the same way, and end() reports the cancel", async () => {
    const b = await bucket();
    const s = store(b, "sig");
    const ac = new AbortController();
    const up = s.upload("mz-3-batch-0000-0000.csv", ac.signal);
    while (up.write(randomBytes(MiB))) {
      /* until both parts are in flight and a third waits */
    }
    const draining = up.drained().catch((e: unknown) => e);
    ac.abort();
    expect(await draining).toMatchObject({ code: "57014" });
    await expect(up.end()).rejects.toMatchObject({ code: "57014" });
    await up.abort();
    expect(await s.listUploads("")).toEqual([]);
    expect(await cliUploads(b)).toEqual([]);
    expect(await exists(b, "sig/mz-3-batch-0000-0000.csv")).toBe(false);
  });

  test("a signal aborting while end() runs, then nothing is left either", async () => {
    const b = await bucket();
    const s = store(b, "sig2");
    const ac = new AbortController();
    const up = s.upload("f.csv", ac.signal);
    up.write(randomBytes(11 * MiB));
    const ending = up.end();
    setImmediate(() => ac.abort());
    await expect(ending).rejects.toMatchObject({ code: "57014" });
    expect(await s.listUploads("")).toEqual([]);
    expect(await exists(b, "sig2/f.csv")).toBe(false);
  });

  test("backpressure: write() returns false when the queue is full, memory stays within part size × (queue + 1)", async () => {
    const b = await bucket();
    const partSize = 5 * MiB;
    const partsInFlight = 1;
    const s = store(b, "bp", { partSize, partsInFlight, maxAttempts: 2 });
    const up = s.upload("f.csv", signal());
    const chunks: Buffer[] = [];
    let refusals = 0;
    let peak = 0;
    for (let i = 0; i < 24; i++) {
      const chunk = Buffer.alloc(MiB, i); // part boundaries fall exactly between writes
      chunks.push(chunk);
      const ok = up.write(chunk);
      peak = Math.max(peak, up.buffered);
      if (!ok) {
        refusals++;
        expect(up.buffered).toBeGreaterThan(partSize * partsInFlight);
        await up.drained();
        expect(up.buffered).toBeLessThanOrEqual(partSize * (partsInFlight + 1));
      }
    }
    expect(refusals).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(partSize * (partsInFlight + 1) + MiB);
    expect(await up.end()).toEqual({ bytes: 24 * MiB });
    const [head, back] = await Promise.all([cliHead(b, "bp/f.csv"), cliGet(b, "bp/f.csv")]);
    expect(head.ETag).toMatch(/-5"$/);
    expect(sha(back)).toBe(sha(Buffer.concat(chunks)));
  });

  test("a failing upload rejects with the S3 error and leaves nothing behind", async () => {
    const missing = `store-gone-${process.pid}`;
    const s = store(missing, "x");
    const up = s.upload("f.csv", signal());
    up.write(randomBytes(6 * MiB)); // the first part starts CreateMultipartUpload
    const err = await up.end().catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "58030",
      message: "NoSuchBucket error when using CreateMultipartUpload",
    });
    expect(() => up.write(Buffer.from("x"))).toThrow(/NoSuchBucket/);
    await up.abort(); // nothing was left, so nothing to report

    const one = s.upload("g.csv", signal());
    one.write(Buffer.from("small"));
    await expect(one.end()).rejects.toMatchObject({ message: "NoSuchBucket error when using PutObject" });
  }, 30_000);

  // A server of its own, stopped mid-upload, makes the cleanup itself fail.
  test.skipIf(external !== undefined)(
    "when cleanup fails too, the error names what was left behind",
    async () => {
      await using moto = await startMoto();
      const reg = loadConnections(
        { m: { endpoint: moto.endpoint, accessKeyId: "test", secretAccessKey: { env: "S" } } },
        { S: "test" },
      );
      const c = reg.get("m");
      await c
        .s3Client({ maxAttempts: 1, requestTimeoutMs: 5000 })
        .send(new CreateBucketCommand({ Bucket: "store-dying" }));
      const s = createStore(
        c,
        { scheme: "s3", bucket: "store-dying", prefix: "p" },
        { ...small, maxAttempts: 1, requestTimeoutMs: 5000 },
      );
      const up = s.upload("a.csv", signal());
      up.write(randomBytes(6 * MiB));
      await eventually(async () => (await s.listUploads("")).length === 1);
      await up.drained();
      await moto.stop();
      const err = (await up.end().catch((e: unknown) => e)) as PgError;
      expect(err).toBeInstanceOf(PgError);
      expect(err.code).toBe("58030");
      expect(err.detail).toMatch(
        /could not clean up the upload of s3:\/\/store-dying\/p\/a\.csv \(left behind: multipart upload \S+/,
      );
      await expect(up.abort()).rejects.toThrow(/could not clean up/);
      reg.close();
    },
  );

  test("listUploads/abortUpload find and remove uploads a crashed proxy left", async () => {
    const b = await bucket();
    const s = store(b, "crash");
    await Promise.all(
      ["crash/mz-9-batch-0000-0000.csv", "crash2/other"].map((key) =>
        aws("s3api", "create-multipart-upload", "--bucket", b, "--key", key),
      ),
    );
    const found = await s.listUploads("");
    expect(found.map((u) => u.key)).toEqual(["mz-9-batch-0000-0000.csv"]);
    expect(found[0]!.initiated).toBeInstanceOf(Date);
    await s.abortUpload(found[0]!.key, found[0]!.uploadId);
    await s.abortUpload(found[0]!.key, found[0]!.uploadId); // already gone: fine
    expect(await s.listUploads("")).toEqual([]);
    expect(await cliUploads(b)).toHaveLength(1); // crash2/ is not ours
  });
});

describe("connections", () => {
  // Ceph and MinIO need roles set up first; moto grants any.
  test.skipIf(external !== undefined)(
    "assume role goes through STS at the connection's endpoint",
    async () => {
      const role = registry.get("role");
      const c = role.s3Client({ maxAttempts: 2, requestTimeoutMs: 30_000 });
      const creds = await c.config.credentials();
      expect(creds.accessKeyId).not.toBe("test");
      expect(creds.sessionToken).toBeTruthy();
      const b = await bucket();
      const s = createStore(role, { scheme: "s3", bucket: b, prefix: "r" }, small);
      await s.put("k", "v", signal());
      expect((await cliGet(b, "r/k")).toString()).toBe("v");
    },
  );
});
