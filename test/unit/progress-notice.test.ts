// The NOTICE texts of an export: the phase in every progress line, singular and plural right,
// sizes in MAX FILE SIZE's units.
import { describe, expect, test, vi } from "vitest";
import { count, finalMessage, formatBytes, plural, progressMessage } from "../../src/copy/progress-notice.js";

describe("progress NOTICE texts", () => {
  test("counts: singular, plural, thousands", () => {
    expect([plural(0, "row"), plural(1, "row"), plural(2, "row"), plural(1234567, "file")]).toEqual([
      "0 rows",
      "1 row",
      "2 rows",
      "1,234,567 files",
    ]);
  });

  test("counts are grouped as en-US groups them, without ICU (whose first use stalls the relay)", () => {
    const values = [0, 7, 999, 1000, 12_345, 999_999, 1_000_000, 1_234_567, -1234, Number.MAX_SAFE_INTEGER];
    const expected = values.map((n) => n.toLocaleString("en-US"));
    const icu = vi.spyOn(Number.prototype, "toLocaleString");
    try {
      expect(values.map(count)).toEqual(expected);
      finalMessage({ rows: 1_234_567, files: 1000, bytes: 5, target: "s3://b/p/", manifest: "s3://b/p/m" });
      progressMessage({
        phase: "reading",
        rows: 1_200_000,
        bytes: 1,
        files: 3,
        filesDone: 2,
        readingMs: 48_000,
      });
      expect(icu).not.toHaveBeenCalled();
    } finally {
      icu.mockRestore();
    }
  });

  test("sizes in powers of 1024", () => {
    expect([0, 1023, 1024, 1536, 1024 ** 2 * 1.25, 1024 ** 3 * 3.4].map(formatBytes)).toEqual([
      "0 B",
      "1023 B",
      "1.0 kB",
      "1.5 kB",
      "1.3 MB",
      "3.40 GB",
    ]);
  });

  test("each phase says what moves in it", () => {
    const base = { rows: 1_200_000, bytes: 130 * 1024 ** 2, files: 3, filesDone: 2, readingMs: 48_000 };
    expect(progressMessage({ ...base, phase: "preparing" })).toBe(
      "COPY TO progress: preparing (opening the snapshot, checking that the target is empty)",
    );
    expect(progressMessage({ ...base, phase: "reading" })).toBe(
      "COPY TO progress: reading: 1,200,000 rows (25,000 rows/s), 130.0 MB, 3 files (2 complete)",
    );
    expect(progressMessage({ ...base, phase: "uploading" })).toBe(
      "COPY TO progress: uploading: 2 of 3 files complete (130.0 MB); all 1,200,000 rows read",
    );
    expect(progressMessage({ ...base, files: 1, phase: "committing" })).toBe(
      "COPY TO progress: committing: 1 file uploaded, writing the manifest",
    );
  });

  test("the final NOTICE", () => {
    expect(
      finalMessage({
        rows: 1000,
        files: 1,
        bytes: 1.2 * 1024 ** 2,
        target: "s3://b/p/",
        manifest: "s3://b/p/_meta/mz-x-manifest.json",
      }),
    ).toBe(
      "exported 1,000 rows in 1 file (1.2 MB) to s3://b/p/; manifest: s3://b/p/_meta/mz-x-manifest.json",
    );
    expect(finalMessage({ rows: 1, files: 2, bytes: 10, target: "s3://b/", manifest: "m" })).toBe(
      "exported 1 row in 2 files (10 B) to s3://b/; manifest: m",
    );
  });
});
