// No export may wait forever: while the snapshot is read, something has to move — rows arriving
// from the upstream, or (while the row stream is paused for the export's encoder threads or its
// uploads) those catching up. When nothing does for `limitMs`, the export is cancelled with a 57014
// naming what it was waiting for. Waiting for an encoding turn (encoder-budget.ts) counts like
// any other wait: a turn comes within a few seconds by design, so only a stuck budget reaches the
// limit, and that must end too (docs/decisions.md, "Stall watchdog").
import { PgError, SqlState } from "../errors.js";

/** What an export waits for: rows from the upstream, or (its row stream paused) its encoder threads or its uploads. */
export type StallCause = "upstream" | "encoder" | "uploads";

export interface StallProbe {
  /** Grows with every row read and every time the paused row stream is let go again. */
  progress(): number;
  /** What the export waits for now. */
  waitingFor(): StallCause;
}

/**
 * Starts watching; returns the function that stops it. `limitMs` 0 = never. `encodingTurns`: the
 * encoding budget's slots (exports.maxEncodingThreads; 0 = none), named when the encoder stalled.
 */
export function watchForStall(
  limitMs: number,
  probe: StallProbe,
  onStall: (err: PgError) => void,
  encodingTurns = 0,
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
      onStall(stalled(probe.waitingFor(), Math.round((now - since) / 1000), encodingTurns));
    },
    Math.max(10, Math.min(1000, Math.floor(limitMs / 4))),
  );
  timer.unref();
  return () => clearInterval(timer);
}

function stalled(cause: StallCause, secs: number, encodingTurns: number): PgError {
  const what =
    cause === "upstream"
      ? `no rows came from the upstream for ${secs} s`
      : cause === "uploads"
        ? `the uploads made no progress for ${secs} s`
        : `the encoder made no progress for ${secs} s`;
  return new PgError(SqlState.queryCanceled, `canceling COPY TO: ${what}`, {
    ...(cause === "encoder" && encodingTurns > 0
      ? {
          detail: `At most ${encodingTurns} ${encodingTurns === 1 ? "export encodes" : "exports encode"} at once (exports.maxEncodingThreads): this export's encoder was waiting for its turn or still encoding.`,
        }
      : {}),
    hint: "The limit is exports.stallTimeoutMs (--stall-timeout); 0 turns the check off.",
  });
}
