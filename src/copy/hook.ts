// Wires the COPY TO S3 feature into the proxy's CopyHook seam.
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import type { CopyHook } from "../proxy/copy-hook.js";

export async function createCopyHook(_config: Config, _log: Logger): Promise<CopyHook | null> {
  return null;
}
