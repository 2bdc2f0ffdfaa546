import { describe, expect, test } from "vitest";
import { buildManifest, buildRedshiftManifest, isoTime, metadataKeys } from "../../src/copy/manifest.js";

const base = {
  exportId: "e1",
  target: "s3://b/p",
  format: "csv" as const,
  compression: "none",
  columns: [{ name: "a", type: "integer" }],
  files: [{ key: "mz-e1-batch-0000-0000.csv", url: "s3://b/p/mz-e1-batch-0000-0000.csv", rows: 1, bytes: 2 }],
  rows: 1,
  now: new Date("2026-12-02T10:00:00Z"),
};

describe("manifest", () => {
  test("metadata lives under _meta/, apart from the data files", () => {
    expect(metadataKeys("e1")).toEqual({
      manifest: "_meta/mz-e1-manifest.json",
      redshift: "_meta/mz-e1-redshift.manifest",
    });
  });

  test("Materialize's timestamp is a labelled JSON number, digits kept even beyond 2^53", () => {
    const at = (timestamp: string) =>
      buildManifest({ ...base, snapshot: { upstream: "materialize", at: "x", timestamp } });
    expect(JSON.parse(at("1764669600000")).snapshot.mzTimestamp).toBe(1764669600000);
    // A constant query's AS OF is u64::MAX: written as its exact digits, not 18446744073709552000.
    expect(at("18446744073709551615")).toContain('"mzTimestamp": 18446744073709551615');
  });

  test("PostgreSQL's transaction start becomes ISO-8601 UTC; its snapshot is labelled", () => {
    const m = JSON.parse(
      buildManifest({
        ...base,
        snapshot: { upstream: "postgres", at: "2026-12-02 11:30:00.5+01:30", timestamp: "10:12:" },
      }),
    );
    expect(m.snapshot).toEqual({
      upstream: "postgres",
      at: "2026-12-02T10:00:00.500000Z",
      postgresSnapshot: "10:12:",
    });
    expect(isoTime("2026-12-02 10:00:00-05")).toBe("2026-12-02T15:00:00.000000Z");
    expect(isoTime("Wed Dec 02 10:00:00 2026 PST")).toBe("Wed Dec 02 10:00:00 2026 PST");
  });

  test("CSV dialect only for CSV; Redshift manifest entries carry exact lengths", () => {
    const csv = JSON.parse(
      buildManifest({
        ...base,
        csv: { header: true, delimiter: ",", quote: '"', escape: '"', null: "", encoding: "UTF8" },
        snapshot: { upstream: "postgres", at: "" },
      }),
    );
    expect(csv.csv).toEqual({
      header: true,
      delimiter: ",",
      quote: '"',
      escape: '"',
      null: "",
      recordDelimiter: "\n",
      encoding: "UTF8",
    });
    expect(JSON.parse(buildRedshiftManifest(base.files))).toEqual({
      entries: [{ url: "s3://b/p/mz-e1-batch-0000-0000.csv", mandatory: true, meta: { content_length: 2 } }],
    });
  });
});
