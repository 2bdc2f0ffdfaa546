// A proxy's first Parquet export against its later ones, part by part, through the encoder thread
// an export uses (src/encoders/worker/encoder-thread.ts), without PostgreSQL or S3: where the
// first export's extra second goes, and what a warm-up at start-up takes away.
//
//   npx tsx bench/first-export.ts [--rows 1000000] [--procs 4] [--warm none,compile,thread]
//                                 [--warm-rows N]   (a mode may name its own: --warm thread@16384,thread)
//
// Each of `--procs` fresh processes per warm-up mode (modes alternate) loads the relay's modules
// as a proxy does, then optionally warms up (`compile`: parquet-wasm compiled, as the proxy's
// `exports.warmUp: "compile"` does once it listens; `thread`: also the spare encoder thread
// started with parquet-wasm instantiated, `exports.warmUp: "thread"`), waits for the process to
// be idle, and then runs two exports of `--rows` rows of bench/export.ts's table (the same binary
// DataRows PostgreSQL sends) through an EncoderThread, back to back, as the relay would feed them
// (credits, drained()). Printed per process and as medians: the warm-up's own wall time and CPU,
// and for each export the time to its thread's `ready`, its wall time and its CPU-s (the relay
// thread, every other thread: the encoder thread and V8's compiler and GC threads).
import { spawnSync } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { monitorEventLoopDelay } from "node:perf_hooks";
import { parseArgs } from "node:util";
import type { EncoderSpec } from "../src/encoders/create-encoder.js";
import type { FileSink } from "../src/encoders/types.js";
import type { WarmUp } from "../src/encoders/worker/encoder-warm-up.js";
import { cpuSeconds, procStatusKb } from "./lib/proc.js";
import { median } from "./lib/stats.js";
import { printHeaderAndExit } from "./lib/usage.js";

const { values: argv } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    procs: { type: "string", default: "4" },
    warm: { type: "string", default: "none,compile,thread" },
    "warm-rows": { type: "string" },
    child: { type: "string" },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (argv.help) printHeaderAndExit(import.meta.url);
const ROWS = Number(argv.rows);

