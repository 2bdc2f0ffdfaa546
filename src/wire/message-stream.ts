// Incremental splitter for a stream of typed pgwire messages (type byte + int32 length + body).
//
// The proxy forwards almost every message as the original bytes, so the splitter never copies a
// message it does not have to: each incoming chunk is forwarded as contiguous slices, and only the
// messages whose type the policy names are looked at. A message that lies inside one chunk is
// handed over as a view of that chunk; only a message that spans chunks is assembled into a copy.
// Messages of any size (up to PostgreSQL's 1 GiB limit) stream through without being buffered.
//
// Input from a reused read buffer (`reusesInput`, a socket read through `onread`, see
// src/proxy/fast-socket.ts): the chunk is overwritten by the next read, so whatever outlives the
// push() call is copied first: each forwarded run (socket.write may queue it, or libuv keep the
// unwritten tail of a partial write) and the backlog kept while paused. Held headers/messages are
// copies anyway. Views given to observe/take/decide are only valid during the call: handlers
// must copy what they keep (the session does; the export's encoders copy every value).
//
// What is done with each message type, and the handlers the stream calls, are ./message-policy.ts.
import { type MessageHandlers, Policy, type PolicyTable } from "./message-policy.js";

/**
 * A run given to takeRun holds at most this many bytes (a socket read's worth; more only for a
 * single message): fed a long backlog (bytes given back by a reader of diverted input, a paused
 * stream's queue), the handler can still change the stream's course (divert it again) after a
 * read's worth, instead of being handed megabytes of rows at once.
 */
export const MAX_RUN_BYTES = 64 << 10;

/** Largest message PostgreSQL accepts (PQ_LARGE_MESSAGE_LIMIT is 1 GiB - 1) plus the length word. */
export const MAX_MESSAGE_LENGTH = 0x40000000 + 4;

export class MessageStream {
  policy: PolicyTable;
  peekBytes: number;
  maxTakeLength: number;
  /** push() is given views of a buffer that is overwritten after the call returns. */
  readonly reusesInput: boolean;

  // Bytes of the current message body still to pass through untouched (or to drop).
  private skip = 0;
  private dropping = false;
  // A header (or a held message) that spans chunks is assembled here.
  private hold: Buffer | null = null;
  private holdLen = 0;
  private holdNeed = 0; // total bytes wanted in `hold`
  private holdMode: "header" | "peek" | "whole" | "observe" = "header";
  private dead = false;
  // While paused (the owner is busy with a taken message), input waits here in order.
  private paused = false;
  private backlog: Buffer[] = [];
  private backlogLen = 0;
  /** While set, every input chunk goes there as it is, unframed (an export's row ring). */
  private diverted: ((chunk: Buffer) => void) | null = null;

  constructor(
    policy: PolicyTable,
    private readonly h: MessageHandlers,
    opts: { peekBytes?: number; maxTakeLength?: number; reusesInput?: boolean } = {},
  ) {
    this.policy = policy;
    this.peekBytes = opts.peekBytes ?? 256;
    this.maxTakeLength = opts.maxTakeLength ?? MAX_MESSAGE_LENGTH;
    this.reusesInput = opts.reusesInput ?? false;
  }

  /** True when the stream is at a message boundary (nothing partial held or being skipped). */
  get atBoundary(): boolean {
    return this.skip === 0 && this.hold === null;
  }

  /** The next input bytes. With `reusesInput`, `chunk` is only read during the call. */
  push(chunk: Buffer): void {
    this.feed(chunk, this.reusesInput);
  }

