// The bin's launcher (src/cli.ts's first two lines): run as a program, the file sets glibc's
// MALLOC_ARENA_MAX=2 unless the environment has one, and becomes node on itself in place. Here the
// launcher heads a small script that reports what it got, so no build is needed: its environment,
// arguments and pid, its stdin, its exit code and a SIGTERM handled by its own handler (the pid the
// test spawned is node's: a launcher that stayed as a parent would fail the pid and signal checks).
import { spawn } from "node:child_process";
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, expect, test } from "vitest";

const ROOT = new URL("../..", import.meta.url).pathname;
const launcher = readFileSync(join(ROOT, "src/cli.ts"), "utf8").split("\n").slice(0, 2).join("\n");
const dir = mkdtempSync(join(tmpdir(), "c2s-launcher-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const BODY = `
let input = "";
process.stdin.on("data", (d) => (input += d));
process.stdin.on("end", () => {
  // The handler before the report: the test sends SIGTERM once it reads the report.
  if (process.argv[2] === "wait") {
    process.on("SIGTERM", () => { process.stderr.write("graceful\\n"); process.exit(0); });
    setInterval(() => {}, 1000);
  }
  process.stdout.write(JSON.stringify({
    arenas: process.env.MALLOC_ARENA_MAX ?? null, flags: process.execArgv, pid: process.pid, args: process.argv.slice(2), input,
  }) + "\\n");
  if (process.argv[2] !== "wait") process.exit(Number(process.argv[2] ?? 0));
});
`;
const script = join(dir, "launched.mjs");
writeFileSync(script, `${launcher}\n${BODY}`);
chmodSync(script, 0o755);

interface Run {
  report: { arenas: string | null; flags: string[]; pid: number; args: string[]; input: string };
  pid: number;
  code: number | null;
  stderr: string;
}

function launch(args: string[], env: NodeJS.ProcessEnv, opts: { term?: boolean } = {}): Promise<Run> {
  const child = spawn(script, args, { env, stdio: ["pipe", "pipe", "pipe"] });
  let out = "";
  let stderr = "";
  child.stdout.on("data", (d: Buffer) => {
    out += d;
    if (opts.term && out.includes("\n")) child.kill("SIGTERM");
  });
  child.stderr.on("data", (d: Buffer) => (stderr += d));
  child.stdin.end("rows on stdin");
  return new Promise((resolve, reject) => {
    child.once("error", reject);
    child.once("close", (code) =>
      resolve({ report: JSON.parse(out.split("\n")[0]!), pid: child.pid!, code, stderr }),
    );
  });
}

const base = (): NodeJS.ProcessEnv => {
  const env = { ...process.env };
  delete env.MALLOC_ARENA_MAX;
  return env;
};

test("without MALLOC_ARENA_MAX the launcher sets 2 and execs node in place with --single-threaded-gc --v8-pool-size=1: same pid, arguments, stdin, exit code", async () => {
  const r = await launch(["3", "two words", "--flag=$HOME"], base());
  expect(r.report).toEqual({
    arenas: "2",
    // Each isolate collects on its own thread (src/cli.ts): no GC on V8's shared helpers at nice 0,
    // and one helper thread for their compiles.
    flags: ["--single-threaded-gc", "--v8-pool-size=1"],
    pid: r.pid,
    args: ["3", "two words", "--flag=$HOME"],
    input: "rows on stdin",
  });
  expect(r.code).toBe(3);
  expect(r.stderr).toBe("");
});

test("an operator's MALLOC_ARENA_MAX, even an empty one, is kept", async () => {
  expect((await launch(["0"], { ...base(), MALLOC_ARENA_MAX: "8" })).report.arenas).toBe("8");
  expect((await launch(["0"], { ...base(), MALLOC_ARENA_MAX: "" })).report.arenas).toBe("");
});

test("SIGTERM to the launched pid reaches node's own handler (graceful exit 0)", async () => {
  const r = await launch(["wait"], base(), { term: true });
  expect(r.report.pid).toBe(r.pid);
  expect(r.stderr).toBe("graceful\n");
  expect(r.code).toBe(0);
}, 20_000);
