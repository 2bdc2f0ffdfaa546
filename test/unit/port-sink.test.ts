// The encoder thread's sink on its own (no thread): how file bytes are cut into chunk messages, and
// the ring of chunk buffers — a buffer is written again only after the relay gave it back, and no
// more than the ring is allocated while buffers come back.
import { randomBytes } from "node:crypto";
import { describe, expect, test } from "vitest";
import { CHUNK_BYTES, PortSink, RING_BUFFERS } from "../../src/encoders/worker/port-sink.js";
import type { FromEncoder } from "../../src/encoders/worker/protocol.js";

type Sent = { m: FromEncoder; transfer: ArrayBuffer[] };

/** The messages a PortSink posts, as the relay would get them (without the transfer's detaching). */
function recorder(): { sink: PortSink; sent: Sent[] } {
  const sent: Sent[] = [];
  const sink = new PortSink((m, transfer) => sent.push({ m, transfer }));
  return { sink, sent };
}

/** Files as the relay would write them, and the chunk sizes seen. */
function replay(sent: Sent[]): { files: Buffer[]; sizes: number[]; rows: number[] } {
  const files: Buffer[][] = [];
  const sizes: number[] = [];
  const rows: number[] = [];
  for (const { m, transfer } of sent) {
    if (m.t === "open") {
      expect(m.index).toBe(files.length);
      files.push([]);
    } else if (m.t === "chunk") {
      expect(transfer).toEqual([m.buf]);
      expect(m.buf.byteLength).toBe(CHUNK_BYTES);
      files.at(-1)!.push(Buffer.from(new Uint8Array(m.buf, 0, m.len)));
      sizes.push(m.len);
    } else if (m.t === "close") {
      rows.push(m.rows);
    }
  }
  return { files: files.map((f) => Buffer.concat(f)), sizes, rows };
}

describe("PortSink", () => {
  test("bytes in pieces of any size cross in whole chunks, the last of a file shorter and before its close", () => {
    const { sink, sent } = recorder();
    const a = randomBytes(3 * CHUNK_BYTES + 12345);
    const b = randomBytes(10);
    sink.openFile(0);
    // Small pieces, a piece larger than two chunks, a piece that ends exactly on a chunk boundary.
    const cuts = [
      0,
      1,
      100,
      70_000,
      70_000 + 2 * CHUNK_BYTES + 5,
      2 * CHUNK_BYTES,
      3 * CHUNK_BYTES,
      a.length,
    ];
    cuts.sort((x, y) => x - y);
    for (let i = 1; i < cuts.length; i++) sink.write(a.subarray(cuts[i - 1], cuts[i]));
    sink.closeFile(7);
    sink.openFile(1);
    sink.write(b);
    sink.closeFile(1);
    sink.openFile(2);
    sink.closeFile(0); // an empty file: no chunk at all
    const r = replay(sent);
    expect(r.files.map((f) => f.length)).toEqual([a.length, b.length, 0]);
    expect(r.files[0]!.equals(a)).toBe(true);
    expect(r.files[1]!.equals(b)).toBe(true);
    expect(r.sizes).toEqual([CHUNK_BYTES, CHUNK_BYTES, CHUNK_BYTES, 12345, 10]);
    expect(r.rows).toEqual([7, 1, 0]);
    expect(sent.map((s) => s.m.t)).toEqual([
      "open",
      "chunk",
      "chunk",
      "chunk",
      "chunk",
      "close",
      "open",
      "chunk",
      "close",
      "open",
      "close",
    ]);
  });

  test("split at every offset around a chunk boundary: the same chunks", () => {
    const data = randomBytes(CHUNK_BYTES + 40);
    const expected = replay(
      (() => {
        const { sink, sent } = recorder();
        sink.openFile(0);
        sink.write(data);
        sink.closeFile(1);
        return sent;
      })(),
    );
    for (let k = CHUNK_BYTES - 40; k <= CHUNK_BYTES + 40; k++) {
      const { sink, sent } = recorder();
      sink.openFile(0);
      sink.write(data.subarray(0, k));
      sink.write(data.subarray(k));
      sink.closeFile(1);
      const r = replay(sent);
      expect(r.sizes).toEqual(expected.sizes);
      expect(r.files[0]!.equals(data)).toBe(true);
    }
  });

  test("release() is called when write returns: the bytes were copied", () => {
    const { sink, sent } = recorder();
    sink.openFile(0);
    const chunk = Buffer.from("abc");
    let released = false;
    sink.write(chunk, () => {
      released = true;
    });
    expect(released).toBe(true);
    chunk.fill(0x58); // the caller reuses its bytes
    sink.closeFile(1);
    expect(replay(sent).files[0]!.toString()).toBe("abc");
  });

  test("a buffer the relay still holds is never written into, and with buffers coming back no more than the ring is allocated", () => {
    const { sink, sent } = recorder();
    /** Chunks the "relay" holds, with their bytes as sent. */
    const held: Array<{ buf: ArrayBuffer; len: number; copy: Buffer }> = [];
    let checked = 0;
    const giveBackOldest = (): void => {
      const h = held.shift()!;
      expect(Buffer.from(new Uint8Array(h.buf, 0, h.len)).equals(h.copy)).toBe(true);
      checked++;
      sink.reclaim([h.buf]);
    };
    sink.openFile(0);
    const piece = randomBytes(300_000);
    const chunks = 60;
    for (let written = 0; written < chunks * CHUNK_BYTES; written += piece.length) {
      sink.write(piece);
      for (const { m } of sent.splice(0)) {
        if (m.t !== "chunk") continue;
        held.push({ buf: m.buf, len: m.len, copy: Buffer.from(new Uint8Array(m.buf, 0, m.len)) });
      }
      // The relay keeps a few chunks in its store's queue before they come back.
      while (held.length > 3) giveBackOldest();
    }
    sink.closeFile(1);
    while (held.length > 0) giveBackOldest();
    expect(checked).toBeGreaterThanOrEqual(chunks);
    // Three held, one being filled: the ring is never exhausted, so nothing beyond it is allocated.
    expect(sink.allocated).toBeLessThanOrEqual(RING_BUFFERS);
    expect(sink.allocated).toBe(5);
  });

  test("buffers that do not come back are replaced; a full ring drops the extra ones; reset() empties it", () => {
    const { sink, sent } = recorder();
    sink.openFile(0);
    sink.write(Buffer.alloc(20 * CHUNK_BYTES));
    expect(sink.allocated).toBe(20);
    const bufs = sent.flatMap(({ m }) => (m.t === "chunk" ? [m.buf] : []));
    sink.reclaim([...bufs, new ArrayBuffer(10)]); // a wrong size is never taken
    sent.length = 0;
    sink.write(Buffer.alloc(RING_BUFFERS * CHUNK_BYTES));
    expect(sink.allocated).toBe(20); // all from the ring
    sink.write(Buffer.alloc(CHUNK_BYTES));
    expect(sink.allocated).toBe(21); // only RING_BUFFERS were kept
    sink.reset();
    expect(sink.allocated).toBe(0);
    sink.reclaim(bufs.slice(0, 1));
    sink.reset();
    sink.openFile(0);
    sink.write(Buffer.alloc(CHUNK_BYTES));
    expect(sink.allocated).toBe(1);
  });
});
