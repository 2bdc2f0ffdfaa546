// `--help` for a bench script: its leading `//` comment block is its manual.
import { readFileSync } from "node:fs";

export function printHeaderAndExit(scriptUrl: string): never {
  process.stdout.write(
    `${readFileSync(new URL(scriptUrl), "utf8")
      .split("\n")
      .filter((l) => l.startsWith("//"))
      .join("\n")}\n`,
  );
  process.exit(0);
}

export const benchLog = (s: string): void => {
  process.stderr.write(`[${new Date().toISOString().slice(11, 19)}] ${s}\n`);
};

const atExit: Array<() => unknown> = [];
let exiting = false;
/** Runs `fn` (stop a server, remove a directory) also when the bench is stopped by SIGINT/SIGTERM
 * (Ctrl-C, `timeout`), so no PostgreSQL, moto or proxy outlives it. The normal path calls its own
 * clean-ups; each must be safe to run twice. */
export function cleanupOnSignal(fn: () => unknown): void {
  if (atExit.length === 0)
    for (const sig of ["SIGINT", "SIGTERM"] as const)
      process.once(sig, () => {
        if (exiting) return;
        exiting = true;
        // What was running fails as its servers go away: that is expected now, not a crash.
        process.on("unhandledRejection", () => {});
        benchLog(`${sig}: stopping what the bench started`);
        void (async () => {
          for (const f of atExit.reverse()) {
            try {
              await f();
            } catch {
              // best effort: keep stopping the rest
            }
          }
          process.exit(130);
        })();
      });
  atExit.push(fn);
}
