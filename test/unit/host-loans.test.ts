// The encoder host's table of row loans (src/encoders/worker/host-loans.ts), on real TCP
// connections: a loan arrives in two halves (its frame on the data channel, its socket over IPC) in
// either order and starts once both are there; a drop or a hold from the relay that arrives before
// the loan is complete still applies to it (its rows are read to the end and dropped; it starts
// paused, and stays so until the relay lets it go).
import { createServer, type Server, Socket, connect as tcpConnect } from "node:net";
import { afterEach, describe, expect, test, vi } from "vitest";
import { HostLoans } from "../../src/encoders/worker/host-loans.js";
import type { FromHost } from "../../src/encoders/worker/host-protocol.js";
import { BATCH_BYTES } from "../../src/encoders/worker/row-batcher.js";
import type { RowLoan } from "../../src/encoders/worker/row-loan.js";
import { commandComplete, readyForQuery } from "../../src/wire/backend.js";
import { frame, int16, int32 } from "../../src/wire/frame.js";

const dataRow = (value: string): Buffer => {
  const v = Buffer.from(value);
  return frame("D", int16(1), int32(v.length), v);
};
const ROWS = Array.from({ length: 500 }, (_, i) => dataRow(`row ${i}`));
const TAIL = Buffer.concat([commandComplete("SELECT 500"), readyForQuery("I")]);

let server: Server | null = null;
const sockets: Socket[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await new Promise<void>((r) => (server === null ? r() : server.close(() => r())));
  server = null;
});

/** A connected pair: the upstream's end (write as PostgreSQL would) and the end lent to the host. */
async function pair(): Promise<{ upstream: Socket; lent: Socket }> {
  const accepted = new Promise<Socket>((resolve) => {
    server = createServer((s) => resolve(s));
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  const lent = tcpConnect((server!.address() as { port: number }).port, "127.0.0.1");
  await new Promise((r) => lent.once("connect", r));
  const upstream = await accepted;
  sockets.push(upstream, lent);
  return { upstream, lent };
}

/** A HostLoans whose rows are counted (and acked at once, as a thread would), and what it tells the relay. */
function host(): {
  loans: HostLoans;
  rows: () => number;
  back: Promise<Extract<FromHost, { t: "loanBack" }>>;
} {
  let rows = 0;
  let backNow: (m: Extract<FromHost, { t: "loanBack" }>) => void = () => {};
  const back = new Promise<Extract<FromHost, { t: "loanBack" }>>((r) => {
    backNow = r;
  });
  const loans = new HostLoans({
    buffer: () => new ArrayBuffer(BATCH_BYTES),
    postRows: (_w, buf, len, loan: RowLoan | null) => {
      for (let off = 0; off < len; off += new DataView(buf, off + 1, 4).getInt32(0) + 1) rows++;
      queueMicrotask(() => loan?.acked(len));
      return true;
    },
    send: (m) => {
      if (m.t === "loanBack") backNow(m);
    },
  });
  return { loans, rows: () => rows, back };
}

const loanFrame = (h: number) =>
  ({ t: "loan", h, w: 1, leftover: new Uint8Array(0), maxRowBytes: 1 << 20 }) as const;

describe("HostLoans", () => {
  test.each(["frame first", "socket first"])(
    "a loan whose halves arrive %s starts once both are here: every row reaches the thread",
    async (order) => {
      const { upstream, lent } = await pair();
      const { loans, rows, back } = host();
      if (order === "frame first") {
        loans.frame(loanFrame(7));
        loans.socket(7, lent);
      } else {
        loans.socket(7, lent);
        loans.frame(loanFrame(7));
      }
      upstream.write(Buffer.concat([...ROWS, TAIL]));
      const m = await back;
      expect(m).toMatchObject({ h: 7, rows: ROWS.length });
      expect(m.error).toBeUndefined();
      expect(rows()).toBe(ROWS.length);
      expect(Buffer.from(m.rest).equals(TAIL)).toBe(true);
    },
  );

  test("a drop that arrives before the loan's socket applies once it starts: the rows are read and dropped", async () => {
    const { upstream, lent } = await pair();
    const { loans, rows, back } = host();
    loans.frame(loanFrame(3));
    loans.drop(3);
    loans.socket(3, lent);
    upstream.write(Buffer.concat([...ROWS, TAIL]));
    const m = await back;
    expect(m.h).toBe(3);
    expect(rows()).toBe(0);
    expect(Buffer.from(m.rest).equals(TAIL)).toBe(true);
  });

  test("a hold that arrives before the loan's socket applies once it starts: paused until the relay lets go", async () => {
    const { upstream, lent } = await pair();
    const { loans, rows, back } = host();
    // The loan reads through a socket made from the lent one's handle (fast-socket.ts), which the
    // test never sees: where RowLoan pauses and resumes it says whether it may read, at once.
    const reading = new Map<Socket, boolean>();
    const ours = (s: Socket): boolean => s !== lent && s.remotePort === upstream.localPort;
    const { pause, resume } = Socket.prototype;
    const spies = [
      vi.spyOn(Socket.prototype, "pause").mockImplementation(function (this: Socket) {
        if (ours(this)) reading.set(this, false);
        return pause.call(this);
      }),
      vi.spyOn(Socket.prototype, "resume").mockImplementation(function (this: Socket) {
        if (ours(this)) reading.set(this, true);
        return resume.call(this);
      }),
    ];
    try {
      loans.frame(loanFrame(4));
      loans.hold(4, true);
      loans.socket(4, lent);
      expect([...reading.values()]).toEqual([false]);
      // The end of a congestion does not let a held loan read.
      loans.congest(true);
      loans.congest(false);
      expect([...reading.values()]).toEqual([false]);
      loans.hold(4, false);
      expect([...reading.values()]).toEqual([true]);
    } finally {
      for (const s of spies) s.mockRestore();
    }
    upstream.write(Buffer.concat([...ROWS, TAIL]));
    const m = await back;
    expect(m).toMatchObject({ h: 4, rows: ROWS.length });
    expect(rows()).toBe(ROWS.length);
  });
});
