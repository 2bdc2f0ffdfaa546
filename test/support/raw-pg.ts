// Runs simple-protocol queries over a bare socket (trust auth only) and returns what the server
// sent as raw bytes: DataRow bodies exactly as an encoder receives them, and COPY ... TO STDOUT
// output exactly as PostgreSQL printed it. No driver in between to parse or re-render anything.
import { connect, type Socket } from "node:net";

/** A protocol 3.0 StartupMessage for `user` on `database`. */
export function startupMessage(user: string, database: string): Buffer {
  const params = Buffer.from(`user\0${user}\0database\0${database}\0\0`, "utf8");
  const startup = Buffer.allocUnsafe(8 + params.length);
  startup.writeInt32BE(startup.length, 0);
  startup.writeInt32BE(196608, 4); // protocol 3.0
  params.copy(startup, 8);
  return startup;
}

export interface RawField {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
  typeSize: number;
  typeMod: number;
  format: number;
}

export interface RawResult {
  /** From RowDescription; empty for statements that return no rows. */
  fields: RawField[];
  /** DataRow bodies: int16 field count at 0, then the fields (int32 length or -1, bytes) from 2. */
  rows: Buffer[];
  /** Concatenated CopyData payloads of a COPY ... TO STDOUT. */
  copyData: Buffer;
  commandTag: string;
}

export class RawPgError extends Error {
  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
    this.name = "RawPgError";
  }
}

interface Msg {
  type: number;
  body: Buffer;
}

export class RawPg {
  private pending: Buffer[] = [];
  private pendingLen = 0;
  private queue: Msg[] = [];
  private wake: (() => void) | null = null;
  private failure: Error | null = null;
  /** The transaction status of the last ReadyForQuery: 'I', 'T' or 'E'. */
  txStatus = "I";

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => this.onData(d));
    sock.on("error", (e) => this.fail(e));
    sock.on("close", () => this.fail(new Error("connection closed")));
  }

  /** Drops and re-creates `database` (a test file's own), and connects to it. */
  static async freshDatabase(port: number, database: string): Promise<RawPg> {
    const admin = await RawPg.connect({ port });
    try {
      await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
      await admin.query(`CREATE DATABASE ${database}`);
    } finally {
      await admin.close();
    }
    return RawPg.connect({ port, database });
  }

  static async connect(opts: {
    port: number;
    host?: string;
    user?: string;
    database?: string;
  }): Promise<RawPg> {
    const sock = connect({ host: opts.host ?? "127.0.0.1", port: opts.port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    const c = new RawPg(sock);
    sock.write(startupMessage(opts.user ?? "postgres", opts.database ?? "postgres"));
    for (;;) {
      const m = await c.next();
      if (m.type === 0x52 /* R */ && m.body.readInt32BE(0) !== 0) {
        throw new Error(`raw-pg: server asked for authentication method ${m.body.readInt32BE(0)}`);
      }
      if (m.type === 0x45 /* E */) throw errorFrom(m.body);
      if (m.type === 0x5a /* Z */) return c;
    }
  }

  /** One simple Query (a single statement). Rejects with RawPgError on an ErrorResponse. */
  async query(sql: string): Promise<RawResult> {
    const text = Buffer.from(`${sql}\0`, "utf8");
    const msg = Buffer.allocUnsafe(5 + text.length);
    msg[0] = 0x51; // Q
    msg.writeInt32BE(4 + text.length, 1);
    text.copy(msg, 5);
    this.sock.write(msg);
    const res: RawResult = { fields: [], rows: [], copyData: Buffer.alloc(0), commandTag: "" };
    const copy: Buffer[] = [];
    let error: RawPgError | null = null;
    for (;;) {
      const m = await this.next();
      switch (m.type) {
        case 0x54: // T RowDescription
          res.fields = parseRowDescription(m.body);
          break;
        case 0x44: // D DataRow
          res.rows.push(m.body);
          break;
        case 0x64: // d CopyData
          copy.push(m.body);
          break;
        case 0x43: // C CommandComplete
          res.commandTag = m.body.toString("utf8", 0, m.body.length - 1);
          break;
        case 0x45: // E
          error = errorFrom(m.body);
          break;
        case 0x5a: // Z ReadyForQuery
          this.txStatus = String.fromCharCode(m.body[0]!);
          if (error) throw error;
          res.copyData = Buffer.concat(copy);
          return res;
        default: // notices, CopyOutResponse, CopyDone, ParameterStatus...
          break;
      }
    }
  }

  async close(): Promise<void> {
    if (this.sock.destroyed) return;
    const closed = new Promise<void>((resolve) => this.sock.once("close", () => resolve()));
    this.sock.end(Buffer.from([0x58, 0, 0, 0, 4])); // Terminate
    await closed;
  }

  private onData(d: Buffer): void {
    this.pending.push(d);
    this.pendingLen += d.length;
    let buf = this.pending.length === 1 ? this.pending[0]! : Buffer.concat(this.pending, this.pendingLen);
    let pos = 0;
    while (buf.length - pos >= 5) {
      const len = buf.readInt32BE(pos + 1);
      if (buf.length - pos < 1 + len) break;
      // A copy, so that a kept row does not pin the whole socket chunk.
      this.queue.push({ type: buf[pos]!, body: Buffer.from(buf.subarray(pos + 5, pos + 1 + len)) });
      pos += 1 + len;
    }
    buf = buf.subarray(pos);
    this.pending = buf.length > 0 ? [buf] : [];
    this.pendingLen = buf.length;
    this.notify();
  }

  private fail(e: Error): void {
    this.failure ??= e;
    this.notify();
  }

  private notify(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  private async next(): Promise<Msg> {
    for (;;) {
      const m = this.queue.shift();
      if (m) return m;
      if (this.failure) throw this.failure;
      await new Promise<void>((resolve) => {
        this.wake = resolve;
      });
    }
  }
}

function cstring(buf: Buffer, pos: number): [string, number] {
  const end = buf.indexOf(0, pos);
  return [buf.toString("utf8", pos, end), end + 1];
}

function parseRowDescription(body: Buffer): RawField[] {
  const n = body.readInt16BE(0);
  const fields: RawField[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const [name, q] = cstring(body, p);
    fields.push({
      name,
      tableOid: body.readUInt32BE(q),
      column: body.readInt16BE(q + 4),
      typeOid: body.readUInt32BE(q + 6),
      typeSize: body.readInt16BE(q + 10),
      typeMod: body.readInt32BE(q + 12),
      format: body.readInt16BE(q + 16),
    });
    p = q + 18;
  }
  return fields;
}

function errorFrom(body: Buffer): RawPgError {
  const f = new Map<string, string>();
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const tag = String.fromCharCode(body[p]!);
    const [v, q] = cstring(body, p + 1);
    f.set(tag, v);
    p = q;
  }
  return new RawPgError(f.get("C") ?? "XX000", f.get("M") ?? "unknown error");
}
