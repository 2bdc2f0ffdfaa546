// The package as npm delivers it: `npm pack` on a clean clone (its `prepare` builds dist/), the
// tarball installed into an empty directory from npm's cache (npm ci filled it; --offline keeps
// the test off the network), and the installed binary run.
import { execFileSync } from "node:child_process";
import { mkdtempSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";

const ROOT = new URL("../..", import.meta.url).pathname;
const work = mkdtempSync(join(tmpdir(), "c2s-pack-"));
afterAll(() => rmSync(work, { recursive: true, force: true }));

test("npm pack builds dist/ itself, and the installed tarball's copy-to-s3-proxy --version runs", () => {
  const clone = join(work, "clone");
  const app = join(work, "app");
  execFileSync("git", ["clone", "--quiet", ROOT, clone]);
  symlinkSync(join(ROOT, "node_modules"), join(clone, "node_modules"));
  execFileSync("npm", ["pack", "--silent", "--pack-destination", work], { cwd: clone, stdio: "pipe" });
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
  expect(tarball).toBeDefined();
  execFileSync("mkdir", [app]);
  execFileSync(
    "npm",
    ["install", "--offline", "--no-audit", "--no-fund", "--omit=dev", join(work, tarball!)],
    { cwd: app, stdio: "pipe", env: { ...process.env, npm_config_loglevel: "error" } },
  );
  const version = execFileSync(join(app, "node_modules/.bin/copy-to-s3-proxy"), ["--version"], {
    encoding: "utf8",
  });
  const { version: expected } = JSON.parse(
    execFileSync("git", ["show", "HEAD:package.json"], { cwd: ROOT, encoding: "utf8" }),
  ) as { version: string };
  expect(version.trim()).toBe(`copy-to-s3-proxy ${expected}`);
}, 600_000);
