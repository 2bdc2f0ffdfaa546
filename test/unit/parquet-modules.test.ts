// A new encoder thread loads only the Arrow modules the Parquet encoder uses: its module graph
// imports apache-arrow/<module>, never the package's index, which loads the whole package (146
// modules against 81; a new thread's import CPU 0.65x without it: docs/benchmarks.md, "Importing
// only the Arrow modules used", h-arrow, session 13).
import { describe, expect, test } from "vitest";
import { moduleGraph } from "../support/module-graph.js";

describe("the encoder thread's Arrow modules", () => {
  test("its own modules of apache-arrow, not the package index", () => {
    const packages = moduleGraph("src/encoders/worker/encoder-worker-start.ts").packages;
    const arrow = packages.filter((p) => p === "apache-arrow" || p.startsWith("apache-arrow/"));
    expect(arrow).not.toContain("apache-arrow");
    expect(arrow).toContain("apache-arrow/data");
    // Nor RecordBatch (Table comes with it) or VectorAssembler (RecordBatch comes with it).
    expect(arrow).not.toContain("apache-arrow/recordbatch");
    expect(arrow).not.toContain("apache-arrow/visitor/vectorassembler");
  });
});
