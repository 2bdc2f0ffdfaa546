// Where an export writes (SPEC §1): the target URL, evaluated in the client's session when it is an
// expression, checked against --file-root and the store's key-length limit.

import type { BoundParams } from "../proxy/copy-hook.js";
import { metadataKeys } from "./manifest.js";
import type { CopyTarget } from "./statement.js";
import { checkFileTarget } from "./storage/file-root.js";
import { checkKeyLengths } from "./storage/key-length.js";
import { assertTargetUrl, parseTargetUrl, type TargetUrl } from "./storage/target-url.js";
import type { UpstreamClient } from "./upstream-client.js";

export interface TargetSession {
  client: UpstreamClient;
  /** What the client bound to the statement's parameters, if anything. */
  params: BoundParams | undefined;
  signal: AbortSignal;
}

export async function resolveTarget(
  t: CopyTarget,
  session: TargetSession,
  exportId: string,
  fileRoot: string | undefined,
): Promise<TargetUrl> {
  let text: string;
  if (t.kind === "literal") text = t.value;
  else {
    // Evaluated once, in the client's session, before anything else (SPEC §1), with the
    // parameters the client bound ($1 in a simple Query is the upstream's "there is no
    // parameter $1").
    const sql = `SELECT (${t.sql})::text`;
    const params = session.params;
    const r =
      params === undefined || params.values.length === 0
        ? await session.client.query(sql, session.signal)
        : await session.client.queryParams(sql, params, session.signal);
    text = assertTargetUrl(r.rows[0]?.[0] ?? null);
  }
  const target = parseTargetUrl(text);
  checkFileTarget(target, fileRoot);
  // The longest names this export can write: its manifests, and a data file past file 9999.
  checkKeyLengths(target, [
    ...Object.values(metadataKeys(exportId)),
    `mz-${exportId}-batch-0000-99999.csv.gz`,
  ]);
  return target;
}
