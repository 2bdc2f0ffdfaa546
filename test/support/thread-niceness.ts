// Threads of the test's own process (where in-process proxies run) counted by niceness: the
// encoder threads lower themselves to exports.workerNice, every other thread stays at 0.
import { readdirSync, readFileSync } from "node:fs";

/** This process's threads at niceness `nice` (10: the encoder threads' default). */
export function threadsAtNiceness(nice = 10): number {
  return readdirSync("/proc/self/task").filter((tid) => {
    try {
      const stat = readFileSync(`/proc/self/task/${tid}/stat`, "utf8");
      // Field 19 of proc(5)'s stat, counted after the parenthesised comm (which may hold spaces).
      return Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[16]) === nice;
    } catch {
      return false; // ended meanwhile
    }
  }).length;
}
