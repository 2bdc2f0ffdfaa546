// The row ring between the relay and an export's encoder thread (src/encoders/worker/row-ring.ts,
// ring-reader.ts), both ends in this thread: every DataRow reaches the reader whole and in order
// however the bytes are split (by the relay's reads and by the thread's takes, at every offset,
// across the ring's end and the positions' 2^32 wrap), and at the first message the reader does
// not take (CommandComplete, a NoticeResponse, a row over exports.maxRowBytes, a bad length word)
// that message and every byte after it go back to the relay. A reader that dies is taken over at
// its last message boundary; a full ring holds the upstream until the reader frees half of it.
import { describe, expect, test } from "vitest";
import { RingReader } from "../../src/encoders/worker/ring-reader.js";
import { BATCH_BYTES } from "../../src/encoders/worker/row-batcher.js";
import {
  LEND_BYTES,
  RING_BYTES,
  RingWriter,
  ringViews,
  rowRingTestHooks,
  SPARE_RINGS,
  Word,
} from "../../src/encoders/worker/row-ring.js";
import { commandComplete, readyForQuery } from "../../src/wire/backend.js";
import { frame, int16, int32 } from "../../src/wire/frame.js";

/** A one-field DataRow (the rows' shape does not matter to the readers, only their framing). */
const dataRow = (value: string | Buffer): Buffer => {
  const v = Buffer.from(value);
  return frame("D", int16(1), int32(v.length), v);
};
const ready = readyForQuery("I");

interface Ring {
  writer: RingWriter;
  reader: RingReader;
  /** The rows the reader framed, back to back. */
  framed: () => Buffer;
  /** What the relay got back, once it did. */
  back: { rows: number; rest: Buffer; skip: number } | null;
  full: boolean[];
}

/** A ring whose positions start at `at` (the ring's end and the Int32 wrap are reachable). */
function ring(at = 0, maxRowBytes = 1 << 30): Ring {
  const out: Buffer[] = [];
  const r: Ring = {
    writer: null as unknown as RingWriter,
    reader: null as unknown as RingReader,
    framed: () => Buffer.concat(out),
    back: null,
    full: [],
  };
  r.writer = new RingWriter({
    rows: () => {},
    full: (held) => r.full.push(held),
    back: (rows, rest, skip) => {
      r.back = { rows, rest: Buffer.concat(rest), skip };
    },
  });
  const { control } = ringViews(r.writer.sab);
  Atomics.store(control, Word.Write, at | 0);
  Atomics.store(control, Word.Read, at | 0);
  r.reader = new RingReader(r.writer.sab, maxRowBytes, {
    rows: (buf, start, end) => {
      out.push(Buffer.from(buf.subarray(start, end)));
    },
  });
  return r;
}

/** Lets the reader take everything there, `limit` bytes at a time; true once it stopped. */
function drain(r: Ring, limit: number): boolean {
  for (;;) {
    const n = r.reader.take(limit);
    if (n < 0) return true;
    if (n === 0) return false;
  }
}

const ROWS = Buffer.concat([dataRow("a"), dataRow(""), dataRow("héllo wörld"), dataRow("x".repeat(40))]);
const TAIL = Buffer.concat([commandComplete("SELECT 4"), ready]);
const STREAM = Buffer.concat([ROWS, TAIL]);

