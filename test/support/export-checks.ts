// Helpers for the cancel/fault/cleanup suites: a CancelRequest sent the way psql sends one, polling
// without sleeps of a fixed length, and the "nothing was left behind" checks of SPEC §2.2.
import { connect as netConnect } from "node:net";
import { connect as tlsConnect } from "node:tls";
import type pg from "pg";
import type { S3Check } from "./copy-proxy.js";
import type { RawPg } from "./raw-pg.js";

/** The proxy-minted key the driver received in BackendKeyData. */
export function keyOf(c: pg.Client): { pid: number; secret: number } {
  const k = c as unknown as { processID: number; secretKey: number };
  return { pid: k.processID, secret: k.secretKey };
}

/**
 * Sends a CancelRequest on a new connection (optionally after an SSLRequest, over TLS) and resolves
 * once the proxy has closed that connection, which it does after acting on the request.
 */
export async function sendCancel(
  port: number,
  key: { pid: number; secret: number },
  overTls = false,
): Promise<void> {
  const req = Buffer.alloc(16);
  req.writeInt32BE(16, 0);
  req.writeInt32BE(80877102, 4);
  req.writeInt32BE(key.pid, 8);
  req.writeInt32BE(key.secret, 12);
  const sock = netConnect({ host: "127.0.0.1", port, noDelay: true });
  sock.on("error", () => {});
  await new Promise((r) => sock.once("connect", r));
  if (!overTls) {
    sock.end(req);
    await new Promise((r) => sock.once("close", r));
    return;
  }
  sock.write(Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]));
  const answer = await new Promise<Buffer>((r) => sock.once("data", r));
  if (answer.toString() !== "S") throw new Error(`SSLRequest answered ${answer.toString()}`);
  const t = tlsConnect({ socket: sock, rejectUnauthorized: false });
  t.on("error", () => {});
  await new Promise((r) => t.once("secureConnect", r));
  t.end(req);
  await new Promise((r) => t.once("close", r));
}

/** Polls `probe` until it returns a truthy value (every 20 ms, up to `timeoutMs`). */
export async function waitUntil<T>(
  what: string,
  probe: () => Promise<T> | T,
  timeoutMs = 20_000,
): Promise<NonNullable<T>> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v) return v as NonNullable<T>;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Runs `q` and resolves with its error (or throws if it succeeded) and how long after `t0` it failed. */
export async function failure(
  q: Promise<unknown>,
  t0: () => number,
): Promise<{ err: { code?: string; message: string; detail?: string; hint?: string }; ms: number }> {
  try {
    await q;
  } catch (e) {
    return { err: e as { code?: string; message: string; detail?: string }, ms: performance.now() - t0() };
  }
  throw new Error("expected the statement to fail");
}

/**
 * SPEC §2.2's promise, checked with an independent S3 client and the upstream's own view: no
 * multipart upload and no object under the prefix (uploads are polled: some servers list an
 * aborted upload for a moment), and the client's upstream backend is idle outside a transaction.
 */
export async function expectNothingLeft(
  check: S3Check,
  bucket: string,
  prefix: string,
  oracle?: RawPg,
  upstreamPid?: number,
): Promise<void> {
  await waitUntil(
    `no multipart uploads under ${bucket}/${prefix}/`,
    async () => ((await check.uploads(bucket, `${prefix}/`)).length === 0 ? true : null),
    5_000,
  );
  const keys = await check.keys(bucket, `${prefix}/`);
  if (keys.length > 0) throw new Error(`objects left under ${bucket}/${prefix}/: ${keys.join(", ")}`);
  if (oracle !== undefined && upstreamPid !== undefined) await expectIdleBackend(oracle, upstreamPid);
}

/** The backend is idle (not "idle in transaction") — or gone. */
export async function expectIdleBackend(oracle: RawPg, pid: number): Promise<void> {
  await waitUntil(
    `backend ${pid} idle outside a transaction`,
    async () => {
      const r = await oracle.query(
        `SELECT coalesce(state, '') || '|' || (xact_start IS NULL)::text FROM pg_stat_activity WHERE pid = ${pid}`,
      );
      const row = r.rows[0];
      if (row === undefined) return true; // the backend is gone, and its transaction with it
      const v = readText(row);
      return v === "idle|true" ? true : null;
    },
    5_000,
  );
}

/** The backend is gone (its connection was closed). */
export async function expectBackendGone(oracle: RawPg, pid: number): Promise<void> {
  await waitUntil(
    `backend ${pid} gone`,
    async () => {
      const r = await oracle.query(`SELECT 1 FROM pg_stat_activity WHERE pid = ${pid}`);
      return r.rows.length === 0 ? true : null;
    },
    10_000,
  );
}

/** First column of a RawPg DataRow body as text (null → ""). */
export function readText(row: Buffer, col = 0): string {
  let p = 2;
  for (let i = 0; i < col; i++) {
    const len = row.readInt32BE(p);
    p += 4 + Math.max(0, len);
  }
  const len = row.readInt32BE(p);
  return len < 0 ? "" : row.toString("utf8", p + 4, p + 4 + len);
}

/**
 * `c2s_wait(v)` sleeps `c2s.wait` seconds (a session setting, 0 when unset) and returns v, so the
 * very same COPY is slow while a test pins a phase and fast when it is run again.
 */
export const C2S_WAIT_FUNCTION = `CREATE FUNCTION c2s_wait(v anyelement) RETURNS anyelement LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_sleep(coalesce(nullif(current_setting('c2s.wait', true), ''), '0')::float8); RETURN v; END $$`;
