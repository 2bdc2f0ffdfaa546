// Proxy-minted cancel keys → whatever a CancelRequest should reach. Clients only ever see the
// proxy's keys, so a cancel aimed at one session cannot be forged from the upstream's pid space.
import { randomInt, timingSafeEqual } from "node:crypto";
import { type CancelOutcome, cancelRequest } from "../metrics/metrics.js";

export interface Cancellable {
  /**
   * Called for a matching CancelRequest; the session decides what a cancel means right now and
   * says what it did (counted here, once per request, in the same turn as the decision).
   */
  cancel(): Exclude<CancelOutcome, "unmatched">;
}

interface Entry {
  secret: Buffer;
  target: Cancellable;
}

export class CancelRegistry {
  private readonly entries = new Map<number, Entry>();

  /** Mints a key for `target`: a positive pid unique among live sessions and a random secret. */
  register(target: Cancellable): { pid: number; secret: Buffer } {
    let pid: number;
    do pid = randomInt(1, 0x7fffffff);
    while (this.entries.has(pid));
    const secret = Buffer.allocUnsafe(4);
    secret.writeInt32BE(randomInt(-0x80000000, 0x7fffffff), 0);
    this.entries.set(pid, { secret, target });
    return { pid, secret };
  }

  unregister(pid: number): void {
    this.entries.delete(pid);
  }

  /**
   * Returns true when a session matched; unknown keys are ignored (PostgreSQL says nothing either).
   * Every call is counted once, synchronously, so a test (or an operator) that has seen the proxy
   * close the cancel connection can read what the request did without waiting for its effects.
   */
  cancel(pid: number, secret: Buffer): boolean {
    const e = this.entries.get(pid);
    if (!e || e.secret.length !== secret.length || !timingSafeEqual(e.secret, secret)) {
      cancelRequest("unmatched");
      return false;
    }
    cancelRequest(e.target.cancel());
    return true;
  }

  get size(): number {
    return this.entries.size;
  }
}
