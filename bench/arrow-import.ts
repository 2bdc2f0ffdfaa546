// What a new encoder thread spends importing the Parquet encoder's modules (Apache Arrow's among
// them), per source tree: each rep starts a fresh `Worker` per tree, which imports the tree's
// src/encoders/parquet/encoder.ts bundled the way worker-entry.ts bundles it (esbuild, packages
// external, so Arrow and parquet-wasm load as the thread loads them) and reports that thread's
// CPU (/proc/thread-self/schedstat) and wall time for the import alone. Trees alternate within
// each rep, the order swapped every rep; the ratio is the median of the per-rep ratios.
//
//   npx tsx bench/arrow-import.ts [--ref main,.] [--reps 12]
//
// `.` is this checkout as it is; any other ref is taken from git (`git archive`).
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { Worker } from "node:worker_threads";
import { median } from "./lib/stats.js";

const { values: argv } = parseArgs({
  options: { ref: { type: "string", default: "main,." }, reps: { type: "string", default: "12" } },
});
const refs = argv.ref.split(",");
const reps = Number(argv.reps);

const require = createRequire(import.meta.url);
const esbuild = require("esbuild") as typeof import("esbuild");
// Beside the packages, as worker-entry.ts puts its bundles, so bare imports resolve the same way.
const cacheDir = join(
  dirname(dirname(require.resolve("esbuild/package.json"))),
  ".cache",
  "copy-to-s3-proxy",
);

function srcOf(ref: string): { dir: string; done(): void } {
  if (ref === ".") return { dir: process.cwd(), done() {} };
  const dir = mkdtempSync(join(tmpdir(), "arrow-import-"));
  execFileSync("sh", ["-c", `git archive ${JSON.stringify(ref)} src | tar -x -C ${JSON.stringify(dir)}`]);
  return { dir, done: () => rmSync(dir, { recursive: true, force: true }) };
}

/** The tree's encoder bundled; with it, how many of Arrow's modules the graph holds. */
function bundle(ref: string): { url: string; arrowModules: number } {
  const src = srcOf(ref);
  try {
    const entryPoints = [join(src.dir, "src/encoders/parquet/encoder.ts")];
    const common = { entryPoints, bundle: true, platform: "node", format: "esm", write: false } as const;
    const out = esbuild.buildSync({ ...common, packages: "external", logLevel: "silent" });
    const code = out.outputFiles[0]!.contents;
    // Arrow's own modules only: its dependencies (flatbuffers, tslib) and parquet-wasm stay out.
    const whole = esbuild.buildSync({
      ...common,
      metafile: true,
      logLevel: "silent",
      // A tree from git has no node_modules of its own.
      nodePaths: [join(process.cwd(), "node_modules")],
      external: ["flatbuffers", "tslib", "json-with-bigint", "parquet-wasm", "parquet-wasm/*"],
    });
    const arrowModules = Object.keys(whole.metafile.inputs).filter((f) => f.includes("apache-arrow/")).length;
    mkdirSync(cacheDir, { recursive: true });
    const file = join(
      cacheDir,
      `arrow-import-${createHash("sha256").update(code).digest("hex").slice(0, 16)}.mjs`,
    );
    writeFileSync(file, code);
    return { url: pathToFileURL(file).href, arrowModules };
  } finally {
    src.done();
  }
}

const probe = (url: string): string => `
import { readFileSync } from "node:fs";
import { parentPort } from "node:worker_threads";
const cpu = () => Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;
const c0 = cpu(), w0 = performance.now();
await import(${JSON.stringify(url)});
parentPort.postMessage({ cpu: cpu() - c0, wall: performance.now() - w0 });
`;

async function once(url: string): Promise<{ cpu: number; wall: number }> {
  const w = new Worker(new URL(`data:text/javascript,${encodeURIComponent(probe(url))}`));
  const r = await new Promise<{ cpu: number; wall: number }>((resolve, reject) => {
    w.once("message", resolve);
    w.once("error", reject);
  });
  await w.terminate();
  return r;
}

const builds = refs.map((ref) => ({ ref, ...bundle(ref), cpu: [] as number[], wall: [] as number[] }));
for (const b of builds) console.log(`${b.ref}: ${b.arrowModules} Arrow modules in the encoder's graph`);
const ratios = { cpu: [] as number[], wall: [] as number[] };
await once(builds[0]!.url); // the process's own first-worker costs, outside the figures
for (let i = 0; i < reps; i++) {
  const order = i % 2 === 0 ? builds : [...builds].reverse();
  for (const b of order) {
    const r = await once(b.url);
    b.cpu.push(r.cpu);
    b.wall.push(r.wall);
  }
  const [a, b] = builds;
  if (a && b) {
    ratios.cpu.push(b.cpu[i]! / a.cpu[i]!);
    ratios.wall.push(b.wall[i]! / a.wall[i]!);
  }
}
const ms = (xs: number[]) =>
  `${median(xs).toFixed(1)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
for (const b of builds) console.log(`${b.ref}: import CPU ms median ${ms(b.cpu)}, wall ms ${ms(b.wall)}`);
if (builds.length === 2) {
  const [a, b] = builds;
  console.log(
    `${b!.ref} / ${a!.ref}: CPU ${median(ratios.cpu).toFixed(2)}, wall ${median(ratios.wall).toFixed(2)} (medians of ${reps} per-rep ratios)`,
  );
}
