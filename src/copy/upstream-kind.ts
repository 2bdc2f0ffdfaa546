// Which kind of database is on the other end of a session (SPEC §5): Materialize reports an
// `mz_version` ParameterStatus at startup; `SELECT mz_version()` answers on Materialize only.
// `--upstream-kind` overrides the detection for every session.
import type { UpstreamKind } from "../config.js";

export type DetectedKind = "postgres" | "materialize";

/** From what the session learned at connect time; the override wins. */
export function upstreamKindOf(
  override: UpstreamKind,
  parameters: ReadonlyMap<string, string>,
): DetectedKind {
  if (override !== "auto") return override;
  return parameters.has("mz_version") ? "materialize" : "postgres";
}

/**
 * Whether the connect-time parameters leave the kind open: no `mz_version`, but a
 * `server_version` of 9.5 (what Materialize emulates) or none at all. Only then is a
 * `SELECT mz_version()` probe worth a round trip.
 */
export function kindIsAmbiguous(override: UpstreamKind, parameters: ReadonlyMap<string, string>): boolean {
  if (override !== "auto" || parameters.has("mz_version")) return false;
  const v = parameters.get("server_version");
  return v === undefined || /^9\.5(\.|$)/.test(v);
}

// Per session (the parameter map lives as long as the session): the probe runs at most once.
const probed = new WeakMap<ReadonlyMap<string, string>, DetectedKind>();

/**
 * The upstream kind for an export. Asks the upstream `SELECT mz_version()` when the connect-time
 * parameters are ambiguous (see kindIsAmbiguous) and remembers the answer for the session.
 */
export async function resolveUpstreamKind(
  override: UpstreamKind,
  parameters: ReadonlyMap<string, string>,
  probe: () => Promise<boolean>,
): Promise<DetectedKind> {
  if (!kindIsAmbiguous(override, parameters)) return upstreamKindOf(override, parameters);
  const known = probed.get(parameters);
  if (known !== undefined) return known;
  let kind: DetectedKind = "postgres";
  try {
    if (await probe()) kind = "materialize";
  } catch {
    // `function mz_version() does not exist`: PostgreSQL.
  }
  probed.set(parameters, kind);
  return kind;
}
