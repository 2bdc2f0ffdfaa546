// An export's plan: the notices its options call for, and the snapshot opened (which fixes the
// result's columns and the point in time it is read at).

import { planParquet } from "../encoders/parquet-encoder.js";
import type { PgError } from "../errors.js";
import type { CopyOptions } from "./options.js";
import type { OpenedSnapshot, SnapshotSource } from "./snapshot/snapshot-source.js";
import { watchForStall } from "./stall-watchdog.js";

export interface PlanDeps {
  snapshot: SnapshotSource;
  notice: (message: string, detail?: string) => void;
  stallTimeoutMs: number;
  /** Ends the export (a stall). */
  abort: (err: PgError) => void;
  signal: AbortSignal;
}

export async function planExport(opts: CopyOptions, d: PlanDeps): Promise<OpenedSnapshot> {
  if (opts.ignored !== undefined) {
    d.notice(
      `ignoring COPY option${opts.ignored.length === 1 ? "" : "s"} ${opts.ignored.join(", ")}`,
      "As Materialize's COPY TO does: CSV options apply only to FORMAT csv, FILES and PATTERN only to COPY FROM.",
    );
  }
  // Opening waits on the upstream too (Materialize: the SUBSCRIBE's first progress row).
  const stopWatching = watchForStall(
    d.stallTimeoutMs,
    { progress: () => 0, waitingFor: () => "upstream" },
    (err) => d.abort(err),
  );
  let opened: OpenedSnapshot;
  try {
    opened = await d.snapshot.open({ typeInfo: opts.format === "parquet" }, d.signal);
  } finally {
    stopWatching();
  }
  if (opts.format === "parquet") {
    const { textColumns } = planParquet(opened.columns);
    if (textColumns.length > 0) {
      d.notice(
        `exporting ${textColumns.length === 1 ? "column" : "columns"} ${textColumns.map((c) => `"${c}"`).join(", ")} as text`,
        "Parquet has no type for these columns; their text output is written as UTF-8 strings.",
      );
    }
  }
  return opened;
}
