// Export limits from configuration: defaults, the S3 retry settings, and the per-export memory
// bound partSize × (partsInFlight + 1) × (filesCompleting + 1) checked at start.
import { mkdtempSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { autoEncoderThreads, ConfigError, loadConfig, uploadMemoryBound } from "../../src/config.js";

function withFile(exports: Record<string, unknown>): string[] {
  const p = join(mkdtempSync(join(tmpdir(), "c2s-limits-")), "c.json");
  writeFileSync(p, JSON.stringify({ exports }));
  return ["--config", p];
}

const MiB = 1024 * 1024;

describe("export limits", () => {
  test("defaults: 4 exports, standard retries with 5 attempts, 1 file completing, 80 MiB of upload buffers", () => {
    const e = loadConfig([], {}).config.exports;
    expect(e).toMatchObject({
      maxConcurrentExports: 4,
      s3MaxAttempts: 5,
      s3RetryMode: "standard",
      s3RequestTimeoutMs: 120_000,
      filesCompleting: 1,
      maxMemoryPerExport: undefined,
    });
    expect(uploadMemoryBound(e)).toBe(8 * MiB * 5 * 2);
  });

  test("exports.stallTimeoutMs: 10 minutes by default; --stall-timeout > C2S_STALL_TIMEOUT > config file; 0 = off", () => {
    expect(loadConfig([], {}).config.exports.stallTimeoutMs).toBe(600_000);
    expect(loadConfig(withFile({ stallTimeoutMs: 0 }), {}).config.exports.stallTimeoutMs).toBe(0);
    expect(
      loadConfig(withFile({ stallTimeoutMs: 5000 }), { C2S_STALL_TIMEOUT: "7000" }).config.exports
        .stallTimeoutMs,
    ).toBe(7000);
    expect(
      loadConfig(["--stall-timeout", "9000"], { C2S_STALL_TIMEOUT: "7000" }).config.exports.stallTimeoutMs,
    ).toBe(9000);
    expect(() => loadConfig(["--stall-timeout", "-1"], {})).toThrow(ConfigError);
  });

  test("exports.warmUp: compile by default; --warm-up > C2S_WARM_UP > config file; one of none, compile, thread", () => {
    expect(loadConfig([], {}).config.exports.warmUp).toBe("compile");
    expect(loadConfig(withFile({ warmUp: "none" }), {}).config.exports.warmUp).toBe("none");
    expect(loadConfig(withFile({ warmUp: "none" }), { C2S_WARM_UP: "thread" }).config.exports.warmUp).toBe(
      "thread",
    );
    expect(loadConfig(["--warm-up", "none"], { C2S_WARM_UP: "thread" }).config.exports.warmUp).toBe("none");
    expect(() => loadConfig(["--warm-up", "eager"], {})).toThrow(
      /warm-up: expected one of none, compile, thread/,
    );
  });

  test("the config file sets them", () => {
    const e = loadConfig(
      withFile({ s3MaxAttempts: 8, s3RetryMode: "adaptive", s3RequestTimeoutMs: 5000, filesCompleting: 1 }),
      {},
    ).config.exports;
    expect(e).toMatchObject({
      s3MaxAttempts: 8,
      s3RetryMode: "adaptive",
      s3RequestTimeoutMs: 5000,
      filesCompleting: 1,
    });
  });

  test("a memory bound the part settings fit in is accepted; one they exceed is refused at start", () => {
    const ok = withFile({
      partSize: 5 * MiB,
      partsInFlight: 2,
      filesCompleting: 1,
      maxMemoryPerExport: 30 * MiB,
    });
    expect(loadConfig(ok, {}).config.exports.maxMemoryPerExport).toBe(30 * MiB);
    const tooSmall = withFile({
      partSize: 5 * MiB,
      partsInFlight: 2,
      filesCompleting: 1,
      maxMemoryPerExport: 29 * MiB,
    });
    expect(() => loadConfig(tooSmall, {})).toThrow(ConfigError);
    expect(() => loadConfig(tooSmall, {})).toThrow(/31457280 bytes exceeds exports.maxMemoryPerExport/);
  });

  test('exports.encoderThreads: 1 by default, a number, or "auto" (2 from 4 cores on, else 1); each thread\'s upload buffers count in the bound', () => {
    expect(loadConfig([], {}).config.exports.encoderThreads).toBe(1);
    expect(loadConfig(withFile({ encoderThreads: 3 }), {}).config.exports.encoderThreads).toBe(3);
    expect(loadConfig(withFile({ encoderThreads: "auto" }), {}).config.exports.encoderThreads).toBe(
      autoEncoderThreads(availableParallelism()),
    );
    expect([1, 2, 3, 4, 8, 16, 64].map(autoEncoderThreads)).toEqual([1, 1, 1, 2, 2, 2, 2]);
    expect(() => loadConfig(withFile({ encoderThreads: 0 }), {})).toThrow(/exports.encoderThreads/);
    expect(() => loadConfig(withFile({ encoderThreads: "many" }), {})).toThrow(/exports.encoderThreads/);
    const parts = { partSize: 5 * MiB, partsInFlight: 2, filesCompleting: 1 };
    expect(() =>
      loadConfig(withFile({ ...parts, encoderThreads: 2, maxMemoryPerExport: 60 * MiB }), {}),
    ).not.toThrow();
    expect(() =>
      loadConfig(withFile({ ...parts, encoderThreads: 2, maxMemoryPerExport: 59 * MiB }), {}),
    ).toThrow(/encoderThreads × partSize/);
  });

  test.each([
    [{ s3RetryMode: "legacy" }, /exports.s3RetryMode: expected one of standard, adaptive/],
    [{ s3MaxAttempts: 0 }, /exports.s3MaxAttempts/],
    [{ filesCompleting: 0 }, /exports.filesCompleting/],
  ])("rejects %j", (exports, message) => {
    expect(() => loadConfig(withFile(exports), {})).toThrow(message);
  });
});
