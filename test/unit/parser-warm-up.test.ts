// The proxy's first COPY statement must not compile PostgreSQL's scanner and grammar (libpg-query's
// WASM, compiled by V8 function by function on first call) on the relay's thread: the copy hook's
// start, which the CLI awaits before the proxy listens, has already scanned and parsed.
import { expect, test } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createCopyHook } from "../../src/copy/hook.js";
import { parserWarmUp } from "../../src/copy/sql-tokens.js";
import { parseCopyTo } from "../../src/copy/statement.js";
import { createLogger } from "../../src/log.js";

test("the parser has scanned and parsed, the error path included, once the copy hook's start resolves", async () => {
  // Nothing in this file has parsed before: the warm-up is the start's own.
  expect(parserWarmUp()).toEqual({ tokens: 0, parsed: 0, refused: 0 });
  const { config } = loadConfig(["--upstream", "127.0.0.1:5432"], {});
  const hook = await createCopyHook(config, createLogger("silent"));
  try {
    const warm = parserWarmUp();
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
