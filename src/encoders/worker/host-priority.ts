// The encoder host lowers itself as a whole (docs/isolation.md, "Encoders in a process of their
// own"): every thread it has (V8's platform threads and libuv's pool included, which run the
// encoders' GC and compilation) and its autogroup, which nothing inside the proxy's process can do
// for the relay. Run by ./encoder-host-main.ts first thing.
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import { lowerThread } from "./thread-priority.js";

/** Lowers the process's threads and its autogroup to `nice`; returns the autogroup's line. */
export function lowerHost(nice: number): string {
  lowerThreads(nice);
  return lowerAutogroup(nice);
}

/**
 * Lowers every thread that exists now (V8's platform threads start with the process); threads
 * started later inherit the niceness of the thread that creates them, which is lowered first.
 * Linux's setpriority(PRIO_PROCESS, tid) applies to that one thread.
 */
function lowerThreads(nice: number): void {
  let tids: string[] = [];
  try {
    tids = readdirSync("/proc/self/task");
  } catch {
    // no /proc: the calling thread at least
  }
  const self = String(process.pid);
  // A thread that ended meanwhile, or a platform without per-thread priorities: left as it is.
  for (const tid of [self, ...tids.filter((t) => t !== self)]) lowerThread(nice, Number(tid));
  lowerThread(nice);
}

/**
 * Linux autogroup (sched(7)): the group's nice value weighs the whole group against the others
 * (every PostgreSQL backend is a group; so is the proxy's session); an unprivileged process may
 * raise it. Returns the group's line as the kernel shows it ("" where there is none).
 */
function lowerAutogroup(nice: number): string {
  try {
    writeFileSync("/proc/self/autogroup", String(nice));
  } catch {
    // autogroup off or absent: the session is still a group of its own only with autogroup
  }
  try {
    return readFileSync("/proc/self/autogroup", "utf8").trim();
  } catch {
    return "";
  }
}
