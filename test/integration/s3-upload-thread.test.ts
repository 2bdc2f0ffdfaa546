// The S3 upload thread against the real moto server the suite starts: UploadParts leave the relay's
// thread, a cancel while parts are in flight there leaves no multipart upload, and a thread that
// dies fails its uploads with XX000, leaves nothing behind, and the next upload gets a new thread.
// Parts are pinned in flight by the fault proxy's "hold" rule (test/support/s3-fault-proxy.ts).

import { createHash, randomBytes } from "node:crypto";
import { getPriority } from "node:os";
import {
  CreateBucketCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { loadConnections } from "../../src/copy/connections.js";
import { createStore } from "../../src/copy/create-store.js";
import type { ObjectStore, ObjectUpload } from "../../src/copy/storage/object-store.js";
import { UPLOAD_YOUNG_GENERATION_MB, uploadThreadTestHooks } from "../../src/copy/storage/upload-thread.js";
import { expectNothingLeft, failure } from "../support/export-checks.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";
import { threadsAtNiceness } from "../support/thread-niceness.js";

const endpoint = inject("s3Endpoint");
const MiB = 1024 * 1024;
const SECRET = "s3cr3t-Upload-thread-never-shown-7";

let faults: S3FaultProxy;
let direct: ReturnType<typeof connection>;
let proxied: ReturnType<typeof connection>;

function connection(at: string) {
  return loadConnections(
    { s3: { endpoint: at, region: "us-east-1", accessKeyId: "test", secretAccessKey: { env: "SECRET" } } },
    { SECRET },
  ).get("s3");
}

beforeAll(async () => {
  faults = await S3FaultProxy.start(endpoint);
  direct = connection(endpoint);
  proxied = connection(faults.endpoint);
});

afterAll(async () => {
  direct.close();
  proxied.close();
  await faults.close();
});

// The client the stores of `direct` use (same settings), so a middleware on it sees their requests.
const client = () => direct.s3Client({ maxAttempts: 2, requestTimeoutMs: 30_000 });

async function bucket(): Promise<string> {
  const b = `thread-${randomBytes(4).toString("hex")}`;
  await client().send(new CreateBucketCommand({ Bucket: b }));
  return b;
}

function store(conn: typeof direct, b: string, prefix: string, uploadNice?: number): ObjectStore {
  return createStore(
    conn,
    { scheme: "s3", bucket: b, prefix },
    { partSize: 5 * MiB, partsInFlight: 2, maxAttempts: 2, requestTimeoutMs: 30_000, uploadNice },
  );
}

/** What moto holds in the bucket: its objects and its unfinished multipart uploads. */
async function left(b: string): Promise<{ objects: string[]; uploads: string[] }> {
  const objs = await client().send(new ListObjectsV2Command({ Bucket: b }));
  const ups = await client().send(new ListMultipartUploadsCommand({ Bucket: b }));
  return {
    objects: (objs.Contents ?? []).map((o) => o.Key!),
    uploads: (ups.Uploads ?? []).map((u) => u.Key!),
  };
}

async function read(b: string, key: string): Promise<Buffer> {
  const out = await client().send(new GetObjectCommand({ Bucket: b, Key: key }));
  return Buffer.from(await out.Body!.transformToByteArray());
}

const sha = (b: Uint8Array) => createHash("sha256").update(b).digest("hex");

async function feed(up: ObjectUpload, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += MiB) {
    if (!up.write(data.subarray(off, off + MiB))) await up.drained();
  }
}

/** Writes two full parts and a byte (both parts go out), and waits until moto's proxy holds both. */
async function twoPartsHeld(up: ObjectUpload): Promise<void> {
  faults.resetStats();
  faults.setRules({ op: "UploadPart", fault: "hold" });
  up.write(randomBytes(10 * MiB + 1));
  await faults.waitFor("UploadPart", 2);
}

