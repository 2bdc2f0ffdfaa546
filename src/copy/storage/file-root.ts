// The --file-root policy for file:// COPY targets: refused unless a root is configured, and only
// below it. This check is on the text of the path; FileStore (given the same root) then resolves
// every path it touches through realpath against the root, so symbolic links cannot lead a write
// outside it either (docs/security.md).
import { PgError, SqlState } from "../../errors.js";
import type { TargetUrl } from "./target-url.js";

export function checkFileTarget(target: TargetUrl, root: string | undefined): void {
  if (target.scheme !== "file") return;
  if (root === undefined) {
    throw new PgError(SqlState.featureNotSupported, "file:// COPY TO targets are disabled on this proxy", {
      hint: "Start the proxy with --file-root DIR to allow exports into directories below DIR.",
    });
  }
  const dir = target.dir.endsWith("/") ? target.dir : `${target.dir}/`;
  if (!dir.startsWith(root.endsWith("/") ? root : `${root}/`)) throw outsideRoot();
}

export function outsideRoot(): PgError {
  return new PgError(
    SqlState.insufficientPrivilege,
    "file:// COPY TO target is outside the directory this proxy may write to",
    { hint: "A symbolic link may lead out of it: the target must resolve below --file-root." },
  );
}
