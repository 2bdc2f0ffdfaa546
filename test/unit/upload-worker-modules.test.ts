// The upload thread loads what it sends parts with and nothing more: its module graph (its entry
// bundled the way worker-entry.ts bundles it) holds the AWS SDK but not the metrics registry
// (src/metrics/metrics.ts) nor prom-client, which would add their heap to every S3 export's peak
// RSS (docs/decisions.md, "Peak RSS: malloc arenas and young generations").
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import { describe, expect, test } from "vitest";

const require = createRequire(import.meta.url);
const esbuild = require("esbuild") as typeof import("esbuild");

function moduleGraph(entry: string): { files: string[]; packages: string[] } {
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
  return {
    files: Object.keys(metafile.inputs),
    packages: [...new Set(inputs.flatMap((i) => i.imports.filter((x) => x.external).map((x) => x.path)))],
  };
}

describe("the upload thread's modules", () => {
  test("no metrics registry, no prom-client; the SDK and the shared S3 middleware are there", () => {
    const g = moduleGraph("../../src/copy/storage/upload-worker.ts");
    expect(g.packages).toContain("@aws-sdk/client-s3");
    expect(g.files.some((f) => f.endsWith("src/metrics/s3-metrics.ts"))).toBe(true);
    expect(g.packages).not.toContain("prom-client");
    expect(g.files.filter((f) => f.endsWith("src/metrics/metrics.ts"))).toEqual([]);
  });
});
