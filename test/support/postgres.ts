// Starts a throwaway PostgreSQL server (the real one from Debian's packages) for the suite.
// As root it runs the server as the `postgres` OS user, the way TESTING.md describes.
import { execFileSync, spawnSync } from "node:child_process";
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { freePort } from "./ports.js";

export interface PgServer {
  host: string;
  port: number;
  dir: string;
  /** TLS certificate/key the server uses (self-signed); also usable for the proxy's client leg. */
  certFile: string;
  keyFile: string;
  url(user?: string, database?: string, password?: string): string;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export function pgBinDir(): string {
  const root = "/usr/lib/postgresql";
  if (process.env.PG_BIN) return process.env.PG_BIN;
  const versions = existsSync(root) ? readdirSync(root).sort((a, b) => Number(b) - Number(a)) : [];
  for (const v of versions) if (existsSync(join(root, v, "bin", "initdb"))) return join(root, v, "bin");
  throw new Error("PostgreSQL server binaries not found (apt-get install -y postgresql)");
}

const isRoot = process.getuid?.() === 0;

function runAsPostgres(cmd: string, args: string[]): void {
  const r = isRoot
    ? spawnSync(
        "su",
        ["postgres", "-c", [cmd, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(" ")],
        { encoding: "utf8" },
      )
    : spawnSync(cmd, args, { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} failed: ${r.stderr || r.stdout}`);
}

/** Generates a self-signed certificate for CN=localhost into dir; returns the file paths. */
export function selfSignedCert(dir: string): { certFile: string; keyFile: string } {
  const certFile = join(dir, "server.crt");
  const keyFile = join(dir, "server.key");
  execFileSync(
    "openssl",
    [
      "req",
      "-x509",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-days",
      "2",
      "-subj",
      "/CN=localhost",
      "-addext",
      "subjectAltName=DNS:localhost,IP:127.0.0.1",
      "-keyout",
      keyFile,
      "-out",
      certFile,
    ],
    { stdio: "ignore" },
  );
  chmodSync(keyFile, 0o600);
  return { certFile, keyFile };
}

export async function startPostgres(opts: { settings?: Record<string, string> } = {}): Promise<PgServer> {
  const bin = pgBinDir();
  const dir = mkdtempSync(join(tmpdir(), "c2s-pg-"));
  chmodSync(dir, 0o755);
  const data = join(dir, "data");
  const port = await freePort();
  if (isRoot) chownSync(dir, uidOf("postgres"), gidOf("postgres"));
  runAsPostgres(join(bin, "initdb"), [
    "-D",
    data,
    "-U",
    "postgres",
    "--auth=trust",
    "-E",
    "UTF8",
    "--locale=C.UTF-8",
  ]);
  const { certFile, keyFile } = selfSignedCert(dir);
  if (isRoot) for (const f of [certFile, keyFile]) chownSync(f, uidOf("postgres"), gidOf("postgres"));
  // Users with passwords get the method named after them; everyone else is trusted.
  writeFileSync(
    join(data, "pg_hba.conf"),
    [
      "local all all trust",
      "host all md5user 127.0.0.1/32 md5",
      "host all scramuser 127.0.0.1/32 scram-sha-256",
      "host all pwuser 127.0.0.1/32 password",
      "host all all 127.0.0.1/32 trust",
      "host all all ::1/128 trust",
      "",
    ].join("\n"),
  );
  const settings: Record<string, string> = {
    listen_addresses: "127.0.0.1",
    port: String(port),
    unix_socket_directories: dir,
    fsync: "off",
    synchronous_commit: "off",
    full_page_writes: "off",
    ssl: "on",
    ssl_cert_file: certFile,
    ssl_key_file: keyFile,
    max_connections: "300",
    password_encryption: "scram-sha-256",
    // Oracle tests compare an export with a second scan of the same table: a synchronized scan
    // could start the second one mid-table and change the row order.
    synchronize_seqscans: "off",
    ...opts.settings,
  };
  writeFileSync(
    join(data, "postgresql.auto.conf"),
    Object.entries(settings)
      .map(([k, v]) => `${k} = '${v}'\n`)
      .join(""),
  );
  if (isRoot) chownSync(join(data, "postgresql.auto.conf"), uidOf("postgres"), gidOf("postgres"));
  if (isRoot) chownSync(join(data, "pg_hba.conf"), uidOf("postgres"), gidOf("postgres"));
  runAsPostgres(join(bin, "pg_ctl"), ["-D", data, "-l", join(dir, "log"), "-w", "-t", "60", "start"]);
  // Users the auth tests log in as.
  const psql = (sql: string): void => {
    execFileSync(
      "psql",
      [
        "-h",
        dir,
        "-p",
        String(port),
        "-U",
        "postgres",
        "-d",
        "postgres",
        "-v",
        "ON_ERROR_STOP=1",
        "-qc",
        sql,
      ],
      { stdio: "pipe" },
    );
  };
  psql("SET password_encryption = 'md5'; CREATE USER md5user PASSWORD 'md5pass';");
  psql(
    "SET password_encryption = 'scram-sha-256'; CREATE USER scramuser PASSWORD 'scrampass'; CREATE USER pwuser PASSWORD 'pwpass';",
  );
  psql("CREATE USER plainuser; GRANT pg_read_all_data TO scramuser, md5user;");

  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    try {
      runAsPostgres(join(bin, "pg_ctl"), ["-D", data, "-m", "immediate", "-w", "stop"]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  };
  return {
    host: "127.0.0.1",
    port,
    dir,
    certFile,
    keyFile,
    url: (user = "postgres", database = "postgres", password?: string) =>
      `postgres://${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ""}@127.0.0.1:${port}/${database}`,
    stop,
    [Symbol.asyncDispose]: stop,
  };
}

function uidOf(user: string): number {
  return Number(execFileSync("id", ["-u", user], { encoding: "utf8" }).trim());
}
function gidOf(user: string): number {
  return Number(execFileSync("id", ["-g", user], { encoding: "utf8" }).trim());
}

/**
 * A database of its own for one test file, dropped first if an earlier run left it, and a
 * node-postgres client connected to it directly (not through any proxy): the file's set-up and oracle.
 */
export async function freshPgDatabase(port: number, database: string): Promise<pg.Client> {
  const admin = new pg.Client({ port, host: "127.0.0.1", user: "postgres" });
  await admin.connect();
  try {
    await admin.query(`DROP DATABASE IF EXISTS ${database} WITH (FORCE)`);
    await admin.query(`CREATE DATABASE ${database}`);
  } finally {
    await admin.end();
  }
  const client = new pg.Client({ port, host: "127.0.0.1", user: "postgres", database });
  await client.connect();
  return client;
}
