// The encoder host's reader of a lent upstream socket (src/encoders/worker/row-loan.ts), on a real
// TCP connection: every DataRow reaches the thread's batches whole and in order however the bytes
// are split, and at the first message it does not take (not a DataRow, a length word the relay's
// stream rejects, a row over exports.maxRowBytes) it stops and gives that message and every byte
// after it back, so the relay judges it exactly as when it reads the rows itself.
import { createServer, type Server, type Socket, connect as tcpConnect } from "node:net";
import { afterEach, describe, expect, test } from "vitest";
import { BATCH_BYTES } from "../../src/encoders/worker/row-batcher.js";
import { type LoanTarget, RowLoan } from "../../src/encoders/worker/row-loan.js";
import { commandComplete, readyForQuery } from "../../src/wire/backend.js";
import { frame, int16, int32 } from "../../src/wire/frame.js";

/** A one-field DataRow (the rows' shape does not matter to the readers, only their framing). */
const dataRow = (value: string | Buffer): Buffer => {
  const v = Buffer.from(value);
  return frame("D", int16(1), int32(v.length), v);
};

interface Loaned {
  /** The upstream's end: write to it as PostgreSQL would. */
  upstream: Socket;
  batches: Buffer[];
  back: Promise<{ rows: number; rest: Buffer; error?: string }>;
  loan: RowLoan;
}

let server: Server | null = null;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((r) => (server === null ? r() : server.close(() => r())));
  server = null;
});

async function lend(leftover: Buffer, maxRowBytes = 1 << 20): Promise<Loaned> {
  const accepted = new Promise<Socket>((resolve) => {
    server = createServer((s) => resolve(s));
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  const addr = server!.address() as { port: number };
  const received = tcpConnect(addr.port, "127.0.0.1");
  await new Promise((r) => received.once("connect", r));
  const upstream = await accepted;
  sockets.push(upstream, received);
  const batches: Buffer[] = [];
  let done: (v: { rows: number; rest: Buffer; error?: string }) => void = () => {};
  const back = new Promise<{ rows: number; rest: Buffer; error?: string }>((r) => {
    done = r;
  });
  const target: LoanTarget = {
    buffer: () => new ArrayBuffer(BATCH_BYTES),
    send: (buf, len) => {
      batches.push(Buffer.from(buf, 0, len));
      queueMicrotask(() => loan.acked(len));
      return true;
    },
    progress: () => {},
    back: (rows, rest, _read, error) => done({ rows, rest: Buffer.from(rest), error }),
  };
  const loan: RowLoan = new RowLoan(received, leftover, maxRowBytes, target);
  return { upstream, batches, back, loan };
}

/** Writes `bytes` in pieces of `step` bytes, each its own write (and so, mostly, its own read). */
async function trickle(sock: Socket, bytes: Buffer, step: number): Promise<void> {
  for (let i = 0; i < bytes.length; i += step) {
    await new Promise<void>((r) => sock.write(bytes.subarray(i, i + step), () => r()));
  }
}

describe("a lent socket's rows", () => {
  test("rows split anywhere, after a leftover that ends inside a row, reach the batches whole and in order; the rest from CommandComplete on is given back", async () => {
    const rows = Array.from({ length: 3000 }, (_, i) => dataRow(`row ${i} ${"z".repeat(i % 50)}`));
    const all = Buffer.concat(rows);
    // The relay read the first bytes: two rows and a part of the third.
    const cut = rows[0]!.length + rows[1]!.length + 3;
    const tail = Buffer.concat([commandComplete("SELECT 3000"), readyForQuery("I")]);
    const { upstream, batches, back } = await lend(all.subarray(0, cut));
    await trickle(upstream, Buffer.concat([all.subarray(cut), tail]), 777);
    const b = await back;
    expect(b.error).toBeUndefined();
    expect(b.rows).toBe(3000);
    expect(Buffer.concat(batches).equals(all)).toBe(true);
    expect(b.rest.equals(tail)).toBe(true);
  });

  test("a length word the relay's stream rejects: given back from that message, the rows before it kept", async () => {
    const good = Buffer.concat([dataRow("a"), dataRow("b")]);
    const bad = Buffer.from([0x44, 0, 0, 0, 2, 1, 2, 3]);
    const { upstream, batches, back } = await lend(Buffer.alloc(0));
    upstream.write(Buffer.concat([good, bad]));
    const b = await back;
    expect(b.rows).toBe(2);
    expect(Buffer.concat(batches).equals(good)).toBe(true);
    expect(b.rest.equals(bad)).toBe(true);
  });

  test("a row over exports.maxRowBytes: given back at its header, unread beyond what had arrived", async () => {
    const big = dataRow("x".repeat(5000));
    const { upstream, batches, back } = await lend(dataRow("first"), 4096);
    upstream.write(big);
    const b = await back;
    expect(b.rows).toBe(1);
    expect(Buffer.concat(batches).equals(dataRow("first"))).toBe(true);
    // What the host read of it goes back; the relay drops the row as it always did.
    expect(big.subarray(0, b.rest.length).equals(b.rest)).toBe(true);
    expect(b.rest.length).toBeGreaterThanOrEqual(5);
  });

  test("a NoticeResponse between rows: given back there, with the rows after it", async () => {
    const notice = frame("N", Buffer.from("SNOTICE\0Mhello\0\0"));
    const after = Buffer.concat([dataRow("c"), commandComplete("SELECT 3")]);
    const { upstream, batches, back } = await lend(Buffer.alloc(0));
    upstream.write(Buffer.concat([dataRow("a"), dataRow("b"), notice, after]));
    const b = await back;
    expect(b.rows).toBe(2);
    expect(Buffer.concat(batches).equals(Buffer.concat([dataRow("a"), dataRow("b")]))).toBe(true);
    expect(b.rest.equals(Buffer.concat([notice, after]))).toBe(true);
  });

  test("the upstream closing under the loan: an error, the rows so far kept", async () => {
    const { upstream, back } = await lend(dataRow("a"));
    upstream.end();
    const b = await back;
    expect(b.error).toMatch(/closed/);
    expect(b.rows).toBe(1);
  });

  test("dropped (the export is ending): the rows are read and not sent, the rest still given back", async () => {
    const { upstream, batches, back, loan } = await lend(Buffer.alloc(0));
    loan.drop();
    const tail = frame("E", Buffer.from("SERROR\0C57014\0Mcanceling statement due to user request\0\0"));
    upstream.write(Buffer.concat([dataRow("a"), dataRow("b"), tail]));
    const b = await back;
    expect(batches).toEqual([]);
    expect(b.rest.equals(tail)).toBe(true);
  });
});
