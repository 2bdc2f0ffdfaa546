// Real interactive psql through the proxy, driven in tmux the way a person types: a query and its
// table output, \copy both ways, Ctrl-C on a running statement (a real SIGINT → CancelRequest), and
// COPY … TO 's3://…' showing its NOTICE progress lines before `COPY n`.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { startTestProxy, type TestProxy } from "../support/proxy.js";

const DB = "psql_tmux";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const SOCKET = `c2s-psql-${process.pid}`;
const dir = mkdtempSync(join(tmpdir(), "c2s-tmux-"));

let plain: TestProxy;
let copy: TestProxy;
let admin: pg.Client; // straight to PostgreSQL, to look behind the proxy
let bucket: string;
const check = new S3Check(s3);

const tmux = (...args: string[]): string =>
  execFileSync("tmux", ["-L", SOCKET, "-f", join(dir, "tmux.conf"), ...args], {
    encoding: "utf8",
    // The server's socket lives in our temporary directory, removed in afterAll.
    env: { ...process.env, TERM: process.env.TERM || "xterm-256color", TMUX_TMPDIR: dir },
  });

/** Opens a tmux window running interactive psql against `port`. */
function openPsql(name: string, port: number): void {
  const cmd = [
    "env",
    "PSQL_HISTORY=/dev/null",
    "PAGER=",
    "psql",
    "-X",
    "-P",
    "pager=off",
    "-h",
    "127.0.0.1",
    "-p",
    String(port),
    "-U",
    "postgres",
    "-d",
    DB,
  ].join(" ");
  tmux("new-session", "-d", "-s", name, "-x", "200", "-y", "50", cmd);
}

/** Everything the pane shows, scrollback included, wrapped lines joined. */
const screen = (name: string): string => tmux("capture-pane", "-p", "-J", "-S", "-5000", "-t", name);

/** Types `text` literally and presses Enter. */
function type(name: string, text: string): void {
  // tmux takes an argument's trailing ';' as a command separator unless it is escaped.
  tmux("send-keys", "-t", name, "-l", text.endsWith(";") ? `${text.slice(0, -1)}\\;` : text);
  tmux("send-keys", "-t", name, "Enter");
}

/** Polls the pane until `until` holds for the text after the last `from` marker. */
async function waitFor(
  name: string,
  until: (s: string) => boolean,
  opts: { from?: string; timeoutMs?: number } = {},
): Promise<string> {
  // Generous: psql, tmux, the proxy and PostgreSQL share a loaded machine; a passing wait is short.
  const deadline = Date.now() + (opts.timeoutMs ?? 30_000);
  for (;;) {
    const all = screen(name);
    const at = opts.from === undefined ? 0 : all.lastIndexOf(opts.from);
    const s = at < 0 ? "" : all.slice(at);
    if (at >= 0 && until(s)) return s;
    if (Date.now() > deadline) throw new Error(`timed out waiting in tmux window ${name}; screen:\n${all}`);
    await new Promise((r) => setTimeout(r, 40));
  }
}

/** psql's prompt after the last output: ready for the next command. */
const prompt = `${DB}=#`;
const endsWithPrompt = (s: string): boolean => s.trimEnd().endsWith(prompt);

beforeAll(async () => {
  writeFileSync(join(dir, "tmux.conf"), "set -g remain-on-exit on\nset -g history-limit 10000\n");
  const root = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "postgres", database: "postgres" });
  await root.connect();
  await root.query(`DROP DATABASE IF EXISTS ${DB}`);
  await root.query(`CREATE DATABASE ${DB}`);
  await root.end();
  admin = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "postgres", database: DB });
  await admin.connect();
  await admin.query("CREATE TABLE items (id int PRIMARY KEY, name text)");
  [plain, copy] = await Promise.all([
    startTestProxy({ upstreamPort: pgPort, args: ["--upstream-tls", "disable"] }),
    startCopyProxy({ upstreamPort: pgPort, s3 }),
  ]);
  bucket = await check.bucket("psql-tmux");
  openPsql("plain", plain.port);
  openPsql("copy", copy.port);
  await Promise.all([
    waitFor("plain", (s) => s.includes(prompt)),
    waitFor("copy", (s) => s.includes(prompt)),
  ]);
});

afterAll(async () => {
  try {
    tmux("kill-server");
  } catch {
    // already gone
  }
  await admin?.end();
  await Promise.all([plain?.shutdown(0), copy?.shutdown(0)]);
  rmSync(dir, { recursive: true, force: true });
});

