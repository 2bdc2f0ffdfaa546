// At most N exports run at once in this proxy; the rest wait their turn up to a timeout, then get
// 53300, the way PostgreSQL refuses work it has no room for. One user may hold (run or wait for)
// at most M of them, so that one user cannot take every slot from the others; the next is refused
// at once, as PostgreSQL refuses a role over its CONNECTION LIMIT ("too many connections for role").
import { PgError, SqlState } from "../errors.js";

export class ExportLimiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];
  /** Exports running or waiting, per user. */
  private readonly perUser = new Map<string, number>();

  constructor(
    private readonly max: number,
    private readonly queueTimeoutMs: number,
    private readonly maxPerUser = Number.POSITIVE_INFINITY,
  ) {}

  get active(): number {
    return this.running;
  }

  /** Resolves with a release function once a slot is free. */
  async acquire(signal: AbortSignal, user = ""): Promise<() => void> {
    // A full proxy says so, whoever asks; the per-user cap is about sharing the slots.
    if (this.running >= this.max && this.queueTimeoutMs <= 0) throw tooMany(this.max);
    const mine = this.perUser.get(user) ?? 0;
    if (mine >= this.maxPerUser) throw tooManyForUser(user, this.maxPerUser);
    this.perUser.set(user, mine + 1);
    try {
      return await this.acquireSlot(signal, () => this.leaveUser(user));
    } catch (e) {
      this.leaveUser(user);
      throw e;
    }
  }

  private leaveUser(user: string): void {
    const n = (this.perUser.get(user) ?? 1) - 1;
    if (n <= 0) this.perUser.delete(user);
    else this.perUser.set(user, n);
  }

  private async acquireSlot(signal: AbortSignal, onRelease: () => void): Promise<() => void> {
    if (this.running < this.max) {
      this.running++;
      return this.releaser(onRelease);
    }
    if (this.queueTimeoutMs <= 0) throw tooMany(this.max);
    await new Promise<void>((resolve, reject) => {
      const onTurn = (): void => {
        clearTimeout(timer);
        signal.removeEventListener("abort", onAbort);
        resolve();
      };
      const leave = (err: unknown): void => {
        const i = this.waiting.indexOf(onTurn);
        if (i >= 0) this.waiting.splice(i, 1);
        signal.removeEventListener("abort", onAbort);
        reject(err);
      };
      const onAbort = (): void => {
        clearTimeout(timer);
        leave(signal.reason);
      };
      const timer = setTimeout(() => leave(tooMany(this.max)), this.queueTimeoutMs);
      signal.addEventListener("abort", onAbort, { once: true });
      this.waiting.push(onTurn);
    });
    this.running++;
    return this.releaser(onRelease);
  }

  private releaser(onRelease: () => void): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
      onRelease();
      this.running--;
      this.waiting.shift()?.();
    };
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
