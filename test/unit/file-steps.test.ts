// FileStore's two writers take one list of steps (src/copy/storage/file-steps.ts): the relay's
// FileUpload (promises) and the encoder thread's SyncFileUpload (synchronous calls). Each scenario
// runs both on a real temporary directory and compares the calls they made through the steps, in
// order: a step or check added to, dropped from or moved in one writer and not the other fails
// here. The encoder thread's calls are also checked against the Node calls it really made.
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import { mkdir, mkdtemp, readdir, rm, symlink } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, test } from "vitest";
import { FileStore } from "../../src/copy/storage/file-store.js";
import { stepRunnerTestHooks } from "../../src/copy/storage/step-runner.js";
import { SyncFileDirectory, SyncFileUpload, type SyncFs } from "../../src/copy/storage/sync-file-upload.js";

let base: string;
const CHUNK = 64 << 10;
const ID = "0123456789abcdef";

beforeEach(async () => {
  base = await mkdtemp(join(tmpdir(), "file-steps-"));
});
afterEach(async () => {
  delete stepRunnerTestHooks.call;
  await rm(base, { recursive: true, force: true });
});

type Traced = Array<[string, ...unknown[]]>;

/** The calls made through the steps while `run` runs: paths relative to the test's directory,
 * a write by its length, a temp file's random id as <id>. */
async function trace(run: () => Promise<unknown>): Promise<{ calls: Traced; error: unknown }> {
  const calls: Traced = [];
  stepRunnerTestHooks.call = (c, args) => {
    if (c === "write") calls.push([c, args[2]]);
    else
      calls.push([
        c,
        ...args.map((a) =>
          typeof a === "string" ? a.replace(base, "<base>").replace(/[0-9a-f]{16}/, "<id>") : a,
        ),
      ]);
  };
  let error: unknown = null;
  try {
    await run();
  } catch (e) {
    error = e;
  } finally {
    delete stepRunnerTestHooks.call;
  }
  return { calls, error };
}

interface Scenario {
  /** The store's directory and root, relative to the test's directory. */
  dir: string;
  root?: string;
  key: string;
  chunks: number;
  writebackBytes: number;
  /** abort() after the writes instead of end(). */
  abort?: boolean;
}

async function viaFileStore(s: Scenario, dir: string): Promise<{ calls: Traced; error: unknown }> {
  const store = new FileStore({
    dir: join(base, dir, s.dir),
    root: s.root === undefined ? undefined : join(base, dir, s.root),
    bufferBytes: 0,
    writebackBytes: s.writebackBytes,
  });
  const data = randomBytes(s.chunks * CHUNK);
  return trace(async () => {
    const up = store.upload(s.key, new AbortController().signal);
    try {
      for (let off = 0; off < data.length; off += CHUNK) {
        up.write(data.subarray(off, off + CHUNK));
        await up.drained();
      }
      if (s.abort) await up.abort();
      else await up.end();
    } catch (e) {
      await up.abort();
      throw e;
    }
  });
}

async function viaThread(s: Scenario, dir: string, f?: SyncFs): Promise<{ calls: Traced; error: unknown }> {
  const d = new SyncFileDirectory(
    {
      dir: join(base, dir, s.dir),
      root: s.root === undefined ? undefined : join(base, dir, s.root),
      writebackBytes: s.writebackBytes,
    },
    f,
  );
  const data = randomBytes(s.chunks * CHUNK);
  return trace(async () => {
    const up = new SyncFileUpload(d, s.key, ID);
    try {
      for (let off = 0; off < data.length; off += CHUNK) up.write(data, off, CHUNK);
      if (s.abort) up.abort();
      else up.end();
    } catch (e) {
      up.abort();
      throw e;
    }
  });
}

/** Runs `s` with each writer in a directory of its own, made alike by `prepare`. */
async function both(s: Scenario, prepare: (dir: string) => Promise<void> = async () => {}) {
  await prepare(join(base, "a"));
  await prepare(join(base, "b"));
  const relay = await viaFileStore(s, "a");
  const thread = await viaThread(s, "b");
  return {
    relay: { ...relay, calls: relay.calls.map(sameDir) },
    thread: { ...thread, calls: thread.calls.map(sameDir) },
  };
}

function sameDir(call: [string, ...unknown[]]): [string, ...unknown[]] {
  return call.map((a) => (typeof a === "string" ? a.replace(/^<base>\/[ab](\/|$)/, "<dir>$1") : a)) as [
    string,
    ...unknown[],
  ];
}

