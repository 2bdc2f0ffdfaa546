// Pauses a socket's reading while any reason to hold it stands (the peer's write buffer is full,
// an export's encoder is behind, a local statement is being handled) and resumes when none does.
// For a socket reading through onread (fast-socket.ts) pause()/resume() stop and restart the
// handle's reads at once (readStop/readStart); for a 'data' socket they stop the events, and the
// reads once its readable buffer fills.
import type { Duplex } from "node:stream";
import { observeReads } from "./fast-socket.js";

/**
 * Bulk reads: the most bytes read back to back in one turn of the event loop (4 reads of the
 * upstream's 64 KiB buffer) before the gate lets the turn go on to the other sockets' events.
 */
export const BULK_TURN_BYTES = 256 << 10;

export class FlowGate {
  private readonly reasons = new Set<string>();
  private gapMs = 0;
  private gap: NodeJS.Timeout | null = null;
  /** Bytes of full reads since the socket last resumed or a read emptied it. */
  private turnRead = 0;
  private turn: NodeJS.Immediate | null = null; // releases the turn's hold

  /** `turnBytes`: see BULK_TURN_BYTES (tests use smaller buffers). */
  constructor(
    private readonly socket: Duplex,
    private readonly turnBytes = BULK_TURN_BYTES,
  ) {}

  /**
   * Bulk reads (an export's rows): after a read that emptied the socket (fewer bytes than the
   * read buffer holds), the next read waits `gapMs`, so the kernel queues what the peer sends
   * meanwhile and the next read takes it at once. A relay that keeps up with the upstream
   * otherwise wakes once per packet of the backend (PostgreSQL sends 8 KiB at a time: ~15 KiB
   * reads), and each wake-up costs the relay's thread more than the bytes it brings
   * (docs/decisions.md, "An export's upstream is read in bulk"). 0 turns it off and reads at
   * once. Only for sockets reading through onread (fast-socket.ts); others are left as they are.
   *
   * Full reads go on back to back (libuv reads up to 32 times per wake-up while reads fill the
   * buffer: 2 MiB at 64 KiB), but only `turnBytes` of them in one turn of the event loop: then
   * reading stops until the turn's setImmediate, so the other sessions' messages that arrived
   * meanwhile are relayed before the next reads. Without it, what the kernel queued while an
   * export's upstream was held (its ring full, a gap) was read in one callback of 1–2 ms, and
   * every query arriving meanwhile waited for it (docs/isolation.md, "The relay's long runs").
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
      if (bytes >= bufferSize) {
        this.turnRead += bytes;
        if (this.turnRead >= this.turnBytes && this.turn === null) {
          this.hold("turn");
          this.turn = setImmediate(() => {
            this.turn = null;
            this.release("turn");
          });
        }
        return;
      }
      this.turnRead = 0;
      if (this.gap !== null || this.gapMs === 0) return;
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
    if (this.reasons.delete(reason) && this.reasons.size === 0) {
      this.turnRead = 0;
      this.socket.resume();
    }
  }

  /** Holds until `writer` drains (backpressure between the two legs). */
  holdUntilDrain(writer: Duplex, reason: string): void {
    if (this.reasons.has(reason)) return;
    this.hold(reason);
    writer.once("drain", () => this.release(reason));
  }
}