describe("framing", () => {
  // At the start, just before the ring's end, and just before the positions' Int32 wrap.
  for (const at of [0, RING_BYTES - 37, 0x7fffffff - 20]) {
    test(`split in two reads at every offset, taken in pieces of 1, 7 and 4096 bytes (positions from ${at})`, () => {
      for (const limit of [1, 7, 4096]) {
        for (let k = 0; k <= STREAM.length; k++) {
          const r = ring(at);
          r.writer.write(STREAM.subarray(0, k));
          let stopped = drain(r, limit);
          r.writer.write(STREAM.subarray(k));
          stopped = stopped || drain(r, limit);
          expect(stopped).toBe(true);
          r.writer.stopped();
          expect(r.framed().equals(ROWS)).toBe(true);
          expect(r.back?.rows).toBe(4);
          expect(r.back?.rest.equals(TAIL)).toBe(true);
          expect(r.back?.skip).toBe(0);
        }
      }
    });
  }

  test("a NoticeResponse between rows: it and the rows after it go back", () => {
    const notice = frame("N", Buffer.from("SNOTICE\0Mhi\0\0"));
    const after = Buffer.concat([notice, dataRow("later"), commandComplete("SELECT 3")]);
    const r = ring();
    r.writer.write(Buffer.concat([dataRow("one"), dataRow("two"), after]));
    expect(drain(r, BATCH_BYTES)).toBe(true);
    r.writer.stopped();
    expect(r.framed().equals(Buffer.concat([dataRow("one"), dataRow("two")]))).toBe(true);
    expect(r.back?.rest.equals(after)).toBe(true);
  });

  test("bytes the relay wrote after the reader stopped come back after the message", () => {
    const r = ring();
    r.writer.write(Buffer.concat([dataRow("one"), commandComplete("SELECT 1")]));
    expect(drain(r, BATCH_BYTES)).toBe(true);
    r.writer.write(ready);
    r.writer.stopped();
    expect(r.back?.rest.equals(Buffer.concat([commandComplete("SELECT 1"), ready]))).toBe(true);
  });

  test("a row over maxRowBytes and a bad length word are the relay's to judge", () => {
    const big = dataRow("y".repeat(200));
    const r = ring(0, 100);
    r.writer.write(Buffer.concat([dataRow("ok"), big, dataRow("after")]));
    expect(drain(r, 3)).toBe(true);
    r.writer.stopped();
    expect(r.framed().equals(dataRow("ok"))).toBe(true);
    expect(r.back?.rest.equals(Buffer.concat([big, dataRow("after")]))).toBe(true);

    const bad = Buffer.from([0x44, 0, 0, 0, 2, 1, 2, 3]);
    const s = ring();
    s.writer.write(Buffer.concat([dataRow("ok"), bad]));
    expect(drain(s, 5)).toBe(true);
    s.writer.stopped();
    expect(s.back?.rest.equals(bad)).toBe(true);
  });

  test("rows larger than a batch are framed whole across the ring's end", () => {
    const big = dataRow(Buffer.alloc(BATCH_BYTES + 1000, 7));
    const rows = Buffer.concat([dataRow("a"), big, dataRow("b"), big, dataRow("c")]);
    const r = ring(RING_BYTES - 5000);
    for (let i = 0; i < rows.length; i += 65536) {
      r.writer.write(rows.subarray(i, i + 65536));
      expect(drain(r, BATCH_BYTES)).toBe(false);
    }
    r.writer.write(TAIL);
    expect(drain(r, BATCH_BYTES)).toBe(true);
    r.writer.stopped();
    expect(r.framed().equals(rows)).toBe(true);
    expect(r.back?.rest.equals(TAIL)).toBe(true);
  });
});

describe("the reader gone (a cancel terminates the thread)", () => {
  test("mid small row: the relay reads on from that row's start", () => {
    const r = ring(RING_BYTES - 10);
    const rest = Buffer.concat([dataRow("second"), commandComplete("SELECT 2")]);
    r.writer.write(Buffer.concat([dataRow("first"), rest.subarray(0, 6)]));
    drain(r, BATCH_BYTES);
    r.writer.write(rest.subarray(6));
    r.writer.takeOver();
    expect(r.back?.rest.equals(rest)).toBe(true);
    expect(r.back?.skip).toBe(0);
  });

  test("mid large row: the relay skips the rest of it, including the bytes not yet read", () => {
    const big = dataRow(Buffer.alloc(BATCH_BYTES * 2, 1));
    const r = ring();
    r.writer.write(Buffer.concat([dataRow("first"), big.subarray(0, BATCH_BYTES + 100)]));
    drain(r, 4096);
    r.writer.takeOver();
    expect(r.back?.rest.length).toBe(0);
    expect(r.back?.skip).toBe(big.length - BATCH_BYTES - 100);

    // All of it written, the reader gone before it took the end: the rest from after the row.
    const s = ring();
    const tail = commandComplete("SELECT 2");
    s.writer.write(Buffer.concat([big.subarray(0, BATCH_BYTES + 100)]));
    drain(s, 4096);
    s.writer.write(Buffer.concat([big.subarray(BATCH_BYTES + 100), tail]));
    s.writer.takeOver();
    expect(s.back?.rest.equals(tail)).toBe(true);
    expect(s.back?.skip).toBe(0);
  });
});

