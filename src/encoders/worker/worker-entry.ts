// Where an encoder thread starts from, and with which node options: the compiled worker next to
// this module, or the sources bundled once per process (docs/isolation.md, "Running from sources
// and from dist/").
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { threadId } from "node:worker_threads";

/**
 * The worker's entry: the compiled module next to this one (dist/, `npm start`), or, running from
 * the TypeScript sources (vitest, tsx), that module bundled once per process with esbuild (tsx's
 * own compiler). A thread does not inherit the main thread's module hooks (Node 20 ignores
 * `--import` in a worker's execArgv too); registering tsx in every thread cost ~0.6 CPU-s per
 * export here, against ~0.1 for the bundle or dist/, and the test suite runs hundreds of exports.
 */
export function workerEntry(): URL {
  // Its first module lowers the thread's priority before the encoder's modules load.
  return entryOf("encoder-worker-start");
}

/** The encoder host process's entry (./encoder-host-main.ts), found or bundled the same way. */
export function hostEntry(): URL {
  return entryOf("encoder-host-main");
}

const bundled = new Map<string, URL>();

function entryOf(name: string): URL {
  return entryAt(new URL(`./${name}.js`, import.meta.url));
}

/** A worker's entry given as its compiled module's URL (`.js`), found or bundled the same way. */
export function entryAt(js: URL): URL {
  if (existsSync(fileURLToPath(js))) return js;
  const ts = fileURLToPath(js).replace(/\.js$/, ".ts");
  let url = bundled.get(ts);
  if (url === undefined) {
    url = bundle(ts, basename(ts, ".ts"));
    bundled.set(ts, url);
  }
  return url;
}

function bundle(entry: string, name: string): URL {
  const require = createRequire(import.meta.url);
  const esbuild = require("esbuild") as typeof import("esbuild");
  const { outputFiles } = esbuild.buildSync({
    entryPoints: [entry],
    outfile: `${name}.mjs`,
    write: false,
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    target: `node${process.versions.node.split(".")[0]}`,
    logLevel: "silent",
  });
  const code = outputFiles?.[0]?.contents;
  if (code === undefined) throw new Error(`esbuild wrote no bundle of ${name}`);
  // Beside the packages, so the bundle's bare imports (parquet-wasm, apache-arrow) resolve as the
  // sources' do. Named by content: processes running the same sources share one file (written
  // whole, then renamed), and none is left per process (vitest kills its workers without 'exit').
  const dir = join(dirname(dirname(require.resolve("esbuild/package.json"))), ".cache", "copy-to-s3-proxy");
  const out = join(dir, `${name}-${createHash("sha256").update(code).digest("hex").slice(0, 16)}.mjs`);
  if (!existsSync(out)) {
    mkdirSync(dir, { recursive: true });
    const tmp = `${out}.${process.pid}.${threadId}.tmp`;
    writeFileSync(tmp, code);
    renameSync(tmp, out);
  }
  return pathToFileURL(out);
}

/**
 * The process's own CPU profiler flags (`node --cpu-prof`, bench/export.ts --cpu-prof), so the
 * thread writes its profile beside the main thread's: they are the only node options it takes.
 */
export function profilerArgs(): string[] {
  return process.execArgv.filter((a) => a.startsWith("--cpu-prof"));
}
