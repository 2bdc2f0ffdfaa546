// A file:// export in thread mode (exports.encoderHost "thread", the default): the encoder thread
// writes the files itself (src/encoders/worker/file-writer-sink.ts) and the relay's thread writes
// none of their bytes — only the sentinel and the manifest go through its FileUpload, as the test
// hook on that path shows. Real PostgreSQL; CSV against PostgreSQL's own COPY … (FORMAT csv)
// bytes, Parquet through DuckDB; SPEC §2.2 (the prefix as found) after a cancel before the first
// file, in the middle of one, and between the last rename and the thread's word of it, and after a
// real ENOSPC (a 2 MiB tmpfs mounted for the test, where the machine lets it).
import { execFileSync } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, test } from "vitest";
import { fileUploadTestHooks } from "../../src/copy/storage/file-upload.js";
import { encoderThreadTestHooks } from "../../src/encoders/worker/encoder-thread.js";
import { keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { createMixedTable, expectMixedParquet } from "../support/mixed-table.js";
import type { TestProxy } from "../support/proxy.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import type { RawPg } from "../support/raw-pg.js";

const DB = "copy_file_thread_writes";
const pgPort = inject("pgPort");
const ROWS = 200000;

let stack: ProxyStack;
let proxy: TestProxy;
let oracle: RawPg;
let client: pg.Client;
let root: string;
let duck: DuckDBConnection;
let direct: pg.Client;
let csvOracle: Buffer;
/** Bytes the relay's FileUpload wrote, by key (the test hook on the relay's file path). */
const relayWrote = new Map<string, number>();

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "c2s-thread-files-"));
  stack = await startProxyStack({ database: DB, bucket: "thread-files", args: ["--file-root", root] });
  ({ oracle, proxy } = stack);
  // ~21 MB of CSV, as in copy-commit.test.ts.
  await oracle.query(
    `CREATE TABLE mid AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, ${ROWS}) g`,
  );
  await oracle.query(createMixedTable(150000));
  await oracle.query("SET synchronize_seqscans = off");
  csvOracle = (await oracle.query("COPY mid TO STDOUT (FORMAT csv)")).copyData;
  client = await stack.connect();
  await client.query("SET synchronize_seqscans = off");
  duck = await (await DuckDBInstance.create(":memory:")).connect();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  fileUploadTestHooks.wrote = (key, bytes) => relayWrote.set(key, (relayWrote.get(key) ?? 0) + bytes);
}, 120_000);

afterEach(() => {
  relayWrote.clear();
  delete encoderThreadTestHooks.gate;
  delete encoderThreadTestHooks.renamed;
});

