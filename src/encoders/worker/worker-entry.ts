// Where an encoder thread starts from, and with which node options: the compiled worker next to
// this module, or the sources bundled once per process (docs/isolation.md, "Running from sources
// and from dist/").
import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, renameSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { basename, dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { threadId } from "node:worker_threads";
import { lowerThread } from "./thread-priority.js";

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

/**
 * Runs `start` (which starts one thread: `new Worker`, its entry found before) and lowers that thread to `nice`
 * from here, before it runs. A new Linux thread inherits its creator's niceness (the relay's), and
 * Node's start-up of a worker thread (45–80 ms of CPU under load) runs before any code of ours in
 * it can lower itself; but Node creates the thread inside the Worker constructor, so it is the
 * one task of this process that appeared meanwhile, and a thread of ours may lower another
 * (setpriority on its tid; same user). Never raises a thread a process already nicer runs at.
 * Without /proc (another platform) the thread lowers itself later, as before.
 */
export function startLowered<T>(nice: number, start: () => T): T {
  const before = tasks();
  const started = start();
  if (before === null) return started;
  const fresh = [...(tasks() ?? [])].filter((tid) => !before.has(tid));
  // One new task is the thread; with more (another thread of ours started one meanwhile) which
  // one it is is not known, and none is touched: the thread lowers itself, as before.
  if (fresh.length !== 1) return started;
  // Gone already, or no per-thread priorities here: it lowers itself.
  lowerThread(nice, Number(fresh[0]));
  return started;
}

function tasks(): Set<string> | null {
  try {
    return new Set(readdirSync("/proc/self/task"));
  } catch {
    return null;
  }
}
