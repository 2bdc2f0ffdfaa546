// CPU at the relay's priority when four Parquet exports start at once, without PostgreSQL or a
// network: the encoder threads' side of a 4-export window's first seconds (issue 13, the window
// whose p99 is made there; docs/isolation.md, "Four exports: the start makes the p99").
//
//   npx tsx bench/start-cpu.ts [--rounds 6] [--rows 100000] [--variants '[[],["lower-others"],["--single-threaded"]]'] [--after-burst]
//
// Each variant is a child process (`node <its flags> --import tsx bench/start-cpu.ts --child`;
// `lower-others` in a variant: the child lowers its other threads first, V8's platform threads
// among them)
// that warms up as the proxy does (parquet-wasm compiled, the spare thread started), then per
// round starts four synthetic Parquet exports at once (the spare thread and three new ones, the
// encoding budget at one slot, as `maxEncodingThreads: auto` on two cores) and reads every
// thread's CPU from /proc/self/task/*/schedstat: the main thread (the relay), the other threads
// at niceness 0 (V8's platform threads, libuv's pool), the lowered ones (the encoders), over the
// first 1.5 s and until all four have finished. CPU counters, not wall time: a figure that a busy
// machine inflates little, unlike a window's p99. Variants alternate round by round.
// START_CPU_DEBUG=1: each child also prints its threads' CPU and a per-0.5 s timeline on stderr.
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync, readlinkSync } from "node:fs";
import { getPriority, setPriority } from "node:os";
import { parseArgs } from "node:util";
import { median } from "./lib/stats.js";

const { values: argv } = parseArgs({
  options: {
    rounds: { type: "string", default: "6" },
    rows: { type: "string", default: "100000" },
    variants: { type: "string", default: '[[],["lower-others"],["--single-threaded"]]' },
    child: { type: "boolean", default: false },
    "lower-others": { type: "boolean", default: false },
    "after-burst": { type: "boolean", default: false },
  },
});

const SPLIT_MS = 1500;

interface Cpu {
  main: number;
  nice0: number;
  lowered: number;
}

/** CPU ms per thread class so far; threads gone since are kept at their last reading. */
const seen = new Map<string, { ms: number; cls: keyof Cpu }>();
function sample(): Cpu {
  for (const tid of readdirSync("/proc/self/task")) {
    try {
      const ns = Number(readFileSync(`/proc/self/task/${tid}/schedstat`, "utf8").split(" ")[0]);
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      const nice = Number(f[16]);
      const policy = Number(f[38]);
      const cls: keyof Cpu =
        tid === String(process.pid) ? "main" : nice > 0 || policy !== 0 ? "lowered" : "nice0";
      seen.set(tid, { ms: ns / 1e6, cls });
    } catch {
      // ended
    }
  }
  const out: Cpu = { main: 0, nice0: 0, lowered: 0 };
  for (const { ms, cls } of seen.values()) out[cls] += ms;
  return out;
}
const minus = (a: Cpu, b: Cpu): Cpu => ({
  main: a.main - b.main,
  nice0: a.nice0 - b.nice0,
  lowered: a.lowered - b.lowered,
});

async function child(): Promise<void> {
  const { EncoderThread } = await import("../src/encoders/worker/encoder-thread.js");
  const { syntheticRows, warmUpEncoders, warmUpSpec } = await import(
    "../src/encoders/worker/encoder-warm-up.js"
  );
  const { keepSpareEncoderThread } = await import("../src/encoders/worker/thread-pool.js");
  const opts = { nice: 10, idle: false };
  // As the bench's `reniceHelpers` does from outside: V8's platform threads (and whatever else
  // Node started) at the encoders' niceness (docs/isolation.md, "V8's platform threads").
  if (argv["lower-others"]) lowerOtherThreads(opts.nice);
  keepSpareEncoderThread();
  await warmUpEncoders("thread", opts);
  const rows = syntheticRows(Number(argv.rows));
  const discard = { openFile() {}, write() {}, closeFile() {}, copies: true };
  const ctor: number[] = [];
  const one = async (): Promise<void> => {
    const c0 = performance.now();
    const t = new EncoderThread(warmUpSpec, { ...opts, maxEncoding: 1 });
    ctor.push(performance.now() - c0);
    t.attach(discard, new AbortController().signal, () => {});
    const step = 256 << 10;
    for (let at = 0; at < rows.length; ) {
      let end = Math.min(rows.length, at + step);
      // whole rows only: the synthetic rows are all the same length
      end -= (end - at) % syntheticRowBytes(rows);
      if (!t.writeRows(rows, at, end)) await t.drained();
      at = end;
    }
    await t.finish();
  };
  // --after-burst: the four exports measured are the process's second burst (the threads the
  // first left idle, if any, serve it).
  if (argv["after-burst"]) await Promise.all([one(), one(), one(), one()]);
  await new Promise((r) => setTimeout(r, 500));
  process.stderr.write(`rss ${(process.memoryUsage().rss / 2 ** 20).toFixed(0)} MB\n`);
  const c0 = sample();
  const before = new Map([...seen].map(([t, v]) => [t, v.ms]));
  let c15: Cpu | undefined;
  const marks: Cpu[] = [];
  let ticks = 0;
  const timer = setInterval(() => {
    const c = sample();
    if (++ticks % 25 === 0) marks.push(c);
  }, 20);
  const split = setTimeout(() => {
    c15 = sample();
  }, SPLIT_MS);
  const blocks = loopBlocks();
  // The start in a CPU profile's clock (µs, monotonic: node --cpu-prof's startTime).
  if (process.env.START_CPU_DEBUG)
    process.stderr.write(`t0 monotonic us ${process.hrtime.bigint() / 1000n}\n`);
  const t0 = performance.now();
  await Promise.all([one(), one(), one(), one()]);
  const ms = performance.now() - t0;
  const rssMB = process.memoryUsage().rss / 2 ** 20;
  clearInterval(timer);
  clearTimeout(split);
  const c1 = sample();
  if (process.env.START_CPU_DEBUG)
    process.stderr.write(
      `per 0.5 s (main/nice0/lowered): ${[c0, ...marks]
        .slice(1)
        .map((c, i) => minus(c, [c0, ...marks][i]!))
        .map((d) => `${d.main.toFixed(0)}/${d.nice0.toFixed(0)}/${d.lowered.toFixed(0)}`)
        .join(" ")}\n`,
    );
  if (process.env.START_CPU_DEBUG)
    for (const [tid, v] of seen)
      process.stderr.write(
        `${tid} ${readComm(tid)} ${v.cls} ${(v.ms - (before.get(tid) ?? 0)).toFixed(0)}\n`,
      );
  if (process.env.START_CPU_DEBUG)
    process.stderr.write(
      `EncoderThread constructors ms: ${ctor.map((x) => x.toFixed(1)).join(" ")}\nloop blocks > 4 ms (at ms: ms run/wait): ${blocks(t0)}\n`,
    );
  const first = minus(c15 ?? c1, c0);
  const all = minus(c1, c0);
  process.stdout.write(`${JSON.stringify({ first, all, ms, rssMB })}\n`);
  process.exit(0);
}

