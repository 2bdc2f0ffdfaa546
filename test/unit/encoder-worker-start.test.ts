// An encoder thread lowers its priority before its encoder modules load: its entry
// (src/encoders/worker/encoder-worker-start.ts) applies it, then imports the thread proper. A new
// thread inherits the relay's niceness, and the modules it loaded before lowering itself ran at it
// (docs/isolation.md, "Priority").
import { Worker } from "node:worker_threads";
import { afterEach, expect, test } from "vitest";
import type { FromEncoder, ToEncoder } from "../../src/encoders/worker/protocol.js";
import { workerEntry } from "../../src/encoders/worker/worker-entry.js";

let worker: Worker | null = null;
afterEach(async () => {
  await worker?.terminate();
  worker = null;
});

test("the thread's encoder modules load at its lowered niceness, not the relay's", async () => {
  const w = new Worker(workerEntry(), { workerData: { nice: 13 } });
  worker = w;
  const ready = new Promise<FromEncoder>((resolve, reject) => {
    w.on("message", (m: FromEncoder) => {
      if (m.t === "ready" || m.t === "error") resolve(m);
    });
    w.once("error", reject);
  });
  const start: ToEncoder = {
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
  w.postMessage(start);
  const m = await ready;
  expect(m).toMatchObject({ t: "ready", nice: 13, loadedNice: 13 });
});
