import { describe, expect, test } from "vitest";
import { DEFAULT_EXPORT_LIMITS } from "../../src/config.js";
import { olderThanDefault, parseDuration } from "../../src/copy/cleanup-command.js";

describe("cleanup --older-than", () => {
  test.each([
    ["0", 0],
    ["90", 90_000],
    ["90s", 90_000],
    ["15m", 900_000],
    ["2h", 7_200_000],
    ["1d", 86_400_000],
    ["1.5h", 5_400_000],
  ])("%s → %i ms", (s, ms) => {
    expect(parseDuration(s)).toBe(ms);
  });

  test.each(["", "-1m", "15 minutes", "m", "1w"])("%j is refused with 22023", (s) => {
    expect(() => parseDuration(s)).toThrow(expect.objectContaining({ code: "22023" }));
  });

  test("the default outlasts several missed sentinel refreshes", () => {
    expect(olderThanDefault()).toBe(3 * DEFAULT_EXPORT_LIMITS.sentinelRefreshMs);
    expect(olderThanDefault(60_000)).toBe(180_000);
  });
});