afterAll(async () => {
  delete fileUploadTestHooks.wrote;
  await direct?.end();
  await stack?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

let n = 0;
const freshDir = (): string => join(root, `t${++n}`);

/** Every name under `dir` (temp files included), or [] if it does not exist. */
function namesUnder(dir: string): string[] {
  try {
    return readdirSync(dir, { recursive: true }) as string[];
  } catch {
    return [];
  }
}

/** This process's descriptors open on anything under `dir` (the thread's, as they are the process's). */
function descriptorsUnder(dir: string): string[] {
  const open: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    try {
      const target = readlinkSync(`/proc/self/fd/${fd}`);
      if (target.startsWith(`${dir}/`)) open.push(target);
    } catch {
      // closed meanwhile
    }
  }
  return open;
}

const dataFiles = (dir: string, ext: string): string[] =>
  namesUnder(dir)
    .filter((f) => /-batch-\d{4}-\d{4}\./.test(f) && f.endsWith(ext) && !f.endsWith(".c2s-tmp"))
    .sort();

/** The relay's thread wrote the sentinel (so the hook works) and no byte of any data file. */
function expectRelayWroteNoFileBytes(): void {
  const keys = [...relayWrote.keys()];
  expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(true);
  expect(keys.filter((k) => k.includes("-batch-"))).toEqual([]);
}

describe("the encoder thread writes the files (thread mode, file://)", () => {
  test("CSV: the files' bytes equal PostgreSQL's COPY (FORMAT csv), split by MAX FILE SIZE, listed in the manifest; the relay's thread wrote none of them", async () => {
    const dir = freshDir();
    const notices: string[] = [];
    const onNotice = (m: { message?: string }) => notices.push(m.message ?? "");
    client.on("notice", onNotice);
    try {
      const r = await client.query(
        `COPY mid TO 'file://${dir}' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
      );
      expect(r.rowCount).toBe(ROWS);
    } finally {
      client.off("notice", onNotice);
    }
    expectRelayWroteNoFileBytes();
    const files = dataFiles(dir, ".csv");
    expect(files.length).toBe(2);
    for (const f of files) expect(statSync(join(dir, f)).size).toBeLessThanOrEqual(16 * 1024 * 1024);
    expect(Buffer.concat(files.map((f) => readFileSync(join(dir, f)))).equals(csvOracle)).toBe(true);
    // The manifest lists each file with its size and rows; no sentinel, no temp file.
    const manifestName = namesUnder(dir).find((f) => f.endsWith("-manifest.json"))!;
    const manifest = JSON.parse(readFileSync(join(dir, manifestName), "utf8")) as {
      files: Array<{ url: string; bytes: number; rows: number }>;
      rows: number;
    };
    expect(manifest.files.map((f) => f.url.split("/").pop())).toEqual(files);
    expect(manifest.files.map((f) => f.bytes)).toEqual(files.map((f) => statSync(join(dir, f)).size));
    expect(manifest.files.reduce((s, f) => s + f.rows, 0)).toBe(ROWS);
    expect(namesUnder(dir).filter((f) => f.endsWith("-INCOMPLETE") || f.endsWith(".c2s-tmp"))).toEqual([]);
    // The last NOTICE counts the bytes the thread wrote.
    const total = files.reduce((s, f) => s + statSync(join(dir, f)).size, 0);
    expect(total).toBe(csvOracle.length);
    expect(notices.at(-1)).toMatch(new RegExp(`^exported 200,000 rows in ${files.length} files \\(`));
  });

  test("Parquet: DuckDB reads back every value of the source; the relay's thread wrote none of it", async () => {
    const dir = freshDir();
    const r = await client.query(`COPY mixed TO 'file://${dir}' WITH (FORMAT = 'parquet')`);
    expect(r.rowCount).toBe(150000);
    expectRelayWroteNoFileBytes();
    expect(dataFiles(dir, ".parquet")).toHaveLength(1);
    await expectMixedParquet(duck, direct, dir);
  });
});

describe("a cancel at any moment leaves the directory as found", () => {
  async function cancelAndCheck(dir: string, copy: Promise<unknown>): Promise<void> {
    await sendCancel(proxy.port, keyOf(client));
    await expect(copy).rejects.toMatchObject({ code: "57014" });
    expect(namesUnder(dir)).toEqual([]);
    expect(descriptorsUnder(root)).toEqual([]);
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
  }

  test("before the first file: the thread held before its first rows", async () => {
    const dir = freshDir();
    const gate = new Int32Array(new SharedArrayBuffer(4));
    gate[0] = 1;
    encoderThreadTestHooks.gate = gate;
    const copy = client.query(`COPY mid TO 'file://${dir}' WITH (FORMAT = 'csv')`);
    await waitUntil("the sentinel", () => namesUnder(dir).some((f) => f.endsWith("-INCOMPLETE")));
    try {
      await cancelAndCheck(dir, copy);
    } finally {
      Atomics.store(gate, 0, 0);
      Atomics.notify(gate, 0);
    }
  });

  test("in the middle of a file: the thread held inside a batch with its temp file open and written", async () => {
    const dir = freshDir();
    // gate[2]: held inside a batch's encoding, counted in gate[1] (protocol.ts).
    const gate = new Int32Array(new SharedArrayBuffer(12));
    encoderThreadTestHooks.gate = gate;
    const copy = client.query(`COPY mid TO 'file://${dir}' WITH (FORMAT = 'csv')`);
    try {
      await waitUntil("a temp file with bytes in it", () =>
        namesUnder(dir).some((f) => f.endsWith(".c2s-tmp") && statSync(join(dir, f)).size > 0),
      );
      Atomics.store(gate, 2, 1);
      await waitUntil("the thread held inside a batch", () => Atomics.load(gate, 1) > 0);
      const temps = namesUnder(dir).filter((f) => f.endsWith(".c2s-tmp"));
      expect(temps).toHaveLength(1);
      expect(descriptorsUnder(root).length).toBeGreaterThan(0);
      await cancelAndCheck(dir, copy);
    } finally {
      Atomics.store(gate, 2, 0);
      Atomics.notify(gate, 2);
    }
  });

  test("between the last file's rename and the thread's word of it", async () => {
    const dir = freshDir();
    const renamed = new Int32Array(new SharedArrayBuffer(8));
    renamed[0] = 1;
    encoderThreadTestHooks.renamed = renamed;
    const copy = client.query(
      `COPY (SELECT * FROM mid WHERE g <= 1000) TO 'file://${dir}' WITH (FORMAT = 'csv')`,
    );
    try {
      await waitUntil("the file renamed into place", () => Atomics.load(renamed, 1) > 0);
      expect(dataFiles(dir, ".csv")).toHaveLength(1);
      await cancelAndCheck(dir, copy);
    } finally {
      Atomics.store(renamed, 0, 0);
      Atomics.notify(renamed, 0);
    }
  });
});

/** A 2 MiB tmpfs at `dir` (root, and a kernel that lets this process mount), or null. */
function smallFilesystem(dir: string): (() => void) | null {
  mkdirSync(dir, { recursive: true });
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", "size=2m", "tmpfs", dir], { stdio: "ignore" });
  } catch {
    return null;
  }
  return () => execFileSync("umount", [dir], { stdio: "ignore" });
}

describe("a disk that fills up (ENOSPC in the thread's write)", () => {
  test("58030 naming PutObject and the file as FileStore words it; nothing left; the session goes on", async (ctx) => {
    const small = join(root, "small");
    const unmount = smallFilesystem(small);
    if (unmount === null) {
      ctx.skip(); // no mount here: a real full disk cannot be made without privileges
      return;
    }
    try {
      const dir = join(small, "p");
      const err = await client.query(`COPY mid TO 'file://${dir}' WITH (FORMAT = 'csv')`).then(
        () => null,
        (e: { code?: string; message: string; detail?: string }) => e,
      );
      expect(err).toMatchObject({ code: "58030", message: "ENOSPC error when using PutObject" });
      expect(err!.detail).toMatch(
        new RegExp(
          `^file://${dir}/mz-[0-9a-f-]+-batch-0000-0000\\.csv: ENOSPC: no space left on device, write`,
        ),
      );
      expect(namesUnder(dir)).toEqual([]);
      expect(descriptorsUnder(root)).toEqual([]);
      expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
      // The space is back: the same export into the same directory now fits when smaller.
      const ok = await client.query(
        `COPY (SELECT * FROM mid WHERE g <= 1000) TO 'file://${dir}' WITH (FORMAT = 'csv')`,
      );
      expect(ok.rowCount).toBe(1000);
    } finally {
      unmount();
    }
  });
});
