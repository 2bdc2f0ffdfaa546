// A raw pgwire client for tests that compare reply bytes: it sends exactly the bytes it is given
// and returns the upstream's replies as messages.
import { connect, type Socket } from "node:net";
import { serialize } from "pg-protocol";

export interface Message {
  type: string;
  body: Buffer;
}

export class WireClient {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  private closedFlag = false;
  readonly messages: Message[] = [];

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < 1 + len) break;
        this.messages.push({
          type: String.fromCharCode(this.buf[0]!),
          body: Buffer.from(this.buf.subarray(5, 1 + len)),
        });
        this.buf = this.buf.subarray(1 + len);
      }
      this.wake();
    });
    sock.on("close", () => {
      this.closedFlag = true;
      this.wake();
    });
    sock.on("error", () => {});
  }

  static async connect(port: number, params: Record<string, string> = {}): Promise<WireClient> {
    const sock = connect({ host: "127.0.0.1", port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    const c = new WireClient(sock);
    c.send(serialize.startup({ user: "postgres", database: "postgres", ...params }));
    await c.untilReady(1);
    return c;
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  send(...bufs: Buffer[]): void {
    this.sock.write(Buffer.concat(bufs));
  }

  /** Takes all messages received so far. */
  drain(): Message[] {
    return this.messages.splice(0, this.messages.length);
  }

  /** Waits until `n` ReadyForQuery messages arrived (counting from the last drain) and returns all. */
  async untilReady(n = 1, timeoutMs = 10_000): Promise<Message[]> {
    return this.until((ms) => ms.filter((m) => m.type === "Z").length >= n, timeoutMs);
  }

  async until(pred: (ms: Message[]) => boolean, timeoutMs = 10_000): Promise<Message[]> {
    const deadline = Date.now() + timeoutMs;
    while (!pred(this.messages)) {
      if (this.closedFlag) break;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out; got ${this.messages.map((m) => m.type).join("")}`);
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
    return this.drain();
  }

  async close(): Promise<void> {
    if (this.closedFlag) return;
    this.sock.end(serialize.end());
    await new Promise<void>((r) => {
      if (this.closedFlag) r();
      else this.sock.once("close", () => r());
    });
  }

  destroy(): void {
    this.sock.destroy();
  }
}
