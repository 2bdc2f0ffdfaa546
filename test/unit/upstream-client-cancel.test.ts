// A cancelled statement's CancelRequest can be lost: PostgreSQL ignores one that reaches a backend
// still reading its next command (postgres.c, ProcessInterrupts: "If we are reading a command from
// the client, just ignore the cancel request"). The export's upstream client must send it again
// while the statement runs, stop once the statement has ended, and send nothing after it.
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  CANCEL_RETRY_FIRST_MS,
  CANCEL_RETRY_MAX_MS,
  UpstreamClient,
} from "../../src/copy/upstream-client.js";
import type { UpstreamChannel, UpstreamMessageHandler } from "../../src/proxy/copy-hook.js";
import { errorResponse, readyForQuery } from "../../src/wire/backend.js";

/** An upstream session whose CancelRequests are all taken by the server and lost. */
function channel() {
  let handler: UpstreamMessageHandler = () => {};
  const lost = new AbortController();
  const ch = {
    sent: [] as Buffer[],
    cancels: 0,
    send(msg: Buffer): boolean {
      ch.sent.push(msg);
      return true;
    },
    setHandler(h: UpstreamMessageHandler): void {
      handler = h;
    },
    pause(): void {},
    resume(): void {},
    cancel(): Promise<void> {
      ch.cancels++;
      return Promise.resolve();
    },
    parameters: new Map<string, string>(),
    lost: lost.signal,
    refuseLarger(): void {},
    /** Delivers one backend message (type byte, length, body) to the client. */
    deliver(msg: Buffer): void {
      handler(msg[0]!, msg, 5, msg.length);
    },
    lose(): void {
      lost.abort();
    },
  };
  return ch satisfies UpstreamChannel;
}

const canceled = errorResponse({
  severity: "ERROR",
  code: "57014",
  message: "canceling statement due to user request",
});

/**
 * Runs `sql` on a channel that loses every CancelRequest and cancels it at once. `outcome`: the
 * statement's SQLSTATE when it fails, "resolved" when it does not.
 */
function cancelledStatement(sql: string) {
  const ch = channel();
  const ac = new AbortController();
  const outcome = new UpstreamClient(ch).query(sql, ac.signal).then(
    () => "resolved",
    (e: { code?: string }) => e.code,
  );
  ac.abort();
  return { ch, outcome };
}

describe("UpstreamClient: a lost CancelRequest", () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("is sent again, backing off, until the statement ends; then never again", async () => {
    const { ch, outcome } = cancelledStatement("FETCH 1000 c");
    await vi.advanceTimersByTimeAsync(0);
    expect(ch.cancels).toBe(1);
    // The statement keeps running: the first request was lost.
    await vi.advanceTimersByTimeAsync(CANCEL_RETRY_FIRST_MS - 1);
    expect(ch.cancels).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(ch.cancels).toBe(2);
    await vi.advanceTimersByTimeAsync(2 * CANCEL_RETRY_FIRST_MS);
    expect(ch.cancels).toBe(3);
    // The waits grow to the bound and stay there.
    await vi.advanceTimersByTimeAsync(60_000);
    const after = ch.cancels;
    await vi.advanceTimersByTimeAsync(CANCEL_RETRY_MAX_MS);
    expect(ch.cancels).toBe(after + 1);
    // The statement ends with the cancel's error; nothing more is sent, whatever time passes.
    ch.deliver(canceled);
    ch.deliver(readyForQuery("T"));
    await vi.advanceTimersByTimeAsync(0);
    expect(await outcome).toBe("57014");
    const final = ch.cancels;
    await vi.advanceTimersByTimeAsync(10 * CANCEL_RETRY_MAX_MS);
    expect(ch.cancels).toBe(final);
  });

  it("is sent once when the statement ends before the retry is due", async () => {
    const { ch, outcome } = cancelledStatement("SELECT pg_sleep(60)");
    await vi.advanceTimersByTimeAsync(10);
    ch.deliver(canceled);
    ch.deliver(readyForQuery("I"));
    expect(await outcome).toBe("57014");
    await vi.advanceTimersByTimeAsync(10 * CANCEL_RETRY_MAX_MS);
    expect(ch.cancels).toBe(1);
  });

  it("stops when the upstream connection is lost", async () => {
    const { ch, outcome } = cancelledStatement("FETCH 1000 c");
    await vi.advanceTimersByTimeAsync(0);
    ch.lose();
    expect(await outcome).toBeDefined();
    await vi.advanceTimersByTimeAsync(10 * CANCEL_RETRY_MAX_MS);
    expect(ch.cancels).toBe(1);
  });
});
