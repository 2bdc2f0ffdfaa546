// The encoder thread's synchronous FileStore writes (src/copy/storage/sync-file-upload.ts, through
// src/encoders/worker/file-writer-sink.ts), on a real temporary directory: the same object, temp
// name, writebacks and error words as FileStore's own upload (./file-upload.test.ts). Faults are
// injected by wrapping Node's own calls (the real call runs otherwise).
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { mkdtemp, readdir, readFile, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { FileStore } from "../../src/copy/storage/file-store.js";
import { SyncFileDirectory, SyncFileUpload, type SyncFs } from "../../src/copy/storage/sync-file-upload.js";
import { FileWriterSink } from "../../src/encoders/worker/file-writer-sink.js";
import type { FromEncoder } from "../../src/encoders/worker/protocol.js";
import { PgError } from "../../src/errors.js";

let base: string;
let dir: string;
const KEY = "mz-1-batch-0000-0000.csv";
const CHUNK = 64 << 10;

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "sync-upload-"));
  dir = join(base, "target");
});
afterEach(async () => {
  await rm(base, { recursive: true, force: true });
});

const realFs: SyncFs = { ...fs, realpathSync: (p) => fs.realpathSync.native(p) };

/** Node's calls, with the ones named in `faults` throwing the errno error Node would throw. */
function faulty(faults: Partial<Record<"writeSync" | "fdatasyncSync" | "renameSync", string>>): SyncFs {
  const errno = (code: string, syscall: string) =>
    Object.assign(
      new Error(`${code}: ${code === "ENOSPC" ? "no space left on device" : "i/o error"}, ${syscall}`),
      {
        code,
        syscall,
      },
    );
  const f: SyncFs = { ...realFs };
  if (faults.writeSync) {
    const code = faults.writeSync;
    f.writeSync = (() => {
      throw errno(code, "write");
    }) as typeof fs.writeSync;
  }
  if (faults.fdatasyncSync) {
    const code = faults.fdatasyncSync;
    f.fdatasyncSync = () => {
      throw errno(code, "fdatasync");
    };
  }
  if (faults.renameSync) {
    const code = faults.renameSync;
    f.renameSync = () => {
      throw errno(code, "rename");
    };
  }
  return f;
}

describe("SyncFileUpload", () => {
  test("the object appears only at end(), under its key, with the bytes written; a temp file named like FileStore's until then", async () => {
    const d = new SyncFileDirectory({ dir, writebackBytes: 0 });
    const up = new SyncFileUpload(d, KEY, "0123456789abcdef");
    expect(await readdir(dir)).toEqual([`.${KEY}.0123456789abcdef.c2s-tmp`]);
    // FileStore lists it as an unfinished upload of the key, and can abort it by its id.
    const store = new FileStore({ dir, bufferBytes: 0 });
    expect((await store.listUploads("")).map((u) => [u.key, u.uploadId])).toEqual([
      [KEY, "0123456789abcdef"],
    ]);
    const data = randomBytes(5 * CHUNK + 17);
    for (let off = 0; off < data.length; off += CHUNK)
      up.write(data, off, Math.min(CHUNK, data.length - off));
    expect(up.end()).toBe(data.length);
    expect(await readdir(dir)).toEqual([KEY]);
    expect((await readFile(join(dir, KEY))).equals(data)).toBe(true);
  });

  test("writebacks while writing go to the pool on a second descriptor of the same file, one at a time; the fsync at the end in the thread", async () => {
    const asyncSyncs: number[] = [];
    const threadSyncs: number[] = [];
    let answering = 0;
    const f: SyncFs = {
      ...realFs,
      fdatasync: ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
        asyncSyncs.push(fd);
        answering++;
        fs.fdatasync(fd, (err) => {
          answering--;
          cb(err);
        });
      }) as typeof fs.fdatasync,
      fdatasyncSync: (fd) => {
        threadSyncs.push(fd);
        fs.fdatasyncSync(fd);
      },
    };
    const d = new SyncFileDirectory({ dir, writebackBytes: 4 * CHUNK }, f);
    const up = new SyncFileUpload(d, KEY, "0123456789abcdef");
    const data = randomBytes(20 * CHUNK);
    for (let off = 0; off < data.length; off += CHUNK) {
      up.write(data, off, CHUNK);
      // Each writeback's answer arrives before the next chunk (as the thread's loop turns).
      while (answering > 0) await new Promise((r) => setImmediate(r));
    }
    expect(asyncSyncs).toHaveLength(5);
    expect(new Set(asyncSyncs).size).toBe(1);
    expect(threadSyncs).toHaveLength(0);
    up.end();
    expect(threadSyncs).toHaveLength(1);
    expect(threadSyncs[0]).not.toBe(asyncSyncs[0]);
    expect((await readFile(join(dir, KEY))).equals(data)).toBe(true);
  });

  test("without /proc the writebacks run in the thread", () => {
    const threadSyncs: number[] = [];
    const f: SyncFs = {
      ...realFs,
      openSync: ((p: string, flags: string, mode?: number) => {
        if (p.startsWith("/proc/")) throw Object.assign(new Error("ENOENT"), { code: "ENOENT" });
        return fs.openSync(p, flags, mode);
      }) as typeof fs.openSync,
      fdatasyncSync: (fd) => {
        threadSyncs.push(fd);
        fs.fdatasyncSync(fd);
      },
    };
    const up = new SyncFileUpload(
      new SyncFileDirectory({ dir, writebackBytes: 2 * CHUNK }, f),
      KEY,
      "0123456789abcdef",
    );
    const data = randomBytes(6 * CHUNK);
    for (let off = 0; off < data.length; off += CHUNK) up.write(data, off, CHUNK);
    expect(threadSyncs).toHaveLength(3);
    up.end();
    expect(threadSyncs).toHaveLength(4);
  });

  test("an empty object has no fsync", async () => {
    const threadSyncs: number[] = [];
    const f: SyncFs = { ...realFs, fdatasyncSync: (fd) => threadSyncs.push(fd) && undefined };
    const up = new SyncFileUpload(new SyncFileDirectory({ dir }, f), KEY, "0123456789abcdef");
    expect(up.end()).toBe(0);
    expect(threadSyncs).toEqual([]);
    expect(await readdir(dir)).toEqual([KEY]);
  });

  test.each([
    ["writeSync", "ENOSPC", "write"],
    ["fdatasyncSync", "EIO", "fdatasync"],
    ["renameSync", "EIO", "rename"],
  ] as const)(
    "%s failing with %s: FileStore's 58030 and words; abort() leaves nothing",
    async (call, code, syscall) => {
      const d = new SyncFileDirectory({ dir, writebackBytes: 0 }, faulty({ [call]: code }));
      const up = new SyncFileUpload(d, KEY, "0123456789abcdef");
      const err = (() => {
        try {
          up.write(Buffer.from("a,b\n"), 0, 4);
          up.end();
        } catch (e) {
          return e;
        }
        return null;
      })();
      expect(err).toBeInstanceOf(PgError);
      const store = new FileStore({ dir, bufferBytes: 0 });
      const today = store.fail("PutObject", (err as PgError).cause, KEY);
      expect(err).toMatchObject({ code: "58030", message: `${code} error when using PutObject` });
      expect((err as PgError).detail).toBe(today.detail);
      expect((err as PgError).detail).toMatch(new RegExp(`^file://.*/${KEY}: ${code}: .*, ${syscall}$`));
      up.abort();
      expect(await readdir(dir)).toEqual([]);
    },
  );

  test("a target directory that resolves outside --file-root is refused like FileStore refuses it, before any file is made", async () => {
    const root = join(base, "root");
    const outside = join(base, "outside");
    fs.mkdirSync(root);
    fs.mkdirSync(outside);
    await symlink(outside, join(root, "link"));
    const target = { dir: join(root, "link", "p"), root };
    const err = (() => {
      try {
        new SyncFileUpload(new SyncFileDirectory(target), KEY, "0123456789abcdef");
      } catch (e) {
        return e;
      }
      return null;
    })();
    const today = await new FileStore({ ...target, bufferBytes: 0 })
      .upload(KEY, new AbortController().signal)
      .end()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ code: "42501" });
    expect(err).toMatchObject({ code: (today as PgError).code, message: (today as PgError).message });
    expect(fs.readdirSync(outside)).toEqual([]);
  });
});

