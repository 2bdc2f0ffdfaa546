// The login phase of a session, up to AuthenticationOk: what a client may send before it (nothing
// is interpreted or assembled then), and the one authentication request the proxy rewrites.

import { frame } from "../wire/frame.js";
import { Policy, type PolicyTable } from "../wire/message-policy.js";

/** Before the login: authentication responses are peeked (their length checked), Terminate passes. */
export const CLIENT_BEFORE_LOGIN: PolicyTable = new Uint8Array(256).fill(Policy.Peek);
CLIENT_BEFORE_LOGIN["X".charCodeAt(0)] = Policy.Pass;
/** PostgreSQL's PG_MAX_AUTH_TOKEN_LENGTH (src/include/libpq/auth.h). */
const MAX_AUTH_TOKEN_LENGTH = 65535;

const PASSWORD_MESSAGE = 0x70; // 'p'
const AUTHENTICATION = 0x52; // 'R'
/** AuthenticationSASL's code. */
export const SASL = 10;

/**
 * Before AuthenticationOk a client may only answer the upstream's authentication requests:
 * PasswordMessage/SASL/GSS responses ('p') of at most PG_MAX_AUTH_TOKEN_LENGTH bytes, as
 * PostgreSQL reads them (src/backend/libpq/auth.c, recv_password_packet), or Terminate. They
 * stream through; anything else closes the connection, as PgBouncer does in its login phase.
 * Returns why a message is refused, or null when it passes.
 */
export function refusalBeforeLogin(type: number, bodyLength: number): string | null {
  if (type === PASSWORD_MESSAGE && bodyLength + 4 <= MAX_AUTH_TOKEN_LENGTH) return null;
  return type === PASSWORD_MESSAGE
    ? `authentication message of ${bodyLength + 4} bytes exceeds the limit of ${MAX_AUTH_TOKEN_LENGTH}`
    : `expected password response, got message type ${type}`;
}

/** AuthenticationSASL without SCRAM-SHA-256-PLUS: channel binding cannot cross a TLS-terminating proxy. */
export function withoutChannelBinding(buf: Buffer, start: number, end: number): Buffer {
  const mechs: string[] = [];
  let i = start + 4;
  while (i < end && buf[i] !== 0) {
    const z = buf.indexOf(0, i);
    mechs.push(buf.toString("utf8", i, z));
    i = z + 1;
  }
  const kept = mechs.filter((m) => !m.endsWith("-PLUS"));
  const body = Buffer.concat([
    Buffer.from([0, 0, 0, SASL]),
    ...kept.map((m) => Buffer.from(`${m}\0`)),
    Buffer.from([0]),
  ]);
  return frame(AUTHENTICATION, body);
}
