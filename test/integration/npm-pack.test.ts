// The package as npm delivers it: `npm pack` on a clean clone (its `prepare` builds dist/), the
// tarball installed into an empty directory, and the installed binary run. --prefer-offline: the
// tarballs come from npm's cache (npm ci filled it), but npm ci caches no registry metadata, which
// an install of a tarball needs for its dependencies; on a fresh machine that comes from the
// registry (.ci/run reaches it for npm ci anyway). --offline failed there with ENOTCACHED.
import { execFile } from "node:child_process";
import { mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, expect, test } from "vitest";

// Asynchronous: a minute-long synchronous call would starve vitest's worker RPC.
const run = promisify(execFile);
const ROOT = new URL("../..", import.meta.url).pathname;
const works: string[] = [];
afterAll(() => {
  for (const w of works) rmSync(w, { recursive: true, force: true });
});

test("npm pack builds dist/ itself, and the installed tarball's copy-to-s3-proxy --version runs", async () => {
  // A directory per attempt: a retry must not meet the first attempt's clone.
  const work = mkdtempSync(join(tmpdir(), "c2s-pack-"));
  works.push(work);
  const clone = join(work, "clone");
  const app = join(work, "app");
  await run("git", ["clone", "--quiet", ROOT, clone]);
  symlinkSync(join(ROOT, "node_modules"), join(clone, "node_modules"));
  await run("npm", ["pack", "--silent", "--pack-destination", work], { cwd: clone });
  const tarball = readdirSync(work).find((f) => f.endsWith(".tgz"));
  expect(tarball).toBeDefined();
  mkdirSync(app);
  await run(
    "npm",
    ["install", "--prefer-offline", "--no-audit", "--no-fund", "--omit=dev", join(work, tarball!)],
    {
      cwd: app,
      env: { ...process.env, npm_config_loglevel: "error" },
    },
  );
  const { stdout: version } = await run(join(app, "node_modules/.bin/copy-to-s3-proxy"), ["--version"]);
  const { version: expected } = JSON.parse(
    (await run("git", ["show", "HEAD:package.json"], { cwd: ROOT })).stdout,
  ) as {
    version: string;
  };
  expect(version.trim()).toBe(`copy-to-s3-proxy ${expected}`);

  // The installed bin is the launcher of src/cli.ts: node runs with glibc's MALLOC_ARENA_MAX=2
  // unless the environment has one (a preloaded module reports what node got).
  const report = join(work, "report-arenas.cjs");
  writeFileSync(report, 'process.stderr.write("arenas=" + process.env.MALLOC_ARENA_MAX + "\\n");');
  const env: NodeJS.ProcessEnv = { ...process.env, NODE_OPTIONS: `--require ${report}` };
  delete env.MALLOC_ARENA_MAX;
  const bin = join(app, "node_modules/.bin/copy-to-s3-proxy");
  expect((await run(bin, ["--version"], { env })).stderr).toBe("arenas=2\n");
  expect((await run(bin, ["--version"], { env: { ...env, MALLOC_ARENA_MAX: "4" } })).stderr).toBe(
    "arenas=4\n",
  );

  // An export's encoder thread starts from the compiled worker module in dist/ (no tsx there).
  const threadModule = join(app, "node_modules/copy-to-s3-proxy/dist/encoders/worker/encoder-thread.js");
  const script = `
    const { EncoderThread } = await import(${JSON.stringify(threadModule)});
    const spec = { format: "csv", options: { header: true, delimiter: 44, quote: 34, escape: 34, null: "",
      compression: "none", maxFileSize: 1 << 20, columnNames: ["a", "b"] } };
    const t = new EncoderThread(spec, { nice: 5 });
    let out = "";
    t.attach({ openFile() {}, write(c) { out += Buffer.from(c).toString(); }, closeFile() {} },
      new AbortController().signal, (e) => { console.error(e.message); process.exit(1); });
    const row = Buffer.from([0x44, 0, 0, 0, 16, 0, 2, 0, 0, 0, 1, 0x31, 0, 0, 0, 1, 0x78]);
    t.writeRows(row, 0, row.length);
    await t.finish();
    t.dispose();
    process.stdout.write(JSON.stringify({ out, nice: t.nice }));`;
  const { stdout: encoded } = await run(process.execPath, ["--input-type=module", "-e", script], {
    cwd: app,
  });
  expect(JSON.parse(encoded)).toEqual({ out: "a,b\n1,x\n", nice: 5 });
}, 600_000);