describe("FileWriterSink", () => {
  test("tells the relay of each file before it exists, its progress, and its completion; the files split where the encoder says", async () => {
    const told: FromEncoder[] = [];
    const sink = new FileWriterSink(
      { dir, keyPrefix: "mz-1-batch-0000-", suffix: ".csv", writebackBytes: 0 },
      (m) => {
        // Told before its temp file exists: a cancel may end the thread right after.
        if (m.t === "file-open")
          expect(fs.existsSync(join(dir, `.mz-1-batch-0000-000${m.index}.csv.${m.uploadId}.c2s-tmp`))).toBe(
            false,
          );
        told.push(m);
      },
    );
    const a = randomBytes(3 << 20);
    const b = randomBytes(1000);
    sink.openFile(0);
    for (let off = 0; off < a.length; off += 4096) sink.write(a.subarray(off, off + 4096));
    sink.closeFile(7);
    sink.openFile(1);
    sink.write(b);
    sink.closeFile(1);
    expect(told.map((m) => m.t)).toEqual([
      "file-open",
      "file-bytes",
      "file-bytes",
      "file-bytes",
      "file-done",
      "file-open",
      "file-done",
    ]);
    expect(told.slice(1, 4)).toEqual(Array(3).fill({ t: "file-bytes", bytes: 1 << 20 }));
    expect(told[4]).toEqual({ t: "file-done", index: 0, rows: 7, bytes: a.length });
    expect(told[6]).toEqual({ t: "file-done", index: 1, rows: 1, bytes: b.length });
    expect((await readFile(join(dir, "mz-1-batch-0000-0000.csv"))).equals(a)).toBe(true);
    expect((await readFile(join(dir, "mz-1-batch-0000-0001.csv"))).equals(b)).toBe(true);
    expect((await readdir(dir)).sort()).toEqual(["mz-1-batch-0000-0000.csv", "mz-1-batch-0000-0001.csv"]);
  });

  test("abort() removes the file being written; the error is returned unchanged when that worked", async () => {
    const told: FromEncoder[] = [];
    const sink = new FileWriterSink({ dir, keyPrefix: "mz-1-batch-0000-", suffix: ".csv" }, (m) =>
      told.push(m),
    );
    sink.openFile(0);
    sink.write(randomBytes(3 << 20));
    expect((await readdir(dir)).some((f) => f.endsWith(".c2s-tmp"))).toBe(true);
    const err = new PgError("57014", "canceling statement due to user request");
    expect(sink.abort(err)).toBe(err);
    expect(await readdir(dir)).toEqual([]);
    expect(told[0]).toMatchObject({ t: "file-open", index: 0 });
  });
});
