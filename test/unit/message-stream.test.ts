import { describe, expect, test } from "vitest";
import { frame } from "../../src/wire/frame.js";
import { MessageStream, Policy, policyTable } from "../../src/wire/message-stream.js";

const msg = (type: string, body: Buffer | string): Buffer =>
  frame(type, typeof body === "string" ? Buffer.from(body) : body);

const messages = [
  msg("Q", "select 1\0"),
  msg("Z", "I"),
  msg("K", Buffer.from([0, 0, 0, 7, 1, 2, 3, 4])),
  msg("D", Buffer.alloc(300, 0x61)),
  msg("Q", "COPY t TO 's3://b/p' WITH (FORMAT csv)\0"),
  msg("S", ""),
  msg("Q", `${"x".repeat(400)}\0`),
  msg("Q", "copy\0"),
  msg("Z", "T"),
  msg("C", "SELECT 1\0"),
];
const stream = Buffer.concat(messages);
const policy = policyTable({ Q: Policy.Peek, Z: Policy.Observe, K: Policy.Take });

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

function run(chunks: Buffer[]) {
  const forwarded: Buffer[] = [];
  const taken: string[] = [];
  const observed: string[] = [];
  const s = new MessageStream(
    policy,
    {
      forward: (b) => forwarded.push(Buffer.from(b)),
      observe: (_t, buf, start, end) => observed.push(buf.subarray(start, end).toString("hex")),
      take: (_t, buf, st, en) => taken.push(buf.subarray(st - 5, en).toString("hex")),
      decide: (_t, head) =>
        head.subarray(0, 4).toString().toUpperCase() === "COPY" ? Policy.Take : Policy.Pass,
      violation: (r) => {
        throw new Error(r);
      },
    },
    { peekBytes: 8 },
  );
  for (const c of chunks) s.push(c);
  expect(s.atBoundary).toBe(true);
  return { forwarded: Buffer.concat(forwarded).toString("hex"), taken, observed };
}

describe("MessageStream", () => {
  const want = expected();
  test("whole stream in one chunk", () => {
    expect(run([stream])).toEqual(want);
  });
  test("split at every byte offset gives the same result", () => {
    for (let i = 1; i < stream.length; i++) {
      expect(run([stream.subarray(0, i), stream.subarray(i)])).toEqual(want);
    }
  });
  test("split at every pair of offsets near message starts", () => {
    for (let i = 1; i < 60; i++) {
      for (let j = i + 1; j < stream.length; j += 7) {
        expect(run([stream.subarray(0, i), stream.subarray(i, j), stream.subarray(j)])).toEqual(want);
      }
    }
  });
  test("one byte at a time", () => {
    const chunks = [...stream].map((b) => Buffer.from([b]));
    expect(run(chunks)).toEqual(want);
  });
  test("absurd lengths are a violation, reported once", () => {
    for (const bad of [Buffer.from([0x51, 0x7f, 0xff, 0xff, 0xff]), Buffer.from([0x51, 0, 0, 0, 2])]) {
      const reasons: string[] = [];
      const s = new MessageStream(policy, { forward: () => {}, violation: (r) => reasons.push(r) });
      s.push(bad);
      s.push(bad);
      expect(reasons).toHaveLength(1);
      expect(reasons[0]).toMatch(/invalid message length/);
    }
  });
});
