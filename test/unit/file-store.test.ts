// FileStore on a real temporary directory.
import { randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, mkdtemp, readdir, readFile, rm, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { createStore } from "../../src/copy/create-store.js";
import { FileStore } from "../../src/copy/storage/file-store.js";
import { PgError } from "../../src/errors.js";

let base: string;
let dir: string;
let outside: string;
const signal = () => new AbortController().signal;
const store = (bufferBytes = 1 << 20) => new FileStore({ dir, bufferBytes });

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "file-store-"));
  dir = join(base, "exports", "target");
  outside = join(base, "outside");
  await mkdir(outside, { recursive: true });
  await writeFile(join(outside, "precious"), "keep me");
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

async function tree(d: string): Promise<string[]> {
  try {
    return (await readdir(d, { recursive: true })).sort();
  } catch {
    return [];
  }
}

describe("FileStore", () => {
  test("a missing directory lists empty and is created by the first write", async () => {
    const s = store();
    expect(s.location).toBe(`file://${dir}`);
    expect(await s.list("", signal())).toEqual({ keys: [], count: 0 });
    expect(await s.listUploads("")).toEqual([]);
    await s.probeDelete("mz-probe", signal());
    await s.delete(["nothing"]);
    await s.put("mz-1-INCOMPLETE", "", signal());
    expect(await tree(dir)).toEqual(["mz-1-INCOMPLETE"]);
    expect(s.url("a b")).toBe(`file://${dir}/a%20b`);
  });

  test("list has directory semantics and counts beyond the limit", async () => {
    const s = store();
    for (const k of ["x/a", "x/b/c", "x2/d", "xa"]) await s.put(k, k, signal());
    await mkdir(join(dir, "x", "empty"), { recursive: true });
    expect(await s.list("x", signal())).toEqual({ keys: ["x/a", "x/b/c"], count: 2 });
    expect(await s.list("x2", signal())).toEqual({ keys: ["x2/d"], count: 1 });
    expect(await s.list("xa", signal())).toEqual({ keys: [], count: 0 }); // a file, not a directory
    expect(await s.list("", signal(), 2)).toEqual({ keys: ["x/a", "x/b/c"], count: 4 });
  });

  test("put, read back and delete (missing keys tolerated)", async () => {
    const s = store();
    const data = randomBytes(100_000);
    await s.put("sub/a.bin", data, signal());
    await s.put("b.txt", "hello", signal());
    expect((await readFile(join(dir, "sub/a.bin"))).equals(data)).toBe(true);
    await s.delete(["sub/a.bin", "gone"]);
    expect(await s.list("", signal())).toEqual({ keys: ["b.txt"], count: 1 });
  });

  test("uploads appear atomically: a temp file while writing, the object only after end()", async () => {
    const s = store();
    const up = s.upload("mz-1-batch-0000-0000.csv", signal());
    const data = randomBytes(3 << 20);
    for (let off = 0; off < data.length; off += 65536) {
      if (!up.write(data.subarray(off, off + 65536))) await up.drained();
    }
    await up.drained();
    expect(await s.list("", signal())).toEqual({ keys: [], count: 0 });
    const pending = await s.listUploads("");
    expect(pending).toHaveLength(1);
    expect(pending[0]).toMatchObject({ key: "mz-1-batch-0000-0000.csv" });
    expect(await up.end()).toEqual({ bytes: data.length });
    expect(await s.listUploads("")).toEqual([]);
    expect((await readFile(join(dir, "mz-1-batch-0000-0000.csv"))).equals(data)).toBe(true);
    await up.abort(); // after completion: a no-op, the object stays
    expect(await s.list("", signal())).toEqual({ keys: ["mz-1-batch-0000-0000.csv"], count: 1 });
  });

  test("a chunk written with release() is read until then and no longer: scribbling over each one when it is released leaves the object intact", async () => {
    const s = store(4 << 20);
    const up = s.upload("reuse.csv", signal());
    const data = randomBytes(6 << 20);
    let released = 0;
    // The encoder thread's chunks come back for reuse this way (encoder-thread.ts): a release
    // before the write has finished would put the scribble in the file.
    for (let off = 0; off < data.length; off += 1 << 20) {
      const chunk = Buffer.from(data.subarray(off, off + (1 << 20)));
      const more = up.write(chunk, () => {
        chunk.fill(0x58);
        released++;
      });
      if (!more) await up.drained();
    }
    expect(await up.end()).toEqual({ bytes: data.length });
    expect(released).toBe(6);
    expect((await readFile(join(dir, "reuse.csv"))).equals(data)).toBe(true);
  });

  test("zero-byte uploads", async () => {
    const s = store();
    expect(await s.upload("empty.csv", signal()).end()).toEqual({ bytes: 0 });
    expect((await lstat(join(dir, "empty.csv"))).size).toBe(0);
  });

  test("abort() and the signal leave no temp file and no object", async () => {
    const s = store(10); // so that drained() waits for the bytes to reach the temp file
    const up = s.upload("a.csv", signal());
    up.write(randomBytes(1000));
    await up.drained();
    expect(await s.listUploads("")).toHaveLength(1);
    await up.abort();
    expect(await tree(dir)).toEqual([]);
    expect(() => up.write(Buffer.from("x"))).toThrow(/aborted/);
    await expect(up.end()).rejects.toBeInstanceOf(PgError);

    const ac = new AbortController();
    const up2 = s.upload("b.csv", ac.signal);
    up2.write(randomBytes(1000));
    ac.abort();
    await expect(up2.end()).rejects.toMatchObject({ code: "57014" });
    expect(await tree(dir)).toEqual([]);
  });

  test("backpressure: write() returns false once more than the buffer is queued", async () => {
    const s = store(4096);
    const up = s.upload("f", signal());
    expect(up.write(Buffer.alloc(4000))).toBe(true);
    expect(up.write(Buffer.alloc(4000))).toBe(false);
    expect(up.buffered).toBeGreaterThan(4096);
    await up.drained();
    expect(up.buffered).toBeLessThanOrEqual(4096);
    expect(await up.end()).toEqual({ bytes: 8000 });
  });

  test("listUploads/abortUpload find and remove temp files a crashed proxy left", async () => {
    const s = store();
    await mkdir(join(dir, "sub"), { recursive: true });
    await writeFile(join(dir, "sub", ".mz-7-batch-0000-0000.csv.0123456789abcdef.c2s-tmp"), "partial");
    const found = await s.listUploads("");
    expect(found).toEqual([
      { key: "sub/mz-7-batch-0000-0000.csv", uploadId: "0123456789abcdef", initiated: expect.any(Date) },
    ]);
    expect(await s.list("", signal())).toEqual({ keys: [], count: 0 }); // not an object
    await s.abortUpload(found[0]!.key, found[0]!.uploadId);
    await s.abortUpload(found[0]!.key, found[0]!.uploadId);
    expect(await s.listUploads("")).toEqual([]);
    await expect(s.abortUpload("k", "../../etc")).rejects.toMatchObject({ code: "22023" });
  });

  test("createStore for file:// targets", async () => {
    const s = createStore(undefined, { scheme: "file", dir, prefix: "" });
    await s.put("k", "v", signal());
    expect(await readFile(join(dir, "k"), "utf8")).toBe("v");
  });
});