describe("both writers take the same steps in the same order", () => {
  test("an object under --file-root, in a new subdirectory, with a writeback while writing", async () => {
    const s: Scenario = {
      dir: "root/t",
      root: "root",
      key: "p/mz-1.csv",
      chunks: 4,
      writebackBytes: 4 * CHUNK,
    };
    const { relay, thread } = await both(s, async (d) => {
      await mkdir(join(d, "root"), { recursive: true });
    });
    expect(relay.error).toBeNull();
    expect(thread.error).toBeNull();
    expect(thread.calls).toEqual(relay.calls);
    // The list itself, so that a step both lose is seen too.
    // The list itself, so that a step both lose or both move is seen too.
    const temp = "<dir>/root/t/p/.mz-1.csv.<id>.c2s-tmp";
    expect(relay.calls).toEqual([
      // The root, then the directory checked inside it (not there yet: its parent), made, checked.
      ["realpath", "<dir>/root"],
      ["realpath", "<dir>/root/t"],
      ["realpath", "<dir>/root"],
      ["mkdir", "<dir>/root/t"],
      ["realpath", "<dir>/root/t"],
      // The key's parent: checked (not there yet), made, checked again.
      ["realpath", "<dir>/root/t/p"],
      ["realpath", "<dir>/root/t"],
      ["mkdir", "<dir>/root/t/p"],
      ["realpath", "<dir>/root/t/p"],
      // The temp file, created exclusively, then checked to lie inside.
      ["create", temp],
      ["realpath", "<dir>/root"],
      ["realpath", temp],
      ["write", CHUNK],
      ["write", CHUNK],
      ["write", CHUNK],
      ["write", CHUNK],
      ["writeback"],
      ["settle"],
      ["sync"],
      ["close"],
      ["closed"],
      // The second check, the rename, the final check.
      ["realpath", "<dir>/root"],
      ["realpath", "<dir>/root/t"],
      ["lstat", "<dir>/root/t"],
      ["realpath", "<dir>/root/t/p"],
      ["rename", temp, "<dir>/root/t/p/mz-1.csv"],
      ["realpath", "<dir>/root"],
      ["realpath", "<dir>/root/t/p/mz-1.csv"],
    ]);
  });

  test("an empty object without --file-root: no fsync", async () => {
    const s: Scenario = { dir: "t", key: "mz-1-INCOMPLETE", chunks: 0, writebackBytes: 0 };
    const { relay, thread } = await both(s);
    expect(relay.error).toBeNull();
    expect(thread.calls).toEqual(relay.calls);
    expect(relay.calls.map(([c]) => c)).not.toContain("sync");
  });

  test("an upload aborted after its writes: its temp file goes", async () => {
    const s: Scenario = { dir: "t", key: "mz-1.csv", chunks: 2, writebackBytes: 0, abort: true };
    const { relay, thread } = await both(s);
    expect(thread.calls).toEqual(relay.calls);
    expect(relay.calls.slice(-2)).toEqual([["close"], ["unlink", `<dir>/t/.mz-1.csv.<id>.c2s-tmp`]]);
    expect(await readdir(join(base, "a", "t"))).toEqual([]);
    expect(await readdir(join(base, "b", "t"))).toEqual([]);
  });

  test("a target that a symlink leads out of --file-root: refused at the same check, nothing made", async () => {
    const s: Scenario = { dir: "root/link/t", root: "root", key: "mz-1.csv", chunks: 1, writebackBytes: 0 };
    const { relay, thread } = await both(s, async (d) => {
      await mkdir(join(d, "root"), { recursive: true });
      await mkdir(join(d, "outside"));
      await symlink(join(d, "outside"), join(d, "root", "link"));
    });
    expect(thread.calls).toEqual(relay.calls);
    expect(relay.error).toMatchObject({ code: "42501" });
    expect(thread.error).toMatchObject({ code: "42501" });
    expect(relay.calls.map(([c]) => c)).not.toContain("create");
    expect(await readdir(join(base, "b", "outside"))).toEqual([]);
  });
});

test("the encoder thread's writer makes each step's Node call, and no other, in the steps' order", async () => {
  const made: string[] = [];
  let answering = 0;
  const watched: SyncFs = { ...fs, realpathSync: (p) => fs.realpathSync.native(p) };
  for (const name of [
    "openSync",
    "writeSync",
    "fdatasyncSync",
    "closeSync",
    "renameSync",
    "unlinkSync",
    "mkdirSync",
    "lstatSync",
    "realpathSync",
  ] as const) {
    const real = watched[name] as (...args: unknown[]) => unknown;
    (watched as Record<string, unknown>)[name] = (...args: unknown[]) => {
      made.push(name);
      return real(...args);
    };
  }
  watched.fdatasync = ((fd: number, cb: (err: NodeJS.ErrnoException | null) => void) => {
    made.push("fdatasync");
    answering++;
    fs.fdatasync(fd, (err) => {
      answering--;
      cb(err);
    });
  }) as typeof fs.fdatasync;
  const d = new SyncFileDirectory(
    { dir: join(base, "root", "t"), root: join(base, "root"), writebackBytes: 4 * CHUNK },
    watched,
  );
  await mkdir(join(base, "root"));
  const data = randomBytes(4 * CHUNK);
  const { calls, error } = await trace(async () => {
    const up = new SyncFileUpload(d, "p/mz-1.csv", ID);
    for (let off = 0; off < data.length; off += CHUNK) up.write(data, off, CHUNK);
    // The writeback's answer comes as the thread's loop turns: here, before end().
    while (answering > 0) await new Promise((r) => setImmediate(r));
    up.end();
  });
  expect(error).toBeNull();
  const expected: Record<string, string[]> = {
    realpath: ["realpathSync"],
    mkdir: ["mkdirSync"],
    lstat: ["lstatSync"],
    create: ["openSync"],
    write: ["writeSync"],
    // A second descriptor of the same file, synced in libuv's pool.
    writeback: ["openSync", "fdatasync"],
    settle: [],
    sync: ["fdatasyncSync"],
    close: ["closeSync"],
    // The writeback's descriptor, its sync settled.
    closed: ["closeSync"],
    rename: ["renameSync"],
  };
  expect(calls.map(([c]) => c)).toContain("writeback");
  expect(made).toEqual(calls.flatMap(([c]) => expected[c] ?? [`unexpected step ${c}`]));
});
