// Runs of jobs that fire together wait here for room under the proxy's export caps
// (--max-exports, --max-exports-per-user) instead of being refused by them (53300) and retried
// after a backoff: a refused run spent an attempt and came back up to `backoff` late, and jobs of
// one user firing at one instant (the usual case: one "exporter" role, hourly jobs) were refused
// every time. The caps stay the export limiter's (src/copy/export-limiter.ts): this only keeps the
// scheduler from asking for more than they allow. A client's export can still take a slot a run
// counted on; that run is then refused and retried as before.

/** Waits for room under the caps; resolves with the release. */
export interface RunSlots {
  acquire(user: string, signal: AbortSignal): Promise<() => void>;
}

export class CappedRunSlots implements RunSlots {
  private running = 0;
  private readonly perUser = new Map<string, number>();
  /** In arrival order; the first that fits goes first (a user at its cap does not hold up others). */
  private readonly waiting: Array<{ user: string; go: () => void }> = [];

  constructor(
    private readonly max: number,
    private readonly maxPerUser: number,
  ) {}

  acquire(user: string, signal: AbortSignal): Promise<() => void> {
    if (signal.aborted) return Promise.reject(signal.reason);
    // Whoever waits does not fit (each release wakes all that do), so one that fits goes ahead.
    if (this.fits(user)) return Promise.resolve(this.take(user));
    return new Promise((resolve, reject) => {
      const w = {
        user,
        go: () => {
          signal.removeEventListener("abort", onAbort);
          resolve(this.take(user));
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

  private fits(user: string): boolean {
    return this.running < this.max && (this.perUser.get(user) ?? 0) < this.maxPerUser;
  }

  private take(user: string): () => void {
    this.running++;
    this.perUser.set(user, (this.perUser.get(user) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.running--;
      const n = this.perUser.get(user)! - 1;
      if (n === 0) this.perUser.delete(user);
      else this.perUser.set(user, n);
      this.wake();
    };
  }

  private wake(): void {
    for (let i = 0; i < this.waiting.length && this.running < this.max; ) {
      const w = this.waiting[i]!;
      if (this.fits(w.user)) {
        this.waiting.splice(i, 1);
        w.go();
      } else i++;
    }
  }
}
