// The sentinel's heartbeat (src/copy/sentinel.ts) on fake timers and a store that records what it
// is asked: refreshes come every interval while the export runs, none once the heartbeat is
// stopped, and remove() waits for a refresh in flight, so no refresh lands after the delete.
// (test/integration/copy-sentinel-heartbeat.test.ts shows the refreshes on a real S3 server.)
import { pino } from "pino";
import { afterEach, beforeEach, expect, test, vi } from "vitest";
import { Sentinel } from "../../src/copy/sentinel.js";
import type { ObjectStore } from "../../src/copy/storage/object-store.js";

const EVERY = 1000;

/** A store whose puts resolve when the test says (or at once), recording every call in order. */
function recordingStore(opts: { holdPuts: boolean }) {
  const calls: string[] = [];
  const pending: Array<() => void> = [];
  const store = {
    put: (key: string) => {
      calls.push(`put ${key}`);
      if (!opts.holdPuts) return Promise.resolve();
      return new Promise<void>((resolve) =>
        pending.push(() => {
          calls.push(`put done ${key}`);
          resolve();
        }),
      );
    },
    delete: (keys: readonly string[]) => {
      calls.push(`delete ${keys.join(",")}`);
      return Promise.resolve();
    },
  } as Partial<ObjectStore> as ObjectStore;
  return { store, calls, finishPut: () => pending.shift()!() };
}

const log = pino({ level: "silent" });
const puts = (calls: string[]): number => calls.filter((c) => c.startsWith("put mz-")).length;

beforeEach(() => {
  vi.useFakeTimers();
});
afterEach(() => {
  vi.useRealTimers();
});

test("a refresh every interval while running, none after the heartbeat stops", async () => {
  const { store, calls } = recordingStore({ holdPuts: false });
  const s = new Sentinel(store, "e1", log);
  const signal = new AbortController().signal;
  await s.write(signal);
  s.startHeartbeat(EVERY, signal, "e1");
  await vi.advanceTimersByTimeAsync(3 * EVERY);
  expect(puts(calls)).toBe(1 + 3);
  // A failed export keeps its sentinel (it may exist still): only the timer can stop the refreshes.
  await s.stopHeartbeat();
  await vi.advanceTimersByTimeAsync(10 * EVERY);
  expect(puts(calls)).toBe(1 + 3);
  expect(vi.getTimerCount()).toBe(0);
});

test("remove() waits for a refresh in flight: the delete comes after it, and nothing after the delete", async () => {
  const { store, calls, finishPut } = recordingStore({ holdPuts: true });
  const s = new Sentinel(store, "e2", log);
  const signal = new AbortController().signal;
  const written = s.write(signal);
  finishPut();
  await written;
  s.startHeartbeat(EVERY, signal, "e2");
  await vi.advanceTimersByTimeAsync(EVERY);
  expect(calls).toEqual(["put mz-e2-INCOMPLETE", "put done mz-e2-INCOMPLETE", "put mz-e2-INCOMPLETE"]);
  let removed = false;
  const removing = s.remove().then(() => {
    removed = true;
  });
  // Later intervals, and every microtask they could start: the delete still waits for the refresh.
  await vi.advanceTimersByTimeAsync(5 * EVERY);
  expect(removed).toBe(false);
  expect(calls.at(-1)).toBe("put mz-e2-INCOMPLETE");
  finishPut();
  await removing;
  await vi.advanceTimersByTimeAsync(5 * EVERY);
  expect(calls.slice(2)).toEqual([
    "put mz-e2-INCOMPLETE",
    "put done mz-e2-INCOMPLETE",
    "delete mz-e2-INCOMPLETE",
  ]);
});
