// The upload thread loads what it sends parts with and nothing more: its module graph (its entry
// bundled the way worker-entry.ts bundles it) holds the AWS SDK but not the metrics registry
// (src/metrics/metrics.ts) nor prom-client, which would add their heap to every S3 export's peak
// RSS (docs/decisions.md, "Peak RSS: malloc arenas and young generations").
import { describe, expect, test } from "vitest";
import { moduleGraph } from "../support/module-graph.js";

describe("the upload thread's modules", () => {
  test("no metrics registry, no prom-client; the SDK and the shared S3 middleware are there", () => {
    const g = moduleGraph("src/copy/storage/upload-worker.ts");
    expect(g.packages).toContain("@aws-sdk/client-s3");
    expect(g.files.some((f) => f.endsWith("src/metrics/s3-metrics.ts"))).toBe(true);
    expect(g.packages).not.toContain("prom-client");
    expect(g.files.filter((f) => f.endsWith("src/metrics/metrics.ts"))).toEqual([]);
  });
});
