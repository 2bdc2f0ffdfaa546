#!/usr/bin/env node
// Runs the built proxy (dist/) on other Node majors, fetched from the npm registry's `node`
// package with npx: `--version`, then the embedded demo with its sample file:// export, checked
// by its manifest. Usage: npm run build && node scripts/smoke-node-versions.mjs [22 24 ...]
// Not part of `npm test`: it needs the registry (the first run downloads each Node once).
import { execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const ROOT = new URL("..", import.meta.url).pathname;
const versions = process.argv.slice(2).length > 0 ? process.argv.slice(2) : ["22", "24"];

function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function smoke(major) {
  const node = ["-y", "-p", `node@${major}`, "node"];
  const nodeVersion = execFileSync("npx", [...node, "--version"], { encoding: "utf8" }).trim();
  const cliVersion = execFileSync("npx", [...node, join(ROOT, "dist/cli.js"), "--version"], {
    encoding: "utf8",
  }).trim();
  const exportsDir = mkdtempSync(join(tmpdir(), "c2s-smoke-"));
  const port = await freePort();
  const started = Date.now();
  const proc = spawn("npx", [...node, join(ROOT, "dist/cli.js")], {
    env: { ...process.env, C2S_LISTEN: `127.0.0.1:${port}`, C2S_FILE_ROOT: exportsDir },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true,
  });
  let out = "";
  proc.stdout.on("data", (d) => (out += d));
  proc.stderr.on("data", (d) => (out += d));
  try {
    const deadline = Date.now() + 300_000;
    while (!out.includes("Ctrl-C stops")) {
      if (proc.exitCode !== null) throw new Error(`exited early:\n${out}`);
      if (Date.now() > deadline) throw new Error(`no demo after 300 s:\n${out}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const seconds = ((Date.now() - started) / 1000).toFixed(1);
    const sample = readdirSync(exportsDir).find((d) => d.startsWith("sample-"));
    const meta = join(exportsDir, sample, "orders", "_meta");
    const manifest = existsSync(meta) ? readdirSync(meta).find((n) => n.endsWith("-manifest.json")) : undefined;
    if (!manifest) throw new Error(`no manifest:\n${out}`);
    const { rows } = JSON.parse(readFileSync(join(meta, manifest), "utf8"));
    const awsNotice = out.includes("NodeVersionSupportWarning");
    return `node ${nodeVersion}: ${cliVersion}; demo ready and sample exported (${rows} rows, manifest present) after ${seconds} s; AWS SDK notice printed: ${awsNotice}`;
  } finally {
    try {
      process.kill(-proc.pid, "SIGINT");
    } catch {}
    await new Promise((r) => (proc.exitCode !== null ? r() : proc.once("exit", r)));
    rmSync(exportsDir, { recursive: true, force: true });
  }
}

let failed = false;
for (const v of versions) {
  try {
    console.log(await smoke(v));
  } catch (e) {
    failed = true;
    console.log(`node ${v}: FAILED: ${e.message}`);
  }
}
process.exit(failed ? 1 : 0);
