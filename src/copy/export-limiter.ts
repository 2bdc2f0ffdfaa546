// At most N exports run at once in this proxy, and at most M of them for one user, so that one
// user cannot take every slot from the others. An export with no room waits its turn up to a
// timeout (0: none), then gets 53300, the way PostgreSQL refuses work it has no room for; over the
// per-user cap the words are modelled on PostgreSQL's per-role limit ("too many connections for
// role").
import type { ExportLimits } from "../config.js";
import { PgError, SqlState } from "../errors.js";
import { exportQueued, exportRefused } from "../metrics/metrics.js";
import { SlotCounter } from "./slot-counter.js";

interface Waiter {
  user: string;
  /** Its slot, already counted. */
  turn(release: () => void): void;
}

export class ExportLimiter {
  private readonly slots: SlotCounter;
  private readonly waiting: Waiter[] = [];

  constructor(
    max: number,
    private queueTimeoutMs: number,
    maxPerUser = Number.POSITIVE_INFINITY,
  ) {
    this.slots = new SlotCounter(max, maxPerUser, () => this.wake());
  }

  /**
   * The caps and queue timeout for exports that ask from now on (SIGHUP); exports already running
   * or waiting keep their slot or their deadline.
   */
  reconfigure(
    limits: Pick<ExportLimits, "maxConcurrentExports" | "maxExportsPerUser" | "queueTimeoutMs">,
  ): void {
    this.queueTimeoutMs = limits.queueTimeoutMs;
    this.slots.setLimits(limits.maxConcurrentExports, limits.maxExportsPerUser);
  }

  get active(): number {
    return this.slots.running;
  }

  /** Why `user` cannot start now (a full proxy says so first, whoever asks). */
  private refusal(user: string): PgError {
    const { max, maxPerUser } = this.slots.limits;
    return this.slots.full(user) === "user" ? tooManyForUser(user, maxPerUser) : tooMany(max);
  }

  /** Resolves with a release function once a slot is free for `user`. */
  async acquire(signal: AbortSignal, user = ""): Promise<() => void> {
    const began = performance.now();
    try {
      const release = await this.slot(signal, user);
      exportQueued((performance.now() - began) / 1000);
      return release;
    } catch (e) {
      if (e instanceof PgError && e.code === SqlState.tooManyConnections) exportRefused();
      throw e;
    }
  }

  private async slot(signal: AbortSignal, user: string): Promise<() => void> {
    if (this.slots.fits(user) && this.waiting.length === 0) return this.slots.take(user);
    if (this.queueTimeoutMs <= 0) throw this.refusal(user);
    return new Promise<() => void>((resolve, reject) => {
      const waiter: Waiter = {
        user,
        turn: (release) => {
          clearTimeout(timer);
          signal.removeEventListener("abort", onAbort);
          resolve(release);
        },
      };
      const leave = (err: unknown): void => {
        const i = this.waiting.indexOf(waiter);
        if (i >= 0) this.waiting.splice(i, 1);
        signal.removeEventListener("abort", onAbort);
        reject(err);
        this.wake();
      };
      const onAbort = (): void => {
        clearTimeout(timer);
        leave(signal.reason);
      };
      const timer = setTimeout(() => leave(this.refusal(user)), this.queueTimeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(waiter);
      this.wake();
    });
  }

  /**
   * Gives waiters that fit their turn, in arrival order (a user at its cap is skipped): one after
   * a release, as many as now fit after raised caps.
   */
  private wake(): void {
    for (;;) {
      const i = this.waiting.findIndex((w) => this.slots.fits(w.user));
      if (i < 0) return;
      const [w] = this.waiting.splice(i, 1);
      // Counted now, so that a second wake before the waiter runs cannot hand out the same slot.
      w!.turn(this.slots.take(w!.user));
    }
  }
}

function tooMany(max: number): PgError {
  return new PgError(
    SqlState.tooManyConnections,
    `too many COPY ... TO exports running (the limit is ${max})`,
    {
      hint: "Try again when one has finished, or raise --max-exports.",
    },
  );
}

function tooManyForUser(user: string, max: number): PgError {
  return new PgError(
    SqlState.tooManyConnections,
    `too many COPY ... TO exports running for role "${user}" (the limit is ${max})`,
    { hint: "Try again when one of them has finished, or raise --max-exports-per-user." },
  );
}
