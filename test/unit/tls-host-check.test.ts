// libpq's name rules (PostgreSQL src/interfaces/libpq/fe-secure-common.c,
// pq_verify_peer_name_matches_certificate_name and wildcard_certificate_match), case by case.
import type { PeerCertificate } from "node:tls";
import { describe, expect, test } from "vitest";
import { checkHostLikeLibpq, subjectAltNames } from "../../src/proxy/tls-host-check.js";

const cert = (san: string | undefined, cn?: string): PeerCertificate =>
  ({ subjectaltname: san, subject: cn === undefined ? {} : { CN: cn } }) as unknown as PeerCertificate;
const ok = (host: string, c: PeerCertificate): boolean => checkHostLikeLibpq(host, c) === undefined;

describe("libpq host checks", () => {
  test("a wildcard covers exactly one leftmost label, in any case", () => {
    const c = cert("DNS:*.Example.com");
    expect(ok("db.example.COM", c)).toBe(true);
    expect(ok("a.db.example.com", c)).toBe(false);
    expect(ok("example.com", c)).toBe(false);
    expect(ok(".example.com", c)).toBe(false);
  });
  test("the CN counts only without a SAN of the host's kind", () => {
    expect(ok("db", cert(undefined, "db"))).toBe(true);
    expect(ok("db", cert("DNS:other", "db"))).toBe(false);
    expect(ok("db", cert("IP Address:10.0.0.1", "db"))).toBe(true);
    expect(ok("10.0.0.1", cert("DNS:x", "10.0.0.1"))).toBe(true);
    expect(ok("10.0.0.1", cert("IP Address:10.0.0.2", "10.0.0.1"))).toBe(false);
  });
  test("IP addresses compare as addresses, never with a host name", () => {
    expect(ok("::1", cert("IP Address:0:0:0:0:0:0:0:1"))).toBe(true);
    expect(ok("10.0.0.1", cert("IP Address:10.0.0.1"))).toBe(true);
    expect(ok("localhost", cert("IP Address:127.0.0.1"))).toBe(false);
    expect(ok("127.0.0.1", cert("DNS:localhost"))).toBe(false);
  });
  test("quoted SAN entries are parsed as Node writes them", () => {
    expect(subjectAltNames('DNS:a, DNS:"b,c", IP Address:1.2.3.4')).toEqual([
      { type: "DNS", value: "a" },
      { type: "DNS", value: "b,c" },
      { type: "IP Address", value: "1.2.3.4" },
    ]);
  });
});
