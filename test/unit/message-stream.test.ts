import { describe, expect, test } from "vitest";
import { frame } from "../../src/wire/frame.js";
import { Policy, policyTable } from "../../src/wire/message-policy.js";
import { MAX_RUN_BYTES, MessageStream } from "../../src/wire/message-stream.js";

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

describe("MessageStream TakeRun (an export's DataRows)", () => {
  const row = (i: number): Buffer => msg("D", Buffer.alloc(3 + (i % 5) * 7, 0x30 + (i % 10)));
  const rows = Array.from({ length: 12 }, (_, i) => row(i));
  // Rows, then what ends a result, then more rows: runs never cross other messages.
  const parts = [...rows.slice(0, 7), msg("C", "SELECT 7\0"), ...rows.slice(7), msg("Z", "I")];
  const all = Buffer.concat(parts);
  const table = policyTable({ D: Policy.TakeRun, C: Policy.Take, Z: Policy.Take });

  /** Every taken message, in order, however it arrived, plus how many calls delivered them. */
  function runRuns(chunks: Buffer[], pauseAfterRun = false) {
    const seen: string[] = [];
    let calls = 0;
    let maxRun = 0;
    const s: MessageStream = new MessageStream(
      table,
      {
        forward: () => {
          throw new Error("nothing is forwarded");
        },
        take: (t, buf, st, en) => {
          calls++;
          expect(String.fromCharCode(t)).toBe(String.fromCharCode(buf[st - 5]!));
          seen.push(buf.subarray(st - 5, en).toString("hex"));
        },
        takeRun: (t, buf, st, en, count) => {
          calls++;
          maxRun = Math.max(maxRun, count);
          let n = 0;
          for (let p = st; p < en; n++) {
            expect(buf[p]).toBe(t);
            const next = p + 1 + buf.readInt32BE(p + 1);
            seen.push(buf.subarray(p, next).toString("hex"));
            p = next;
          }
          expect(n).toBe(count);
          if (pauseAfterRun) {
            s.pause();
            queueMicrotask(() => s.resume());
          }
        },
        violation: (r) => {
          throw new Error(r);
        },
      },
      { reusesInput: true },
    );
    for (const c of chunks) {
      // A reused read buffer: scribbled over as soon as push() returns.
      const b = Buffer.from(c);
      s.push(b);
      b.fill(0xee);
    }
    return { seen, calls, maxRun, s };
  }
  const want = parts.map((p) => p.toString("hex"));

  test("one chunk: each run of rows comes in one call", () => {
    const r = runRuns([all]);
    expect(r.seen).toEqual(want);
    expect(r.calls).toBe(4); // 7 rows, C, 5 rows, Z
    expect(r.maxRun).toBe(7);
  });
  test("split at every byte offset and pair of offsets gives the same messages", () => {
    for (let i = 1; i < all.length; i++) {
      expect(runRuns([all.subarray(0, i), all.subarray(i)]).seen).toEqual(want);
      for (let j = i + 1; j < all.length; j += 5) {
        expect(runRuns([all.subarray(0, i), all.subarray(i, j), all.subarray(j)]).seen).toEqual(want);
      }
    }
  });
  test("one byte at a time: every row assembled and taken alone, none lost", () => {
    const r = runRuns([...all].map((b) => Buffer.from([b])));
    expect(r.seen).toEqual(want);
    expect(r.maxRun).toBe(0);
    expect(r.calls).toBe(parts.length);
  });
  test("a pause from inside a run stops after it, and the rest follows on resume", async () => {
    for (let i = 1; i < all.length; i += 3) {
      const r = runRuns([all.subarray(0, i), all.subarray(i)], true);
      await new Promise((resolve) => setTimeout(resolve, 0));
      expect(r.seen).toEqual(want);
    }
  });
  test("a long chunk of rows comes in runs of at most MAX_RUN_BYTES, in order", () => {
    const many = Array.from({ length: 5000 }, (_, i) => row(i));
    const runs: number[] = [];
    const seen: Buffer[] = [];
    const s = new MessageStream(table, {
      forward: () => {},
      takeRun: (_t, buf, st, en) => {
        runs.push(en - st);
        seen.push(Buffer.from(buf.subarray(st, en)));
      },
      violation: (r) => {
        throw new Error(r);
      },
    });
    const input = Buffer.concat(many);
    s.push(input);
    expect(Buffer.concat(seen).equals(input)).toBe(true);
    expect(runs.length).toBeGreaterThan(1);
    expect(Math.max(...runs)).toBeLessThanOrEqual(MAX_RUN_BYTES);
  });
  test("a bad length behind a run is still a violation", () => {
    const reasons: string[] = [];
    const got: number[] = [];
    const s = new MessageStream(table, {
      forward: () => {},
      takeRun: (_t, _b, _s, _e, count) => got.push(count),
      violation: (r) => reasons.push(r),
    });
    s.push(Buffer.concat([rows[0]!, rows[1]!, Buffer.from([0x44, 0, 0, 0, 2, 0, 0])]));
    expect(got).toEqual([2]);
    expect(reasons).toHaveLength(1);
    expect(reasons[0]).toMatch(/invalid message length 2/);
  });
});