/**
 * The main thread's blocks: a 1 ms timer late by more than 4 ms, with when (ms since the start)
 * and how much of it the thread ran / waited for a CPU (its schedstat).
 */
function loopBlocks(): (t0: number) => string {
  const out: Array<[number, number, number, number]> = [];
  const sched = (): number[] =>
    readFileSync("/proc/thread-self/schedstat", "utf8")
      .split(" ")
      .map((x) => Number(x) / 1e6);
  let last = performance.now();
  let s0 = sched();
  const t = setInterval(() => {
    const now = performance.now();
    const s = sched();
    if (now - last > 5) out.push([last, now - last - 1, s[0]! - s0[0]!, s[1]! - s0[1]!]);
    last = now;
    s0 = s;
  }, 1);
  return (t0) => {
    clearInterval(t);
    return out
      .filter(([at]) => at >= t0 - 2)
      .map(
        ([at, ms, run, wait]) =>
          `${(at - t0).toFixed(0)}: ${ms.toFixed(1)} ${run.toFixed(1)}/${wait.toFixed(1)}`,
      )
      .join(", ");
  };
}

/** Lowers every thread of this process but the calling one (never raises one). */
function lowerOtherThreads(nice: number): void {
  const self = readlinkSync("/proc/thread-self").split("/").pop();
  for (const tid of readdirSync("/proc/self/task"))
    if (tid !== self && getPriority(Number(tid)) < nice) setPriority(Number(tid), nice);
}

function readComm(tid: string): string {
  try {
    return readFileSync(`/proc/self/task/${tid}/comm`, "utf8").trim();
  } catch {
    return "?";
  }
}

function syntheticRowBytes(rows: Buffer): number {
  // DataRow length + its type byte
  return rows.readInt32BE(1) + 1;
}

async function parent(): Promise<void> {
  const variants = JSON.parse(argv.variants) as string[][];
  const res = variants.map(() => [] as Array<{ first: Cpu; all: Cpu; ms: number; rssMB: number }>);
  for (let r = 0; r < Number(argv.rounds); r++)
    for (const [i, flags] of variants.entries()) {
      // "lower-others": the child lowers its other threads first (V8's platform threads).
      const lower = flags.includes("lower-others") ? ["--lower-others"] : [];
      const p = spawnSync(
        process.execPath,
        [
          ...flags.filter((f) => f !== "lower-others"),
          "--import",
          "tsx",
          new URL(import.meta.url).pathname,
          "--child",
          "--rows",
          argv.rows,
          ...lower,
          ...(argv["after-burst"] ? ["--after-burst"] : []),
        ],
        { encoding: "utf8" },
      );
      const line = p.stdout.trim().split("\n").pop() ?? "";
      if (p.status !== 0 || !line.startsWith("{")) throw new Error(`child ${flags}: ${p.stderr}`);
      res[i]!.push(JSON.parse(line));
      process.stderr.write(`round ${r + 1} ${JSON.stringify(flags)}: ${line}\n`);
    }
  const f = (xs: number[]): string =>
    `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;
  process.stdout.write(
    `\nfour Parquet exports of ${argv.rows} synthetic rows at once${argv["after-burst"] ? " (the process's second burst)" : ""}, ${argv.rounds} rounds, CPU ms, median (lowest–highest)\n` +
      "| node flags | first 1.5 s: main / other nice-0 threads / lowered | until all finished: main / other nice-0 / lowered | wall ms | RSS after, MB |\n|---|---|---|---:|---:|\n",
  );
  for (const [i, flags] of variants.entries()) {
    const rs = res[i]!;
    const g = (k: "first" | "all", c: keyof Cpu): string => f(rs.map((x) => x[k][c]));
    process.stdout.write(
      `| ${flags.join(" ") || "(none)"} | ${g("first", "main")} / **${g("first", "nice0")}** / ${g("first", "lowered")} | ${g("all", "main")} / **${g("all", "nice0")}** / ${g("all", "lowered")} | ${f(rs.map((x) => x.ms))} | ${f(rs.map((x) => x.rssMB))} |\n`,
    );
  }
}

await (argv.child ? child() : parent());
