// Parse and Bind message bodies of statements the proxy runs itself (local-statements.ts), read
// as PostgreSQL reads them: the parameter types Parse declares, and the formats and values Bind
// binds, checked against the statement with PostgreSQL's own error texts.
import { PgError, SqlState } from "../errors.js";
import type { BoundParams } from "./copy-hook.js";

/** PostgreSQL's `text` type; a parameter whose type the client left open is text here. */
const TEXT_OID = 25;

/** The parameter type OIDs a Parse message declares, from `at` (its int16 count). */
export function declaredTypes(body: Buffer, at: number): number[] {
  if (at + 2 > body.length) return [];
  const n = body.readInt16BE(at);
  const out: number[] = [];
  for (let i = 0; i < n && at + 6 + 4 * i <= body.length; i++) out.push(body.readUInt32BE(at + 2 + 4 * i));
  return out;
}

/**
 * One type per parameter: as many as Parse declared or the statement uses, whichever is more;
 * those left unspecified (0) are text, which a target (a text expression) takes most naturally.
 */
export function paramTypes(declared: readonly number[], used: number): number[] {
  const n = Math.max(declared.length, used);
  return Array.from({ length: n }, (_, i) => (declared[i] ?? 0) || TEXT_OID);
}

/**
 * Bind's parameter formats and values, from `at` (the format-code count), checked against the
 * statement's parameters with PostgreSQL's texts (postgres.c, exec_bind_message).
 */
export function boundParams(body: Buffer, at: number, stmtName: string, types: number[]): BoundParams {
  const bad = (): PgError =>
    new PgError(SqlState.protocolViolation, "invalid message format in Bind message");
  if (at + 2 > body.length) throw bad();
  const nFormats = body.readInt16BE(at);
  let p = at + 2;
  const codes: number[] = [];
  for (let i = 0; i < nFormats; i++, p += 2) {
    if (p + 2 > body.length) throw bad();
    codes.push(body.readInt16BE(p));
  }
  if (p + 2 > body.length) throw bad();
  const n = body.readInt16BE(p);
  p += 2;
  if (nFormats > 1 && nFormats !== n) {
    throw new PgError(
      SqlState.protocolViolation,
      `bind message has ${nFormats} parameter formats but ${n} parameters`,
    );
  }
  if (n !== types.length) {
    throw new PgError(
      SqlState.protocolViolation,
      `bind message supplies ${n} parameters, but prepared statement "${stmtName}" requires ${types.length}`,
    );
  }
  const values: Array<Buffer | null> = [];
  for (let i = 0; i < n; i++) {
    if (p + 4 > body.length) throw bad();
    const len = body.readInt32BE(p);
    p += 4;
    if (len < 0) values.push(null);
    else {
      if (p + len > body.length) throw bad();
      values.push(Buffer.from(body.subarray(p, p + len)));
      p += len;
    }
  }
  const formats = values.map((_, i) => (nFormats === 0 ? 0 : nFormats === 1 ? codes[0]! : codes[i]!));
  return { types, formats, values };
}

export function cstring(buf: Buffer, from: number): string {
  const end = buf.indexOf(0, from);
  return buf.toString("utf8", from, end < 0 ? buf.length : end);
}