describe("Policy.Drop", () => {
  test("dropped messages are neither forwarded nor assembled, at every split of the input", () => {
    const big = msg("D", Buffer.alloc(5000, 0x62));
    const input = Buffer.concat([msg("Q", "a\0"), big, msg("S", ""), big, msg("Q", "b\0")]);
    const want = Buffer.concat([msg("Q", "a\0"), msg("S", ""), msg("Q", "b\0")]).toString("hex");
    for (const size of [1, 2, 3, 5, 7, 64, 4999, input.length]) {
      const out: Buffer[] = [];
      const s = new MessageStream(policyTable({ D: Policy.Drop }), {
        forward: (b) => out.push(Buffer.from(b)),
        take: () => {
          throw new Error("nothing is taken");
        },
        violation: (r) => {
          throw new Error(r);
        },
      });
      for (let i = 0; i < input.length; i += size) s.push(input.subarray(i, i + size));
      expect(Buffer.concat(out).toString("hex")).toBe(want);
      expect(s.atBoundary).toBe(true);
    }
  });
});

describe("MessageStream: a message over maxTakeLength with an oversize handler", () => {
  // A Take message of 1000 bytes, with a limit of 100, between two small ones: reported once and
  // dropped as it streams in (never forwarded, never assembled), whatever the chunking.
  const big = msg("D", Buffer.alloc(995, 0x62));
  const before = msg("Z", "I");
  const after = msg("D", Buffer.from([0, 1, 0, 0, 0, 1, 0x63]));
  const all = Buffer.concat([before, big, after]);
  for (const size of [1, 3, 7, 64, 512, all.length]) {
    test(`chunks of ${size} bytes`, () => {
      const forwarded: Buffer[] = [];
      const taken: string[] = [];
      const oversize: Array<[number, number]> = [];
      const s = new MessageStream(
        policyTable({ D: Policy.TakeRun }),
        {
          forward: (b) => forwarded.push(Buffer.from(b)),
          take: (_t, buf, st, en) => taken.push(buf.subarray(st - 5, en).toString("hex")),
          takeRun: (_t, buf, st, en) => taken.push(buf.subarray(st, en).toString("hex")),
          oversize: (t, total) => oversize.push([t, total]),
          violation: (r) => {
            throw new Error(r);
          },
        },
        { maxTakeLength: 100 },
      );
      for (let i = 0; i < all.length; i += size) s.push(all.subarray(i, i + size));
      expect(oversize).toEqual([["D".charCodeAt(0), big.length]]);
      expect(Buffer.concat(forwarded).toString("hex")).toBe(before.toString("hex"));
      expect(taken).toEqual([after.toString("hex")]);
      expect(s.atBoundary).toBe(true);
    });
  }
});