interface Cpu {
  main: number;
  other: number;
  /** CPU-s by thread id (to tell the threads started in a phase from those that ran before). */
  tids: Map<string, number>;
}
function tidCpu(): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${process.pid}/task`)) {
    try {
      const f = readFileSync(`/proc/${process.pid}/task/${tid}/stat`, "utf8").split(") ")[1]!.split(" ");
      out.set(tid, (Number(f[11]) + Number(f[12])) / 100);
    } catch {
      // ended
    }
  }
  return out;
}
const cpuNow = (): Cpu => {
  const main = cpuSeconds(process.pid, false, true);
  return { main, other: cpuSeconds(process.pid, false) - main, tids: tidCpu() };
};
/** CPU-s between a and b of the threads that did not exist at a (an encoder thread started then). */
const newThreads = (a: Cpu, b: Cpu): number => {
  let s = 0;
  for (const [tid, c] of b.tids) if (!a.tids.has(tid)) s += c;
  return s;
};

interface Phase {
  ms: number;
  main: number;
  other: number;
  /** Of `other`: threads started during the phase (the encoder thread, if a new one). */
  started: number;
  readyMs?: number;
}
interface ChildResult {
  loadMs: number;
  warm: Phase;
  idleRssMb: number;
  /** The relay thread's longest event-loop delay during the warm-up. */
  loopMaxMs: number;
  exports: Phase[];
}

/** Waits until the process has used under 10 ms of CPU in 250 ms (V8's background compiles done). */
async function settle(): Promise<void> {
  for (let i = 0; i < 40; i++) {
    const a = cpuSeconds(process.pid, false);
    await new Promise((r) => setTimeout(r, 250));
    if (cpuSeconds(process.pid, false) - a < 0.01) return;
  }
}

async function child(mode: string): Promise<void> {
  const t0 = performance.now();
  // What the relay's process has loaded once it listens (the encoder thread's driver imports the
  // Parquet planner, hence Arrow).
  const et = await import("../src/encoders/worker/encoder-thread.js");
  const pool = await import("../src/encoders/worker/thread-pool.js");
  // Running from the sources, the encoder thread's entry is bundled once per process (a proxy
  // from dist/ has it compiled): done before anything is measured.
  (await import("../src/encoders/worker/worker-entry.js")).workerEntry();
  const { benchTableBatches, benchTableColumns } = await import("./lib/bench-table-rows.js");
  const loadMs = performance.now() - t0;
  const batches = benchTableBatches(Math.min(ROWS, 1_000_000), 256 << 10);
  const spec: EncoderSpec = {
    format: "parquet",
    options: { compression: "snappy", maxFileSize: 256 << 20, columns: benchTableColumns() },
  };
  const release = pool.keepSpareEncoderThread();
  await settle();
  const opts = { nice: 0 };
  let loopMaxMs = 0;
  const w0 = cpuNow();
  const tw = performance.now();
  // "thread@16384": the warm-up "thread" with that many synthetic rows (else --warm-rows or its own).
  const [warmUp, modeRows] = mode.split("@") as [string, string | undefined];
  const warmRows = modeRows ?? argv["warm-rows"];
  if (warmUp !== "none") {
    const { warmUpEncoders } = await import("../src/encoders/worker/encoder-warm-up.js");
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    const outcome = await warmUpEncoders(
      warmUp as WarmUp,
      opts,
      undefined,
      warmRows === undefined ? undefined : Number(warmRows),
    );
    delay.disable();
    loopMaxMs = delay.max / 1e6;
    if (outcome !== "done") throw new Error(`warm-up ${mode}: ${outcome}`);
  }
  const warmMs = performance.now() - tw;
  await settle();
  const w1 = cpuNow();
  const idleRssMb = procStatusKb(process.pid, "VmRSS") / 1024;
  const exports: Phase[] = [];
  for (let e = 0; e < 2; e++) {
    const c0 = cpuNow();
    const s0 = performance.now();
    const thread = new et.EncoderThread(spec, opts);
    let readyMs = Number.NaN;
    void thread.ready().then(() => {
      readyMs = performance.now() - s0;
    });
    const sink: FileSink = { openFile() {}, write() {}, closeFile() {}, copies: true };
    let failed: unknown = null;
    thread.attach(sink, new AbortController().signal, (err) => {
      failed = err;
    });
    let rows = 0;
    for (let k = 0; rows < ROWS; k++) {
      const b = batches[k % batches.length]!;
      rows += b.rows;
      if (!thread.writeRows(b.buf, 0, b.buf.length)) await thread.drained();
    }
    await thread.finish();
    if (failed !== null) throw failed;
    const ms = performance.now() - s0;
    const c1 = cpuNow();
    exports.push({
      ms,
      readyMs,
      main: c1.main - c0.main,
      other: c1.other - c0.other,
      started: newThreads(c0, c1),
    });
  }
  release();
  const r: ChildResult = {
    loadMs,
    warm: { ms: warmMs, main: w1.main - w0.main, other: w1.other - w0.other, started: newThreads(w0, w1) },
    idleRssMb,
    loopMaxMs,
    exports,
  };
  process.stdout.write(`${JSON.stringify(r)}\n`);
  process.exit(0);
}

function parent(): void {
  const modes = argv.warm.split(",");
  const procs = Number(argv.procs);
  const got = new Map<string, ChildResult[]>(modes.map((m) => [m, []]));
  const f = (x: number, d = 2) => x.toFixed(d);
  const line = (p: Phase) =>
    `${f(p.ms, 0)} ms (ready ${f(p.readyMs ?? Number.NaN, 0)}), CPU-s relay ${f(p.main)} other ${f(p.other)} (new threads ${f(p.started)})`;
  for (let i = 0; i < procs; i++) {
    for (const mode of i % 2 === 0 ? modes : [...modes].reverse()) {
      const out = spawnSync(
        process.execPath,
        [
          ...process.execArgv,
          process.argv[1]!,
          "--child",
          mode,
          "--rows",
          String(ROWS),
          ...(argv["warm-rows"] === undefined ? [] : ["--warm-rows", argv["warm-rows"]]),
        ],
        {
          encoding: "utf8",
          stdio: ["ignore", "pipe", "inherit"],
        },
      );
      const r = JSON.parse(out.stdout.trim().split("\n").pop()!) as ChildResult;
      got.get(mode)!.push(r);
      console.log(
        `  ${mode.padEnd(8)} proc ${i + 1}: warm-up ${f(r.warm.ms, 0)} ms CPU-s relay ${f(r.warm.main)} other ${f(r.warm.other)} (loop delay max ${f(r.loopMaxMs, 0)} ms), idle RSS ${f(r.idleRssMb, 0)} MB; ` +
          `1st ${line(r.exports[0]!)}; 2nd ${line(r.exports[1]!)}`,
      );
    }
  }
  console.log(`\nmedians, ${ROWS} rows (snappy), ${procs} processes per mode:`);
  console.log(
    "| warm-up | its wall ms | its CPU-s (relay + other) | idle RSS MB | 1st: ready ms | 1st: ms | 1st: CPU-s (relay, new threads, other) | 2nd: ms | 2nd: CPU-s (relay, other) |",
  );
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|");
  for (const [mode, rs] of got) {
    const m = (g: (r: ChildResult) => number) => median(rs.map(g));
    console.log(
      `| ${mode} | ${f(
        m((r) => r.warm.ms),
        0,
      )} | ${f(m((r) => r.warm.main + r.warm.other))} | ${f(
        m((r) => r.idleRssMb),
        0,
      )} | ` +
        `${f(
          m((r) => r.exports[0]!.readyMs!),
          0,
        )} | ${f(
          m((r) => r.exports[0]!.ms),
          0,
        )} | ` +
        `${f(m((r) => r.exports[0]!.main + r.exports[0]!.other))} (${f(m((r) => r.exports[0]!.main))}, ${f(m((r) => r.exports[0]!.started))}, ${f(m((r) => r.exports[0]!.other - r.exports[0]!.started))}) | ` +
        `${f(
          m((r) => r.exports[1]!.ms),
          0,
        )} | ${f(m((r) => r.exports[1]!.main + r.exports[1]!.other))} (${f(m((r) => r.exports[1]!.main))}, ${f(m((r) => r.exports[1]!.other))}) |`,
    );
  }
}

if (argv.child !== undefined) await child(argv.child);
else parent();
