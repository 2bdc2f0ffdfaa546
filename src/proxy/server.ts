// The listener and the startup phase: TLS negotiation (SSLRequest, direct TLS), GSSENCRequest,
// CancelRequest, and the StartupMessage, which is forwarded verbatim to a fresh upstream leg.
import { readFileSync } from "node:fs";
import { createServer, type Server, type Socket } from "node:net";
import { Duplex } from "node:stream";
import { createSecureContext, type SecureContext, TLSSocket } from "node:tls";
import type { Config } from "../config.js";
import { PgError, SqlState } from "../errors.js";
import type { Logger } from "../log.js";
import * as metrics from "../metrics/metrics.js";
import { errorResponse } from "../wire/backend.js";
import { CancelRegistry } from "./cancel-registry.js";
import type { CopyHook } from "./copy-hook.js";
import { PacketReader, ProtocolViolation } from "./packet-reader.js";
import { Session } from "./session.js";
import { connectUpstream } from "./upstream-connect.js";

const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const TLS_HANDSHAKE = 0x16;

export interface ProxyServer {
  readonly address: { host: string; port: number };
  readonly sessions: ReadonlySet<Session>;
  /** Client connections accepted so far, and those still in their startup phase (no session yet). */
  readonly clients: { readonly accepted: number; readonly starting: number };
  /** True once shutdown() began: no new clients are accepted (readiness goes 503). */
  readonly draining: boolean;
  /**
   * Stop accepting; close idle sessions now and busy ones when they finish or the drain timeout
   * passes (then running exports are aborted and cleaned up). A later call with a shorter timeout
   * brings the deadline forward (a second Ctrl-C: abort now, still cleaning up).
   */
  shutdown(drainTimeoutMs?: number): Promise<void>;
  /** New TLS certificate and key for connections from now on (SIGHUP); throws if unreadable. */
  reloadTls(certFile: string | undefined, keyFile: string | undefined): void;
  /** Logs "proxy listening" (what operators and tests take for ready), once. */
  announce(): void;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface StartOptions {
  /**
   * False: startProxy does not log that it listens; its caller calls announce() once it can serve
   * (the CLI: once its signal handlers exist). Default true.
   */
  announce?: boolean;
}

export async function startProxy(
  config: Config,
  log: Logger,
  copy: CopyHook | null,
  opts: StartOptions = {},
): Promise<ProxyServer> {
  const registry = new CancelRegistry();
  const sessions = new Set<Session>();
  const handshakes = new Set<Socket>();
  let nextId = 1;
  let accepted = 0;
  /** Past their StartupMessage, upstream leg being opened (no session yet). */
  let loggingIn = 0;
  let stopping = false;
  let tlsContext = tlsContextOf(config.tlsCertFile, config.tlsKeyFile);

  const fatal = (sock: Socket | TLSSocket, code: string, message: string): void => {
    sock.end(errorResponse({ severity: "FATAL", code, message }));
  };

  async function handshake(raw: Socket, conn: Connection): Promise<void> {
    const id = nextId++;
    let sock: Socket | TLSSocket = raw;
    let reader = new PacketReader(sock);
    let tls = false;
    let tried = { ssl: false, gss: false };

    const upgrade = async (): Promise<void> => {
      const rest = reader.detach();
      if (rest.length > 0) throw new ProtocolViolation("received unencrypted data after SSL request");
      const t = new TLSSocket(raw, {
        isServer: true,
        secureContext: tlsContext!,
        ALPNProtocols: ["postgresql"],
      });
      await new Promise<void>((resolve, reject) => {
        t.once("secure", () => resolve());
        t.once("error", reject);
        t.once("close", () => reject(new Error("connection closed during TLS handshake")));
      });
      sock = t;
      tls = true;
      reader = new PacketReader(t);
    };

    // PostgreSQL 17 clients may start TLS right away (sslnegotiation=direct).
    const first = await reader.peekByte();
    if (first === TLS_HANDSHAKE) {
      if (!tlsContext) {
        raw.destroy();
        return;
      }
      // The ClientHello bytes already read must reach the TLS layer, which a net.Socket's handle
      // cannot be given back; a stream wrapper can.
      const t = new TLSSocket(replaying(raw, reader.detach()), {
        isServer: true,
        secureContext: tlsContext,
        ALPNProtocols: ["postgresql"],
      });
      await new Promise<void>((resolve, reject) => {
        t.once("secure", () => resolve());
        t.once("error", reject);
        t.once("close", () => reject(new Error("connection closed during TLS handshake")));
      });
      // Direct TLS requires the ALPN "postgresql" (PostgreSQL refuses connections without it).
      if (t.alpnProtocol !== "postgresql") {
        t.destroy();
        return;
      }
      sock = t;
      tls = true;
      reader = new PacketReader(t);
    }

    for (;;) {
      const pkt = await reader.packet();
      const code = pkt.readInt32BE(4);
      if (code === SSL_REQUEST && !tried.ssl && !tls) {
        tried = { ...tried, ssl: true };
        if (tlsContext) {
          // Bytes sent before the handshake were not encrypted and may have been injected.
          if (reader.buffered > 0) throw new ProtocolViolation("received unencrypted data after SSL request");
          raw.write("S");
          await upgrade();
        } else {
          sock.write("N");
        }
        continue;
      }
      if (code === GSSENC_REQUEST && !tried.gss && !tls) {
        tried = { ...tried, gss: true };
        sock.write("N");
        continue;
      }
      if (code === CANCEL_REQUEST) {
        if (pkt.length >= 16) registry.cancel(pkt.readInt32BE(8), pkt.subarray(12));
        sock.end();
        return;
      }
      if (code >> 16 !== 3) {
        metrics.clientRefused("protocol");
        fatal(
          sock,
          SqlState.protocolViolation,
          `unsupported frontend protocol ${code >> 16}.${code & 0xffff}: server supports 3.0 to 3.2`,
        );
        return;
      }
      if (config.clientTls === "require" && !tls) {
        // PgBouncer's answer with client_tls_sslmode = require (src/client.c, handle_client_startup).
        metrics.clientRefused("ssl_required");
        fatal(sock, SqlState.protocolViolation, "SSL required");
        return;
      }
      if (stopping) {
        metrics.clientRefused("shutting_down");
        fatal(sock, SqlState.cannotConnectNow, "the database system is shutting down");
        return;
      }
      if (sessions.size + loggingIn >= config.maxClientConnections) {
        // PgBouncer's words and SQLSTATE for max_client_conn (src/client.c, decide_startup_pool).
        log.warn(
          { limit: config.maxClientConnections },
          "client connection refused: max-client-conn reached",
        );
        metrics.clientRefused("max_client_conn");
        fatal(sock, SqlState.protocolViolation, "no more connections allowed (max_client_conn)");
        return;
      }
      loggingIn++;
      try {
        await login(pkt, id, sock, reader, raw, conn, tls);
      } finally {
        loggingIn--;
      }
      return;
    }
  }

  /** The StartupMessage was accepted: open the upstream leg and hand both to a new session. */
  async function login(
    pkt: Buffer,
    id: number,
    sock: Socket | TLSSocket,
    reader: PacketReader,
    raw: Socket,
    conn: Connection,
    tls: boolean,
  ): Promise<void> {
    {
      const params = startupParams(pkt);
      const user = params.get("user") ?? "";
      const database = params.get("database") ?? user;
      let upstream: Awaited<ReturnType<typeof connectUpstream>>;
      // A client that leaves while its upstream leg opens takes that leg with it (no session
      // would ever see its close: the listeners below come after it).
      const gone = reader.gone;
      try {
        upstream = await connectUpstream(config, gone);
      } catch (e) {
        if (gone.aborted) {
          log.debug({ session: id }, "client left during the upstream connect");
          sock.destroy();
          return;
        }
        const err = PgError.from(e, SqlState.connectionFailure);
        log.warn({ session: id, err: err.message }, "upstream connection failed");
        metrics.clientRefused("upstream_unavailable");
        fatal(sock, err.code, err.message);
        return;
      }
      if (gone.aborted) {
        upstream.socket.destroy();
        sock.destroy();
        return;
      }
      const leftover = reader.detach();
      handshakes.delete(raw);
      const session = new Session(
        {
          config,
          log,
          registry,
          copy,
          onClosed: (s) => {
            clearTimeout(conn.loginTimer);
            sessions.delete(s);
            metrics.sessionClosed(s);
          },
          onAuthenticated: () => clearTimeout(conn.loginTimer),
        },
        {
          id,
          client: sock,
          upstream: upstream.socket,
          upstreamTls: upstream.tls,
          startupPacket: pkt,
          clientLeftover: leftover,
          user,
          database,
        },
      );
      sessions.add(session);
      metrics.sessionOpened(session);
      conn.session = session;
      log.debug(
        { session: id, user, database, clientTls: tls, upstreamTls: upstream.tls },
        "connecting upstream",
      );
      session.start();
    }
  }

  const server: Server = createServer({ noDelay: true, pauseOnConnect: false }, (raw) => {
    raw.setNoDelay(true);
    accepted++;
    raw.on("error", () => {});
    if (handshakes.size >= config.maxClientConnections) {
      // Connections that have not logged in count apart, against the same limit: a flood of them
      // runs out of slots here, not of file descriptors. PostgreSQL's words when out of backends.
      metrics.clientRefused("too_many_connecting");
      raw.end(
        errorResponse({
          severity: "FATAL",
          code: SqlState.tooManyConnections,
          message: "sorry, too many clients already",
        }),
      );
      setTimeout(() => raw.destroy(), 1000).unref();
      return;
    }
    handshakes.add(raw);
    const conn: Connection = { session: null, loginTimer: undefined };
    if (config.loginTimeoutMs > 0) {
      // PostgreSQL's authentication_timeout: the connection is closed without a reply (a client
      // stuck enough to miss the deadline may not read one either).
      conn.loginTimer = setTimeout(() => {
        log.info({ timeoutMs: config.loginTimeoutMs }, "client did not log in in time; closing it");
        if (conn.session !== null) conn.session.destroy();
        else raw.destroy();
      }, config.loginTimeoutMs);
      conn.loginTimer.unref();
    }
    handshake(raw, conn)
      .catch((e: unknown) => {
        if (e instanceof ProtocolViolation) {
          log.warn({ err: e.message }, "startup protocol violation");
          if (e.silent) raw.destroy();
          else if (!raw.destroyed)
            raw.end(
              errorResponse({ severity: "FATAL", code: SqlState.protocolViolation, message: e.message }),
            );
        } else {
          log.debug({ err: (e as Error).message }, "startup ended");
        }
        setTimeout(() => raw.destroy(), 1000).unref();
      })
      .finally(() => {
        handshakes.delete(raw);
        if (conn.session === null) clearTimeout(conn.loginTimer);
      });
  });

  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(config.listen.port, config.listen.host, () => resolve());
  });
  const addr = server.address();
  const address = {
    host: config.listen.host,
    port: typeof addr === "object" && addr ? addr.port : config.listen.port,
  };
  let announced = false;
  const announce = (): void => {
    if (announced) return;
    announced = true;
    log.info({ listen: address, upstream: config.upstream }, "proxy listening");
  };
  if (opts.announce !== false) announce();
  copy?.listening?.();

  let shutdownPromise: Promise<void> | null = null;
  let deadline = Number.POSITIVE_INFINITY;
  const shutdown = (drainTimeoutMs = config.drainTimeoutMs): Promise<void> => {
    deadline = Math.min(deadline, Date.now() + drainTimeoutMs);
    shutdownPromise ??= (async () => {
      stopping = true;
      copy?.shutdown?.();
      const closed = new Promise<void>((r) => server.close(() => r()));
      for (const h of handshakes) h.destroy();
      for (const s of sessions) s.requestShutdown();
      while (sessions.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
      for (const s of sessions) s.terminate();
      // Exports being aborted get their cleanup done before the process may exit.
      const exports = [...sessions].map((s) => s.exporting).filter((p): p is Promise<unknown> => p !== null);
      await Promise.allSettled(exports);
      const hardDeadline = Date.now() + 5000;
      while (sessions.size > 0 && Date.now() < hardDeadline) await new Promise((r) => setTimeout(r, 50));
      for (const s of sessions) s.destroy();
      await closed;
      log.info("proxy stopped");
    })();
    return shutdownPromise;
  };

  return {
    address,
    sessions,
    clients: {
      get accepted() {
        return accepted;
      },
      get starting() {
        return handshakes.size;
      },
    },
    get draining() {
      return stopping;
    },
    shutdown,
    announce,
    reloadTls: (certFile, keyFile) => {
      tlsContext = tlsContextOf(certFile, keyFile);
    },
    [Symbol.asyncDispose]: () => shutdown(0),
  };
}

