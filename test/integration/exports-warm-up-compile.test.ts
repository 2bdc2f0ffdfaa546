// exports.warmUp "compile" (the default): once the proxy listens, parquet-wasm is compiled in the
// background, and the first Parquet export uses that compile instead of compiling again. The
// warm-up never stands between a client and the upstream: with the compile held, a client logs in
// and its query is relayed. A file of its own: parquet-wasm is compiled once per process, so this
// process must not have compiled it before.
import { mkdtempSync, readdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test, vi } from "vitest";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";

const pgPort = inject("pgPort");
let root: string;
let proxy: TestProxy | undefined;
let client: pg.Client | undefined;

/** WebAssembly.compile, watched: the calls, and each call's own compile held until released. */
const wasm = (globalThis as unknown as { WebAssembly: { compile(b: Uint8Array): Promise<object> } })
  .WebAssembly;
const compileNow = wasm.compile.bind(wasm);
let release: () => void = () => {};
const held = new Promise<void>((r) => {
  release = r;
});
const compile = vi.spyOn(wasm, "compile").mockImplementation(async (bytes) => {
  await held;
  return compileNow(bytes);
});

beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "c2s-warm-compile-"));
});

afterAll(async () => {
  release();
  compile.mockRestore();
  await client?.end().catch(() => {});
  await proxy?.shutdown(0);
  rmSync(root, { recursive: true, force: true });
});

test("parquet-wasm is compiled once the proxy listens, without holding up a client, and the first Parquet export does not compile it again", async () => {
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3: motoAccess(), args: ["--file-root", root] });
  // The warm-up has begun: its compile is held.
  await waitUntil("the warm-up's compile", () => compile.mock.calls.length === 1);
  // Meanwhile a client logs in and its queries are relayed.
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  expect((await client.query("SELECT 41 + 1 AS answer")).rows).toEqual([{ answer: 42 }]);
  expect(compile).toHaveBeenCalledTimes(1);
  release();
  const r = await client.query(
    `COPY (SELECT g, md5(g::text) AS h FROM generate_series(1, 3000) g) TO 'file://${join(root, "p")}' WITH (FORMAT = 'parquet')`,
  );
  expect(r.rowCount).toBe(3000);
  expect(readdirSync(join(root, "p")).filter((f) => f.endsWith(".parquet"))).toHaveLength(1);
  // The export used the warm-up's module: still one compile in this process.
  expect(compile).toHaveBeenCalledTimes(1);
});
