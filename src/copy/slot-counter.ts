// Running exports counted against two caps, the proxy's and each user's. The export limiter
// (export-limiter.ts) and the scheduler's run slots (schedule/run-slots.ts) each keep their own
// waiting line and order in front of one of these; the counting and its release are the same.

/** Which cap keeps a user from starting now (the proxy's is named first, whoever asks). */
export type FullCap = "proxy" | "user";

export class SlotCounter {
  #running = 0;
  readonly #perUser = new Map<string, number>();

  constructor(
    private max: number,
    private maxPerUser: number,
    /** Called after every release and change of the caps: room may have appeared for someone waiting. */
    private readonly onRoom: () => void,
  ) {}

  get running(): number {
    return this.#running;
  }

  get limits(): { max: number; maxPerUser: number } {
    return { max: this.max, maxPerUser: this.maxPerUser };
  }

  /**
   * The caps from now on (SIGHUP). What runs keeps its slot, also above a lowered cap: it only
   * stops more from starting until enough have ended.
   */
  setLimits(max: number, maxPerUser: number): void {
    this.max = max;
    this.maxPerUser = maxPerUser;
    this.onRoom();
  }

  /** No one may start now, whoever it is. */
  get proxyFull(): boolean {
    return this.#running >= this.max;
  }

  /** Null when `user` may start now. */
  full(user: string): FullCap | null {
    if (this.proxyFull) return "proxy";
    return (this.#perUser.get(user) ?? 0) >= this.maxPerUser ? "user" : null;
  }

  fits(user: string): boolean {
    return this.full(user) === null;
  }

  /** Counts one more for `user`; the returned release counts it off once, however often called. */
  take(user: string): () => void {
    this.#running++;
    this.#perUser.set(user, (this.#perUser.get(user) ?? 0) + 1);
    let done = false;
    return () => {
      if (done) return;
      done = true;
      this.#running--;
      const n = (this.#perUser.get(user) ?? 1) - 1;
      if (n <= 0) this.#perUser.delete(user);
      else this.#perUser.set(user, n);
      this.onRoom();
    };
  }
}
