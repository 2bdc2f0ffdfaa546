// `--upstream-tls verify-full` checks the upstream's certificate against the configured host the
// way libpq does. Oracle: libpq itself (psql with sslmode=verify-full) against the same
// PostgreSQL, serving each throwaway certificate in turn, must accept and refuse the same hosts.
import { execFileSync, spawnSync } from "node:child_process";
import { chownSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { type PgServer, startPostgres } from "../support/postgres.js";
import { startTestProxy } from "../support/proxy.js";

let server: PgServer;
let admin: pg.Client;
let caFile: string;

function openssl(args: string[]): void {
  execFileSync("openssl", args, { stdio: "pipe" });
}

/** A leaf certificate signed by the test CA: `subj` and optional `san` (e.g. "DNS:localhost"). */
function leaf(name: string, subj: string, san: string | undefined): { cert: string; key: string } {
  const dir = server.dir;
  const key = join(dir, `${name}.key`);
  const csr = join(dir, `${name}.csr`);
  const cert = join(dir, `${name}.crt`);
  const ext = join(dir, `${name}.ext`);
  writeFileSync(ext, san ? `subjectAltName=${san}\n` : "basicConstraints=CA:FALSE\n");
  openssl(["req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subj, "-keyout", key, "-out", csr]);
  openssl([
    "x509",
    "-req",
    "-in",
    csr,
    "-CA",
    caFile,
    "-CAkey",
    join(dir, "ca.key"),
    "-CAcreateserial",
    "-days",
    "2",
    "-extfile",
    ext,
    "-out",
    cert,
  ]);
  if (process.getuid?.() === 0) {
    const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
    const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
    for (const f of [key, cert]) chownSync(f, uid, gid);
  }
  execFileSync("chmod", ["600", key]);
  return { cert, key };
}

async function serve(c: { cert: string; key: string }): Promise<void> {
  await admin.query(`ALTER SYSTEM SET ssl_cert_file = '${c.cert}'`);
  await admin.query(`ALTER SYSTEM SET ssl_key_file = '${c.key}'`);
  await admin.query("SELECT pg_reload_conf()");
  // The reload is asynchronous; a new backend reports the file once it has it.
  for (let i = 0; i < 200; i++) {
    const probe = new pg.Client({ host: server.dir, port: server.port, user: "postgres" });
    await probe.connect();
    const r = await probe.query("SHOW ssl_cert_file");
    await probe.end();
    if (r.rows[0].ssl_cert_file === c.cert) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error("the server did not take the new certificate");
}

/** libpq's verdict: does psql with sslmode=verify-full connect to `host`? */
function libpqAccepts(host: string): boolean {
  const r = spawnSync(
    "psql",
    [
      `host=${host} port=${server.port} user=postgres dbname=postgres sslmode=verify-full sslrootcert=${caFile}`,
      "-Atc",
      "select 1",
    ],
    { encoding: "utf8", env: { ...process.env, PGCONNECT_TIMEOUT: "10" } },
  );
  return r.status === 0 && r.stdout.trim() === "1";
}

/** The proxy's verdict for `--upstream HOST:PORT --upstream-tls verify-full`. */
async function proxyAccepts(host: string): Promise<{ ok: boolean; error?: string }> {
  const proxy = await startTestProxy({
    upstreamPort: server.port,
    args: ["--upstream", `${host}:${server.port}`, "--upstream-tls", "verify-full", "--upstream-ca", caFile],
  });
  const c = new pg.Client({ connectionString: proxy.url() });
  try {
    await c.connect();
    const r = await c.query("select ssl from pg_stat_ssl where pid = pg_backend_pid()");
    await c.end();
    return { ok: r.rows[0].ssl === true };
  } catch (e) {
    return { ok: false, error: (e as Error).message };
  } finally {
    await proxy.shutdown(0);
  }
}

beforeAll(async () => {
  server = await startPostgres();
  admin = new pg.Client({ host: server.dir, port: server.port, user: "postgres" });
  await admin.connect();
  caFile = join(server.dir, "ca.crt");
  openssl([
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-days",
    "2",
    "-subj",
    "/CN=c2s test CA",
    "-keyout",
    join(server.dir, "ca.key"),
    "-out",
    caFile,
  ]);
});
afterAll(async () => {
  await admin?.end();
  await server?.stop();
});

describe("verify-full host checks match libpq's", () => {
  const certs: Record<string, [subj: string, san: string | undefined]> = {
    "SAN DNS:localhost only": ["/CN=localhost", "DNS:localhost"],
    "SAN IP:127.0.0.1 only": ["/CN=db.example.com", "IP:127.0.0.1"],
    "no SAN, CN=localhost": ["/CN=localhost", undefined],
    "no SAN, CN=127.0.0.1": ["/CN=127.0.0.1", undefined],
    "SAN DNS:*.example.com, CN=localhost": ["/CN=localhost", "DNS:*.example.com"],
    "SAN IP:::1 and DNS:localhost": ["/CN=x", "IP:::1,DNS:localhost"],
  };
  for (const [name, [subj, san]] of Object.entries(certs)) {
    test(name, async () => {
      await serve(leaf(name.replace(/\W+/g, "_"), subj, san));
      const verdicts: Record<string, { libpq: boolean; proxy: boolean }> = {};
      for (const host of ["127.0.0.1", "localhost"]) {
        const p = await proxyAccepts(host);
        verdicts[host] = { libpq: libpqAccepts(host), proxy: p.ok };
        if (!p.ok) expect(p.error).toMatch(/TLS handshake with the upstream database failed/);
      }
      for (const v of Object.values(verdicts)) expect(v.proxy).toBe(v.libpq);
    });
  }

  test("the cases above include both answers for both kinds of host", async () => {
    // The two cases, written out: an IP host is checked against IP SANs, not "localhost".
    await serve(leaf("dns_only", "/CN=localhost", "DNS:localhost"));
    expect([libpqAccepts("127.0.0.1"), (await proxyAccepts("127.0.0.1")).ok]).toEqual([false, false]);
    await serve(leaf("ip_only", "/CN=db.example.com", "IP:127.0.0.1"));
    expect([libpqAccepts("127.0.0.1"), (await proxyAccepts("127.0.0.1")).ok]).toEqual([true, true]);
    expect([libpqAccepts("localhost"), (await proxyAccepts("localhost")).ok]).toEqual([false, false]);
  });
});
