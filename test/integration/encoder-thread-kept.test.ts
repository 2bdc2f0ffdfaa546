// A proxy keeps the encoder thread of a finished export for its next one (warm: its encoder code
// already compiled; docs/isolation.md), one after exports one at a time (more after a burst: test/unit/encoder-thread.test.ts), and its shutdown ends it: no thread is left.
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test } from "vitest";
import { encoderThreadTestHooks } from "../../src/encoders/worker/encoder-thread.js";
import { spareEncoderThreadId } from "../../src/encoders/worker/thread-pool.js";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { threadsAtNiceness } from "../support/thread-niceness.js";

const pgPort = inject("pgPort");
const encoderThreads = (): number => threadsAtNiceness(10);
let root: string;
let proxy: TestProxy | undefined;
let client: pg.Client | undefined;
/** The thread id of each export's encoder thread, as it began (an ended thread's id reads -1). */
const started: number[] = [];

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "c2s-kept-"));
  encoderThreadTestHooks.started = (t) => started.push(t.threadId);
});

afterAll(async () => {
  delete encoderThreadTestHooks.started;
  await client?.end().catch(() => {});
  await proxy?.shutdown(0);
  rmSync(root, { recursive: true, force: true });
});

test("the next export gets the last one's encoder thread, also after a refused export, and shutdown ends the kept one", async () => {
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3: motoAccess(), args: ["--file-root", root] });
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  const exportTo = (dir: string, format: string) =>
    client!.query(
      `COPY (SELECT g, md5(g::text) FROM generate_series(1, 5000) g) TO 'file://${join(root, dir)}' WITH (FORMAT = '${format}')`,
    );
  expect((await exportTo("a", "csv")).rowCount).toBe(5000);
  expect((await exportTo("b", "parquet")).rowCount).toBe(5000);
  expect((await exportTo("c", "csv")).rowCount).toBe(5000);
  expect(started).toHaveLength(3);
  expect(new Set(started).size).toBe(1);
  expect(spareEncoderThreadId()).toBe(started[0]);
  const csv = (dir: string) =>
    readdirSync(join(root, dir))
      .filter((f) => f.endsWith(".csv"))
      .map((f) => readFileSync(join(root, dir, f), "utf8"))
      .join("");
  expect(csv("c")).toBe(csv("a"));
  expect(csv("a").split("\n")).toHaveLength(5001);
  // Refused by its preflight (the prefix is not empty) after taking the thread, CSV and Parquet:
  // the thread drops that export's encoder and is kept for the next one.
  await expect(exportTo("c", "csv")).rejects.toMatchObject({ code: "58000" });
  await waitUntil("the refused export's thread kept", () => spareEncoderThreadId() === started[0]);
  await expect(exportTo("b", "parquet")).rejects.toMatchObject({ code: "58000" });
  await waitUntil("the refused export's thread kept", () => spareEncoderThreadId() === started[0]);
  expect(started).toHaveLength(5);
  expect(started[3]).toBe(started[0]);
  expect(started[4]).toBe(started[0]);
  // Nothing the dropped encoders had begun reaches a file of the next export.
  expect((await exportTo("d", "csv")).rowCount).toBe(5000);
  expect(started[5]).toBe(started[0]);
  expect(csv("d")).toBe(csv("a"));
  expect(spareEncoderThreadId()).toBe(started[0]);
  await waitUntil("one encoder thread, the kept one", () => encoderThreads() === 1, 10_000);
  await client.end();
  client = undefined;
  await proxy.shutdown(0);
  proxy = undefined;
  expect(spareEncoderThreadId()).toBeNull();
  await waitUntil("every encoder thread to end", () => encoderThreads() === 0, 10_000);
});
