// A real Ctrl-C in a real psql (tmux send-keys C-c: SIGINT → libpq's CancelRequest on a new
// connection) while psql waits for a COPY ... TO 's3://...': psql prints 57014's message where the
// COPY would otherwise have completed (the rows are slow) or never ended (the uploads are held until
// the test lets them go), nothing is left under the prefix, the session is idle outside a
// transaction, and the same COPY typed again completes. Once while the rows are read, once over TLS
// while the uploads are stuck and the row stream is paused. How fast the cancel is answered is
// bench/cancel-latency.ts's to measure, not a test's.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import type { S3Check } from "../support/copy-proxy.js";
import { expectNothingLeft, readText, waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import type { RawPg } from "../support/raw-pg.js";
import type { S3FaultProxy } from "../support/s3-fault-proxy.js";

const DB = "psql_cancel_export";
const SOCKET = `c2s-psql-cancel-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), "c2s-tmux-cancel-"));
const prompt = `${DB}=#`;
/** psql's line for 57014. */
const CANCELED = "ERROR:  canceling statement due to user request";

let stack: ProxyStack;
let check: S3Check;
let faults: S3FaultProxy;
let proxy: TestProxy;
let oracle: RawPg;
let bucket: string;

const tmux = (...args: string[]): string =>
  execFileSync("tmux", ["-L", SOCKET, "-f", join(dir, "tmux.conf"), ...args], {
    encoding: "utf8",
    env: { ...process.env, TERM: process.env.TERM || "xterm-256color" },
  });

const screen = (name: string): string => tmux("capture-pane", "-p", "-J", "-S", "-5000", "-t", name);

function type(name: string, text: string): void {
  // tmux takes an argument's trailing ';' as a command separator unless it is escaped.
  tmux("send-keys", "-t", name, "-l", text.endsWith(";") ? `${text.slice(0, -1)}\\;` : text);
  tmux("send-keys", "-t", name, "Enter");
}

/** Polls the pane (every 20 ms) until `until` holds for the text after the last `from`. */
async function waitFor(
  name: string,
  until: (s: string) => boolean,
  from?: string,
  timeoutMs = 20_000,
): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const all = screen(name);
    const at = from === undefined ? 0 : all.lastIndexOf(from);
    const s = at < 0 ? "" : all.slice(at);
    if (at >= 0 && until(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting in tmux window ${name}; screen:\n${all}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const endsWithPrompt = (s: string): boolean => s.trimEnd().endsWith(prompt);

function openPsql(name: string, port: number, sslmode: "disable" | "require"): void {
  const conn = `host=127.0.0.1 port=${port} user=postgres dbname=${DB} sslmode=${sslmode}`;
  const cmd = ["env", "PSQL_HISTORY=/dev/null", "PAGER=", "psql", "-X", "-P", "pager=off", `'${conn}'`].join(
    " ",
  );
  // A retried test finds its first attempt's window (and psql) still there: end it first.
  try {
    tmux("kill-session", "-t", name);
  } catch {
    // none yet
  }
  tmux("new-session", "-d", "-s", name, "-x", "220", "-y", "50", cmd);
}

/** The upstream backend behind the psql window (the only other session on this database). */
async function backendOf(): Promise<number> {
  // Polled: a retried attempt's earlier psql backend may still be on its way out.
  return waitUntil("one psql backend", async () => {
    const r = await oracle.query(
      `SELECT pid FROM pg_stat_activity WHERE datname = '${DB}' AND pid <> pg_backend_pid() AND backend_type = 'client backend'`,
    );
    return r.rows.length === 1 ? Number(readText(r.rows[0]!)) : null;
  });
}

beforeAll(async () => {
  writeFileSync(join(dir, "tmux.conf"), "set -g remain-on-exit on\nset -g history-limit 10000\n");
  stack = await startProxyStack({
    database: DB,
    bucket: "psql-cancel",
    args: ["--tls-cert", inject("pgCertFile"), "--tls-key", inject("pgKeyFile")],
    config: { exports: { partSize: 5 * 1024 * 1024, partsInFlight: 1, filesCompleting: 1 } },
  });
  ({ check, bucket, oracle, faults, proxy } = stack);
  await oracle.query(
    "CREATE TABLE wide AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 300000) g",
  );
}, 120_000);

afterAll(async () => {
  try {
    tmux("kill-server");
  } catch {
    // already gone
  }
  await stack?.stop();
  rmSync(dir, { recursive: true, force: true });
});

describe("Ctrl-C in psql aborts a COPY TO S3", () => {
  const cases = [
    {
      name: "while the rows are read (plain connection)",
      window: "plain",
      sslmode: "disable" as const,
      before: "SET c2s.wait = '0.002';",
      copy: (p: string) =>
        `COPY (SELECT c2s_wait(g) AS g, md5(g::text) AS h FROM generate_series(1, 5000) g) TO 's3://psql-cancel/${p}' WITH (FORMAT = 'csv');`,
      arrange: () => {},
      reached: async (pid: number) => {
        await waitUntil("reading", async () => {
          const r = await oracle.query(
            `SELECT 1 FROM pg_stat_activity WHERE pid = ${pid} AND wait_event = 'PgSleep' AND query LIKE '%generate_series(1, 5000)%'`,
          );
          return r.rows.length > 0 ? true : null;
        });
      },
      after: "SET c2s.wait = '0';",
      rows: 5000,
    },
    {
      name: "while uploads are stuck and the row stream is paused (TLS connection)",
      window: "tls",
      sslmode: "require" as const,
      before: "SELECT 1 AS ready;",
      copy: (p: string) =>
        `COPY wide TO 's3://psql-cancel/${p}' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB');`,
      arrange: () => faults.setRules({ op: "UploadPart", fault: "hold" }),
      reached: async (pid: number) => {
        await faults.waitFor("UploadPart");
        // A hang guard, not a bound: before the upstream waits, the nice-10 encoder thread must
        // fill the held uploads' buffers, the chunk ring and the row ring (~30 MB of CSV), which
        // took over 20 s once under the full suite's load.
        await waitUntil(
          "the upstream blocked writing to the paused proxy",
          async () => {
            const r = await oracle.query(
              `SELECT 1 FROM pg_stat_activity WHERE pid = ${pid} AND wait_event = 'ClientWrite'`,
            );
            return r.rows.length > 0 ? true : null;
          },
          90_000,
        );
      },
      after: "SELECT 1 AS done;",
      rows: 300000,
    },
  ];

  for (const c of cases) {
    test(c.name, async () => {
      openPsql(c.window, proxy.port, c.sslmode);
      await waitFor(c.window, (s) => s.includes(prompt));
      if (c.sslmode === "require") {
        type(c.window, "\\conninfo");
        await waitFor(c.window, (s) => s.includes("SSL connection"), "\\conninfo");
      }
      const pid = await backendOf();
      type(c.window, c.before);
      await waitFor(c.window, endsWithPrompt, c.before);
      const prefix = `${c.window}-1`;
      const copy = c.copy(prefix);
      faults.resetStats();
      c.arrange();
      try {
        type(c.window, copy);
        await c.reached(pid);
        tmux("send-keys", "-t", c.window, "C-c");
        // The statement's end, whichever it is: the cancel's error, or the COPY done (the rows
        // went on: the cancel was lost). The uploads stay held meanwhile, so in the second case
        // only an answered cancel ends it.
        const ended = await waitFor(
          c.window,
          (s) => (s.includes(CANCELED) || s.includes(`COPY ${c.rows}`)) && endsWithPrompt(s),
          copy,
          60_000,
        );
        expect(ended).toContain(CANCELED);
        expect(ended).not.toContain(`COPY ${c.rows}`);
      } finally {
        faults.clear();
      }
      await expectNothingLeft(check, bucket, prefix, oracle, pid);
      type(c.window, c.after);
      await waitFor(c.window, endsWithPrompt, c.after);
      // The same COPY, typed again, completes (psql's history is off: typed, not recalled).
      type(c.window, copy);
      await waitFor(c.window, (s) => s.includes(`COPY ${c.rows}`) && endsWithPrompt(s), copy, 60_000);
      const keys = await check.keys(bucket, `${prefix}/`);
      expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
      expect(keys.some((k) => k.endsWith("-manifest.json"))).toBe(true);
      type(c.window, "\\q");
    }, 180_000); // its waits are hang guards of 20–60 s each; at load 20 the whole took over 60 s
  }
});
