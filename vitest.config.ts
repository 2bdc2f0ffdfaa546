import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // CI runs on a shared 2-core machine where the servers, the proxy and the tests all compete;
    // a test that fails there once is run once more (and the report still shows the flake).
    retry: process.env.CI ? 1 : 0,
    pool: "forks",
    // Two cores: more parallel files only fight over them.
    poolOptions: { forks: { maxForks: 2, minForks: 1 } },
  },
});
