// The host name check of `--upstream-tls verify-full`, as libpq does it (PostgreSQL
// src/interfaces/libpq/fe-secure-openssl.c, pgtls_verify_peer_name_matches_certificate_guts, and
// fe-secure-common.c, pq_verify_peer_name_matches_certificate_name / _ip):
// - an IP literal host matches iPAddress SANs byte for byte; a name matches dNSName SANs, case
//   insensitively, with a wildcard only as a whole leftmost label ("*.example.com");
// - a dNSName SAN is also compared as text with an IP literal host (libpq compares every name it
//   examines), and an iPAddress SAN never matches a host name;
// - the Common Name is checked only when the certificate has no SAN of the host's own kind.
import { BlockList, isIP } from "node:net";
import type { PeerCertificate } from "node:tls";

/** undefined when `cert` names `host`, else the Error Node's `checkServerIdentity` contract expects. */
export function checkHostLikeLibpq(host: string, cert: PeerCertificate): Error | undefined {
  const family = isIP(host);
  const sans = subjectAltNames(cert.subjectaltname);
  const dns = sans.filter((s) => s.type === "DNS").map((s) => s.value);
  const ips = sans.filter((s) => s.type === "IP Address").map((s) => s.value);
  if (dns.some((n) => nameMatches(n, host))) return undefined;
  if (family !== 0 && ips.some((ip) => ipMatches(ip, host, family))) return undefined;
  const ofHostKind = family === 0 ? dns.length : ips.length;
  if (ofHostKind === 0) {
    const cn = cert.subject?.CN;
    const cns = Array.isArray(cn) ? cn : cn === undefined ? [] : [cn];
    if (cns.some((n) => nameMatches(n, host))) return undefined;
  }
  const names = [...dns, ...ips, ...(ofHostKind === 0 && cert.subject?.CN ? [String(cert.subject.CN)] : [])];
  const err = new Error(
    names.length === 0
      ? `the upstream's certificate names no host, so it cannot match "${host}"`
      : `the upstream's certificate (${names.map((n) => `"${n}"`).join(", ")}) does not match host name "${host}"`,
  );
  return Object.assign(err, { code: "ERR_TLS_CERT_ALTNAME_INVALID", host, cert });
}

/** pq_verify_peer_name_matches_certificate_name: exact (any case), or a leftmost "*." wildcard. */
function nameMatches(name: string, host: string): boolean {
  if (name.includes("\0")) return false;
  if (name.toLowerCase() === host.toLowerCase()) return true;
  // wildcard_certificate_match: "*." + suffix; the "*" covers one label, never an empty one.
  if (name.length < 3 || !name.startsWith("*.") || name.length > host.length) return false;
  const suffix = name.slice(1).toLowerCase();
  const at = host.length - suffix.length;
  return host.slice(at).toLowerCase() === suffix && host.indexOf(".") >= at;
}

function ipMatches(san: string, host: string, family: number): boolean {
  const sanFamily = isIP(san);
  if (sanFamily !== family) return false;
  // BlockList compares addresses as numbers, so "::1" and "0:0:0:0:0:0:0:1" are the same.
  const list = new BlockList();
  list.addAddress(san, family === 4 ? "ipv4" : "ipv6");
  return list.check(host, family === 4 ? "ipv4" : "ipv6");
}

/**
 * Node's `subjectaltname` text: entries "TYPE:value" joined by ", "; a value holding a comma,
 * a quote or a non-ASCII character is written as a JSON string.
 */
export function subjectAltNames(text: string | undefined): Array<{ type: string; value: string }> {
  const out: Array<{ type: string; value: string }> = [];
  if (!text) return out;
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(":", i);
    if (colon < 0) break;
    const type = text.slice(i, colon);
    let value: string;
    let next: number;
    if (text[colon + 1] === '"') {
      let j = colon + 2;
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1;
      try {
        value = JSON.parse(text.slice(colon + 1, j + 1)) as string;
      } catch {
        value = "";
      }
      next = text.indexOf(", ", j);
    } else {
      next = text.indexOf(", ", colon);
      value = text.slice(colon + 1, next < 0 ? text.length : next);
    }
    out.push({ type, value });
    if (next < 0) break;
    i = next + 2;
  }
  return out;
}