describe("backpressure", () => {
  test("a full ring holds the upstream; the reader freeing half of it wakes the relay (no polling); no byte is lost", async () => {
    const r = ring();
    const rows: Buffer[] = [];
    for (let i = 0; rows.length * 1000 < RING_BYTES + 200_000; i++)
      rows.push(dataRow(String(i).padEnd(989, ".")));
    const all = Buffer.concat(rows);
    // Reads of 64 KiB until the relay is told to hold, then two more (a read already under way).
    let at = 0;
    while (r.full.length === 0) {
      r.writer.write(all.subarray(at, at + 65536));
      at += 65536;
    }
    r.writer.write(all.subarray(at, at + 65536));
    at += 65536;
    expect(r.full).toEqual([true]);
    drain(r, BATCH_BYTES);
    // The wake-up is a task the notify posts to this thread's loop.
    for (let i = 0; i < 200 && r.full.length < 2; i++)
      await new Promise((resolve) => setTimeout(resolve, 10));
    expect(r.full).toEqual([true, false]);
    r.writer.write(Buffer.concat([all.subarray(at), TAIL]));
    expect(drain(r, BATCH_BYTES)).toBe(true);
    r.writer.stopped();
    expect(r.framed().equals(all)).toBe(true);
    expect(r.back?.rest.equals(TAIL)).toBe(true);
  });
});

describe("rows written from the ring's memory", () => {
  // The encoder thread writes the rows to its encoder straight from the ring (encoder-worker.ts,
  // ringRows): the bytes of every run of rows the reader hands out must still be the thread's
  // (not freed, so the relay cannot write there) until the call returns, and the next take sees
  // the space freed. Positions near the ring's end and the Int32 wrap; rows split across takes.
  for (const at of [0, 3, RING_BYTES - 37, 0x7fffffff - 20]) {
    test(`a run of rows is not freed while it is being read (positions from ${at})`, () => {
      const rows: Buffer[] = [];
      for (let i = 0; i < 8000; i++) rows.push(dataRow("v".repeat((i * 37) % 301)));
      rows.splice(4000, 0, dataRow(Buffer.alloc(BATCH_BYTES + 3, 1))); // larger than a batch
      const all = Buffer.concat(rows);
      const w = new RingWriter({ rows: () => {}, full: () => {}, back: () => {} });
      const { control } = ringViews(w.sab);
      Atomics.store(control, Word.Write, at | 0);
      Atomics.store(control, Word.Read, at | 0);
      const got: Buffer[] = [];
      let freedTooSoon = 0;
      const r = new RingReader(w.sab, 1 << 30, {
        rows: (buf, start, end, _count, own, pos) => {
          // A row of the ring's memory (not the reader's own copy) lies from `pos` on: Read must
          // not be past it.
          if (!own && ((pos - Atomics.load(control, Word.Read)) | 0) < 0) freedTooSoon++;
          got.push(Buffer.from(buf.subarray(start, end)));
        },
      });
      for (let i = 0; i < all.length; i += 65531) {
        w.write(all.subarray(i, i + 65531));
        while (r.take(4093) > 0);
      }
      expect(Buffer.concat(got).equals(all)).toBe(true);
      expect(freedTooSoon).toBe(0);
      // Everything taken is freed once the takes return.
      expect(Atomics.load(control, Word.Read)).toBe((at + all.length) | 0);
    });
  }
});

