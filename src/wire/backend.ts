// Serializers for the backend (server → client) messages the proxy itself has to produce.
// Everything else it sends is the upstream's own bytes.

import { cstr, frame, int16, int32 } from "./frame.js";
import { forEachMessage } from "./message-stream.js";

export type TxStatus = "I" | "T" | "E";

export interface ErrorFields {
  severity: "ERROR" | "FATAL" | "PANIC" | "WARNING" | "NOTICE" | "DEBUG" | "INFO" | "LOG";
  code: string;
  message: string;
  detail?: string | undefined;
  hint?: string | undefined;
  position?: number | undefined;
}

function fieldsBody(f: ErrorFields): Buffer {
  const parts: Buffer[] = [];
  const add = (tag: string, v: string | undefined): void => {
    if (v !== undefined) parts.push(Buffer.from(tag, "latin1"), cstr(v));
  };
  add("S", f.severity);
  add("V", f.severity);
  add("C", f.code);
  add("M", f.message);
  add("D", f.detail);
  add("H", f.hint);
  add("P", f.position === undefined ? undefined : String(f.position));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export const errorResponse = (f: ErrorFields): Buffer => frame(0x45 /* E */, fieldsBody(f));
export const noticeResponse = (f: ErrorFields): Buffer => frame(0x4e /* N */, fieldsBody(f));
export const commandComplete = (tag: string): Buffer => frame(0x43 /* C */, cstr(tag));
export const readyForQuery = (s: TxStatus): Buffer => frame(0x5a /* Z */, Buffer.from(s, "latin1"));
export const parseComplete = (): Buffer => frame(0x31, Buffer.alloc(0));
export const bindComplete = (): Buffer => frame(0x32, Buffer.alloc(0));
export const closeComplete = (): Buffer => frame(0x33, Buffer.alloc(0));
export const noData = (): Buffer => frame(0x6e, Buffer.alloc(0));

/** A RowDescription of text columns (type text, OID 25), for result sets the proxy answers itself. */
export function rowDescription(names: readonly string[]): Buffer {
  const parts: Buffer[] = [int16(names.length)];
  for (const n of names) parts.push(cstr(n), int32(0), int16(0), int32(25), int16(-1), int32(-1), int16(0));
  return frame(0x54 /* T */, ...parts);
}

/** A DataRow of text values (null = SQL NULL). */
export function dataRow(values: ReadonlyArray<string | null>): Buffer {
  const parts: Buffer[] = [int16(values.length)];
  for (const v of values) {
    if (v === null) parts.push(int32(-1));
    else {
      const b = Buffer.from(v, "utf8");
      parts.push(int32(b.length), b);
    }
  }
  return frame(0x44 /* D */, ...parts);
}

export function parameterDescription(oids: readonly number[]): Buffer {
  const body = Buffer.allocUnsafe(2 + 4 * oids.length);
  body.writeInt16BE(oids.length, 0);
  for (let i = 0; i < oids.length; i++) body.writeUInt32BE(oids[i]!, 2 + 4 * i);
  return frame(0x74 /* t */, body);
}

export function backendKeyData(pid: number, secret: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeInt32BE(pid, 0);
  body.writeInt32BE(secret, 4);
  return frame(0x4b /* K */, body);
}

export function parameterStatus(name: string, value: string): Buffer {
  return frame(0x53 /* S */, Buffer.concat([cstr(name), cstr(value)]));
}

/** Parses the fields of an ErrorResponse/NoticeResponse payload (without type and length). */
export function parseErrorFields(payload: Buffer): Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < payload.length && payload[i] !== 0) {
    const tag = String.fromCharCode(payload[i]!);
    const end = payload.indexOf(0, i + 1);
    if (end < 0) break;
    out[tag] = payload.toString("utf8", i + 1, end);
    i = end + 1;
  }
  return out;
}

/**
 * Calls `onRow(buf, fieldsStart, nFields)` for each DataRow of a run of whole DataRow messages in
 * `buf[start..end)` (as MessageStream's `takeRun` hands them over).
 */
export function forEachDataRow(
  buf: Buffer,
  start: number,
  end: number,
  onRow: (buf: Buffer, pos: number, nFields: number) => void,
): void {
  forEachMessage(buf, start, end, (body) => onRow(buf, body + 2, buf.readInt16BE(body)));
}
