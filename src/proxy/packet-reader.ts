// Reads the untyped, length-prefixed packets of the startup phase (SSLRequest, GSSENCRequest,
// CancelRequest, StartupMessage) and hands over whatever arrived after them.
import type { Duplex } from "node:stream";

/** PostgreSQL's MAX_STARTUP_PACKET_LENGTH. */
export const MAX_STARTUP_PACKET = 10_000;

export class ProtocolViolation extends Error {
  override name = "ProtocolViolation";
  /**
   * Logged but not answered: PostgreSQL only logs an invalid startup packet length
   * (ProcessStartupPacket, `ereport(COMMERROR, …)`, in src/backend/tcop/backend_startup.c,
   * src/backend/postmaster/postmaster.c before 17) and closes the connection without a reply.
   */
  constructor(
    message: string,
    readonly silent = false,
  ) {
    super(message);
  }
}

export class PacketReader {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private ended: Error | null = null;
  private readonly goneController = new AbortController();
  private readonly onData = (d: Buffer): void => {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    this.wake();
  };
  private readonly onEnd = (): void => {
    this.ended ??= new Error("connection closed during startup");
    this.goneController.abort(this.ended);
    this.wake();
  };
  private readonly onError = (e: Error): void => {
    this.ended ??= e;
    this.goneController.abort(e);
    this.wake();
  };

  constructor(private readonly sock: Duplex) {
    sock.on("data", this.onData);
    sock.on("end", this.onEnd);
    sock.on("close", this.onEnd);
    sock.on("error", this.onError);
  }

  /**
   * Aborted once the peer ends or closes the connection while this reader listens: work started
   * on the peer's behalf (the upstream connect) is abandoned on it.
   */
  get gone(): AbortSignal {
    return this.goneController.signal;
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  private async need(n: number): Promise<void> {
    while (this.buf.length < n) {
      if (this.ended) throw this.ended;
      await new Promise<void>((r) => {
        this.waiter = r;
      });
    }
  }

  /** Resolves with the first byte without consuming it. */
  async peekByte(): Promise<number> {
    await this.need(1);
    return this.buf[0]!;
  }

  /** The next startup-phase packet, length word included. */
  async packet(): Promise<Buffer> {
    await this.need(4);
    const len = this.buf.readInt32BE(0);
    if (len < 8 || len > MAX_STARTUP_PACKET)
      throw new ProtocolViolation("invalid length of startup packet", true);
    await this.need(len);
    const p = this.buf.subarray(0, len);
    this.buf = this.buf.subarray(len);
    return p;
  }

  /** Reads one typed message (type byte + length + body), for the upstream side of startup. */
  async message(maxLen = 1 << 20): Promise<Buffer> {
    await this.need(5);
    const len = this.buf.readInt32BE(1);
    if (len < 4 || len > maxLen) throw new ProtocolViolation(`invalid message length ${len}`);
    await this.need(1 + len);
    const m = this.buf.subarray(0, 1 + len);
    this.buf = this.buf.subarray(1 + len);
    return m;
  }

  /** Reads exactly one byte (the upstream's answer to SSLRequest). */
  async byte(): Promise<number> {
    await this.need(1);
    const b = this.buf[0]!;
    this.buf = this.buf.subarray(1);
    return b;
  }

  get buffered(): number {
    return this.buf.length;
  }

  /** Stops listening and returns the bytes read but not consumed. */
  detach(): Buffer {
    // Paused so that no byte is emitted while nobody listens; the new owner resumes.
    this.sock.pause();
    this.sock.off("data", this.onData);
    this.sock.off("end", this.onEnd);
    this.sock.off("close", this.onEnd);
    this.sock.off("error", this.onError);
    const rest = this.buf;
    this.buf = Buffer.alloc(0);
    return rest;
  }
}
