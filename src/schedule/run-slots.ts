// Runs of jobs that fire together wait here for room under the proxy's export caps
// (--max-exports, --max-exports-per-user) instead of being refused by them (53300) and retried
// after a backoff: a refused run spent an attempt and came back up to `backoff` late, and jobs of
// one user firing at one instant (the usual case: one "exporter" role, hourly jobs) were refused
// every time. The caps stay the export limiter's (src/copy/export-limiter.ts): this only keeps the
// scheduler from asking for more than they allow. A client's export can still take a slot a run
// counted on; that run is then refused and retried as before.
import { SlotCounter } from "../copy/slot-counter.js";

/** Waits for room under the caps; resolves with the release. */
export interface RunSlots {
  acquire(user: string, signal: AbortSignal): Promise<() => void>;
}

export class CappedRunSlots implements RunSlots {
  private readonly slots: SlotCounter;
  /** In arrival order; the first that fits goes first (a user at its cap does not hold up others). */
  private readonly waiting: Array<{ user: string; go: () => void }> = [];

  constructor(max: number, maxPerUser: number) {
    this.slots = new SlotCounter(max, maxPerUser, () => this.wake());
  }

  /** The caps of a reloaded config (SIGHUP), as the export limiter takes them. */
  setLimits(max: number, maxPerUser: number): void {
    this.slots.setLimits(max, maxPerUser);
  }

  acquire(user: string, signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    // Whoever waits does not fit (each release wakes all that do), so one that fits goes ahead.
    if (this.slots.fits(user)) return Promise.resolve(this.slots.take(user));
    return new Promise((resolve, reject) => {
      const w = {
        user,
        go: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(this.slots.take(user));
        },
      };
      const onAbort = (): void => {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        reject(signal.reason);
        this.wake();
      };
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(w);
    });
  }

  private wake(): void {
    for (let i = 0; i < this.waiting.length && !this.slots.proxyFull; ) {
      const w = this.waiting[i]!;
      if (this.slots.fits(w.user)) {
        this.waiting.splice(i, 1);
        w.go();
      } else i++;
    }
  }
}