  /** `reused`: `chunk` is overwritten after the call, so nothing may keep a view of it. */
  private feed(chunk: Buffer, reused: boolean): void {
    if (this.dead) return;
    if (this.diverted !== null) {
      this.diverted(chunk);
      return;
    }
    if (this.paused) {
      const kept = reused ? copyOf(chunk, 0, chunk.length) : chunk;
      this.backlog.push(kept);
      this.backlogLen += kept.length;
      return;
    }
    let pos = 0;
    let runStart = 0; // start of the not-yet-forwarded pass-through run in this chunk
    const len = chunk.length;
    const flushRun = (end: number): void => {
      if (end <= runStart) return;
      // One copy per run (usually one per read) is still far cheaper than a 'data' event.
      if (reused) this.h.forward(copyOf(chunk, runStart, end));
      else this.h.forward(runStart === 0 && end === len ? chunk : chunk.subarray(runStart, end));
    };

    while (pos < len) {
      // A handler of the message just taken may have diverted the stream (TS cannot know).
      const to = this.diverted as ((chunk: Buffer) => void) | null;
      if (to !== null) {
        // The rest of the chunk goes there too.
        flushRun(pos);
        to(chunk.subarray(pos));
        return;
      }
      if (this.paused) {
        flushRun(pos);
        const rest = reused ? copyOf(chunk, pos, len) : chunk.subarray(pos);
        // Front: when resume() is draining the backlog, this rest precedes what is still queued.
        this.backlog.unshift(rest);
        this.backlogLen += rest.length;
        return;
      }
      if (this.skip > 0) {
        const n = Math.min(this.skip, len - pos);
        this.skip -= n;
        pos += n;
        if (this.dropping) {
          runStart = pos;
          if (this.skip === 0) this.dropping = false;
        }
        continue;
      }
      if (this.hold !== null) {
        // Continue assembling a held header/message from the previous chunk(s). Held bytes are
        // not part of the pass-through run, except for an observed message (already forwarded).
        const n = Math.min(this.holdNeed - this.holdLen, len - pos);
        chunk.copy(this.hold, this.holdLen, pos, pos + n);
        this.holdLen += n;
        pos += n;
        const mode = this.holdMode;
        if (mode !== "observe") runStart = pos;
        if (this.holdLen < this.holdNeed) break;
        const held = this.hold.subarray(0, this.holdLen);
        this.hold = null;
        if (mode === "observe") {
          this.h.observe?.(held[0]!, held, 5, held.length);
          continue;
        }
        if (mode === "whole") {
          this.h.take?.(held[0]!, held, 5, held.length);
          if (this.dead) return;
          continue;
        }
        if (!this.startMessage(held)) return;
        continue;
      }
      // At a message boundary inside this chunk.
      if (len - pos < 5) {
        flushRun(pos);
        this.beginHold(chunk, pos, len, 5, "header");
        return;
      }
      const type = chunk[pos]!;
      const mlen = chunk.readInt32BE(pos + 1);
      if (mlen < 4 || mlen > MAX_MESSAGE_LENGTH) {
        flushRun(pos);
        this.fail(`invalid message length ${mlen} for message type 0x${type.toString(16)}`);
        return;
      }
      const total = 1 + mlen;
      let p = this.policy[type]!;
      if (p === Policy.Peek) {
        const want = Math.min(this.peekBytes, mlen - 4);
        if (len - pos - 5 < want) {
          flushRun(pos);
          this.beginHold(chunk, pos, len, 5 + want, "peek");
          return;
        }
        p = this.h.decide!(type, chunk.subarray(pos + 5, pos + 5 + want), mlen - 4);
      }
      if (p === Policy.Pass) {
        const n = Math.min(total, len - pos);
        this.skip = total - n;
        pos += n;
        continue;
      }
      if (p === Policy.Drop) {
        flushRun(pos);
        const n = Math.min(total, len - pos);
        this.dropRest(total - n);
        pos += n;
        runStart = pos;
        continue;
      }
      if (p === Policy.Observe) {
        if (len - pos >= total) {
          this.h.observe?.(type, chunk, pos + 5, pos + total);
          pos += total;
        } else {
          // Keep forwarding the bytes but also keep a copy to show once complete.
          this.beginHold(chunk, pos, len, total, "observe");
          pos = len;
        }
        continue;
      }
      // Take
      if (total > this.maxTakeLength) {
        flushRun(pos);
        if (this.h.oversize === undefined) {
          this.fail(`message of ${total} bytes is larger than this proxy accepts here`);
          return;
        }
        this.h.oversize(type, total);
        if (this.dead) return;
        // Dropped like Policy.Drop: skipped unseen, never forwarded.
        const n = Math.min(total, len - pos);
        this.dropRest(total - n);
        pos += n;
        runStart = pos;
        continue;
      }
      flushRun(pos);
      if (len - pos >= total) {
        if (p === Policy.TakeRun && this.h.takeRun !== undefined) {
          let end = pos + total;
          let count = 1;
          while (len - end >= 5 && chunk[end] === type) {
            const l = chunk.readInt32BE(end + 1);
            // Anything unusual (a bad length, a message too big or not whole) is left to the loop.
            if (l < 4 || l >= this.maxTakeLength || len - end < 1 + l) break;
            if (end + 1 + l - pos > MAX_RUN_BYTES) break;
            end += 1 + l;
            count++;
          }
          this.h.takeRun(type, chunk, pos, end, count);
          if (this.dead) return;
          pos = end;
        } else {
          this.h.take?.(type, chunk, pos + 5, pos + total);
          if (this.dead) return;
          pos += total;
        }
        runStart = pos;
      } else {
        this.beginHold(chunk, pos, len, total, "whole");
        return;
      }
    }
    flushRun(len);
  }

  private beginHold(
    chunk: Buffer,
    from: number,
    to: number,
    need: number,
    mode: "header" | "peek" | "whole" | "observe",
  ): void {
    this.hold = Buffer.allocUnsafe(need);
    const n = Math.min(need, to - from);
    chunk.copy(this.hold, 0, from, from + n);
    this.holdLen = n;
    this.holdNeed = need;
    this.holdMode = mode;
  }

