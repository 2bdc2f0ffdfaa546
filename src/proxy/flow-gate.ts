// Pauses a socket's reading while any reason to hold it stands (the peer's write buffer is full,
// an export's encoder is behind, a local statement is being handled) and resumes when none does.
// For a socket reading through onread (fast-socket.ts) pause()/resume() stop and restart the
// handle's reads at once (readStop/readStart); for a 'data' socket they stop the events, and the
// reads once its readable buffer fills.
import type { Duplex } from "node:stream";

export class FlowGate {
  private readonly reasons = new Set<string>();

  constructor(private readonly socket: Duplex) {}

  hold(reason: string): void {
    if (this.reasons.size === 0) this.socket.pause();
    this.reasons.add(reason);
  }

  release(reason: string): void {
    if (this.reasons.delete(reason) && this.reasons.size === 0) this.socket.resume();
  }

  /** Holds until `writer` drains (backpressure between the two legs). */
  holdUntilDrain(writer: Duplex, reason: string): void {
    if (this.reasons.has(reason)) return;
    this.hold(reason);
    writer.once("drain", () => this.release(reason));
  }
}
