// The package's version, read from package.json beside src/ and dist/ (one level up from both).
import { createRequire } from "node:module";

export function packageVersion(): string {
  const pkg = createRequire(import.meta.url)("../package.json") as { version: string };
  return pkg.version;
}
