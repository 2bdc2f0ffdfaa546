// latest.json only ever names a complete snapshot (docs/schedules.md): TargetPublisher.publish
// refuses a snapshot whose sentinel is still there or whose manifest is not, and never moves
// latest.json backwards. schedule-processes.test.ts watches latest.json while a proxy is killed
// mid-run, but a watcher that polls can only miss a wrong moment; this says it exactly, from the
// one listing publish() decides on and the writes it makes.
import { describe, expect, test } from "vitest";
import type { ObjectStore } from "../../src/copy/storage/object-store.js";
import type { JobSpec } from "../../src/schedule/jobs.js";
import { TargetPublisher } from "../../src/schedule/publisher.js";

/** The two calls publish() makes of a store: one listing, then latest.json's put. */
function storeWith(keys: string[]): { store: ObjectStore; puts: Array<[string, string]> } {
  const puts: Array<[string, string]> = [];
  const store = {
    url: (k: string) => `s3://b/t/${k}`,
    list: async () => ({ keys: [...keys] }),
    put: async (key: string, body: Uint8Array | string) => {
      puts.push([key, String(body)]);
    },
  } as unknown as ObjectStore;
  return { store, puts };
}

const job = { name: "orders", target: "s3://b/t" } as JobSpec;
const A = "snapshot=2026-12-02T10:00:00Z";
const B = "snapshot=2026-12-02T11:00:00Z";
const done = (s: string) => [`${s}/mz-1-batch-0000-0000.csv`, `${s}/_meta/mz-1-manifest.json`];
const signal = new AbortController().signal;

describe("TargetPublisher.publish", () => {
  test("a snapshot whose sentinel is still there (manifest written, not yet committed): refused, latest.json untouched", async () => {
    const { store, puts } = storeWith([...done(A), ...done(B), `${B}/mz-1-INCOMPLETE`]);
    await expect(new TargetPublisher(() => store).publish(job, B, signal)).rejects.toMatchObject({
      message: `snapshot s3://b/t/${B} is not complete; latest.json not moved`,
    });
    expect(puts).toEqual([]);
  });

  test("a snapshot without its manifest: refused", async () => {
    const { store, puts } = storeWith([...done(A), `${B}/mz-1-batch-0000-0000.csv`]);
    await expect(new TargetPublisher(() => store).publish(job, B, signal)).rejects.toThrow(/not complete/);
    expect(puts).toEqual([]);
  });

  test("a complete one is named; an older one finishing later leaves latest.json on the newest", async () => {
    const { store, puts } = storeWith([...done(A), ...done(B)]);
    const p = new TargetPublisher(() => store);
    await p.publish(job, B, signal);
    await p.publish(job, A, signal);
    expect(puts.map(([k, body]) => [k, JSON.parse(body).snapshot])).toEqual([
      ["latest.json", B],
      ["latest.json", B],
    ]);
  });
});
