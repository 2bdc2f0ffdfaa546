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
