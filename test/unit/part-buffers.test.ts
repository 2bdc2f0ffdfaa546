// Part buffers outlive the store (one per export) that allocated them: the next export's store
// reuses them instead of allocating new ones on top of garbage not yet collected.
import { expect, test } from "vitest";
import { PartBuffers } from "../../src/copy/storage/part-buffers.js";

test("a later store of the same part size takes the buffers an earlier one gave back", () => {
  const size = 64 * 1024 + 7; // a size of this test's own: the free buffers are the process's
  const first = new PartBuffers(size, 2);
  const a = first.take();
  const b = first.take();
  first.give(a);
  first.give(b.subarray(0, 100)); // a part's body may be a view of its buffer
  expect(first.allocated).toBe(2);

  const next = new PartBuffers(size, 2);
  const taken = [next.take(), next.take()];
  expect(next.allocated).toBe(0);
  // Identity, not contents: the very buffers given back (the view's whole buffer for b).
  expect(taken[0]!.buffer === b.buffer && taken[1]!.buffer === a.buffer).toBe(true);
  expect(taken.every((t) => t.length === size)).toBe(true);
  expect(next.take().buffer === a.buffer).toBe(false); // none free: a new one
  expect(next.allocated).toBe(1);
});

test("no more than max are kept free, and another size has its own", () => {
  const size = 64 * 1024 + 11;
  const p = new PartBuffers(size, 1);
  const [x, y] = [p.take(), p.take()];
  p.give(x);
  p.give(y); // beyond max: left to the GC
  const q = new PartBuffers(size, 1);
  expect(q.take().buffer === x.buffer).toBe(true);
  q.take();
  expect(q.allocated).toBe(1);
  const other = new PartBuffers(size + 1, 1);
  other.take();
  expect(other.allocated).toBe(1);
});
