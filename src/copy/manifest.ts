// The manifest (SPEC §2.1): written after every data file is complete and before the sentinel
// goes, so a reader that sees it can trust the file list.

import type { SnapshotInfo } from "./snapshot/snapshot-source.js";

export interface ManifestInput {
  exportId: string;
  target: string;
  format: "csv" | "parquet";
  compression: string;
  snapshot: SnapshotInfo;
  columns: Array<{ name: string; type: string }>;
  files: Array<{ key: string; url: string; rows: number; bytes: number }>;
  rows: number;
}

export function buildManifest(m: ManifestInput): string {
  return `${JSON.stringify(
    {
      version: 1,
      exportId: m.exportId,
      target: m.target,
      format: m.format,
      compression: m.compression,
      snapshot: m.snapshot,
      columns: m.columns,
      rows: m.rows,
      files: m.files,
      createdAt: new Date().toISOString(),
    },
    null,
    2,
  )}\n`;
}
