// The few frontend (client → server) messages the proxy sends on its own behalf during an export.
// Ordinary client traffic is never re-serialized: it is forwarded as the client's bytes.

function frame(type: string, ...parts: Buffer[]): Buffer {
  const len = parts.reduce((n, p) => n + p.length, 4);
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = type.charCodeAt(0);
  out.writeInt32BE(len, 1);
  let o = 5;
  for (const p of parts) o += p.copy(out, o);
  return out;
}

const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, "utf8");
const i16 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(n, 0);
  return b;
};
const i32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
};

export const frontend = {
  query: (sql: string): Buffer => frame("Q", cstr(sql)),
  parse: (name: string, sql: string): Buffer => frame("P", cstr(name), cstr(sql), i16(0)),
  describe: (kind: "S" | "P", name: string): Buffer => frame("D", Buffer.from(kind), cstr(name)),
  /** No parameters; one result format code per column. */
  bind: (portal: string, statement: string, resultFormats: readonly number[]): Buffer =>
    frame(
      "B",
      cstr(portal),
      cstr(statement),
      i16(0),
      i16(0),
      i16(resultFormats.length),
      ...resultFormats.map(i16),
    ),
  execute: (portal: string, maxRows = 0): Buffer => frame("E", cstr(portal), i32(maxRows)),
  close: (kind: "S" | "P", name: string): Buffer => frame("C", Buffer.from(kind), cstr(name)),
  sync: (): Buffer => frame("S"),
};
