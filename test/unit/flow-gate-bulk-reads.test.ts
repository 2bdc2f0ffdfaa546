// FlowGate.bulkReads: while an export's rows stream, a read that empties the socket stops reading
// until the gap is over; reads that fill the buffer go on back to back. Real loopback sockets,
// moved to onread reads the way the session moves them (src/proxy/fast-socket.ts).
import type { Socket } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { FlowGate } from "../../src/proxy/flow-gate.js";
import { waitUntil } from "../support/export-checks.js";
import { closeOnreadPairs, onreadPair } from "../support/onread-pair.js";

const BUFFER = 16;

afterEach(closeOnreadPairs);

/** A connected pair: `peer` writes, `reader` reads through onread into a BUFFER-byte buffer. */
async function pair(): Promise<{ peer: Socket; reader: Socket; reads: number[] }> {
  const reads: number[] = [];
  const { peer, sock } = await onreadPair(BUFFER, (c) => reads.push(c.length));
  return { peer, reader: sock, reads };
}

const sum = (a: number[]): number => a.reduce((x, y) => x + y, 0);

describe("FlowGate.bulkReads", () => {
  test("a read that empties the socket holds the next one until the gap is over", async () => {
    const { peer, reader, reads } = await pair();
    const gate = new FlowGate(reader);
    gate.bulkReads(60_000); // a gap no test waits out: only bulkReads(0) ends it
    peer.write(Buffer.alloc(5));
    await waitUntil("the first read", () => sum(reads) === 5);
    expect(reader.isPaused()).toBe(true);
    peer.write(Buffer.alloc(7));
    // Still held: the gate must be what lets the next bytes in.
    gate.bulkReads(0);
    expect(reader.isPaused()).toBe(false);
    await waitUntil("the second read", () => sum(reads) === 12);
  });

  test("full reads go on back to back; the gap ends by itself", async () => {
    const { peer, reader, reads } = await pair();
    const gate = new FlowGate(reader);
    gate.bulkReads(20);
    peer.write(Buffer.alloc(BUFFER * 2 + 3));
    await waitUntil("35 bytes", () => sum(reads) === BUFFER * 2 + 3);
    expect(reads).toEqual([BUFFER, BUFFER, 3]);
    expect(reader.isPaused()).toBe(true);
    await waitUntil("the gap's end", () => !reader.isPaused());
    peer.write(Buffer.alloc(4));
    await waitUntil("the next read", () => sum(reads) === BUFFER * 2 + 7);
    gate.bulkReads(0);
  });

  test("another reason to hold outlasts the gap; off, reads are not held", async () => {
    const { peer, reader, reads } = await pair();
    const gate = new FlowGate(reader);
    gate.bulkReads(60_000);
    peer.write(Buffer.alloc(3));
    await waitUntil("the first read", () => sum(reads) === 3);
    gate.hold("export"); // the encoders are behind
    gate.bulkReads(0); // ends the gap
    expect(reader.isPaused()).toBe(true);
    gate.release("export");
    expect(reader.isPaused()).toBe(false);
    peer.write(Buffer.alloc(2));
    await waitUntil("the next read", () => sum(reads) === 5);
    expect(reader.isPaused()).toBe(false);
  });
});

describe("FlowGate.bulkReads, a turn's reads", () => {
  test("what the kernel queued is read a turn's bytes at a time, other events between", async () => {
    // Bytes read per turn of the event loop: from a turn's first read to the setImmediate it
    // schedules (before the gate's own, which the gate schedules after the read).
    const turns: number[] = [];
    let turn = 0;
    const { peer, sock: reader } = await onreadPair(BUFFER, (c) => {
      if (turn === 0)
        setImmediate(() => {
          turns.push(turn);
          turn = 0;
        });
      turn += c.length;
    });
    const TURN = BUFFER * 4;
    const gate = new FlowGate(reader, TURN);
    gate.bulkReads(60_000);
    const n = BUFFER * 40 + 3;
    gate.hold("export"); // the upstream held (a full ring) while the backend sends on
    await new Promise<void>((r) => peer.write(Buffer.alloc(n), () => r()));
    // All of it is queued in the kernel now: one wake-up could read 32 buffers of it at once.
    gate.release("export");
    await waitUntil("every byte", () => sum(turns) === n);
    expect(Math.max(...turns)).toBeLessThanOrEqual(TURN);
    expect(turns.length).toBeGreaterThanOrEqual(Math.ceil(n / TURN));
    gate.bulkReads(0);
  });
});
