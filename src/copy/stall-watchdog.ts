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

/** What the 57014 says for each cause: what made no progress, and a DETAIL when one helps. */
const STALL_WORDS: Record<
  StallCause,
  { what: string; detail?: (encodingTurns: number) => string | undefined }
> = {
  upstream: { what: "no rows came from the upstream" },
  encoder: {
    what: "the encoder made no progress",
    detail: (turns) =>
      turns > 0
        ? `At most ${turns} ${turns === 1 ? "export encodes" : "exports encode"} at once (exports.maxEncodingThreads): this export's encoder was waiting for its turn or still encoding.`
        : undefined,
  },
  uploads: { what: "the uploads made no progress" },
};

function stalled(cause: StallCause, secs: number, encodingTurns: number): PgError {
  const words = STALL_WORDS[cause];
  const detail = words.detail?.(encodingTurns);
  return new PgError(SqlState.queryCanceled, `canceling COPY TO: ${words.what} for ${secs} s`, {
    ...(detail === undefined ? {} : { detail }),
    hint: "The limit is exports.stallTimeoutMs (--stall-timeout); 0 turns the check off.",
  });
}
