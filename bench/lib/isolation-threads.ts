// bench/isolation.ts: the proxy's threads from outside while a window runs: their CPU and waits
// (/proc schedstat, sampled), and the experiments its --variants ask for (renicing the helper
// threads, a short scheduler slice for the main thread).
import { execFileSync } from "node:child_process";
import { setPriority } from "node:os";
import { type ThreadSched, threadSched } from "./proc.js";
import { benchLog as log } from "./usage.js";

/** Samples the proxy's threads while a window runs (encoder threads exit with their export, so
 * their last sample stands for them). */
export class SchedSampler {
  private first = new Map<number, ThreadSched>();
  private last = new Map<number, ThreadSched>();
  private timer: NodeJS.Timeout;
  private readonly t0 = performance.now();
  /** Per second of the window: CPU ms of the main thread, of the other threads at the relay's
   * priority (V8's and libuv's pools, a new encoder thread before it lowers itself), of the
   * lowered threads. */
  readonly perSecond: Array<[number, number, number]> = [];
  constructor(
    private pid: number,
    private renice?: number,
  ) {
    this.sample();
    this.timer = setInterval(() => this.sample(), 200);
  }
  private sample(): void {
    const sec = Math.floor((performance.now() - this.t0) / 1000);
    while (this.perSecond.length <= sec) this.perSecond.push([0, 0, 0]);
    const bucket = this.perSecond[sec]!;
    for (const [tid, s] of threadSched(this.pid, true)) {
      const prev = this.last.get(tid);
      if (prev !== undefined) {
        const ms = (s.cpuNs - prev.cpuNs) / 1e6;
        bucket[tid === this.pid ? 0 : s.nice > 0 || s.policy !== 0 ? 2 : 1] += ms;
      }
      if (!this.first.has(tid)) this.first.set(tid, s);
      this.last.set(tid, s);
      if (this.renice !== undefined && tid !== this.pid && s.nice === 0 && s.policy === 0) {
        try {
          setPriority(tid, this.renice);
        } catch {
          // ended meanwhile
        }
      }
    }
  }
  /** The threads seen with a niceness or scheduling class of their own (the exports' encoders). */
  loweredTids(): Set<number> {
    return new Set([...this.last].filter(([, s]) => s.nice > 0 || s.policy !== 0).map(([tid]) => tid));
  }
  /** The first seconds as "main/others at nice 0/lowered" CPU ms per second. */
  timeline(seconds = 6): string {
    return this.perSecond
      .slice(0, seconds)
      .map((b) => b.map((x) => Math.round(x)).join("/"))
      .join(" ");
  }
  /** Main thread's wait, ns; CPU ns of the lowered threads. */
  stop(): { mainWaitNs: number; lowCpuNs: number; mainSlices: number } {
    clearInterval(this.timer);
    this.sample();
    let lowCpuNs = 0;
    let mainWaitNs = 0;
    let mainSlices = 0;
    for (const [tid, s] of this.last) {
      const f = this.first.get(tid)!;
      if (tid === this.pid) {
        mainWaitNs = s.waitNs - f.waitNs;
        mainSlices = s.slices - f.slices;
      } else if (s.nice > 0 || s.policy !== 0) lowCpuNs += s.cpuNs - f.cpuNs;
    }
    return { mainWaitNs, lowCpuNs, mainSlices };
  }
}

/**
 * An experiment from outside ("relaySliceUs" in --variants): the proxy's main thread asks the
 * scheduler for a slice of `us` µs (sched_setattr(2) with SCHED_OTHER and sched_runtime, Linux
 * 6.12+ EEVDF; unprivileged), through perl's syscall() as Node has no call for it.
 */
export function setSlice(tid: number, us: number): void {
  const script = `my $a=pack("LLQlLQQQ",48,0,1,0,0,${Math.round(us * 1000)},0,0); syscall(314,${tid},$a,0)==0 or die "sched_setattr: $!"; my $b="\\0"x56; syscall(315,${tid},$b,56,0); print((unpack("LLQlLQQQ",$b))[5])`;
  const got = execFileSync("perl", ["-e", script], { encoding: "utf8" });
  log(`  pid ${tid}: slice ${Number(got) / 1000} µs`);
}
