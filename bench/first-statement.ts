// The relay's cost of a proxy's first COPY ... TO statements, with and without the parser's warm-up
// at start-up (src/copy/sql-tokens.ts, initParser): V8 compiles libpg-query's WASM functions on
// their first call, on the calling thread, so without it the first statements compile PostgreSQL's
// scanner and grammar on the relay's thread, while it serves every session.
//
//   npx tsx bench/first-statement.ts [--procs 6]
//
// Each of `--procs` fresh processes per mode (`cold`: the module loaded as before the warm-up;
// `warm`: initParser as the proxy runs it; alternating) loads the statement modules, runs
// initParser, waits until the process is idle, then recognises three statements in a row as the
// relay would (parseCopyTo): a COPY of a query, a COPY of a table, a COPY of a long query. Printed:
// per process and as medians, the relay thread's CPU ms (proc(5) schedstat: nanoseconds on a
// CPU, so a busy machine inflates it little) and wall ms of initParser and of each statement; the
// other threads' CPU ms from initParser, and from the statements, until the process is idle (V8's
// pool thread tiers the grammar up with TurboFan, at the relay's niceness); the RSS once idle after
// initParser and after the statements.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { procStatusKb } from "./lib/proc.js";
import { median } from "./lib/stats.js";
import { printHeaderAndExit } from "./lib/usage.js";

