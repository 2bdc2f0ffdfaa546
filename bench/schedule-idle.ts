// What an idle scheduler costs and how late a run starts after its scheduled instant.
//   npx tsx bench/schedule-idle.ts [seconds=10] [jobs=20]
// Baseline beside it: the same process idling for the same time without a scheduler.
// Requests: the scheduler makes none between runs (no polling); the runner and publisher here are
// counters, so any request an idle scheduler made would show up as a call.
import { createLogger } from "../src/log.js";
import { systemClock } from "../src/schedule/clock.js";
import type { JobSpec } from "../src/schedule/jobs.js";
import { CappedRunSlots } from "../src/schedule/run-slots.js";
import { Scheduler } from "../src/schedule/scheduler.js";

const seconds = Number(process.argv[2] ?? 10);
const jobs = Number(process.argv[3] ?? 20);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).ref());

function spec(name: string, everyMs: number): JobSpec {
  return {
    name,
    source: "v",
    target: "s3://b/t",
    options: "FORMAT 'csv'",
    awsConnection: undefined,
    user: "u",
    operators: [],
    password: undefined,
    database: "d",
    schedule: { kind: "every", ms: everyMs },
    retries: 0,
    backoffMs: 1000,
    suspendAfter: 5,
    keep: undefined,
    maxAgeMs: undefined,
  };
}

async function idleCpu(withScheduler: boolean): Promise<{ cpuMs: number; calls: number }> {
  let calls = 0;
  const s = new Scheduler(
    Array.from({ length: jobs }, (_, i) => spec(`j${i}`, 3_600_000)),
    {
      clock: systemClock,
      runner: { run: async () => ({ rows: calls++ }) },
      publisher: { publish: async () => void calls++, prune: async () => [] },
      log: createLogger("silent"),
    },
  );
  if (withScheduler) s.start();
  const before = process.cpuUsage();
  await sleep(seconds * 1000);
  const d = process.cpuUsage(before);
  await s.stop();
  return { cpuMs: (d.user + d.system) / 1000, calls };
}

async function lateness(): Promise<number[]> {
  const late: number[] = [];
  const s = new Scheduler([spec("tick", 1000)], {
    clock: systemClock,
    runner: {
      run: async () => {
        late.push(Date.now() - Math.floor(Date.now() / 1000) * 1000);
        return { rows: 0 };
      },
    },
    publisher: { publish: async () => {}, prune: async () => [] },
    // As the proxy wires it (src/schedule/start.ts): a run first takes a slot under the caps.
    slots: new CappedRunSlots(4, 2),
    log: createLogger("silent"),
  });
  s.start();
  await sleep(Math.min(seconds, 10) * 1000 + 500);
  await s.stop();
  return late;
}

const base = await idleCpu(false);
const idle = await idleCpu(true);
const late = (await lateness()).sort((a, b) => a - b);
console.log(
  `idle ${seconds}s, ${jobs} hourly jobs: CPU ${idle.cpuMs.toFixed(1)} ms (baseline without scheduler ${base.cpuMs.toFixed(1)} ms, ratio ${(idle.cpuMs / Math.max(base.cpuMs, 0.1)).toFixed(2)}); runner/publisher calls while idle: ${idle.calls}`,
);
console.log(
  `scheduled instant → runner called: median ${late[Math.floor(late.length / 2)]} ms, max ${late.at(-1)} ms over ${late.length} runs`,
);
