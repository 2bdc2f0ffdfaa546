// A new encoder thread loads only the Arrow modules the Parquet encoder uses: its module graph (its
// entry bundled the way worker-entry.ts bundles it) imports apache-arrow/<module>, never the
// package's index, which loads the whole package (146 modules against 81; a new
// thread's import CPU 0.65x without it (docs/benchmarks.md, "Importing only the Arrow modules used", h-arrow,
// session 13).
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";

const require = createRequire(import.meta.url);
const esbuild = require("esbuild") as typeof import("esbuild");

function packagesOf(entry: string): string[] {
  const { metafile } = esbuild.buildSync({
    entryPoints: [fileURLToPath(new URL(entry, import.meta.url))],
    bundle: true,
    packages: "external",
    platform: "node",
    format: "esm",
    write: false,
    metafile: true,
    logLevel: "silent",
  });
  const inputs = Object.values(metafile.inputs);
  return [...new Set(inputs.flatMap((i) => i.imports.filter((x) => x.external).map((x) => x.path)))];
}

describe("the encoder thread's Arrow modules", () => {
  test("its own modules of apache-arrow, not the package index", () => {
    const packages = packagesOf("../../src/encoders/worker/encoder-worker-start.ts");
    const arrow = packages.filter((p) => p === "apache-arrow" || p.startsWith("apache-arrow/"));
    expect(arrow).not.toContain("apache-arrow");
    expect(arrow).toContain("apache-arrow/data");
    // Nor RecordBatch (Table comes with it) or VectorAssembler (RecordBatch comes with it).
    expect(arrow).not.toContain("apache-arrow/recordbatch");
    expect(arrow).not.toContain("apache-arrow/visitor/vectorassembler");
  });
});