describe("FileStore containment", () => {
  test("keys with .., absolute keys and empty segments are refused", async () => {
    const s = store();
    for (const bad of ["../outside/precious", "a/../../x", "/etc/passwd", "", "a//b", ".", "x/./y"]) {
      await expect(s.put(bad, "x", signal()), bad).rejects.toMatchObject({ code: "22023" });
      await expect(s.delete([bad]), bad).rejects.toMatchObject({ code: "22023" });
      expect(() => s.upload(bad, signal()), bad).toThrow(PgError);
    }
    await expect(s.list("../outside", signal())).rejects.toMatchObject({ code: "22023" });
    await expect(s.probeDelete("../outside/precious", signal())).rejects.toMatchObject({ code: "22023" });
    expect(await readFile(join(outside, "precious"), "utf8")).toBe("keep me");
  });

  test("a symlink inside the directory cannot lead anywhere outside it", async () => {
    const s = store();
    await mkdir(dir, { recursive: true });
    await symlink(outside, join(dir, "link"));

    await expect(s.put("link/evil", "x", signal())).rejects.toMatchObject({ code: "42501" });
    await expect(s.delete(["link/precious"])).rejects.toMatchObject({ code: "42501" });
    await expect(s.probeDelete("link/precious", signal())).rejects.toMatchObject({ code: "42501" });
    await expect(s.list("link", signal())).rejects.toMatchObject({ code: "42501" });
    await expect(s.listUploads("link")).rejects.toMatchObject({ code: "42501" });
    await expect(s.upload("link/deeper/evil", signal()).end()).rejects.toMatchObject({ code: "42501" });

    // Listing the directory does not follow it: the link itself is one entry.
    expect(await s.list("", signal())).toEqual({ keys: ["link"], count: 1 });
    expect(await tree(outside)).toEqual(["precious"]);
    expect(await readFile(join(outside, "precious"), "utf8")).toBe("keep me");

    // Deleting a key that *is* a symlink removes the link, never its target.
    await s.delete(["link"]);
    expect(await tree(outside)).toEqual(["precious"]);
  });

  test("a symlink deeper down is caught too, and the directory itself may be a symlink", async () => {
    await mkdir(join(base, "real"), { recursive: true });
    await mkdir(join(base, "exports"), { recursive: true });
    await symlink(join(base, "real"), dir); // the target directory is a link: that is the user's choice
    const s = store();
    await s.put("ok/a", "1", signal());
    expect(await readFile(join(base, "real", "ok", "a"), "utf8")).toBe("1");
    await symlink(outside, join(base, "real", "ok", "away"));
    await expect(s.put("ok/away/b", "x", signal())).rejects.toMatchObject({ code: "42501" });
    expect(await tree(outside)).toEqual(["precious"]);
  });

  test("unreadable directories surface as AccessDenied (when not root)", async () => {
    if (process.getuid?.() === 0) return; // root ignores permissions
    const s = store();
    await s.put("a", "1", signal());
    await chmod(dir, 0o500);
    try {
      await expect(s.probeDelete("mz-probe", signal())).rejects.toMatchObject({
        message: "AccessDenied error when using DeleteObject",
      });
    } finally {
      await chmod(dir, 0o700);
    }
  });
});
