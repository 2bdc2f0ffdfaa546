// An UpstreamChannel on a fresh session of a pgwire server (PostgreSQL, the Materialize double, a
// real Materialize with trust authentication), over a bare socket, that counts round trips: a
// round trip is a burst of the client's writes that waits for the server's answer.
import { connect, type Socket } from "node:net";
import type { UpstreamChannel, UpstreamMessageHandler } from "../../src/proxy/copy-hook.js";
import { startupMessage } from "./raw-pg.js";

export async function countingSession(
  port: number,
  user: string,
  database: string,
  host = "127.0.0.1",
): Promise<{ ch: UpstreamChannel; roundTrips: () => number; close: () => void }> {
  const sock: Socket = connect({ host, port, noDelay: true });
  await new Promise<void>((resolve, reject) => {
    sock.once("connect", resolve);
    sock.once("error", reject);
  });
  let handler: UpstreamMessageHandler = () => {};
  let pending = Buffer.alloc(0);
  let started: () => void = () => {};
  let refused: (e: Error) => void = () => {};
  const ready = new Promise<void>((resolve, reject) => {
    started = resolve;
    refused = reject;
  });
  let starting = true;
  let bursts = 0;
  let answered = true; // the server spoke since the client's last write
  sock.on("data", (d: Buffer) => {
    answered = true;
    pending = Buffer.concat([pending, d]);
    let p = 0;
    while (pending.length - p >= 5) {
      const end = p + 1 + pending.readInt32BE(p + 1);
      if (end > pending.length) break;
      const type = pending[p]!;
      if (starting) {
        // 'R' with anything but AuthenticationOk: a password is wanted, which this helper has not.
        if (type === 0x52 && pending.readInt32BE(p + 5) !== 0) refused(new Error("authentication required"));
        if (type === 0x45) refused(new Error(`startup failed: ${pending.toString("utf8", p + 5, end)}`));
        if (type === 0x5a) {
          starting = false;
          started();
        }
      } else handler(type, pending, p + 5, end);
      p = end;
    }
    pending = pending.subarray(p);
  });
  sock.write(startupMessage(user, database));
  await ready;
  const ch: UpstreamChannel = {
    setHandler(h: UpstreamMessageHandler): void {
      handler = h;
    },
    send(msg: Buffer): boolean {
      if (answered) bursts++;
      answered = false;
      return sock.write(msg);
    },
    pause(): void {},
    resume(): void {},
    cancel: () => Promise.resolve(),
    parameters: new Map<string, string>(),
    lost: new AbortController().signal,
    refuseLarger(): void {},
  };
  return { ch, roundTrips: () => bursts, close: () => sock.destroy() };
}