describe("a ring's memory", () => {
  /** Takes every spare ring (the module keeps them across tests): the next ended ring is the only one. */
  const emptySpares = (): Ring[] => Array.from({ length: SPARE_RINGS }, () => ring());

  test("serves the next ring once its reader stopped, cleared; the ended ring keeps its own figures", () => {
    const open = emptySpares();
    const r = ring();
    r.writer.write(STREAM);
    expect(drain(r, 7)).toBe(true);
    r.writer.stopped();
    expect(r.back?.rows).toBe(4);

    // Fresh memory is touched first by the relay's copies (a page fault per 4 KiB): reused instead.
    const s = ring();
    expect(s.writer.sab).toBe(r.writer.sab);
    const { control, rows } = ringViews(s.writer.sab);
    expect(Array.from(control)).toEqual(new Array(control.length).fill(0));
    expect(rows[0]).toBe(0n);
    const again = Buffer.concat([dataRow("z".repeat(100)), dataRow("y"), TAIL]);
    s.writer.write(again.subarray(0, 50));
    // The ended ring's figures are its own, not those of the ring now in its memory.
    expect(r.writer.queued).toBe(0);
    s.writer.write(again.subarray(50));
    expect(drain(s, 4096)).toBe(true);
    expect(r.writer.rows).toBe(4);
    s.writer.stopped();
    expect(s.back?.rows).toBe(2);
    expect(s.framed().equals(again.subarray(0, again.length - TAIL.length))).toBe(true);
    expect(s.back?.rest.equals(TAIL)).toBe(true);
    expect(r.framed().equals(ROWS)).toBe(true);
    for (const o of open) expect(o.writer.sab).not.toBe(r.writer.sab);
  });

  test("a ring taken over from a dead reader is reused; one still read is not", () => {
    emptySpares();
    const r = ring();
    r.writer.write(Buffer.concat([dataRow("first"), dataRow("second").subarray(0, 4)]));
    drain(r, BATCH_BYTES);
    const live = ring(); // its reader still reads: its memory is never handed out
    r.writer.takeOver();
    const s = ring();
    expect(s.writer.sab).toBe(r.writer.sab);
    expect(s.writer.sab).not.toBe(live.writer.sab);
    expect(ring().writer.sab).not.toBe(live.writer.sab);
  });
});

describe("a ring's end with much left in it (a cancel: the thread terminated behind the relay)", () => {
  /** Rows filling most of the ring, the reader having taken none (it fell behind, then died). */
  const behind = (at: number): { r: Ring; rows: Buffer; rests: Buffer[]; sab: SharedArrayBuffer } => {
    const parts: Buffer[] = [];
    for (let i = 0; parts.length * 1000 < RING_BYTES - 200_000; i++)
      parts.push(dataRow(String(i).padEnd(989, ".")));
    const rows = Buffer.concat(parts);
    let rests: Buffer[] = [];
    const r = ring(at);
    r.writer = new RingWriter({
      rows: () => {},
      full: () => {},
      back: (rows, rest, skip) => {
        rests = [...rest];
        r.back = { rows, rest: Buffer.concat(rest), skip };
      },
    });
    const { control } = ringViews(r.writer.sab);
    Atomics.store(control, Word.Write, at | 0);
    Atomics.store(control, Word.Read, at | 0);
    for (let i = 0; i < rows.length; i += 65536) r.writer.write(rows.subarray(i, i + 65536));
    const sab = r.writer.sab;
    r.writer.takeOver();
    return { r, rows, rests, sab };
  };

  // From the ring's start and from its middle (the bytes left then wrap around its end).
  for (const at of [0, RING_BYTES / 2 + 3]) {
    test(`no megabytes copied in one turn: the ring's bytes come back as views of its memory (positions from ${at})`, () => {
      const copied = rowRingTestHooks.endCopied;
      const { r, rows, rests, sab } = behind(at);
      expect(r.back?.rest.equals(rows)).toBe(true);
      expect(r.back?.skip).toBe(0);
      // The old end copied them all into one fresh buffer (1024 page faults of a fresh 4 MiB).
      expect(rowRingTestHooks.endCopied - copied).toBe(0);
      for (const b of rests) expect(b.buffer).toBe(sab);
      // The views are the relay's now: that memory serves no other ring.
      for (let i = 0; i < SPARE_RINGS + 1; i++) expect(ring().writer.sab).not.toBe(sab);
    });
  }

  test("a normal end (a few bytes left) is still copied, and its memory reused", () => {
    for (let i = 0; i < SPARE_RINGS; i++) ring();
    const r = ring();
    r.writer.write(STREAM);
    expect(drain(r, 4096)).toBe(true);
    const copied = rowRingTestHooks.endCopied;
    r.writer.stopped();
    expect(rowRingTestHooks.endCopied - copied).toBe(TAIL.length);
    expect(ring().writer.sab).toBe(r.writer.sab);
  });
});

