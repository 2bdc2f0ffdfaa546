// withStaticReads' reads and DirectWriter's writes (src/proxy/fast-socket.ts): both go straight
// between the relay and the socket's libuv handle. DirectWriter: What arrives must be
// exactly what was written, in order, whether the kernel took each write at once or libuv had to
// finish it later, and mixed with socket.write (the session's own messages take that way).
// Real loopback sockets, moved to onread reads the way the session moves them.
import { randomBytes } from "node:crypto";
import type { Socket } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { DirectWriter, lendReads, type ReadLender } from "../../src/proxy/fast-socket.js";
import { waitUntil } from "../support/export-checks.js";
import { closeOnreadPairs, onreadPair } from "../support/onread-pair.js";

afterEach(closeOnreadPairs);

/**
 * A connected pair: `sock` (moved to onread reads, as a session's) writes through `writer`;
 * `peer` collects what arrives, paused until the test resumes it (so the kernel's buffers fill
 * and writes complete only in part).
 */
async function pair(): Promise<{ sock: Socket; writer: DirectWriter; peer: Socket; received: Buffer[] }> {
  const { peer, sock } = await onreadPair(1024, () => {}, true);
  const received: Buffer[] = [];
  peer.on("data", (d: Buffer) => received.push(d));
  const writer = DirectWriter.for(sock);
  if (writer === null) throw new Error("no direct writes on this Node");
  return { sock, writer, peer, received };
}

const total = (bufs: Buffer[]): number => bufs.reduce((n, b) => n + b.length, 0);

describe("DirectWriter", () => {
  test("a write the kernel takes only in part returns false, arrives whole, and 'drain' follows", async () => {
    const { sock, writer, peer, received } = await pair();
    const big = randomBytes(16 << 20); // more than loopback's socket buffers hold
    let drained = false;
    expect(writer.write(big)).toBe(false);
    sock.once("drain", () => {
      drained = true;
    });
    peer.resume();
    await waitUntil("all bytes", () => total(received) === big.length);
    await waitUntil("'drain'", () => drained);
    expect(Buffer.concat(received).equals(big)).toBe(true);
    // The socket's byte count (the metrics' traffic) includes direct writes.
    expect(sock.bytesWritten).toBe(big.length);
  });

  test("mixed with socket.write and ended, every byte arrives in the order written", async () => {
    const { sock, writer, peer, received } = await pair();
    let ended = false;
    peer.on("end", () => {
      ended = true;
    });
    // Sizes from one byte to 512 KiB, in an order that has both kinds of write land while the
    // other kind's bytes are still queued (in libuv's queue, or in the Writable's buffer).
    const sent: Buffer[] = [];
    for (let i = 0; i < 120; i++) {
      const b = randomBytes(i % 7 === 0 ? 512 << 10 : ((i * 7919) % 3000) + 1);
      sent.push(b);
      if (i % 3 === 0) sock.write(b);
      else writer.write(b);
    }
    sock.end();
    peer.resume();
    await waitUntil("the peer's end", () => ended);
    expect(total(received)).toBe(total(sent));
    expect(Buffer.concat(received).equals(Buffer.concat(sent))).toBe(true);
  });

  test("a write to a destroyed socket does not throw and sends nothing", async () => {
    const { sock, writer, peer, received } = await pair();
    let closed = false;
    peer.on("close", () => {
      closed = true;
    });
    peer.resume();
    sock.destroy();
    writer.write(Buffer.from("late"));
    await waitUntil("the peer's close", () => closed);
    expect(total(received)).toBe(0);
  });
});

describe("withStaticReads", () => {
  test("every byte the peer sends reaches onChunk in order, then the peer's end ends the socket", async () => {
    const got: Buffer[] = [];
    // A 1 KiB read buffer: most reads fill it, the last of each write does not.
    const { peer, sock } = await onreadPair(1024, (c) => got.push(Buffer.from(c)));
    let ended = false;
    sock.on("end", () => {
      ended = true;
    });
    const sent = randomBytes(300_000);
    peer.end(sent);
    await waitUntil("the socket's end", () => ended);
    expect(Buffer.concat(got).equals(sent)).toBe(true);
    expect(sock.bytesRead).toBe(sent.length);
  });
});

describe("reads into lent memory (an export's row ring)", () => {
  test("each read goes into the buffer lent after the read before; returned once handled; none after the lender leaves", async () => {
    const memory = Buffer.from(new SharedArrayBuffer(1 << 20));
    let at = 0;
    let lent: Buffer | null = null;
    let lentOut = 0;
    /** Per read: in the memory lent for it (true) or in the socket's own buffer (false). */
    const inLent: boolean[] = [];
    const got: Buffer[] = [];
    const lender: ReadLender = {
      lend: () => {
        if (at + 4096 > memory.length) return null;
        lent = memory.subarray(at, at + 4096);
        lentOut++;
        return lent;
      },
      returned: () => {
        lentOut--;
      },
    };
    const { peer, sock } = await onreadPair(1024, (c) => {
      got.push(Buffer.from(c));
      const intoLent = lent !== null && c.buffer === lent.buffer && c.byteOffset === lent.byteOffset;
      inLent.push(intoLent);
      if (intoLent) at += c.length;
      // Not yet returned while its read is being handled.
      if (intoLent) expect(lentOut).toBe(1);
    });
    expect(lendReads(sock, lender)).toBe(true);
    const first = randomBytes(200_000);
    peer.write(first);
    await waitUntil("the first bytes", () => total(got) === first.length);
    // The read that was under way when lending began went into the socket's buffer; the next ones
    // into the lent memory, and the bytes are where they were read.
    expect(inLent[0]).toBe(false);
    expect(inLent.slice(1).every((x) => x)).toBe(true);
    expect(memory.subarray(0, at).equals(first.subarray(got[0]!.length))).toBe(true);
    expect(lentOut).toBe(1); // the next read's buffer

    lendReads(sock, null);
    const before = inLent.length;
    const second = randomBytes(50_000);
    peer.write(second);
    await waitUntil("the second bytes", () => total(got) === first.length + second.length);
    expect(Buffer.concat(got).equals(Buffer.concat([first, second]))).toBe(true);
    // One more read into the memory lent before the lender left (returned then), then the
    // socket's own buffer.
    expect(inLent.slice(before)).toEqual([true, ...new Array(inLent.length - before - 1).fill(false)]);
    expect(lentOut).toBe(0);
  });
});