describe("the S3 upload thread", () => {
  test("UploadPart is sent from the upload thread: the relay's client sends none, and the object reads back byte-exact", async () => {
    const b = await bucket();
    const s = store(direct, b, "witness");
    const seen: string[] = [];
    // Every command the relay's own client sends (its middleware runs on the relay's thread).
    client().middlewareStack.add(
      (next, context) => async (args) => {
        seen.push(context.commandName ?? "?");
        return next(args);
      },
      { step: "initialize", name: "witnessRelayCommands" },
    );
    try {
      const data = randomBytes(12 * MiB + 7);
      const up = s.upload("w.csv", new AbortController().signal);
      await feed(up, data);
      expect(await up.end()).toEqual({ bytes: data.length });
      expect(sha(await read(b, "witness/w.csv"))).toBe(sha(data));
      expect(seen).toContain("CreateMultipartUploadCommand");
      expect(seen).toContain("CompleteMultipartUploadCommand");
      expect(seen).not.toContain("UploadPartCommand");
      expect(uploadThreadTestHooks.current()?.partsSent).toBeGreaterThanOrEqual(3);
      // The thread runs with a small young generation (V8's default lets it grow to 48 MB, committed
      // heap that sits in every S3 export's peak RSS): as Node reports it for the running thread.
      const limits = uploadThreadTestHooks.current()?.resourceLimits;
      expect(limits?.maxYoungGenerationSizeMb).toBeGreaterThan(0);
      expect(limits?.maxYoungGenerationSizeMb).toBeLessThanOrEqual(UPLOAD_YOUNG_GENERATION_MB);
    } finally {
      client().middlewareStack.remove("witnessRelayCommands");
    }
  });

  test("the thread lowers itself to the store's uploadNice; the relay's thread keeps its own", async () => {
    // A niceness no other thread of this process has (the encoder threads' default is 10), so the
    // count is the upload thread's alone. Counted once a part has settled: the worker lowers
    // itself before it listens for parts.
    const NICE = 17;
    expect(threadsAtNiceness(NICE)).toBe(0);
    const b = await bucket();
    const data = randomBytes(6 * MiB);
    const up = store(direct, b, "nice", NICE).upload("n.csv", new AbortController().signal);
    await feed(up, data);
    expect(await up.end()).toEqual({ bytes: data.length });
    const thread = uploadThreadTestHooks.current();
    expect(thread?.nice).toBe(NICE);
    expect(thread?.partsSent).toBeGreaterThanOrEqual(1);
    expect(threadsAtNiceness(NICE)).toBe(1);
    expect(getPriority()).toBe(0);
    // The lowered thread was the upload thread: it goes with it.
    await thread!.terminate();
    expect(threadsAtNiceness(NICE)).toBe(0);
  });

  test("a cancel while parts are in flight in the thread settles them before abort() resolves: no multipart upload, the prefix as found", async () => {
    const b = await bucket();
    const s = store(proxied, b, "cancel");
    const ac = new AbortController();
    const up = s.upload("c.csv", ac.signal);
    try {
      await twoPartsHeld(up);
      const thread = uploadThreadTestHooks.current();
      expect(thread?.inFlight).toBe(2);
      ac.abort();
      await up.abort();
      // Settled (cut short in the thread, answered back) before the upload was aborted.
      expect(thread?.inFlight).toBe(0);
      await expect(up.end()).rejects.toMatchObject({ code: "57014" });
    } finally {
      faults.clear();
    }
    expect(await left(b)).toEqual({ objects: [], uploads: [] });
  });

  test("the thread dying mid-upload fails it with XX000 and leaves nothing; the next upload gets a new thread", async () => {
    const b = await bucket();
    const s = store(proxied, b, "crash");
    const up = s.upload("k.csv", new AbortController().signal);
    let thread: ReturnType<typeof uploadThreadTestHooks.current>;
    try {
      await twoPartsHeld(up);
      thread = uploadThreadTestHooks.current();
      expect(thread?.inFlight).toBe(2);
      const ending = up.end().catch((e: unknown) => e);
      await thread!.terminate();
      const err = await ending;
      expect(err).toMatchObject({ code: "XX000", message: "the S3 upload thread stopped" });
      expect(String((err as { detail?: string }).detail)).toMatch(/exited/);
      expect(JSON.stringify(err)).not.toContain(SECRET);
      expect(thread?.dead).toBe(true);
    } finally {
      faults.clear();
    }
    expect(await left(b)).toEqual({ objects: [], uploads: [] });

    const data = randomBytes(11 * MiB);
    const next = s.upload("k.csv", new AbortController().signal);
    await feed(next, data);
    expect(await next.end()).toEqual({ bytes: data.length });
    expect(uploadThreadTestHooks.current()).not.toBe(thread);
    expect(sha(await read(b, "crash/k.csv"))).toBe(sha(data));
    await expect(
      client().send(new HeadObjectCommand({ Bucket: b, Key: "crash/k.csv" })),
    ).resolves.toMatchObject({ ContentLength: data.length });
  });
});

describe("an export whose upload thread dies", () => {
  let stack: ProxyStack;
  beforeAll(async () => {
    // The proxy runs in this process (test/support/copy-proxy.ts): its upload thread is the hooks'.
    stack = await startProxyStack({
      database: "upload_thread",
      bucket: "upthread",
      config: { exports: { partSize: 5 * MiB, partsInFlight: 2, s3MaxAttempts: 2 } },
    });
  }, 60_000);
  afterAll(async () => {
    await stack?.stop();
  });

  const copy = (prefix: string) =>
    `COPY (SELECT g, repeat('x', 200) AS pad FROM generate_series(1, 100000) g) TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`;

  test("fails with XX000, leaves the prefix as found, and the next export succeeds on a new thread", async () => {
    const c = await stack.connect();
    stack.faults.resetStats();
    stack.faults.setRules({ op: "UploadPart", fault: "hold" });
    let thread: ReturnType<typeof uploadThreadTestHooks.current>;
    const t0 = performance.now();
    const q = c.query(copy("dies"));
    try {
      await stack.faults.waitFor("UploadPart", 2);
      thread = uploadThreadTestHooks.current();
      expect(thread?.inFlight).toBeGreaterThan(0);
      await thread!.terminate();
      const { err } = await failure(q, () => t0);
      expect(err).toMatchObject({ code: "XX000", message: "the S3 upload thread stopped" });
    } finally {
      stack.faults.clear();
    }
    await expectNothingLeft(stack.check, stack.bucket, "dies");

    const r = await c.query(copy("next"));
    expect(r.rowCount).toBe(100000);
    expect(uploadThreadTestHooks.current()).not.toBe(thread);
    expect((await stack.check.keys(stack.bucket, "next/")).length).toBeGreaterThan(0);
  }, 120_000);
});
