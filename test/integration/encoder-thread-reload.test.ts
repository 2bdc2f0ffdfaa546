// The kept encoder thread and SIGHUP: a thread cannot raise its priority again (nor leave
// SCHED_IDLE) without privileges, so one kept from before a reload that changed exports.workerNice
// or exports.workerPolicy must not serve the next export: that export gets a new thread at the new
// setting, and the old one ends. The real CLI in its own process; each thread's niceness and
// scheduling policy read from /proc/<pid>/task/<tid>/stat (proc(5) fields 19 and 41).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, beforeAll, expect, test } from "vitest";
import { waitUntil } from "../support/export-checks.js";
import { reloadExports, spawnCopyProxy } from "../support/proxy-process.js";
import { type ExportDatabase, freshExportDatabase } from "../support/proxy-stack.js";

let db: ExportDatabase;
let root: string;

beforeAll(async () => {
  db = await freshExportDatabase({ database: "encoder_thread_reload", bucket: "thread-reload" });
  root = mkdtempSync(join(tmpdir(), "c2s-reload-"));
}, 60_000);

afterAll(async () => {
  await db?.close();
  rmSync(root, { recursive: true, force: true });
});

/** sched(7): SCHED_OTHER 0, SCHED_IDLE 5. */
const SCHED_IDLE = 5;

/** Niceness and policy of each thread of process `pid` that is not at the relay's (0, SCHED_OTHER). */
function loweredThreads(pid: number): Array<{ nice: number; policy: number }> {
  return readdirSync(`/proc/${pid}/task`).flatMap((tid) => {
    let stat: string;
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, "utf8");
    } catch {
      return []; // ended meanwhile
    }
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const t = { nice: Number(f[19 - 3]), policy: Number(f[41 - 3]) };
    return t.nice === 0 && t.policy === 0 ? [] : [t];
  });
}

test("after a SIGHUP that changes workerNice or workerPolicy, the next export runs on a new thread with the new setting", async () => {
  const p = await spawnCopyProxy({
    upstreamPort: db.pgPort,
    s3: db.s3,
    args: ["--file-root", root],
    config: { exports: { workerNice: 10 } },
  });
  const c = new pg.Client({ connectionString: p.url("postgres", db.database) });
  c.on("notice", () => {});
  let n = 0;
  const exportOnce = async (): Promise<void> => {
    const r = await c.query(
      `COPY (SELECT g FROM generate_series(1, 1000) g) TO 'file://${join(root, `e${++n}`)}' WITH (FORMAT = 'csv')`,
    );
    expect(r.rowCount).toBe(1000);
  };
  const pid = p.proc.pid!;
  const kept = (what: string, want: { nice: number; policy: number }) =>
    waitUntil(what, () => {
      const t = loweredThreads(pid);
      return t.length === 1 && t[0]!.nice === want.nice && t[0]!.policy === want.policy ? true : null;
    });
  try {
    await c.connect();
    await exportOnce();
    await kept("the kept thread at niceness 10", { nice: 10, policy: 0 });
    await exportOnce();
    await kept("the same kept thread at niceness 10", { nice: 10, policy: 0 });

    await reloadExports(p, { workerNice: 15 });
    await exportOnce();
    // The thread at 10 ended; the export ran on one at 15, now the kept one.
    await kept("one kept thread, at niceness 15", { nice: 15, policy: 0 });

    await reloadExports(p, { workerPolicy: "idle" });
    await exportOnce();
    await kept("one kept thread, in SCHED_IDLE", { nice: 15, policy: SCHED_IDLE });
  } finally {
    await c.end().catch(() => {});
    p.proc.kill("SIGTERM");
    await p.exited;
  }
});
