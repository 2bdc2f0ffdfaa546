import { describe, expect, test } from "vitest";
import { registry } from "../../src/metrics/metrics.js";
import { CancelRegistry } from "../../src/proxy/cancel-registry.js";
import { Samples } from "../support/prom-text.js";

/** A target that records its calls and answers `outcome`. */
function target(calls: number[], id: number, outcome: "export" | "forwarded" | "idle" = "idle") {
  return {
    cancel: () => {
      calls.push(id);
      return outcome;
    },
  };
}

describe("CancelRegistry", () => {
  test("mints positive, unique pids with random secrets, and matches only the exact key", () => {
    const r = new CancelRegistry();
    const hits: number[] = [];
    const keys = Array.from({ length: 1000 }, (_, i) => r.register(target(hits, i)));
    expect(new Set(keys.map((k) => k.pid)).size).toBe(1000);
    expect(keys.every((k) => k.pid > 0 && k.secret.length === 4)).toBe(true);
    expect(new Set(keys.map((k) => k.secret.toString("hex"))).size).toBeGreaterThan(990);
    const k = keys[7]!;
    const wrong = Buffer.from(k.secret);
    wrong.writeUInt8(wrong.readUInt8(3) ^ 1, 3);
    expect(r.cancel(k.pid, wrong)).toBe(false);
    expect(r.cancel(k.pid, k.secret.subarray(0, 3))).toBe(false);
    expect(r.cancel(k.pid + 1 === keys[8]!.pid ? k.pid + 2 : k.pid + 1, k.secret)).toBe(false);
    expect(hits).toEqual([]);
    expect(r.cancel(k.pid, Buffer.from(k.secret))).toBe(true);
    expect(hits).toEqual([7]);
  });

  test("an unregistered session can no longer be cancelled", () => {
    const r = new CancelRegistry();
    const calls: number[] = [];
    const k = r.register(target(calls, 0));
    r.unregister(k.pid);
    expect(r.cancel(k.pid, k.secret)).toBe(false);
    expect(calls).toEqual([]);
    expect(r.size).toBe(0);
  });

  test("each request is counted once, in the same turn: the target's outcome, or unmatched", async () => {
    const count = async (outcome: string) =>
      new Samples(await registry.metrics()).n("copy_to_s3_proxy_cancel_requests_total", { outcome });
    const before = await Promise.all(["export", "forwarded", "idle", "unmatched"].map(count));
    const r = new CancelRegistry();
    const calls: number[] = [];
    const e = r.register(target(calls, 1, "export"));
    const f = r.register(target(calls, 2, "forwarded"));
    const i = r.register(target(calls, 3, "idle"));
    r.cancel(e.pid, e.secret);
    r.cancel(f.pid, f.secret);
    r.cancel(f.pid, f.secret);
    r.cancel(i.pid, i.secret);
    r.cancel(i.pid, Buffer.from([0, 0, 0, 0]).equals(i.secret) ? Buffer.from([0, 0, 0, 1]) : Buffer.alloc(4));
    r.unregister(e.pid);
    r.cancel(e.pid, e.secret);
    expect(calls).toEqual([1, 2, 2, 3]);
    const after = await Promise.all(["export", "forwarded", "idle", "unmatched"].map(count));
    expect(after.map((n, k) => n - before[k]!)).toEqual([1, 2, 1, 2]);
  });
});
