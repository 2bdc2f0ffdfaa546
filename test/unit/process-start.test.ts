// waitForStart (test/support/process-start.ts): a start is judged by the process's own CPU time,
// not the wall clock, and a start that spins, hangs or exits still fails.
import { type ChildProcess, spawn } from "node:child_process";
import { afterEach, expect, test } from "vitest";
import { cpuSeconds, waitForStart } from "../support/process-start.js";

const procs: ChildProcess[] = [];
afterEach(() => {
  for (const p of procs.splice(0)) p.kill("SIGKILL");
});
const node = (code: string): ChildProcess => {
  const p = spawn(process.execPath, ["-e", code], { stdio: "ignore" });
  procs.push(p);
  return p;
};

test("cpuSeconds reads this process's CPU time, and grows with work", () => {
  const before = cpuSeconds(process.pid)!;
  const until = performance.now() + 100;
  while (performance.now() < until) {
    // spin
  }
  expect(cpuSeconds(process.pid)!).toBeGreaterThan(before);
  expect(cpuSeconds(0x7fffffff)).toBeUndefined();
});

test("a start that spins fails once it used its CPU budget", async () => {
  const p = node("for (;;) {}");
  await expect(waitForStart(p, () => false, { what: "spinner", cpuSeconds: 0.3 })).rejects.toThrow(
    /^spinner used \d+\.\d CPU-s without being up/,
  );
});

test("a start that waits for nothing fails once it used no CPU for stuckMs", async () => {
  const p = node("setInterval(() => {}, 1e6)");
  await expect(
    waitForStart(p, () => false, { what: "sleeper", cpuSeconds: 30, stuckMs: 1500 }),
  ).rejects.toThrow(/^sleeper used no CPU for 1.5 s without being up/);
});

test("a process that exits fails with its output; one that is up resolves", async () => {
  const gone = node("process.exit(3)");
  await expect(
    waitForStart(gone, () => false, { what: "quitter", cpuSeconds: 30, output: () => "its last words" }),
  ).rejects.toThrow("quitter exited (3) before it was up: its last words");
  const up = node("setInterval(() => {}, 1e6)");
  let polls = 0;
  await waitForStart(up, () => ++polls === 3, { what: "up", cpuSeconds: 30 });
  expect(polls).toBe(3);
});
