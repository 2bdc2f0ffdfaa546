// What a thread's entry loads: the entry bundled as worker-entry.ts bundles it (esbuild, packages
// left external), so a test can say which of our files and which packages a new thread imports.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";

const require = createRequire(import.meta.url);
const esbuild = require("esbuild") as typeof import("esbuild");

/** `entry` relative to this repository's root, e.g. "src/copy/storage/upload-worker.ts". */
export function moduleGraph(entry: string): { files: string[]; packages: string[] } {
  const { metafile } = esbuild.buildSync({
    entryPoints: [fileURLToPath(new URL(`../../${entry}`, import.meta.url))],
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.values(metafile.inputs);
  return {
    files: Object.keys(metafile.inputs),
    packages: [...new Set(inputs.flatMap((i) => i.imports.filter((x) => x.external).map((x) => x.path)))],
  };
}
