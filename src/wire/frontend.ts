// The few frontend (client → server) messages the proxy sends on its own behalf during an export.
// Ordinary client traffic is never re-serialized: it is forwarded as the client's bytes.
import { cstr, frame, int16 as i16, int32 as i32 } from "./frame.js";

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
