// The exports (copy hook) and the scheduled jobs read one AWS connection registry: loaded once at
// start, and once per reload for both, the same registry or the same error.
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, test, vi } from "vitest";
import { loadConfig } from "../../src/config.js";
import { ConnectionSource } from "../../src/copy/connection-source.js";
import * as connections from "../../src/copy/connections.js";
import { createCopyHook } from "../../src/copy/hook.js";
import { createLogger } from "../../src/log.js";
import { createSchedules } from "../../src/schedule/start.js";

vi.mock("../../src/copy/connections.js", async (original) => {
  const m = await original<typeof import("../../src/copy/connections.js")>();
  return { ...m, loadConnections: vi.fn(m.loadConnections) };
});

const dir = mkdtempSync(join(tmpdir(), "c2s-conn-source-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** A configuration whose file has the given connections (a new object each call, as a reload reads it). */
function configWith(conns: Record<string, unknown>) {
  const file = join(dir, "config.json");
  writeFileSync(file, JSON.stringify({ connections: conns }));
  return loadConfig(["--config", file], { K: "key", S: "secret" }).config;
}
const one = { default: { region: "us-east-1", accessKeyId: { env: "K" }, secretAccessKey: { env: "S" } } };
const two = {
  ...one,
  other: { region: "eu-west-1", accessKeyId: { env: "K" }, secretAccessKey: { env: "S" } },
};

describe("ConnectionSource", () => {
  test("loads a configuration's connections once; a reload's become current only when used", () => {
    const load = vi.fn((c: ReturnType<typeof configWith>) =>
      connections.loadConnections(c.connections, { K: "key", S: "secret" }),
    );
    const first = configWith(one);
    const s = new ConnectionSource(first, load);
    expect(s.current.names()).toEqual(["default"]);
    const next = configWith(two);
    const r = s.load(next);
    expect(s.load(next)).toBe(r);
    expect(s.current.names()).toEqual(["default"]);
    expect(s.use(next)).toBe(r);
    expect(s.current.names()).toEqual(["default", "other"]);
    expect(load).toHaveBeenCalledTimes(2);
  });

  test("invalid connections: the same error for every caller, one attempt, nothing changes", () => {
    const load = vi.fn((c: ReturnType<typeof configWith>) =>
      connections.loadConnections(c.connections, { K: "key", S: "secret" }),
    );
    const s = new ConnectionSource(configWith(one), load);
    const bad = configWith({ default: { region: "us-east-1", nonsense: 1 } });
    expect(() => s.use(bad)).toThrow(/unknown setting "nonsense"/);
    expect(() => s.load(bad)).toThrow(/unknown setting "nonsense"/);
    expect(load).toHaveBeenCalledTimes(2);
    expect(s.current.names()).toEqual(["default"]);
  });
});

test("the copy hook and the scheduler load the connections once at start and once per reload", async () => {
  const loads = vi.mocked(connections.loadConnections);
  process.env.K = "key";
  process.env.S = "secret";
  const log = createLogger("silent");
  const config = configWith(one);
  loads.mockClear();
  const hook = await createCopyHook(config, log);
  const schedules = await createSchedules(config, log, hook);
  try {
    expect(loads).toHaveBeenCalledTimes(1);
    // As src/lifecycle.ts reloads: the hook, then the jobs, with the same new configuration.
    const next = configWith(two);
    hook.reload(next);
    schedules.reload(next);
    expect(loads).toHaveBeenCalledTimes(2);
    expect(hook.connections.current.names()).toEqual(["default", "other"]);
  } finally {
    await schedules.stop();
    hook.shutdown?.();
    delete process.env.K;
    delete process.env.S;
  }
});
