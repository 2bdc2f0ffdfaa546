// The package as npm delivers it: `npm pack` on a clean clone (its `prepare` builds dist/), the
// tarball installed into an empty directory from npm's cache (npm ci filled it; --offline keeps
// the test off the network), and the installed binary run.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, test } from "vitest";

// Asynchronous: a minute-long synchronous call would starve vitest's worker RPC.
const run = promisify(execFile);
const ROOT = new URL("../..", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "c2s-pack-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("npm pack builds dist/ itself, and the installed tarball's copy-to-s3-proxy --version runs", async () => {
  const clone = join(work, "clone");
  const app = join(work, "app");
  await run("git", ["clone", "--quiet", ROOT, clone]);
  symlinkSync(join(ROOT, "node_modules"), join(clone, "node_modules"));
  await run("npm", ["pack", "--silent", "--pack-destination", work], { cwd: clone });
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
  expect(tarball).toBeDefined();
  mkdirSync(app);
  await run("npm", ["install", "--offline", "--no-audit", "--no-fund", "--omit=dev", join(work, tarball!)], {
    cwd: app,
    env: { ...process.env, npm_config_loglevel: "error" },
  });
  const { stdout: version } = await run(join(app, "node_modules/.bin/copy-to-s3-proxy"), ["--version"]);
  const { version: expected } = JSON.parse(
    (await run("git", ["show", "HEAD:package.json"], { cwd: ROOT })).stdout,
  ) as {
    version: string;
  };
  expect(version.trim()).toBe(`copy-to-s3-proxy ${expected}`);
}, 600_000);