describe("psql in tmux through the proxy", () => {
  test("a query and its table output", async () => {
    const q = "select 'hello' || '-' || 'world' as greeting, 6 * 7 as answer;";
    type("plain", q);
    const out = await waitFor("plain", (s) => s.includes("(1 row)") && endsWithPrompt(s), { from: q });
    const lines = out.split("\n").map((l) => l.trimEnd());
    expect(lines.slice(1, 5)).toEqual([
      "  greeting   | answer",
      "-------------+--------",
      " hello-world |     42",
      "(1 row)",
    ]);
  });

  test("\\copy (select …) to stdout and \\copy t from stdin", async () => {
    const out1 = "\\copy (select g, 'row ' || g from generate_series(1, 3) g) to stdout with (format csv)";
    type("plain", out1);
    // To stdout psql prints no "COPY n" (it would mix with the data): the rows, then the prompt.
    const s1 = await waitFor("plain", (s) => s.includes("3,row 3") && endsWithPrompt(s), { from: out1 });
    expect(
      s1
        .split("\n")
        .slice(1, 5)
        .map((l) => l.trimEnd()),
    ).toEqual(["1,row 1", "2,row 2", "3,row 3", prompt]);

    const in1 = "\\copy items from stdin with (format csv)";
    type("plain", in1);
    await waitFor(
      "plain",
      (s) => s.includes("End with a backslash and a period") && s.trimEnd().endsWith(">>"),
      {
        from: in1,
      },
    );
    type("plain", "10,ten");
    type("plain", '11,"eleven, quoted"');
    type("plain", "\\.");
    const s2 = await waitFor("plain", (s) => s.includes("COPY 2") && endsWithPrompt(s), { from: in1 });
    expect(s2).not.toContain("ERROR");

    const q = "select id, name from items order by id;";
    type("plain", q);
    const s3out = await waitFor("plain", (s) => s.includes("(2 rows)") && endsWithPrompt(s), { from: q });
    expect(s3out).toMatch(/ 10 \| ten\s*\n\s*11 \| eleven, quoted/);
    const r = await admin.query("select id, name from items order by id");
    expect(r.rows).toEqual([
      { id: 10, name: "ten" },
      { id: 11, name: "eleven, quoted" },
    ]);
  });

  test("Ctrl-C cancels select pg_sleep(30) and psql stays usable", async () => {
    const q = "select pg_sleep(30) as cancelled_sleep;";
    type("plain", q);
    // Wait until the statement really runs upstream before pressing Ctrl-C.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await admin.query(
        "select count(*)::int as n from pg_stat_activity where state = 'active' and query like '%cancelled_sleep%' and pid <> pg_backend_pid()",
      );
      if (r.rows[0].n === 1) break;
      if (Date.now() > deadline) throw new Error(`pg_sleep never started:\n${screen("plain")}`);
      await new Promise((res) => setTimeout(res, 40));
    }
    tmux("send-keys", "-t", "plain", "C-c");
    const out = await waitFor(
      "plain",
      (s) => s.includes("ERROR:  canceling statement due to user request") && endsWithPrompt(s),
      { from: q },
    );
    // The ERROR itself says the cancel worked: the sleep would have ended without one after 30 s.
    expect(out).toContain("Cancel request sent");

    const q2 = "select 'still usable' as after_cancel;";
    type("plain", q2);
    const out2 = await waitFor("plain", (s) => s.includes("(1 row)") && endsWithPrompt(s), { from: q2 });
    expect(out2).toContain(" still usable");
  });

  test("COPY (select …) TO 's3://…' prints NOTICE progress lines with the phase, a final NOTICE with the manifest, then COPY 3000", async () => {
    const q = `COPY (select g, pg_sleep(0.001) from generate_series(1, 3000) g) TO 's3://${bucket}/psql-export' WITH (FORMAT = 'csv');`;
    type("copy", q);
    // The progress notice must appear while the export is still running, not only at the end.
    const during = await waitFor("copy", (s) => /NOTICE: {2}COPY TO progress: reading: [\d,]+ rows/.test(s), {
      from: q,
      timeoutMs: 30_000,
    });
    expect(during).not.toContain("COPY 3000");
    const out = await waitFor("copy", (s) => s.includes("COPY 3000") && endsWithPrompt(s), {
      from: q,
      timeoutMs: 60_000,
    });
    expect(out).not.toContain("ERROR");
    expect(out).toMatch(
      /NOTICE: {2}COPY TO progress: reading: [\d,]+ rows \([\d,]+ rows\/s\), [\d.]+ k?B, 1 file \(0 complete\)/,
    );
    // The last NOTICE, right before the command tag: where it all went.
    const final = new RegExp(
      `NOTICE: {2}exported 3,000 rows in 1 file \\(([\\d.]+) kB\\) to s3://${bucket}/psql-export/; manifest: (s3://${bucket}/psql-export/_meta/mz-[0-9a-f-]+-manifest\\.json)\\s+COPY 3000`,
    );
    const [, kb, manifestUrl] = final.exec(out) ?? [];
    expect(manifestUrl, out).toBeDefined();

    const keys = await check.keys(bucket, "psql-export/");
    const data = keys.filter((k) => /-batch-0000-0000\.csv$/.test(k));
    expect(data).toHaveLength(1);
    expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
    expect(keys).toContain(manifestUrl!.slice(`s3://${bucket}/`.length));
    const csv = (await check.get(bucket, data[0]!)).toString("utf8");
    expect(kb).toBe((csv.length / 1024).toFixed(1));
    const lines = csv.split("\n");
    expect(lines).toHaveLength(3001); // 3000 rows and the final newline
    // pg_sleep returns void, whose text output is the empty string: quoted, as PostgreSQL does.
    expect([lines[0], lines[2999], lines[3000]]).toEqual(['1,""', '3000,""', ""]);
  });
});
