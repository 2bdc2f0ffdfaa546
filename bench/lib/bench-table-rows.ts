// The rows of bench-table.ts's table as PostgreSQL sends them in binary (DataRow messages), made
// here so an encoder can be measured on the same values without a server.
import { createHash } from "node:crypto";
import type { ColumnInfo } from "../../src/encoders/types.js";

/** The table's columns as PostgreSQL describes them (numeric(12,2): typmod (12 << 16 | 2) + 4). */
export function benchTableColumns(): ColumnInfo[] {
  return [
    { name: "id", typeOid: 23, typeMod: -1 },
    { name: "big", typeOid: 20, typeMod: -1 },
    { name: "label", typeOid: 25, typeMod: -1 },
    { name: "amount", typeOid: 1700, typeMod: ((12 << 16) | 2) + 4 },
    { name: "at", typeOid: 1184, typeMod: -1 },
    { name: "flag", typeOid: 16, typeMod: -1 },
    { name: "score", typeOid: 701, typeMod: -1 },
    { name: "day", typeOid: 1082, typeMod: -1 },
  ];
}

// 2024-01-01 00:00:00+00 in microseconds since 2000-01-01 (PostgreSQL's epoch).
const AT_BASE_US = BigInt(Date.UTC(2024, 0, 1) - Date.UTC(2000, 0, 1)) * 1000n;

/** numeric in binary: ndigits, weight, sign, dscale, base-10000 digits (trailing zero digits stripped). */
function numericBinary(cents: number): Buffer {
  const int = Math.floor(cents / 100);
  const groups: number[] = [];
  for (let v = int; v > 0; v = Math.floor(v / 10000)) groups.unshift(v % 10000);
  const weight = groups.length - 1;
  groups.push((cents % 100) * 100);
  while (groups.length > 0 && groups[groups.length - 1] === 0) groups.pop();
  let lead = 0;
  while (lead < groups.length && groups[lead] === 0) lead++;
  const digits = groups.slice(lead);
  const b = Buffer.alloc(8 + 2 * digits.length);
  b.writeInt16BE(digits.length, 0);
  b.writeInt16BE(digits.length === 0 ? 0 : weight - lead, 2);
  b.writeUInt16BE(0, 4);
  b.writeInt16BE(2, 6);
  for (let k = 0; k < digits.length; k++) b.writeInt16BE(digits[k]!, 8 + 2 * k);
  return b;
}

/** Row g (1-based) of the table as one DataRow message. */
function dataRow(g: number): Buffer {
  const fields: Array<Buffer | null> = [];
  const i4 = Buffer.alloc(4);
  i4.writeInt32BE(g);
  fields.push(i4);
  const i8 = Buffer.alloc(8);
  i8.writeBigInt64BE(BigInt(g) * 2654435761n);
  fields.push(i8);
  const md5 = createHash("md5").update(String(g)).digest("hex");
  fields.push(g % 17 === 0 ? null : Buffer.from(g % 5 === 0 ? `${md5}, "q"` : md5));
  fields.push(numericBinary(g % 10000000));
  const ts = Buffer.alloc(8);
  ts.writeBigInt64BE(AT_BASE_US + BigInt(g) * 1_000_000n);
  fields.push(ts);
  fields.push(Buffer.from([g % 3 === 0 ? 1 : 0]));
  const f8 = Buffer.alloc(8);
  f8.writeDoubleBE(g / 7);
  fields.push(f8);
  const d = Buffer.alloc(4);
  d.writeInt32BE(g % 10000);
  fields.push(d);
  const body = fields.reduce((n, f) => n + 4 + (f?.length ?? 0), 2);
  const msg = Buffer.alloc(1 + 4 + body);
  msg[0] = 0x44; // 'D'
  msg.writeInt32BE(4 + body, 1);
  msg.writeInt16BE(fields.length, 5);
  let p = 7;
  for (const f of fields) {
    msg.writeInt32BE(f === null ? -1 : f.length, p);
    p += 4;
    if (f !== null) p += f.copy(msg, p);
  }
  return msg;
}

/** Rows 1..n as batches of whole DataRow messages of at most `batchBytes` bytes each. */
export function benchTableBatches(n: number, batchBytes: number): Array<{ buf: Buffer; rows: number }> {
  const out: Array<{ buf: Buffer; rows: number }> = [];
  let parts: Buffer[] = [];
  let bytes = 0;
  for (let g = 1; g <= n; g++) {
    const m = dataRow(g);
    if (bytes + m.length > batchBytes) {
      out.push({ buf: Buffer.concat(parts, bytes), rows: parts.length });
      parts = [];
      bytes = 0;
    }
    parts.push(m);
    bytes += m.length;
  }
  if (parts.length > 0) out.push({ buf: Buffer.concat(parts, bytes), rows: parts.length });
  return out;
}
