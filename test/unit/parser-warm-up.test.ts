// The proxy's first COPY statement must not compile PostgreSQL's scanner and grammar (libpg-query's
// WASM, compiled by V8 function by function on first call) on the relay's thread: the copy hook's
// start, which the CLI awaits before the proxy listens, has already scanned and parsed, unless
// exports.warmUp is "none" (a proxy prepares nothing for exports then).
import { beforeEach, expect, test, vi } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createLogger } from "../../src/log.js";

// Each test loads the parser module afresh: its warm-up runs once per process otherwise.
beforeEach(() => {
  vi.resetModules();
});

async function startHook(args: string[]) {
  const { createCopyHook } = await import("../../src/copy/hook.js");
  const tokens = await import("../../src/copy/sql-tokens.js");
  const statement = await import("../../src/copy/statement.js");
  // Nothing has parsed before: what follows is the start's own.
  expect(tokens.parserWarmUp()).toEqual({ tokens: 0, parsed: 0, refused: 0 });
  const { config } = loadConfig(["--upstream", "127.0.0.1:5432", ...args], {});
  const hook = await createCopyHook(config, createLogger("silent"));
  return { hook, warm: tokens.parserWarmUp(), parseCopyTo: statement.parseCopyTo };
}

test("the parser has scanned and parsed, the error path included, once the copy hook's start resolves", async () => {
  const { hook, warm, parseCopyTo } = await startHook([]);
  try {
    expect(warm.tokens).toBeGreaterThan(40);
    expect(warm.parsed).toBeGreaterThanOrEqual(3);
    expect(warm.refused).toBe(1);
    // The warm-up leaves the recognition as it was.
    expect(parseCopyTo("COPY t TO 's3://b/p' (FORMAT csv)")?.target).toEqual({
      kind: "literal",
      value: "s3://b/p",
    });
  } finally {
    hook.shutdown?.();
  }
});

test("with --warm-up none the parser is loaded but not warmed", async () => {
  const { hook, warm, parseCopyTo } = await startHook(["--warm-up", "none"]);
  try {
    expect(warm).toEqual({ tokens: 0, parsed: 0, refused: 0 });
    expect(parseCopyTo("COPY t TO 's3://b/p' (FORMAT csv)")).not.toBeNull();
  } finally {
    hook.shutdown?.();
  }
});
