// A minimal pgwire client for tests that need DataRows exactly as the server sends them, in the
// result formats the test asks for (the Parquet encoder consumes binary DataRows). Trust auth
// only. Not a driver: one query at a time, errors reject with the server's fields.
import { connect, type Socket } from "node:net";

export interface RawColumn {
  name: string;
  tableOid: number;
  column: number;
  typeOid: number;
  typeLen: number;
  typeMod: number;
  format: number;
}

export class PgServerError extends Error {
  constructor(readonly fields: Record<string, string>) {
    super(fields.M ?? "server error");
  }
  get code(): string | undefined {
    return this.fields.C;
  }
}

type Handler = (type: number, body: Buffer) => void;

export class RawPg {
  private buf: Buffer = Buffer.alloc(0);
  private handler: Handler | null = null;
  private closed = false;
  notices: Array<Record<string, string>> = [];

  private constructor(private readonly sock: Socket) {
    sock.on("data", (chunk: Buffer) => this.onData(chunk));
    sock.on("close", () => {
      this.closed = true;
    });
  }

  static async connect(opts: {
    host?: string;
    port: number;
    user?: string;
    database?: string;
  }): Promise<RawPg> {
    const sock = connect({ host: opts.host ?? "127.0.0.1", port: opts.port });
    await new Promise<void>((resolve, reject) => {
      sock.once("connect", resolve);
      sock.once("error", reject);
    });
    sock.setNoDelay(true);
    const c = new RawPg(sock);
    const params = [
      "user",
      opts.user ?? "postgres",
      "database",
      opts.database ?? "postgres",
      "client_encoding",
      "UTF8",
    ];
    const body = Buffer.concat([
      int32(196608),
      ...params.map((p) => Buffer.from(`${p}\0`, "utf8")),
      Buffer.from([0]),
    ]);
    sock.write(Buffer.concat([int32(body.length + 4), body]));
    await c.untilReady(() => {});
    return c;
  }

  private onData(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
    let pos = 0;
    while (this.buf.length - pos >= 5) {
      const len = this.buf.readInt32BE(pos + 1);
      if (this.buf.length - pos < 1 + len) break;
      const type = this.buf[pos]!;
      const body = this.buf.subarray(pos + 5, pos + 1 + len);
      pos += 1 + len;
      if (type === 0x4e /* N */) this.notices.push(parseFields(body));
      else this.handler?.(type, body);
    }
    this.buf = pos === this.buf.length ? Buffer.alloc(0) : this.buf.subarray(pos);
  }

  /** Runs until ReadyForQuery; rejects with the first ErrorResponse (after ReadyForQuery). */
  private untilReady(on: Handler): Promise<void> {
    return new Promise((resolve, reject) => {
      let error: PgServerError | null = null;
      this.handler = (type, body) => {
        if (type === 0x45 /* E */) error ??= new PgServerError(parseFields(body));
        else if (type === 0x5a /* Z */) {
          this.handler = null;
          if (error) reject(error);
          else resolve();
        } else if (type === 0x52 /* R */ && body.readInt32BE(0) !== 0) {
          reject(new Error(`unsupported authentication request ${body.readInt32BE(0)}`));
        } else {
          try {
            on(type, body);
          } catch (err) {
            error ??= err as PgServerError;
          }
        }
      };
      if (this.closed) reject(new Error("connection closed"));
    });
  }

  /** Simple query; returns the text rows of the last result set. */
  async query(sql: string): Promise<Array<Array<string | null>>> {
    const rows: Array<Array<string | null>> = [];
    const done = this.untilReady((type, body) => {
      if (type === 0x54 /* T */) rows.length = 0;
      if (type === 0x44 /* D */) {
        const n = body.readInt16BE(0);
        let p = 2;
        const row: Array<string | null> = [];
        for (let i = 0; i < n; i++) {
          const l = body.readInt32BE(p);
          p += 4;
          if (l < 0) row.push(null);
          else {
            row.push(body.toString("utf8", p, p + l));
            p += l;
          }
        }
        rows.push(row);
      }
    });
    this.sock.write(msg(0x51, Buffer.from(`${sql}\0`, "utf8")));
    await done;
    return rows;
  }

