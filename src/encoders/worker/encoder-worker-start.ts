// An encoder thread's first module: the thread lowers its priority (./thread-priority.ts) before
// anything else of it loads, then loads the encoder thread proper (./encoder-worker.ts).
//
// Why: a new thread inherits the relay's niceness (0), and an ES module's static imports are all
// loaded and run before its own first line. With the priority set in encoder-worker.ts itself, a
// new thread loaded its whole import graph at the relay's priority (~50 ms of CPU each, measured
// under load), and with four exports starting at once three new threads did so in the same second
// as the exports' backends started: the second in which every 4-export window's slowest 1% of
// proxied queries fell (docs/benchmarks.md, h-many, session 12). Node's own start-up of the thread
// (before this module) still runs at the relay's priority: nothing inside the thread comes earlier.
import { workerData } from "node:worker_threads";
import type { EncoderWorkerData } from "./protocol.js";
import { applyThreadPriority } from "./thread-priority.js";

applyThreadPriority(workerData as EncoderWorkerData);
await import("./encoder-worker.js");
