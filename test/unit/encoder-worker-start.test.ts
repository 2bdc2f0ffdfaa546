// An encoder thread runs lowered from its start: its creator lowers it as it is created (Node's
// start-up of the thread), and its entry (src/encoders/worker/encoder-worker-start.ts) applies its
// priority before it imports the thread proper. A new thread inherits the relay's niceness, and
// whatever ran before it was lowered ran at the relay's priority (docs/isolation.md, "Priority").
import { Worker } from "node:worker_threads";
import { afterEach, expect, test } from "vitest";
import type { EncoderWorker } from "../../src/encoders/worker/hosted-worker.js";
import type { FromEncoder, ToEncoder } from "../../src/encoders/worker/protocol.js";
import { takeThread } from "../../src/encoders/worker/thread-pool.js";
import { workerEntry } from "../../src/encoders/worker/worker-entry.js";

const csvStart: ToEncoder = {
  t: "start",
  spec: {
    format: "csv",
    options: {
      header: false,
      delimiter: 0x2c,
      quote: 0x22,
      escape: 0x22,
      null: "",
      compression: "none",
      maxFileSize: 1 << 30,
      columnNames: ["n"],
    },
  },
};

/** The thread's answer to a CSV start: "ready" (with its niceness figures) or "error". */
function started(w: EncoderWorker): Promise<FromEncoder> {
  const answer = new Promise<FromEncoder>((resolve, reject) => {
    w.on("message", (m: FromEncoder) => {
      if (m.t === "ready" || m.t === "error") resolve(m);
    });
    w.on("error", reject);
  });
  w.postMessage(csvStart);
  return answer;
}

let worker: Worker | null = null;
afterEach(async () => {
  await worker?.terminate();
  worker = null;
});

test("the thread's encoder modules load at its lowered niceness, not the relay's (started here unlowered)", async () => {
  const w = new Worker(workerEntry(), { workerData: { nice: 13 } });
  worker = w;
  const m = await started(w);
  expect(m).toMatchObject({ t: "ready", nice: 13, loadedNice: 13 });
});

test("a thread the pool starts is lowered by its creator: Node's start-up of it runs lowered too", async () => {
  const p = takeThread(13, false, "thread");
  const w = p.worker;
  const m = await started(w);
  await w.terminate();
  expect(m).toMatchObject({ t: "ready", nice: 13, loadedNice: 13, startedNice: 13 });
});