describe("reads straight into the ring (RingWriter.lend)", () => {
  /** What a socket's read into lent memory does: the bytes land there, then the chunk is handed on. */
  const readInto = (lent: Buffer, bytes: Buffer): Buffer => {
    bytes.copy(lent, 0);
    return lent.subarray(0, bytes.length);
  };

  for (const at of [0, RING_BYTES - 5000, 0x7fffffff - 20]) {
    test(`rows read into lent memory are framed without a copy; near the ring's end the rest goes to the socket's buffer (positions from ${at})`, () => {
      const r = ring(at);
      const rows: Buffer[] = [];
      for (let i = 0; i < 3000; i++) rows.push(dataRow("w".repeat((i * 53) % 211)));
      const all = Buffer.concat([...rows, TAIL]);
      const copied = rowRingTestHooks.copied;
      let inPlace = 0;
      for (let i = 0; i < all.length; ) {
        const lent = r.writer.lend();
        const piece = all.subarray(i, i + 7000);
        if (lent !== null && lent.length >= piece.length) {
          expect(lent.buffer).toBe(r.writer.sab);
          r.writer.write(readInto(lent, piece));
          r.writer.returned();
          inPlace += piece.length;
        } else {
          // Less room than a read before the ring's end: this one comes in the socket's buffer.
          r.writer.write(Buffer.from(piece));
          r.writer.returned();
        }
        i += piece.length;
        drain(r, 4096);
      }
      expect(r.reader.take(4096)).toBe(-1);
      r.writer.stopped();
      expect(r.framed().equals(Buffer.concat(rows))).toBe(true);
      expect(r.back?.rest.equals(TAIL)).toBe(true);
      expect(inPlace).toBeGreaterThan(all.length / 2);
      expect(rowRingTestHooks.copied - copied).toBe(all.length - inPlace);
    });
  }

  test("what is lent never reaches bytes the thread has not read yet (a wrapped ring, nearly full)", () => {
    const r = ring();
    const row = dataRow("f".repeat(1013));
    const rows = (bytes: number): Buffer =>
      Buffer.concat(Array.from({ length: Math.floor(bytes / row.length) }, () => row));
    r.writer.write(rows(3.5 * 2 ** 20));
    drain(r, 1 << 20);
    // The write position wraps past the ring's end; the thread reads nothing of this.
    for (const part of [rows(0.5 * 2 ** 20), rows(3.4 * 2 ** 20)]) r.writer.write(part);
    expect(r.full).toEqual([]);
    const { control } = ringViews(r.writer.sab);
    const free = RING_BYTES - ((Atomics.load(control, Word.Write) - Atomics.load(control, Word.Read)) | 0);
    expect(free).toBeLessThan(LEND_BYTES);
    const lent = r.writer.lend();
    expect(lent === null || lent.length <= free).toBe(true);
  });

  test("nothing is lent while the ring is held or ended", () => {
    const r = ring();
    const row = dataRow("h".repeat(989));
    const fill = Buffer.concat(Array.from({ length: Math.ceil(RING_BYTES / row.length) }, () => row));
    for (let i = 0; r.full.length === 0; i += 65536) r.writer.write(fill.subarray(i, i + 65536));
    expect(r.writer.lend()).toBeNull();
    r.writer.takeOver();
    expect(r.writer.lend()).toBeNull();
  });

  test("a ring ended while its memory is lent to a read serves the next ring only once that read is handled", () => {
    for (let i = 0; i < SPARE_RINGS; i++) ring();
    const r = ring();
    r.writer.write(STREAM);
    expect(drain(r, 4096)).toBe(true);
    const lent = r.writer.lend();
    expect(lent).not.toBeNull();
    r.writer.stopped();
    expect(r.back?.rest.equals(TAIL)).toBe(true);
    // The socket still reads into `lent`: the memory is not handed out yet.
    const other = ring();
    expect(other.writer.sab).not.toBe(r.writer.sab);
    r.writer.returned();
    expect(ring().writer.sab).toBe(r.writer.sab);
  });
});
