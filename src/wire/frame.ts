// Building blocks of pgwire messages: a typed frame (type byte, int32 length, body) and the field
// encodings bodies are made of. Shared by the frontend and backend serializers (and test doubles).

export function frame(type: string | number, ...parts: Buffer[]): Buffer {
  const len = parts.reduce((n, p) => n + p.length, 4);
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = typeof type === "number" ? type : type.charCodeAt(0);
  out.writeInt32BE(len, 1);
  let o = 5;
  for (const p of parts) o += p.copy(out, o);
  return out;
}

export const cstr = (s: string): Buffer => Buffer.from(`${s}\0`, "utf8");

export const int16 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(2);
  b.writeInt16BE(n, 0);
  return b;
};

export const int32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
};