function tlsContextOf(certFile: string | undefined, keyFile: string | undefined): SecureContext | undefined {
  if (!certFile || !keyFile) return undefined;
  return createSecureContext({ cert: readFileSync(certFile), key: readFileSync(keyFile) });
}

/** One accepted client connection, from accept to the end of its login. */
interface Connection {
  session: Session | null;
  loginTimer: NodeJS.Timeout | undefined;
}

function replaying(raw: Socket, head: Buffer): Duplex {
  const d = new Duplex({
    read: () => {
      raw.resume();
    },
    write: (chunk: Buffer, _enc, cb) => {
      raw.write(chunk, cb);
    },
    final: (cb) => {
      raw.end(cb);
    },
    destroy: (err, cb) => {
      raw.destroy(err ?? undefined);
      cb(err);
    },
  });
  d.push(head);
  raw.on("data", (chunk: Buffer) => {
    if (!d.push(chunk)) raw.pause();
  });
  raw.on("end", () => d.push(null));
  raw.on("close", () => d.destroy());
  return d;
}

function startupParams(pkt: Buffer): Map<string, string> {
  const m = new Map<string, string>();
  let i = 8;
  while (i < pkt.length && pkt[i] !== 0) {
    const kEnd = pkt.indexOf(0, i);
    if (kEnd < 0) break;
    const vEnd = pkt.indexOf(0, kEnd + 1);
    if (vEnd < 0) break;
    m.set(pkt.toString("utf8", i, kEnd), pkt.toString("utf8", kEnd + 1, vEnd));
    i = vEnd + 1;
  }
  return m;
}