  /** Parse + Describe: the result columns of `sql`. */
  async describe(sql: string): Promise<RawColumn[]> {
    let cols: RawColumn[] = [];
    const done = this.untilReady((type, body) => {
      if (type === 0x54) cols = parseRowDescription(body);
    });
    this.sock.write(
      Buffer.concat([
        msg(0x50 /* P */, Buffer.concat([cstr(""), cstr(sql), int16(0)])),
        msg(0x44 /* D */, Buffer.concat([Buffer.from("S"), cstr("")])),
        msg(0x53 /* S */, Buffer.alloc(0)),
      ]),
    );
    await done;
    return cols;
  }

  /**
   * Runs `sql` with per-column result formats; `onRow(body, pos, nFields)` sees each DataRow
   * (pos points at the first field's length word). Returns the row count.
   */
  async execute(
    sql: string,
    resultFormats: readonly number[],
    onRow: (body: Buffer, pos: number, nFields: number) => void,
  ): Promise<number> {
    let n = 0;
    const done = this.untilReady((type, body) => {
      if (type === 0x44) {
        onRow(body, 2, body.readInt16BE(0));
        n++;
      }
    });
    const formats = Buffer.alloc(2 + 2 * resultFormats.length);
    formats.writeInt16BE(resultFormats.length, 0);
    resultFormats.forEach((f, i) => {
      formats.writeInt16BE(f, 2 + 2 * i);
    });
    this.sock.write(
      Buffer.concat([
        msg(0x50, Buffer.concat([cstr(""), cstr(sql), int16(0)])),
        msg(0x42 /* B */, Buffer.concat([cstr(""), cstr(""), int16(0), int16(0), formats])),
        msg(0x45 /* E */, Buffer.concat([cstr(""), int32(0)])),
        msg(0x53, Buffer.alloc(0)),
      ]),
    );
    await done;
    return n;
  }

  /**
   * Like execute, for a consumer that sometimes returns a promise (an encoder flush): the socket
   * is paused until it settles, the way a driver applies backpressure. Rows already received are
   * still handed over meanwhile, without copying (the buffers are never reused).
   */
  async executeAsync(
    sql: string,
    resultFormats: readonly number[],
    onRow: (body: Buffer, pos: number, nFields: number) => void | Promise<void>,
  ): Promise<number> {
    let pending: Promise<void> | null = null;
    let failure: unknown = null;
    const n = await this.execute(sql, resultFormats, (body, pos, nFields) => {
      if (failure !== null) return;
      try {
        const r = onRow(body, pos, nFields);
        if (r) {
          const p: Promise<void> = r.then(
            () => {
              if (pending === p) {
                pending = null;
                this.sock.resume();
              }
            },
            (err: unknown) => {
              failure ??= err;
              this.sock.resume();
            },
          );
          pending = p;
          this.sock.pause();
        }
      } catch (err) {
        failure ??= err;
      }
    });
    if (pending) await pending;
    if (failure !== null) throw failure;
    return n;
  }

  async end(): Promise<void> {
    if (this.closed) return;
    this.sock.end(msg(0x58 /* X */, Buffer.alloc(0)));
    await new Promise<void>((resolve) => this.sock.once("close", () => resolve()));
  }
}

function parseRowDescription(body: Buffer): RawColumn[] {
  const n = body.readInt16BE(0);
  let p = 2;
  const cols: RawColumn[] = [];
  for (let i = 0; i < n; i++) {
    const z = body.indexOf(0, p);
    const name = body.toString("utf8", p, z);
    p = z + 1;
    cols.push({
      name,
      tableOid: body.readUInt32BE(p),
      column: body.readInt16BE(p + 4),
      typeOid: body.readUInt32BE(p + 6),
      typeLen: body.readInt16BE(p + 10),
      typeMod: body.readInt32BE(p + 12),
      format: body.readInt16BE(p + 16),
    });
    p += 18;
  }
  return cols;
}

function parseFields(body: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let p = 0;
  while (p < body.length && body[p] !== 0) {
    const code = String.fromCharCode(body[p]!);
    const z = body.indexOf(0, p + 1);
    out[code] = body.toString("utf8", p + 1, z);
    p = z + 1;
  }
  return out;
}

const int32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeInt32BE(n, 0);
  return b;
};
const int16 = (n: number): Buffer => {
  const b = Buffer.alloc(2);
  b.writeInt16BE(n, 0);
  return b;
};
const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, "utf8");
const msg = (type: number, body: Buffer): Buffer =>
  Buffer.concat([Buffer.from([type]), int32(body.length + 4), body]);
