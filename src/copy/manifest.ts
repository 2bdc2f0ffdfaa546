// The manifest (SPEC §2.1): written after every data file is complete and before the sentinel
// goes, so a reader that sees it can trust the file list. It says everything a loader needs to
// read the files without guessing (dialect, compression, columns, exact sizes), and a second,
// Redshift-format manifest lets `COPY … MANIFEST` take the file list unchanged.
//
// Layout (docs/loading.md): data files and the sentinel stay where Materialize puts them,
// `<prefix>/mz-<id>-batch-<BBBB>-<NNNN>.<ext>` and `<prefix>/mz-<id>-INCOMPLETE`; the metadata goes
// under `<prefix>/_meta/`, so a glob over `<prefix>/*` (DuckDB, BigQuery's `*.parquet`) or a
// loader's extension PATTERN reads data only, and Hadoop-style readers (Spark, Databricks) skip a
// `_`-prefixed directory anyway.

import type { SnapshotInfo } from "./snapshot/snapshot-source.js";

/** The directory (relative to the export's prefix) that holds an export's metadata objects. */
export const META_DIR = "_meta";

/** Keys (relative to the export's prefix) of the metadata objects of export `id`. */
export function metadataKeys(id: string): { manifest: string; redshift: string } {
  return {
    manifest: `${META_DIR}/mz-${id}-manifest.json`,
    redshift: `${META_DIR}/mz-${id}-redshift.manifest`,
  };
}

export interface CsvDialect {
  header: boolean;
  delimiter: string;
  quote: string;
  escape: string;
  null: string;
  /** The upstream session's client_encoding (what the text output is in). */
  encoding?: string | undefined;
}

export interface ManifestInput {
  exportId: string;
  target: string;
  format: "csv" | "parquet";
  compression: string;
  /** CSV exports only. */
  csv?: CsvDialect | undefined;
  snapshot: SnapshotInfo;
  columns: Array<{ name: string; type: string }>;
  files: Array<{ key: string; url: string; rows: number; bytes: number }>;
  rows: number;
  /** When the manifest was built (default: now). */
  now?: Date;
}

/** A JSON number too large for a JS number, spliced in as its digits (JSON allows any length). */
const RAW = "@@c2s-raw-number:";

export function buildManifest(m: ManifestInput): string {
  const snap = m.snapshot;
  const snapshot =
    snap.upstream === "materialize"
      ? {
          upstream: snap.upstream,
          at: snap.at,
          // Materialize's mz_timestamp (milliseconds since the epoch, or u64::MAX for a constant
          // query), as a number; `AS OF` takes it back verbatim.
          mzTimestamp: snap.timestamp === undefined ? null : rawNumber(snap.timestamp),
        }
      : {
          upstream: snap.upstream,
          at: isoTime(snap.at),
          // pg_current_snapshot(): xmin:xmax:xip_list.
          postgresSnapshot: snap.timestamp ?? null,
        };
  const json = JSON.stringify(
    {
      version: 2,
      exportId: m.exportId,
      target: m.target,
      format: m.format,
      compression: m.compression,
      // How a loader reads the CSV: PostgreSQL's CSV format with these settings, one
      // record per "\n" (fields may hold newlines inside quotes); a header starts every file.
      ...(m.csv === undefined
        ? {}
        : {
            csv: {
              header: m.csv.header,
              delimiter: m.csv.delimiter,
              quote: m.csv.quote,
              escape: m.csv.escape,
              null: m.csv.null,
              recordDelimiter: "\n",
              encoding: m.csv.encoding ?? "UTF8",
            },
          }),
      snapshot,
      columns: m.columns,
      rows: m.rows,
      files: m.files,
      createdAt: (m.now ?? new Date()).toISOString(),
    },
    null,
    2,
  );
  return `${json.replace(new RegExp(`"${RAW}(\\d+)"`, "g"), "$1")}\n`;
}

/** Redshift's manifest (COPY … MANIFEST): every file mandatory, with its exact length. */
export function buildRedshiftManifest(files: ReadonlyArray<{ url: string; bytes: number }>): string {
  return `${JSON.stringify(
    {
      entries: files.map((f) => ({ url: f.url, mandatory: true, meta: { content_length: f.bytes } })),
    },
    null,
    2,
  )}\n`;
}

function rawNumber(digits: string): number | string {
  if (!/^\d+$/.test(digits)) return digits;
  const n = Number(digits);
  return Number.isSafeInteger(n) ? n : `${RAW}${digits}`;
}

/**
 * PostgreSQL's `now()::text` in the ISO DateStyle ("2026-12-06 10:00:00.123456+00", offsets like
 * "+05:30") as ISO-8601 in UTC; anything else is passed through unchanged.
 */
export function isoTime(pgText: string): string {
  const m = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)(\.\d+)?([+-]\d\d)(?::?(\d\d))?(?::?(\d\d))?$/.exec(pgText);
  if (m === null) return pgText;
  const frac = (m[3] ?? "").slice(1).padEnd(6, "0");
  const sign = m[4]!.startsWith("-") ? -1 : 1;
  const offsetSec = sign * (Math.abs(Number(m[4])) * 3600 + Number(m[5] ?? 0) * 60 + Number(m[6] ?? 0));
  const local = Date.parse(`${m[1]}T${m[2]}Z`);
  if (Number.isNaN(local)) return pgText;
  const utc = new Date(local - offsetSec * 1000).toISOString().slice(0, 19);
  // Microseconds kept: the transaction start is a microsecond value.
  return `${utc}.${frac}Z`;
}
