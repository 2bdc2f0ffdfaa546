// Where a process's CPU time went, from a V8 `.cpuprofile` (node --cpu-prof): self time per
// function (file:line name) and per file, and inclusive time of the heaviest functions.
//
//   npx tsx bench/cpuprofile-summary.ts FILE.cpuprofile [--top 25]
import { readFileSync } from "node:fs";

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

function place(cf: CallFrame, root: string): string {
  let url = cf.url.replace(/^file:\/\//, "");
  if (root && url.startsWith(root)) url = url.slice(root.length);
  url = url.replace(/^.*node_modules\//, "~/");
  const fn = cf.functionName || "(anonymous)";
  if (!url) return fn;
  return `${url}:${cf.lineNumber + 1} ${fn}`;
}

function fileOf(cf: CallFrame, root: string): string {
  let url = cf.url.replace(/^file:\/\//, "");
  if (root && url.startsWith(root)) url = url.slice(root.length);
  url = url.replace(/^.*node_modules\/((?:@[^/]+\/)?[^/]+)\/.*$/, "~/$1");
  return url || cf.functionName || "(native)";
}

export function summarizeCpuProfile(file: string, opts: { top?: number; root?: string } = {}): string {
  const top = opts.top ?? 25;
  const root = opts.root ?? "";
  const prof = JSON.parse(readFileSync(file, "utf8")) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of prof.nodes) byId.set(n.id, n);
  for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  // Time of each sample = the delta to the next one (V8's convention).
  const selfUs = new Map<number, number>();
  let total = 0;
  for (let i = 0; i < prof.samples.length; i++) {
    const dt = prof.timeDeltas[i + 1] ?? 0;
    const id = prof.samples[i]!;
    selfUs.set(id, (selfUs.get(id) ?? 0) + dt);
    total += dt;
  }
  const selfFn = new Map<string, number>();
  const selfFile = new Map<string, number>();
  const inclFn = new Map<string, number>();
  let idle = 0;
  for (const [id, us] of selfUs) {
    const cf = byId.get(id)!.callFrame;
    if (cf.functionName === "(idle)" || cf.functionName === "(program)") {
      if (cf.functionName === "(idle)") idle += us;
    }
    const key = place(cf, root);
    selfFn.set(key, (selfFn.get(key) ?? 0) + us);
    const fk = fileOf(cf, root);
    selfFile.set(fk, (selfFile.get(fk) ?? 0) + us);
    // Inclusive: every distinct function on the stack gets the sample once.
    const seen = new Set<string>();
    for (let n: number | undefined = id; n !== undefined; n = parent.get(n)) {
      const k = place(byId.get(n)!.callFrame, root);
      if (seen.has(k)) continue;
      seen.add(k);
      inclFn.set(k, (inclFn.get(k) ?? 0) + us);
    }
  }
  const busy = total - idle;
  const pct = (us: number): string => `${((100 * us) / busy).toFixed(1).padStart(5)}%`;
  const secs = (us: number): string => `${(us / 1e6).toFixed(2).padStart(6)} s`;
  const topOf = (m: Map<string, number>, k: number): Array<[string, number]> =>
    [...m].sort((a, b) => b[1] - a[1]).slice(0, k);
  const out: string[] = [];
  out.push(
    `    profile ${secs(total)} wall, ${secs(idle)} idle, ${secs(busy)} busy on the main thread (percentages of busy)`,
  );
  out.push("    self time by file:");
  for (const [k, us] of topOf(selfFile, 12)) if (k !== "(idle)") out.push(`    ${pct(us)} ${secs(us)}  ${k}`);
  out.push("    self time by function:");
  for (const [k, us] of topOf(selfFn, top + 1))
    if (k !== "(idle)") out.push(`    ${pct(us)} ${secs(us)}  ${k}`);
  out.push("    inclusive time (functions of this project and its libraries):");
  const incl = topOf(new Map([...inclFn].filter(([k]) => !k.startsWith("(") && k.includes(":"))), top);
  for (const [k, us] of incl) out.push(`    ${pct(us)} ${secs(us)}  ${k}`);
  return out.join("\n");
}

if (process.argv[1] && import.meta.url.endsWith(process.argv[1].replace(/^.*\//, ""))) {
  const file = process.argv[2];
  if (!file) {
    process.stderr.write("usage: npx tsx bench/cpuprofile-summary.ts FILE.cpuprofile [--top N]\n");
    process.exit(2);
  }
  const i = process.argv.indexOf("--top");
  const top = i > 0 ? Number(process.argv[i + 1]) : 25;
  process.stdout.write(
    `${summarizeCpuProfile(file, { top, root: new URL("..", import.meta.url).pathname })}\n`,
  );
}
