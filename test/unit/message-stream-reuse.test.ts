// The copy-on-reuse rule: a MessageStream fed views of one read buffer that is overwritten after
// every push (a socket read through onread, `reusesInput`) must forward, queue and hand over
// exactly the bytes it forwards when each chunk is a fresh buffer, with pauses and split messages.
import { describe, expect, test } from "vitest";
import { frame } from "../../src/wire/frame.js";
import { Policy, policyTable } from "../../src/wire/message-policy.js";
import { MessageStream } from "../../src/wire/message-stream.js";

const msg = (type: string, body: Buffer | string): Buffer =>
  frame(type, typeof body === "string" ? Buffer.from(body) : body);

const messages = [
  msg("Q", "select 1\0"),
  msg("Z", "I"),
  msg("K", Buffer.from([0, 0, 0, 7, 1, 2, 3, 4])),
  msg("D", Buffer.alloc(300, 0x61)),
  msg("Q", "COPY t TO 's3://b/p' WITH (FORMAT csv)\0"),
  msg("S", ""),
  msg("D", Buffer.from("row after a taken message")),
  msg("Q", `${"x".repeat(400)}\0`),
  msg("Q", "copy\0"),
  msg("K", Buffer.from([9, 9, 9, 9])),
  msg("Z", "T"),
  msg("C", "SELECT 1\0"),
];
const stream = Buffer.concat(messages);
const policy = policyTable({ Q: Policy.Peek, Z: Policy.Observe, K: Policy.Take });

/**
 * Feeds `cuts` of the stream. With `reuse`, every chunk is copied into one buffer that is
 * scribbled over after push() returns. Every taken message pauses the stream, which is resumed
 * after the next push (or at the end): the rest of the chunk and the next chunk wait in the
 * backlog, and a resume can meet the next taken message and pause again.
 */
function run(cuts: number[], reuse: boolean) {
  const forwarded: Buffer[] = [];
  const taken: string[] = [];
  const observed: string[] = [];
  let pausedAt = -1;
  let pushes = 0;
  const s = new MessageStream(
    policy,
    {
      // Kept as given: a view of the reused buffer would show the scribbling.
      forward: (b) => forwarded.push(b),
      observe: (_t, buf, start, end) => observed.push(buf.subarray(start, end).toString("hex")),
      take: (_t, buf, st, en) => {
        taken.push(buf.subarray(st - 5, en).toString("hex"));
        s.pause();
        pausedAt = pushes;
      },
      decide: (_t, head) =>
        head.subarray(0, 4).toString().toUpperCase() === "COPY" ? Policy.Take : Policy.Pass,
      violation: (r) => {
        throw new Error(r);
      },
    },
    { peekBytes: 8, reusesInput: reuse },
  );
  const shared = Buffer.alloc(stream.length);
  let from = 0;
  for (const to of [...cuts, stream.length]) {
    if (pausedAt >= 0 && pausedAt < pushes) {
      pausedAt = -1;
      s.resume();
    }
    pushes++;
    if (reuse) {
      const n = stream.copy(shared, 0, from, to);
      s.push(shared.subarray(0, n));
      shared.fill(0xee); // the next read overwrites the buffer
    } else {
      s.push(Buffer.from(stream.subarray(from, to)));
    }
    from = to;
  }
  while (pausedAt >= 0) {
    pausedAt = -1;
    s.resume();
  }
  expect(s.atBoundary).toBe(true);
  expect(s.queued).toBe(0);
  return { forwarded: Buffer.concat(forwarded).toString("hex"), taken, observed };
}

function expected() {
  const forwarded: Buffer[] = [];
  const taken: string[] = [];
  const observed: string[] = [];
  for (const m of messages) {
    const t = String.fromCharCode(m[0]!);
    const takeIt = t === "K" || (t === "Q" && m.subarray(5, 9).toString().toUpperCase() === "COPY");
    if (takeIt) taken.push(m.toString("hex"));
    else forwarded.push(m);
    if (t === "Z") observed.push(m.subarray(5).toString("hex"));
  }
  return { forwarded: Buffer.concat(forwarded).toString("hex"), taken, observed };
}

describe("MessageStream over a reused input buffer (reusesInput)", () => {
  const want = expected();
  test("whole stream in one chunk", () => {
    expect(run([], true)).toEqual(want);
    expect(run([], false)).toEqual(want);
  });
  test("split at every offset: the same bytes as fresh buffers", () => {
    for (let i = 1; i < stream.length; i++) {
      const fresh = run([i], false);
      expect(fresh).toEqual(want);
      expect(run([i], true)).toEqual(fresh);
    }
  });
  test("split at every offset and again 1..40 bytes later", () => {
    for (let i = 1; i < stream.length; i++) {
      for (let d = 1; d <= 40 && i + d < stream.length; d += 3) {
        expect(run([i, i + d], true)).toEqual(want);
      }
    }
  });
  test("one byte at a time", () => {
    const cuts = Array.from({ length: stream.length - 1 }, (_, i) => i + 1);
    expect(run(cuts, true)).toEqual(want);
  });
  test("without reusesInput, views of the input are forwarded (the scribbling shows)", () => {
    // The rule's premise: the same feeding with the copy switched off corrupts what was kept.
    const forwarded: Buffer[] = [];
    const s = new MessageStream(policy, {
      forward: (b) => forwarded.push(b),
      decide: () => Policy.Pass,
      violation: () => {},
    });
    const shared = Buffer.from(messages[0]!);
    s.push(shared);
    shared.fill(0xee);
    expect(Buffer.concat(forwarded).equals(messages[0]!)).toBe(false);
  });
});
