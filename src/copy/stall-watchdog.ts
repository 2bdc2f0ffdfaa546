// No export may wait forever: while the snapshot is read, something has to move — rows arriving
// from the upstream, or (while the row stream is paused for the uploads) the uploads catching up.
// When nothing does for `limitMs`, the export is cancelled with a 57014 naming what stalled.
import { PgError, SqlState } from "../errors.js";

export interface StallProbe {
  /** Grows with every row read and every time the paused row stream is let go again. */
  progress(): number;
  /** True while the row stream is paused for the uploads to catch up. */
  waitingForUploads(): boolean;
}

/** Starts watching; returns the function that stops it. `limitMs` 0 = never. */
export function watchForStall(
  limitMs: number,
  probe: StallProbe,
  onStall: (err: PgError) => void,
): () => void {
  if (limitMs <= 0) return () => {};
  let seen = probe.progress();
  let since = Date.now();
  const timer = setInterval(
    () => {
      const now = Date.now();
      const p = probe.progress();
      if (p !== seen) {
        seen = p;
        since = now;
        return;
      }
      if (now - since < limitMs) return;
      clearInterval(timer);
      const secs = Math.round((now - since) / 1000);
      const what = probe.waitingForUploads()
        ? `the uploads made no progress for ${secs} s`
        : `no rows came from the upstream for ${secs} s`;
      onStall(
        new PgError(SqlState.queryCanceled, `canceling COPY TO: ${what}`, {
          hint: "The limit is exports.stallTimeoutMs (--stall-timeout); 0 turns the check off.",
        }),
      );
    },
    Math.max(10, Math.min(1000, Math.floor(limitMs / 4))),
  );
  timer.unref();
  return () => clearInterval(timer);
}
