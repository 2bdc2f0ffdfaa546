// The upstream address as libpq users write it: HOST:PORT, a bare HOST, or a postgres:// URL.
// The proxy connects as each client's own user to the client's own database, so a URL that names
// a user, password or database is refused rather than half-used.
import type { HostPort, UpstreamTlsMode } from "./config.js";

/** libpq's default port, used when an upstream address names none. */
export const DEFAULT_UPSTREAM_PORT = 5432;

export interface UpstreamAddress extends HostPort {
  /** From a URL's sslmode, when it has one. */
  tls?: UpstreamTlsMode;
  /** From a URL's sslrootcert (a file; libpq's `system` means the public roots, i.e. none here). */
  caFile?: string;
}

const TLS_MODES: readonly UpstreamTlsMode[] = ["disable", "prefer", "require", "verify-ca", "verify-full"];

/** Parses an upstream address; throws an Error whose message says what to write instead. */
export function parseUpstreamAddress(s: string): UpstreamAddress {
  const text = s.trim();
  if (/^postgres(?:ql)?:\/\//i.test(text)) return parseUrl(text);
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text))
    throw new Error(`expected postgres://HOST[:PORT], HOST:PORT or HOST, got "${s}"`);
  const hostPort = /^(?:\[([^\]]+)\]|([^:[\]]*)):(\d{1,5})$/.exec(text);
  if (hostPort) return { host: hostPort[1] ?? (hostPort[2] || "127.0.0.1"), port: port(hostPort[3]!, s) };
  const bare = /^(?:\[([^\]]+)\]|([A-Za-z0-9._-]+))$/.exec(text);
  if (bare) return { host: bare[1] ?? bare[2]!, port: DEFAULT_UPSTREAM_PORT };
  throw new Error(`expected postgres://HOST[:PORT], HOST:PORT or HOST, got "${s}"`);
}

function port(digits: string, original: string): number {
  const n = Number(digits);
  if (!(n > 0 && n < 65536)) throw new Error(`port out of range in "${original}"`);
  return n;
}

function parseUrl(text: string): UpstreamAddress {
  // WHATWG URL parses postgres:// as a non-special scheme: host, port, user and query all work.
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`not a valid URL: "${redact(text)}"`);
  }
  if (url.hostname.includes(","))
    throw new Error("a URL with several hosts is not supported: give one upstream");
  if (url.username || url.password)
    throw new Error(
      `the URL names a user${url.password ? " and password" : ""}; the proxy connects as each client's own user with the client's own password, so leave them out (postgres://${url.host})`,
    );
  const database = decodeURIComponent(url.pathname.replace(/^\//, ""));
  if (database)
    throw new Error(
      `the URL names the database "${database}"; each client chooses its own database, so leave it out (postgres://${url.host})`,
    );
  if (!url.hostname) throw new Error(`the URL names no host: "${text}"`);
  const out: UpstreamAddress = {
    host: url.hostname.replace(/^\[(.*)\]$/, "$1"),
    port: url.port ? port(url.port, text) : DEFAULT_UPSTREAM_PORT,
  };
  for (const [name, value] of url.searchParams) {
    if (name === "sslmode") {
      if (value === "allow")
        throw new Error('sslmode=allow is not supported: use "prefer" (TLS when offered) or "disable"');
      if (!(TLS_MODES as readonly string[]).includes(value))
        throw new Error(`sslmode: expected one of ${TLS_MODES.join(", ")}, got "${value}"`);
      out.tls = value as UpstreamTlsMode;
    } else if (name === "sslrootcert") {
      if (value !== "system") out.caFile = value;
    } else {
      throw new Error(
        `the URL parameter "${name}" is not used by the proxy (only sslmode and sslrootcert are; clients send their own connection parameters)`,
      );
    }
  }
  return out;
}

function redact(text: string): string {
  return text.replace(/\/\/[^@/]*@/, "//…@");
}
