// The encoder host's data channel framing (src/encoders/worker/host-frames.ts) over a real socket
// pair: every frame arrives whole and in order however the stream is cut, bytes frames land in
// the buffer the reader's handler gives, and a writer's buffer is its own again once written.
import { randomBytes } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type FrameHandler, FrameReader, FrameWriter } from "../../src/encoders/worker/host-frames.js";
import { waitUntil } from "../support/export-checks.js";

type Got = { kind: "bytes" | "message" | "ack"; w: number; value: unknown };

function collector(): { got: Got[]; handler: FrameHandler; targets: Uint8Array[] } {
  const got: Got[] = [];
  const targets: Uint8Array[] = [];
  const handler: FrameHandler = {
    target(_w, len) {
      const t = new Uint8Array(new ArrayBuffer(len + 7), 0, len);
      targets.push(t);
      return t;
    },
    bytes: (w, into) => got.push({ kind: "bytes", w, value: Buffer.from(into) }),
    message: (w, m) => got.push({ kind: "message", w, value: m }),
    ack: (w, len) => got.push({ kind: "ack", w, value: len }),
  };
  return { got, handler, targets };
}

describe("frames over a real socket", () => {
  let a: Socket;
  let b: Socket;
  const server = createServer();

  beforeAll(async () => {
    const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const { port } = server.address() as { port: number };
    a = connect(port, "127.0.0.1");
    b = await accepted;
  });

  afterAll(() => {
    a.destroy();
    b.destroy();
    server.close();
  });

  test("messages, large and small byte frames and acks arrive in order, the bytes into the handler's buffers", async () => {
    const { got, handler, targets } = collector();
    const reader = new FrameReader(handler);
    b.on("data", (c: Buffer) => reader.push(c));
    const writer = new FrameWriter(a);
    const big = randomBytes(3 << 20); // many socket reads
    const small = randomBytes(100);
    let written = 0;
    writer.message(0, { t: "spawn", w: 7, nice: 3, idle: false, n: 12n });
    writer.bytes(7, big, () => written++);
    writer.ack(7, 262144);
    writer.bytes(8, small, () => written++);
    writer.message(8, { t: "exit", w: 8, code: 1 });
    await waitUntil("five frames", () => got.length === 5 || undefined);
    expect(got.map((g) => [g.kind, g.w])).toEqual([
      ["message", 0],
      ["bytes", 7],
      ["ack", 7],
      ["bytes", 8],
      ["message", 8],
    ]);
    expect(got[0]!.value).toEqual({ t: "spawn", w: 7, nice: 3, idle: false, n: 12n });
    expect((got[1]!.value as Buffer).equals(big)).toBe(true);
    expect(got[2]!.value).toBe(262144);
    expect((got[3]!.value as Buffer).equals(small)).toBe(true);
    expect(Buffer.from(targets[0]!).equals(big)).toBe(true);
    expect(written).toBe(2);
  });

  test("a writer whose reader has stopped says so at its limit, and calls back once the reader has caught up", async () => {
    const { got, handler } = collector();
    const reader = new FrameReader(handler);
    b.removeAllListeners("data");
    b.pause();
    const limit = 1 << 20;
    const writer = new FrameWriter(a, limit);
    let drained = false;
    writer.drained(() => {
      drained = true;
    });
    expect(drained).toBe(true); // nothing waits: at once
    drained = false;
    let frames = 0;
    // What the kernel takes first does not count: write until the socket itself holds `limit`.
    while (!writer.congested) {
      writer.bytes(1, randomBytes(64 << 10));
      frames++;
    }
    expect(writer.queued).toBeGreaterThanOrEqual(limit);
    writer.drained(() => {
      drained = true;
    });
    expect(drained).toBe(false);
    b.on("data", (c: Buffer) => reader.push(c));
    b.resume();
    await waitUntil("the writer drained", () => drained || undefined);
    expect(writer.congested).toBe(false);
    await waitUntil("every frame read", () => got.length === frames || undefined);
  });
});

test("a stream cut at every byte, or in one piece, parses to the same frames", () => {
  // The frames as they go on the wire: captured from a writer over a fake socket.
  const wire: Buffer[] = [];
  const fake = {
    destroyed: false,
    cork() {},
    uncork() {},
    write(b: Uint8Array, cb?: () => void) {
      wire.push(Buffer.from(b));
      cb?.();
      return true;
    },
  };
  const writer = new FrameWriter(fake as unknown as Socket);
  writer.message(3, { t: "finish" });
  writer.bytes(3, randomBytes(5000));
  writer.bytes(4, new Uint8Array(0));
  writer.ack(3, 42);
  const all = Buffer.concat(wire);

  const whole = collector();
  new FrameReader(whole.handler).push(all);
  const cut = collector();
  const reader = new FrameReader(cut.handler);
  for (let i = 0; i < all.length; i++) reader.push(all.subarray(i, i + 1));
  expect(whole.got).toHaveLength(4);
  expect(cut.got).toEqual(whole.got);
});
