// The stall watchdog's 57014 for each cause, on fake timers (no wall clock): the words name what
// made no progress, and only an encoder stalled under an encoding budget carries the DETAIL naming it.
import { afterEach, beforeEach, describe, expect, test, vi } from "vitest";
import { type StallCause, watchForStall } from "../../src/copy/stall-watchdog.js";
import type { PgError } from "../../src/errors.js";

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

/** The error a probe stuck on `cause` ends with after 4 s of no progress under a 3 s limit. */
function stallOf(cause: StallCause, encodingTurns?: number): PgError | undefined {
  let err: PgError | undefined;
  watchForStall(
    3000,
    { progress: () => 0, waitingFor: () => cause },
    (e) => {
      err = e;
    },
    encodingTurns,
  );
  vi.advanceTimersByTime(4000);
  return err;
}

const HINT = "The limit is exports.stallTimeoutMs (--stall-timeout); 0 turns the check off.";

describe("watchForStall", () => {
  test("each cause has its own words; the DETAIL only for an encoder under a budget", () => {
    expect(stallOf("upstream")).toMatchObject({
      code: "57014",
      message: "canceling COPY TO: no rows came from the upstream for 3 s",
      detail: undefined,
      hint: HINT,
    });
    expect(stallOf("uploads", 2)).toMatchObject({
      code: "57014",
      message: "canceling COPY TO: the uploads made no progress for 3 s",
      detail: undefined,
      hint: HINT,
    });
    expect(stallOf("encoder")).toMatchObject({
      message: "canceling COPY TO: the encoder made no progress for 3 s",
      detail: undefined,
    });
    expect(stallOf("encoder", 1)?.detail).toBe(
      "At most 1 export encodes at once (exports.maxEncodingThreads): this export's encoder was waiting for its turn or still encoding.",
    );
    expect(stallOf("encoder", 3)?.detail).toBe(
      "At most 3 exports encode at once (exports.maxEncodingThreads): this export's encoder was waiting for its turn or still encoding.",
    );
  });

  test("progress restarts the clock; 0 turns the watch off", () => {
    let n = 0;
    const stalls: PgError[] = [];
    const stop = watchForStall(3000, { progress: () => n, waitingFor: () => "upstream" }, (e) => {
      stalls.push(e);
    });
    for (let i = 0; i < 10; i++) {
      vi.advanceTimersByTime(2000);
      n++;
    }
    expect(stalls).toEqual([]);
    stop();
    watchForStall(0, { progress: () => 0, waitingFor: () => "upstream" }, (e) => {
      stalls.push(e);
    });
    vi.advanceTimersByTime(60_000);
    expect(stalls).toEqual([]);
  });
});
