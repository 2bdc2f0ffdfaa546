// ExportLimiter: the proxy-wide cap and the per-user cap, with and without a queue; the SlotCounter
// it shares with the scheduler's run slots.
import { describe, expect, test } from "vitest";
import { ExportLimiter } from "../../src/copy/export-limiter.js";
import { SlotCounter } from "../../src/copy/slot-counter.js";

const signal = () => new AbortController().signal;
const settle = () => new Promise<void>((r) => setImmediate(r));
const code = (p: Promise<unknown>) =>
  p.then(
    () => "ok",
    (e: { code?: string; message?: string }) => `${e.code} ${e.message}`,
  );

describe("ExportLimiter", () => {
  test("without a queue: a full proxy says so first; a user at its cap is refused while others go on", async () => {
    const l = new ExportLimiter(3, 0, 2);
    const a1 = await l.acquire(signal(), "a");
    await l.acquire(signal(), "a");
    expect(await code(l.acquire(signal(), "a"))).toBe(
      '53300 too many COPY ... TO exports running for role "a" (the limit is 2)',
    );
    await l.acquire(signal(), "b");
    expect(await code(l.acquire(signal(), "b"))).toBe(
      "53300 too many COPY ... TO exports running (the limit is 3)",
    );
    a1();
    expect(await code(l.acquire(signal(), "b"))).toBe("ok");
  });

  test("with a queue: a user at its cap waits for its own export, not ahead of others who fit", async () => {
    const l = new ExportLimiter(4, 60_000, 1);
    const a1 = await l.acquire(signal(), "a");
    const order: string[] = [];
    const a2 = l.acquire(signal(), "a").then((r) => {
      order.push("a2");
      return r;
    });
    const b1 = l.acquire(signal(), "b").then((r) => {
      order.push("b1");
      return r;
    });
    await b1;
    expect(order).toEqual(["b1"]);
    a1();
    (await a2)();
    expect(order).toEqual(["b1", "a2"]);
    expect(l.active).toBe(1);
  });
});

describe("ExportLimiter reconfigured (SIGHUP)", () => {
  test("raised caps let every waiter that now fits go; lowered ones keep running exports and refuse new ones", async () => {
    const l = new ExportLimiter(1, 60_000, 1);
    const a1 = await l.acquire(signal(), "a");
    const waiting = [l.acquire(signal(), "a"), l.acquire(signal(), "b"), l.acquire(signal(), "c")];
    const gone: number[] = [];
    waiting.forEach((w, i) => void w.then(() => gone.push(i)));
    l.reconfigure({ maxConcurrentExports: 3, maxExportsPerUser: 2, queueTimeoutMs: 60_000 });
    await settle();
    // a (2 of 2 for a) and b fit: 3 of 3; c waits.
    expect(gone).toEqual([0, 1]);
    expect(l.active).toBe(3);
    l.reconfigure({ maxConcurrentExports: 1, maxExportsPerUser: 1, queueTimeoutMs: 0 });
    expect(l.active).toBe(3);
    expect(await code(l.acquire(signal(), "d"))).toBe(
      "53300 too many COPY ... TO exports running (the limit is 1)",
    );
    a1();
    (await waiting[0]!)();
    (await waiting[1]!)();
    await settle();
    expect(gone).toEqual([0, 1, 2]);
    (await waiting[2]!)();
    expect(l.active).toBe(0);
  });
});

describe("SlotCounter", () => {
  test("names the proxy's cap before the user's; a release counts once and says so once", () => {
    let released = 0;
    const c = new SlotCounter(2, 1, () => released++);
    const a = c.take("a");
    expect(c.full("a")).toBe("user");
    expect(c.full("b")).toBe(null);
    c.take("b");
    expect([c.full("a"), c.full("c"), c.proxyFull]).toEqual(["proxy", "proxy", true]);
    a();
    a();
    expect([c.running, released, c.full("a")]).toEqual([1, 1, null]);
  });
});
