// A FileStore upload's writeback while writing (src/copy/storage/file-upload.ts), on a real
// temporary directory. The fdatasync calls are watched, and one is made to fail, through a spy on
// Node's own FileHandle (the real call runs otherwise).
import { randomBytes } from "node:crypto";
import { mkdtemp, open, readdir, readFile, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, type MockInstance, test, vi } from "vitest";
import { FileStore } from "../../src/copy/storage/file-store.js";

let base: string;
let dir: string;
let datasync: MockInstance<() => Promise<void>>;
const signal = () => new AbortController().signal;
const CHUNK = 64 << 10;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "file-upload-"));
  dir = join(base, "target");
  const probe = await open(join(base, "probe"), "w");
  const proto = Object.getPrototypeOf(probe) as { datasync: () => Promise<void> };
  await probe.close();
  await rm(join(base, "probe"));
  datasync = vi.spyOn(proto, "datasync");
});
afterEach(async () => {
  datasync.mockRestore();
  await rm(base, { recursive: true, force: true });
});

/** Writes `data` in CHUNK writes, waiting for each to reach the file (bufferBytes 0). */
async function writeAll(up: ReturnType<FileStore["upload"]>, data: Buffer): Promise<void> {
  for (let off = 0; off < data.length; off += CHUNK) {
    up.write(data.subarray(off, off + CHUNK));
    await up.drained();
  }
}

describe("FileUpload writeback", () => {
  test("the file goes to disk while it is written (an fdatasync every writebackBytes), not all at the end; the bytes are unchanged", async () => {
    const s = new FileStore({ dir, bufferBytes: 0, writebackBytes: 4 * CHUNK });
    const up = s.upload("mz-1-batch-0000-0000.csv", signal());
    const data = randomBytes(20 * CHUNK);
    await writeAll(up, data);
    // Started after the 4th, 8th, … chunk unless the previous one was still running.
    const beforeEnd = datasync.mock.calls.length;
    expect(beforeEnd).toBeGreaterThanOrEqual(1);
    expect(beforeEnd).toBeLessThanOrEqual(5);
    expect(await up.end()).toEqual({ bytes: data.length });
    expect((await readFile(join(dir, "mz-1-batch-0000-0000.csv"))).equals(data)).toBe(true);
    expect(await readdir(dir)).toEqual(["mz-1-batch-0000-0000.csv"]);
  });

  test("a file smaller than writebackBytes has no writeback, only the fsync at the end", async () => {
    const s = new FileStore({ dir, bufferBytes: 0, writebackBytes: 4 * CHUNK });
    const up = s.upload("small", signal());
    await writeAll(up, randomBytes(3 * CHUNK));
    await up.end();
    expect(datasync).not.toHaveBeenCalled();
  });

  test("a writeback that fails fails the upload, and the directory is left as found", async () => {
    const s = new FileStore({ dir, bufferBytes: 0, writebackBytes: 2 * CHUNK });
    datasync.mockImplementationOnce(() =>
      Promise.reject(Object.assign(new Error("EIO: i/o error, fdatasync"), { code: "EIO", errno: -5 })),
    );
    const up = s.upload("mz-1-batch-0000-0000.csv", signal());
    const data = randomBytes(8 * CHUNK);
    await expect(async () => {
      await writeAll(up, data);
      await up.end();
    }).rejects.toMatchObject({ code: "58030", message: "EIO error when using PutObject" });
    await up.abort();
    expect(await readdir(dir)).toEqual([]);
    expect(await s.listUploads("")).toEqual([]);
  });
});

describe("FileUpload fsync", () => {
  test("a file with bytes is fsynced before its rename; an empty one (a sentinel) is renamed without one", async () => {
    const probe = await open(join(base, "probe2"), "w");
    const proto = Object.getPrototypeOf(probe) as { sync: () => Promise<void> };
    await probe.close();
    await rm(join(base, "probe2"));
    const sync = vi.spyOn(proto, "sync");
    try {
      const s = new FileStore({ dir, bufferBytes: 1 << 20 });
      await s.put("mz-1-INCOMPLETE", "", signal());
      expect(sync).not.toHaveBeenCalled();
      await s.put("mz-1-manifest.json", "{}", signal());
      expect(sync).toHaveBeenCalledTimes(1);
      expect((await readdir(dir)).sort()).toEqual(["mz-1-INCOMPLETE", "mz-1-manifest.json"]);
    } finally {
      sync.mockRestore();
    }
  });
});
