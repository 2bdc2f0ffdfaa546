// At most N exports run at once in this proxy; the rest wait their turn up to a timeout, then get
// 53300, the way PostgreSQL refuses work it has no room for.
import { PgError, SqlState } from "../errors.js";

export class ExportLimiter {
  private running = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(
    private readonly max: number,
    private readonly queueTimeoutMs: number,
  ) {}

  get active(): number {
    return this.running;
  }

  /** Resolves with a release function once a slot is free. */
  async acquire(signal: AbortSignal): Promise<() => void> {
    if (this.running < this.max) {
      this.running++;
      return this.releaser();
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
    return this.releaser();
  }

  private releaser(): () => void {
    let done = false;
    return () => {
      if (done) return;
      done = true;
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
