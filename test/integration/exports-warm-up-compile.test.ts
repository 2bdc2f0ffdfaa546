// exports.warmUp "compile" (the default): once the proxy listens, parquet-wasm is compiled in the
// background, in a thread of its own, and the first Parquet export uses that compile instead of
// compiling on the relay's thread. The warm-up never stands between a client and the upstream:
// with the compile held, a client logs in and its query is relayed. A file of its own: parquet-wasm is compiled once per process, so this
// process must not have compiled it before.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test, vi } from "vitest";
import { parquetWasmTestHooks } from "../../src/encoders/parquet/wasm-writer.js";
import { warmUpTestHooks } from "../../src/encoders/worker/encoder-warm-up.js";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";

const pgPort = inject("pgPort");
let root: string;
let proxy: TestProxy | undefined;
let client: pg.Client | undefined;

/** WebAssembly.compile on this (the relay's) thread, watched. */
const wasm = (globalThis as unknown as { WebAssembly: { compile(b: Uint8Array): Promise<object> } })
  .WebAssembly;
const compile = vi.spyOn(wasm, "compile");
/** The warm-up's compile is held until released. */
let release: () => void = () => {};
const held = new Promise<void>((r) => {
  release = r;
});
let compileAsked = false;
parquetWasmTestHooks.beforeCompile = () => {
  compileAsked = true;
  return held;
};
const ended: string[] = [];
warmUpTestHooks.ended = (mode, outcome) => ended.push(`${mode} ${outcome}`);

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "c2s-warm-compile-"));
});

afterAll(async () => {
  release();
  compile.mockRestore();
  delete parquetWasmTestHooks.beforeCompile;
  delete warmUpTestHooks.ended;
  await client?.end().catch(() => {});
  await proxy?.shutdown(0);
  rmSync(root, { recursive: true, force: true });
});

test("parquet-wasm is compiled off the relay's thread once the proxy listens, without holding up a client, and the first Parquet export does not compile it", async () => {
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3: motoAccess(), args: ["--file-root", root] });
  // The warm-up has begun: its compile is held.
  await waitUntil("the warm-up's compile", () => compileAsked);
  // Meanwhile a client logs in and its queries are relayed.
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  expect((await client.query("SELECT 41 + 1 AS answer")).rows).toEqual([{ answer: 42 }]);
  expect(ended).toEqual([]);
  release();
  await waitUntil("the warm-up's end", () => ended.length === 1);
  expect(ended).toEqual(["compile done"]);
  const r = await client.query(
    `COPY (SELECT g, md5(g::text) AS h FROM generate_series(1, 3000) g) TO 'file://${join(root, "p")}' WITH (FORMAT = 'parquet')`,
  );
  expect(r.rowCount).toBe(3000);
  expect(readdirSync(join(root, "p")).filter((f) => f.endsWith(".parquet"))).toHaveLength(1);
  // Neither the warm-up nor the export compiled on the relay's thread: the export used the
  // module the warm-up's thread compiled.
  expect(compile).not.toHaveBeenCalled();
});
