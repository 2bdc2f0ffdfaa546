// Opens the upstream leg: TCP, then TLS per the configured mode (SSLRequest first, as libpq does).
import { readFileSync } from "node:fs";
import { isIP, connect as netConnect, type Socket } from "node:net";
import { type TLSSocket, connect as tlsConnect } from "node:tls";
import type { Config } from "../config.js";
import { PgError, SqlState } from "../errors.js";
import { upstreamConnectFailed } from "../metrics/metrics.js";
import { PacketReader } from "./packet-reader.js";
import { checkHostLikeLibpq } from "./tls-host-check.js";

const SSL_REQUEST = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f]);

export interface UpstreamSocket {
  socket: Socket | TLSSocket;
  tls: boolean;
}

/** host:port as a user writes it ([v6]:port), for errors that name the address. */
export function upstreamAddressText(config: Pick<Config, "upstream">): string {
  const { host, port } = config.upstream;
  return `${host.includes(":") ? `[${host}]` : host}:${port}`;
}

function tcp(config: Config, signal?: AbortSignal): Promise<Socket> {
  const at = upstreamAddressText(config);
  return new Promise((resolve, reject) => {
    const s = netConnect({ host: config.upstream.host, port: config.upstream.port, noDelay: true });
    const timer = setTimeout(() => {
      s.destroy();
      reject(new PgError(SqlState.connectionFailure, `timeout connecting to the upstream database at ${at}`));
    }, config.connectTimeoutMs);
    const onAbort = (): void => {
      s.destroy();
      reject(new PgError(SqlState.connectionFailure, "connection to the upstream database abandoned"));
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    s.once("connect", () => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      s.setKeepAlive(true, 60_000);
      resolve(s);
    });
    s.once("error", (e) => {
      clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      reject(
        new PgError(
          SqlState.connectionFailure,
          `could not connect to the upstream database at ${at}: ${(e as NodeJS.ErrnoException).code ?? e.message}`,
        ),
      );
    });
  });
}

let caCache: { file: string; ca: Buffer } | undefined;
function caFor(config: Config): Buffer | undefined {
  if (!config.upstreamCaFile) return undefined;
  if (caCache?.file !== config.upstreamCaFile)
    caCache = { file: config.upstreamCaFile, ca: readFileSync(config.upstreamCaFile) };
  return caCache.ca;
}

const abandoned = (): PgError =>
  new PgError(SqlState.connectionFailure, "connection to the upstream database abandoned");

/**
 * `signal` abandons the connection at any step (TCP, SSLRequest, TLS handshake): a client that
 * leaves while its upstream leg is being opened must not leave that leg open.
 */
export async function connectUpstream(config: Config, signal?: AbortSignal): Promise<UpstreamSocket> {
  const sock = await tcp(config, signal).catch((e: unknown) => {
    if (!signal?.aborted) upstreamConnectFailed("connect");
    throw e;
  });
  let current: Socket | TLSSocket = sock;
  const onAbort = (): void => {
    current.destroy();
  };
  signal?.addEventListener("abort", onAbort, { once: true });
  try {
    const up = await negotiate(config, sock, (t) => {
      current = t;
    });
    if (signal?.aborted) {
      up.socket.destroy();
      throw abandoned();
    }
    return up;
  } catch (e) {
    current.destroy();
    if (!signal?.aborted) upstreamConnectFailed("tls");
    throw signal?.aborted ? abandoned() : e;
  } finally {
    signal?.removeEventListener("abort", onAbort);
  }
}

async function negotiate(
  config: Config,
  sock: Socket,
  tlsStarted: (t: TLSSocket) => void,
): Promise<UpstreamSocket> {
  const mode = config.upstreamTls;
  if (mode === "disable") return { socket: sock, tls: false };
  sock.write(SSL_REQUEST);
  const reader = new PacketReader(sock);
  let answer: number;
  try {
    answer = await reader.byte();
  } catch {
    sock.destroy();
    throw new PgError(SqlState.connectionFailure, "upstream closed the connection during TLS negotiation");
  }
  const rest = reader.detach();
  if (rest.length > 0) {
    // Bytes after the single-byte answer would be injected plaintext (CVE-2021-23222).
    sock.destroy();
    throw new PgError(SqlState.protocolViolation, "upstream sent unexpected data after its SSL response");
  }
  if (answer === 0x4e /* N */) {
    if (mode === "prefer") {
      sock.resume();
      return { socket: sock, tls: false };
    }
    sock.destroy();
    throw new PgError(
      SqlState.connectionFailure,
      "the upstream database does not support TLS, but upstream-tls requires it",
    );
  }
  if (answer !== 0x53 /* S */) {
    sock.destroy();
    throw new PgError(SqlState.protocolViolation, "upstream sent an invalid response to SSLRequest");
  }
  const verify = mode === "verify-ca" || mode === "verify-full";
  const ca = caFor(config);
  const host = config.upstream.host;
  const tls = await new Promise<TLSSocket>((resolve, reject) => {
    const t = tlsConnect({
      socket: sock,
      servername: isIP(host) === 0 ? host : undefined,
      rejectUnauthorized: verify,
      ...(ca ? { ca } : {}),
      // verify-ca checks the chain but not the host name, as libpq does; verify-full checks the
      // configured host (Node would check "localhost" when given a socket and no servername).
      checkServerIdentity:
        mode === "verify-full" ? (_n, cert) => checkHostLikeLibpq(host, cert) : () => undefined,
    });
    tlsStarted(t);
    const fail = (e: Error): void => {
      t.off("close", closed);
      t.destroy();
      reject(
        new PgError(
          SqlState.connectionFailure,
          `TLS handshake with the upstream database failed: ${e.message}`,
        ),
      );
    };
    const closed = (): void => fail(new Error("connection closed"));
    t.once("secureConnect", () => {
      // The error listener stays: an error before the session listens must not be unhandled.
      t.off("close", closed);
      resolve(t);
    });
    t.once("error", fail);
    t.once("close", closed);
  });
  tls.setNoDelay(true);
  return { socket: tls, tls: true };
}

/** Sends a CancelRequest (real key) on a fresh upstream connection, over TLS when the session used it. */
export async function sendUpstreamCancel(
  config: Config,
  pid: number,
  secret: Buffer,
  useTls: boolean,
): Promise<void> {
  const ac = new AbortController();
  const timer = setTimeout(() => ac.abort(), config.cancelTimeoutMs);
  try {
    const cfg: Config = useTls ? config : { ...config, upstreamTls: "disable" };
    const { socket } = await connectUpstream(cfg, ac.signal);
    const msg = Buffer.alloc(12 + secret.length);
    msg.writeInt32BE(msg.length, 0);
    msg.writeInt32BE(80877102, 4);
    msg.writeInt32BE(pid, 8);
    secret.copy(msg, 12);
    await new Promise<void>((resolve) => {
      const done = (): void => {
        clearTimeout(t2);
        socket.destroy();
        resolve();
      };
      // The server closes the connection once it has read the request.
      const t2 = setTimeout(done, config.cancelTimeoutMs);
      socket.once("close", done);
      socket.once("error", done);
      socket.on("data", () => {});
      socket.resume();
      socket.write(msg);
    });
  } finally {
    clearTimeout(timer);
  }
}