const { values: argv } = parseArgs({
  options: {
    procs: { type: "string", default: "6" },
    child: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (argv.help) printHeaderAndExit(import.meta.url);

const STATEMENTS: [string, string][] = [
  [
    "query",
    `COPY (SELECT id, name, 'it''s', $$x$$ FROM public.accounts WHERE created_at > now() - interval '1 day') TO 's3://bucket/exports/' || to_char(now(), 'YYYYMMDD') WITH (FORMAT = 'parquet', COMPRESSION = 'snappy')`,
  ],
  ["table", `COPY bench_t TO 'file:///exports/t/' WITH (FORMAT = 'csv', MAX FILE SIZE = '100MB')`],
  [
    "long query",
    `COPY (WITH x AS (SELECT a, row_number() OVER (PARTITION BY b ORDER BY c) AS rn FROM t1 JOIN t2 USING (k) LEFT JOIN LATERAL (SELECT max(v) FROM t3 WHERE t3.k = t1.k) m ON true) SELECT CASE WHEN rn > 1 THEN ARRAY[1,2] ELSE NULL END, jsonb_build_object('k', a)::text, coalesce(a, 0)::numeric(10,2) FROM x WHERE a IN (SELECT 1 UNION ALL SELECT 2) GROUP BY 1, 2, 3 HAVING count(*) > 1) TO 's3://b/q' (FORMAT csv, HEADER true)`,
  ],
];

interface Timed {
  cpuMs: number;
  wallMs: number;
}
interface ChildResult {
  init: Timed;
  statements: Timed[];
  /** Other threads' CPU ms from initParser's start, and from the first statement's, until idle. */
  initOtherMs: number;
  statementsOtherMs: number;
  idleRssMb: number;
  afterRssMb: number;
}

/** This thread's time on a CPU, ms (proc(5): /proc/thread-self/schedstat, nanoseconds). */
const threadCpuMs = (): number =>
  Number(readFileSync("/proc/thread-self/schedstat", "utf8").split(" ")[0]) / 1e6;

function timed(f: () => void): Timed {
  const c = threadCpuMs();
  const w = performance.now();
  f();
  return { wallMs: performance.now() - w, cpuMs: threadCpuMs() - c };
}

/** CPU ms of every thread of this process but this one (schedstat; threads that ended are lost). */
function otherThreadsCpuMs(): number {
  let ms = 0;
  for (const tid of readdirSync("/proc/self/task")) {
    if (Number(tid) === process.pid) continue;
    try {
      ms += Number(readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ")[0]) / 1e6;
    } catch {
      // ended
    }
  }
  return ms;
}

/** Waits until the other threads have used under 5 ms of CPU in 250 ms (V8's compiles done). */
async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 250));
  for (let i = 0; i < 40; i++) {
    const a = otherThreadsCpuMs();
    await new Promise((r) => setTimeout(r, 250));
    if (otherThreadsCpuMs() - a < 5) return;
  }
}

async function timedAsync(f: () => Promise<void>): Promise<Timed> {
  const c = threadCpuMs();
  const w = performance.now();
  await f();
  return { wallMs: performance.now() - w, cpuMs: threadCpuMs() - c };
}

async function child(mode: string): Promise<void> {
  const { initParser } = await import("../src/copy/sql-tokens.js");
  const { parseCopyTo } = await import("../src/copy/statement.js");
  await settle();
  const o0 = otherThreadsCpuMs();
  const init = await timedAsync(() => initParser({ warmUp: mode === "warm" }));
  // Idle, as a proxy is when its first COPY arrives.
  await settle();
  const o1 = otherThreadsCpuMs();
  const idleRssMb = procStatusKb(process.pid, "VmRSS") / 1024;
  const statements = STATEMENTS.map(([, sql]) =>
    timed(() => {
      if (parseCopyTo(sql) === null) throw new Error(`not recognised: ${sql}`);
    }),
  );
  await settle();
  const r: ChildResult = {
    init,
    statements,
    initOtherMs: o1 - o0,
    statementsOtherMs: otherThreadsCpuMs() - o1,
    idleRssMb,
    afterRssMb: procStatusKb(process.pid, "VmRSS") / 1024,
  };
  process.stdout.write(`${JSON.stringify(r)}\n`);
}

function parent(): void {
  const modes = ["cold", "warm"];
  const procs = Number(argv.procs);
  const got = new Map<string, ChildResult[]>(modes.map((m) => [m, []]));
  const f = (x: number, d = 1) => x.toFixed(d);
  const t = (x: Timed) => `${f(x.cpuMs)}/${f(x.wallMs)}`;
  console.log("CPU ms / wall ms of the relay thread");
  for (let i = 0; i < procs; i++) {
    for (const mode of i % 2 === 0 ? modes : [...modes].reverse()) {
      // With the node flags and malloc setting of the bin's launcher (src/cli.ts), as a proxy runs.
      const out = spawnSync(
        process.execPath,
        [...process.execArgv, "--single-threaded-gc", "--v8-pool-size=1", process.argv[1]!, "--child", mode],
        {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "inherit"],
          env: { ...process.env, MALLOC_ARENA_MAX: process.env.MALLOC_ARENA_MAX ?? "2" },
        },
      );
      const r = JSON.parse(out.stdout.trim().split("\n").pop()!) as ChildResult;
      got.get(mode)!.push(r);
      console.log(
        `  ${mode} proc ${i + 1}: initParser ${t(r.init)} (other threads ${f(r.initOtherMs, 0)}); ${STATEMENTS.map(([name], k) => `${name} ${t(r.statements[k]!)}`).join(", ")} (other threads ${f(r.statementsOtherMs, 0)}); RSS MB idle ${f(r.idleRssMb, 0)}, after ${f(r.afterRssMb, 0)}`,
      );
    }
  }
  console.log(`\nmedians of ${procs} processes per mode, CPU ms / wall ms:`);
  console.log(
    `| parser | initParser | its other threads' CPU ms | ${STATEMENTS.map(([name]) => `1st ${name}`).join(" | ")} | their other threads' CPU ms | RSS MB idle | RSS MB after |`,
  );
  console.log(`|---|---:|---:|${STATEMENTS.map(() => "---:|").join("")}---:|---:|---:|`);
  for (const [mode, rs] of got) {
    const m = (g: (r: ChildResult) => Timed) =>
      `${f(median(rs.map((r) => g(r).cpuMs)))} / ${f(median(rs.map((r) => g(r).wallMs)))}`;
    const n = (g: (r: ChildResult) => number) => f(median(rs.map(g)), 0);
    console.log(
      `| ${mode} | ${m((r) => r.init)} | ${n((r) => r.initOtherMs)} | ${STATEMENTS.map((_, k) => m((r) => r.statements[k]!)).join(" | ")} | ${n((r) => r.statementsOtherMs)} | ${n((r) => r.idleRssMb)} | ${n((r) => r.afterRssMb)} |`,
    );
  }
}

if (argv.child !== undefined) await child(argv.child);
else parent();
