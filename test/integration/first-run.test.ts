// What a newcomer does first: clone, run the README's first command, see an export land, connect.
// The clone is a real `git clone` of this repository; only `npm ci` is replaced by a symlink to
// this checkout's node_modules (same lockfile, minutes faster), and the rest of the README's
// command is run as written. The listen port comes from C2S_LISTEN so runs do not collide.
import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import pg from "pg";
import { afterAll, describe, expect, test } from "vitest";
import { motoAccess } from "../support/copy-proxy.js";
import { freePort } from "../support/ports.js";
import { spawnCopyProxy } from "../support/proxy-process.js";

const ROOT = new URL("../..", import.meta.url).pathname;
// A checkout whose node_modules was installed before the demo's packages were added cannot run
// the demo (npm ci fixes that); the test says so in its name instead of failing for that reason.
const PGLITE_INSTALLED = existsSync(join(ROOT, "node_modules/@electric-sql/pglite-socket/package.json"));

/** The README's first command line, without its comment. */
function readmeFirstCommand(readme: string): string {
  const block = /```sh\n([^\n]*)\n/.exec(readme);
  if (!block) throw new Error("README has no ```sh block");
  return block[1]!.replace(/\s+#.*$/, "").trim();
}

async function waitFor<T>(
  what: string,
  probe: () => T | undefined,
  out: () => string,
  ms = 240_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; output:\n${out()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function stopGroup(proc: ChildProcess): Promise<void> {
  return new Promise((resolve) => {
    if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
    proc.once("exit", () => resolve());
    // npm → sh → node: Ctrl-C goes to the whole process group, as in a terminal.
    process.kill(-proc.pid!, "SIGINT");
  });
}

describe("first run on a fresh clone", () => {
  const clone = mkdtempSync(join(tmpdir(), "c2s-clone-"));
  let proc: ChildProcess | undefined;
  afterAll(async () => {
    if (proc) await stopGroup(proc);
    rmSync(clone, { recursive: true, force: true });
  });

  test.skipIf(!PGLITE_INSTALLED)(
    `${PGLITE_INSTALLED ? "" : "(skipped: node_modules lacks @electric-sql/pglite, run npm ci) "}the README's first command starts the demo, exports a sample with its manifest, and serves psql and pg`,
    async () => {
      execFileSync("git", ["clone", "--quiet", ROOT, clone]);
      const command = readmeFirstCommand(readFileSync(join(clone, "README.md"), "utf8"));
      const steps = command.split("&&").map((s) => s.trim());
      expect(steps[0]).toBe("npm ci");
      symlinkSync(join(ROOT, "node_modules"), join(clone, "node_modules"));
      const port = await freePort();
      let out = "";
      proc = spawn("sh", ["-c", steps.slice(1).join(" && ")], {
        cwd: clone,
        env: { ...process.env, C2S_LISTEN: `127.0.0.1:${port}` },
        stdio: ["ignore", "pipe", "pipe"],
        detached: true,
      });
      proc.stdout!.on("data", (d: Buffer) => {
        out += d.toString();
      });
      proc.stderr!.on("data", (d: Buffer) => {
        out += d.toString();
      });
      await waitFor(
        "the demo's instructions",
        () => (out.includes("Ctrl-C stops") ? true : undefined),
        () => out,
      );

      // The sample export: data files and a manifest in ./exports/sample-*/orders.
      const exportsDir = join(clone, "exports");
      const samples = readdirSync(exportsDir).filter((d) => d.startsWith("sample-"));
      expect(samples).toHaveLength(1);
      const dir = join(exportsDir, samples[0]!, "orders");
      const names = readdirSync(dir);
      const meta = readdirSync(join(dir, "_meta"));
      const manifestName = meta.find((n) => n.endsWith("-manifest.json"));
      expect(manifestName, meta.join(", ")).toBeDefined();
      expect(names.some((n) => n.endsWith("-INCOMPLETE"))).toBe(false);
      const manifest = JSON.parse(readFileSync(join(dir, "_meta", manifestName!), "utf8")) as {
        files: Array<{ url?: string; key?: string; rows: number; bytes: number }>;
      };
      const dataFiles = names.filter((n) => n.endsWith(".csv")).sort();
      expect(manifest.files.length).toBe(dataFiles.length);
      expect(manifest.files.reduce((a, f) => a + f.rows, 0)).toBe(10_000);
      const exported = Buffer.concat(dataFiles.map((f) => readFileSync(join(dir, f))));

      // The printed psql line works, and the export equals the upstream's own COPY … CSV bytes.
      const psqlLine = /psql "([^"]+)"/.exec(out)?.[1];
      expect(psqlLine).toBe(`host=127.0.0.1 port=${port} user=postgres dbname=postgres`);
      const oracle = execFileSync("psql", [
        psqlLine!,
        "-X",
        "-c",
        "\\copy orders to stdout (format csv, header true)",
      ]);
      expect(exported.equals(oracle)).toBe(true);

      const client = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
      await client.connect();
      try {
        const r = await client.query("SELECT region, orders FROM revenue_by_region ORDER BY region");
        expect(r.rows.map((x) => Number(x.orders)).reduce((a, b) => a + b, 0)).toBe(10_000);
      } finally {
        await client.end();
      }

      await stopGroup(proc);
      proc = undefined;
      expect(existsSync(join(dir, "_meta", manifestName!))).toBe(true);
    },
    300_000,
  );
});

describe("a configured upstream that is not there", () => {
  test("is named in a warning at start", async () => {
    const deadPort = await freePort();
    const p = await spawnCopyProxy({ upstreamPort: deadPort, s3: motoAccess() });
    try {
      await waitFor(
        "the unreachable warning",
        () => (p.output().includes("is unreachable") ? true : undefined),
        () => p.output(),
        30_000,
      );
      expect(p.output()).toContain(`the upstream database at 127.0.0.1:${deadPort} is unreachable`);
      expect(p.output()).toContain("ECONNREFUSED");
    } finally {
      await p.stop();
    }
  });
});
