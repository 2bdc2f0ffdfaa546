// The few frontend (client → server) messages the proxy sends on its own behalf during an export.
// Ordinary client traffic is never re-serialized: it is forwarded as the client's bytes.
import { cstr, frame, int16 as i16, int32 as i32 } from "./frame.js";

/** Bind's parameter format codes and values (null: SQL NULL). */
export interface BindValues {
  formats: readonly number[];
  values: ReadonlyArray<Buffer | null>;
}

const u32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n, 0);
  return b;
};

export const frontend = {
  query: (sql: string): Buffer => frame("Q", cstr(sql)),
  parse: (name: string, sql: string, types: readonly number[] = []): Buffer =>
    frame("P", cstr(name), cstr(sql), i16(types.length), ...types.map(u32)),
  describe: (kind: "S" | "P", name: string): Buffer => frame("D", Buffer.from(kind), cstr(name)),
  /** One result format code per column; parameters as a client bound them (or none). */
  bind: (
    portal: string,
    statement: string,
    resultFormats: readonly number[],
    params: BindValues = { formats: [], values: [] },
  ): Buffer =>
    frame(
      "B",
      cstr(portal),
      cstr(statement),
      i16(params.formats.length),
      ...params.formats.map(i16),
      i16(params.values.length),
      ...params.values.flatMap((v) => (v === null ? [i32(-1)] : [i32(v.length), v])),
      i16(resultFormats.length),
      ...resultFormats.map(i16),
    ),
  execute: (portal: string, maxRows = 0): Buffer => frame("E", cstr(portal), i32(maxRows)),
  close: (kind: "S" | "P", name: string): Buffer => frame("C", Buffer.from(kind), cstr(name)),
  sync: (): Buffer => frame("S"),
};
