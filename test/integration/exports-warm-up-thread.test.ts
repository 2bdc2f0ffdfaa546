// exports.warmUp "thread": once the proxy listens, the spare encoder thread is started and warmed
// by a small synthetic Parquet export, in the background (a client's query is relayed while that
// export is held), and the first real export gets that thread. A shutdown during the warm-up ends
// it and leaves no thread. With exports.encoderHost "process" the same happens in the encoder
// host; "compile" there starts nothing (the relay never uses parquet-wasm itself).
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, afterEach, beforeAll, expect, inject, test } from "vitest";
import { encoderHostState } from "../../src/encoders/worker/encoder-host.js";
import { type EncoderThread, encoderThreadTestHooks } from "../../src/encoders/worker/encoder-thread.js";
import { type WarmUp, warmUpTestHooks } from "../../src/encoders/worker/encoder-warm-up.js";
import { spareEncoderThreadId } from "../../src/encoders/worker/thread-pool.js";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { threadsAtNiceness } from "../support/thread-niceness.js";

const pgPort = inject("pgPort");
let root: string;
let proxy: TestProxy | undefined;
let client: pg.Client | undefined;
const started: EncoderThread[] = [];
const ended: Array<{ mode: WarmUp; outcome: string }> = [];

const encoderThreads = (): number => threadsAtNiceness(10);

/** While gate[0] is 1, encoder threads started from now on block before each batch of rows. */
function closeGate(): Int32Array {
  const gate = new Int32Array(new SharedArrayBuffer(4));
  gate[0] = 1;
  encoderThreadTestHooks.gate = gate;
  return gate;
}

function openGate(gate: Int32Array): void {
  Atomics.store(gate, 0, 0);
  Atomics.notify(gate, 0);
}

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "c2s-warm-thread-"));
  encoderThreadTestHooks.started = (t) => started.push(t);
  warmUpTestHooks.ended = (mode, outcome) => ended.push({ mode, outcome });
});

afterEach(async () => {
  delete encoderThreadTestHooks.gate;
  await client?.end().catch(() => {});
  client = undefined;
  await proxy?.shutdown(0);
  proxy = undefined;
  started.length = 0;
  ended.length = 0;
  await waitUntil("no encoder thread left", () => encoderThreads() === 0 && spareEncoderThreadId() === null);
});

afterAll(() => {
  delete encoderThreadTestHooks.started;
  delete warmUpTestHooks.ended;
  rmSync(root, { recursive: true, force: true });
});

const parquetExport = (dir: string) =>
  client!.query(
    `COPY (SELECT g, md5(g::text) AS h FROM generate_series(1, 3000) g) TO 'file://${join(root, dir)}' WITH (FORMAT = 'parquet')`,
  );

test("--warm-up thread: the spare thread is warmed in the background, and the first export gets it", async () => {
  const gate = closeGate();
  proxy = await startCopyProxy({
    upstreamPort: pgPort,
    s3: motoAccess(),
    args: ["--file-root", root, "--warm-up", "thread"],
  });
  await waitUntil("the warm-up's thread", () => started.length === 1);
  // The warm-up's export is held in its thread: a client logs in and is relayed all the same.
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  expect((await client.query("SELECT 41 + 1 AS answer")).rows).toEqual([{ answer: 42 }]);
  expect(ended).toEqual([]);
  expect(spareEncoderThreadId()).toBeNull();
  openGate(gate);
  await waitUntil("the warm-up's end", () => ended.length === 1);
  expect(ended).toEqual([{ mode: "thread", outcome: "done" }]);
  const warmed = started[0]!.threadId;
  expect(spareEncoderThreadId()).toBe(warmed);
  expect(encoderThreads()).toBe(1);
  expect((await parquetExport("first")).rowCount).toBe(3000);
  expect(started).toHaveLength(2);
  expect(started[1]!.threadId).toBe(warmed);
  expect(spareEncoderThreadId()).toBe(warmed);
});

test("a shutdown during the warm-up ends it, and no thread is left", async () => {
  const gate = closeGate();
  proxy = await startCopyProxy({
    upstreamPort: pgPort,
    s3: motoAccess(),
    args: ["--file-root", root, "--warm-up", "thread"],
  });
  await waitUntil("the warm-up's thread", () => started.length === 1 && encoderThreads() === 1);
  await proxy.shutdown(0);
  proxy = undefined;
  await waitUntil("the warm-up's end", () => ended.length === 1);
  expect(ended).toEqual([{ mode: "thread", outcome: "aborted" }]);
  await waitUntil("the warm-up's thread ended", () => encoderThreads() === 0);
  expect(spareEncoderThreadId()).toBeNull();
  openGate(gate);
});

test('--warm-up none starts nothing; with encoderHost "process", compile starts nothing and thread warms the host\'s spare thread', async () => {
  proxy = await startCopyProxy({
    upstreamPort: pgPort,
    s3: motoAccess(),
    args: ["--file-root", root, "--warm-up", "none"],
  });
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  await client.query("SELECT 1");
  expect(ended).toEqual([]);
  expect(started).toHaveLength(0);
  await client.end();
  client = undefined;
  await proxy.shutdown(0);

  proxy = await startCopyProxy({
    upstreamPort: pgPort,
    s3: motoAccess(),
    args: ["--file-root", root],
    config: { exports: { encoderHost: "process", warmUp: "compile" } },
  });
  await waitUntil("the warm-up's end", () => ended.length === 1);
  expect(ended).toEqual([{ mode: "compile", outcome: "skipped" }]);
  expect(encoderHostState()).toBeNull();
  await proxy.shutdown(0);
  ended.length = 0;

  proxy = await startCopyProxy({
    upstreamPort: pgPort,
    s3: motoAccess(),
    args: ["--file-root", root],
    config: { exports: { encoderHost: "process", warmUp: "thread" } },
  });
  // The host runs at nice 10 in an autogroup of its own: on a busy machine its start takes long.
  await waitUntil("the warm-up's end", () => ended.length === 1, 100_000);
  expect(ended).toEqual([{ mode: "thread", outcome: "done" }]);
  expect(await encoderHostState()).toMatchObject({ nice: 10 });
  const warmed = started[0]!.threadId;
  expect(spareEncoderThreadId()).toBe(warmed);
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  expect((await parquetExport("hosted")).rowCount).toBe(3000);
  expect(started.map((t) => t.threadId)).toEqual([warmed, warmed]);
}, 180_000);