  /**
   * Decides about a message whose header (and, for Peek, the peeked prefix) has been assembled in
   * `held`. Those bytes have not been forwarded. Returns false if the stream died.
   */
  private startMessage(held: Buffer): boolean {
    const type = held[0]!;
    const mlen = held.readInt32BE(1);
    if (mlen < 4 || mlen > MAX_MESSAGE_LENGTH) {
      this.fail(`invalid message length ${mlen} for message type 0x${type.toString(16)}`);
      return false;
    }
    const total = 1 + mlen;
    let p = this.policy[type]!;
    if (p === Policy.Peek) {
      const want = Math.min(this.peekBytes, mlen - 4);
      if (held.length < 5 + want) {
        // Only the header was assembled so far: keep holding until the peek prefix is in.
        this.hold = Buffer.allocUnsafe(5 + want);
        held.copy(this.hold, 0);
        this.holdLen = held.length;
        this.holdNeed = 5 + want;
        this.holdMode = "peek";
        if (this.holdLen >= this.holdNeed) {
          const full = this.hold;
          this.hold = null;
          return this.startMessage(full);
        }
        return true;
      }
      p = this.h.decide!(type, held.subarray(5, 5 + want), mlen - 4);
    }
    if (p === Policy.Drop) {
      // The held header (and peeked bytes) were never forwarded; the rest is skipped unseen.
      this.dropRest(total - held.length);
      return true;
    }
    if (p === Policy.Pass || p === Policy.Observe) {
      if (p === Policy.Observe && held.length < total) {
        // Rare: an observed message split across chunks. Forward what we have, keep a copy.
        this.h.forward(held);
        this.hold = Buffer.allocUnsafe(total);
        held.copy(this.hold, 0);
        this.holdLen = held.length;
        this.holdNeed = total;
        this.holdMode = "observe";
        return true;
      }
      this.h.forward(held);
      if (p === Policy.Observe) this.h.observe?.(type, held, 5, total);
      this.skip = total - held.length;
      return true;
    }
    if (total > this.maxTakeLength) {
      if (this.h.oversize === undefined) {
        this.fail(`message of ${total} bytes is larger than this proxy accepts here`);
        return false;
      }
      this.h.oversize(type, total);
      // The held header (and peeked bytes) were never forwarded; the rest is skipped unseen.
      this.dropRest(total - held.length);
      return !this.dead;
    }
    if (held.length >= total) {
      this.h.take?.(type, held, 5, total);
      return !this.dead;
    }
    this.hold = Buffer.allocUnsafe(total);
    held.copy(this.hold, 0);
    this.holdLen = held.length;
    this.holdNeed = total;
    this.holdMode = "whole";
    return true;
  }

  /** Stops processing at the next message boundary; later input is queued until resume(). */
  pause(): void {
    this.paused = true;
  }

  resume(): void {
    this.paused = false;
    while (!this.paused && !this.dead && this.backlog.length > 0) {
      const c = this.backlog.shift()!;
      this.backlogLen -= c.length;
      this.feed(c, false); // backlog entries are never views of a reused buffer
    }
  }

  /**
   * Takes out everything queued while paused (the stream is paused at a message boundary, so the
   * bytes start with a message): an export handing its row stream to another reader
   * (export-lease.ts) gives it what was already read. The stream stays paused.
   */
  takeBacklog(): Buffer {
    const out = this.backlog.length === 1 ? this.backlog[0]! : Buffer.concat(this.backlog, this.backlogLen);
    this.backlog = [];
    this.backlogLen = 0;
    return out;
  }

  /**
   * From now on every input chunk goes to `to` as it is (a view of a reused buffer when
   * `reusesInput`: copy it), unframed, ahead of any pause, until undivert(): an export's rows to
   * its encoder thread, which frames them (src/encoders/worker/row-ring.ts). Call it at a message
   * boundary with nothing queued (from a take/takeRun handler): the rest of the current chunk
   * goes there too.
   */
  divert(to: (chunk: Buffer) => void): void {
    this.diverted = to;
  }

  /**
   * The diverted bytes' reader is done: `rest` (from a message boundary on, in order, ours to
   * keep) is read first, after skipping the next `skip` input bytes unseen (the rest of a message
   * the reader took in part), then the input as it comes.
   */
  undivert(rest: readonly Buffer[], skip = 0): void {
    this.diverted = null;
    if (skip > 0) this.dropRest(skip);
    for (const b of rest) if (b.length > 0) this.feed(b, false);
  }

  /** Bytes queued while paused. */
  get queued(): number {
    return this.backlogLen;
  }

  /** Stops the stream; nothing more is forwarded. */
  kill(): void {
    this.dead = true;
    this.hold = null;
  }

  /** The current message's remaining `n` bytes are skipped unseen (Drop, or an oversize Take). */
  private dropRest(n: number): void {
    this.skip = n;
    this.dropping = n > 0;
  }

  private fail(reason: string): void {
    this.dead = true;
    this.h.violation(reason);
  }
}

/**
 * Calls `each(bodyStart, bodyEnd)` for every message of a run (whole messages, headers included,
 * back to back in `buf[start..end)`, as `takeRun` hands them over).
 */
export function forEachMessage(
  buf: Buffer,
  start: number,
  end: number,
  each: (bodyStart: number, bodyEnd: number) => void,
): void {
  for (let p = start; p < end; ) {
    const next = p + 1 + buf.readInt32BE(p + 1);
    each(p + 5, next);
    p = next;
  }
}

function copyOf(chunk: Buffer, from: number, to: number): Buffer {
  const out = Buffer.allocUnsafe(to - from); // pooled for small sizes, like Buffer.from
  chunk.copy(out, 0, from, to);
  return out;
}
