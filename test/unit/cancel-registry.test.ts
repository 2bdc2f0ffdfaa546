import { describe, expect, test } from "vitest";
import { CancelRegistry } from "../../src/proxy/cancel-registry.js";

describe("CancelRegistry", () => {
  test("mints positive, unique pids with random secrets, and matches only the exact key", () => {
    const r = new CancelRegistry();
    const hits: number[] = [];
    const keys = Array.from({ length: 1000 }, (_, i) => r.register({ cancel: () => hits.push(i) }));
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
    let n = 0;
    const k = r.register({ cancel: () => n++ });
    r.unregister(k.pid);
    expect(r.cancel(k.pid, k.secret)).toBe(false);
    expect(n).toBe(0);
    expect(r.size).toBe(0);
  });
});
