// Pauses a socket's reading while any reason to hold it stands (the peer's write buffer is full,
// an export's encoder is behind, a local statement is being handled) and resumes when none does.
// For a socket reading through onread (fast-socket.ts) pause()/resume() stop and restart the
// handle's reads at once (readStop/readStart); for a 'data' socket they stop the events, and the
// reads once its readable buffer fills.
import type { Duplex } from "node:stream";
import { observeReads } from "./fast-socket.js";

export class FlowGate {
  private readonly reasons = new Set<string>();
  private gapMs = 0;
  private gap: NodeJS.Timeout | null = null;

  constructor(private readonly socket: Duplex) {}

  /**
   * Bulk reads (an export's rows): after a read that emptied the socket (fewer bytes than the
   * read buffer holds), the next read waits `gapMs`, so the kernel queues what the peer sends
   * meanwhile and the next read takes it at once. A relay that keeps up with the upstream
   * otherwise wakes once per packet of the backend (PostgreSQL sends 8 KiB at a time: ~15 KiB
   * reads), and each wake-up costs the relay's thread more than the bytes it brings
   * (docs/decisions.md, "An export's upstream is read in bulk"). 0 turns it off and reads at
   * once. Only for sockets reading through onread (fast-socket.ts); others are left as they are.
   */
  bulkReads(gapMs: number): void {
    if (gapMs === this.gapMs) return;
    this.gapMs = gapMs;
    if (gapMs === 0) {
      observeReads(this.socket, null);
      if (this.gap !== null) {
        clearTimeout(this.gap);
        this.gap = null;
        this.release("bulk-read");
      }
      return;
    }
    observeReads(this.socket, (bytes, bufferSize) => {
      if (bytes >= bufferSize || this.gap !== null || this.gapMs === 0) return;
      this.hold("bulk-read");
      this.gap = setTimeout(() => {
        this.gap = null;
        this.release("bulk-read");
      }, this.gapMs);
    });
  }

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
