// The copy both encoder-thread sinks make (src/encoders/worker/chunk-gatherer.ts): pieces of any
// size come out in full buffers of the fixed size, in order, the last one short only on flush;
// every buffer after one handed on comes from `take` (which may hand the same one out again).
import { randomBytes } from "node:crypto";
import { describe, expect, test } from "vitest";
import { ChunkGatherer } from "../../src/encoders/worker/chunk-gatherer.js";

const SIZE = 16;

/** A gatherer whose buffers are counted as taken and copied out as handed on. */
function gatherer(): { g: ChunkGatherer; out: Buffer[]; taken: () => number } {
  const out: Buffer[] = [];
  let taken = 0;
  const g = new ChunkGatherer(
    SIZE,
    () => {
      taken++;
      return new Uint8Array(SIZE);
    },
    (buf, len) => {
      expect(buf.byteLength).toBe(SIZE);
      out.push(Buffer.from(buf.subarray(0, len)));
    },
  );
  return { g, out, taken: () => taken };
}

describe("ChunkGatherer", () => {
  test("pieces across, on and within buffer boundaries come out as full buffers in order", () => {
    const r = gatherer();
    const data = randomBytes(5 * SIZE + 3);
    // One byte, a piece to just before a boundary, one exactly to it, one spanning three buffers.
    const cuts = [0, 1, SIZE - 1, SIZE, SIZE + 1, 4 * SIZE + 2, data.length];
    for (let i = 1; i < cuts.length; i++) r.g.add(data.subarray(cuts[i - 1], cuts[i]));
    expect(r.out.map((b) => b.length)).toEqual([SIZE, SIZE, SIZE, SIZE, SIZE]);
    expect(r.g.gathered).toBe(3);
    r.g.flush();
    expect(r.out.map((b) => b.length)).toEqual([SIZE, SIZE, SIZE, SIZE, SIZE, 3]);
    expect(Buffer.concat(r.out).equals(data)).toBe(true);
    expect(r.taken()).toBe(6);
    r.g.flush(); // nothing gathered: nothing handed on
    r.g.add(new Uint8Array(0));
    expect(r.out).toHaveLength(6);
    expect(r.taken()).toBe(6);
  });

  test("clear drops what is gathered and its buffer: the next piece goes to a new one", () => {
    const r = gatherer();
    r.g.add(Buffer.from("dropped"));
    r.g.clear();
    expect(r.g.gathered).toBe(0);
    r.g.add(Buffer.from("kept"));
    r.g.flush();
    expect(r.out.map(String)).toEqual(["kept"]);
    expect(r.taken()).toBe(2);
  });
});
