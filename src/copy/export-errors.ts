// The errors an export refuses with before it writes anything, in the words of the system each
// mirrors: PostgreSQL's row size limit, Materialize's non-empty prefix.
import { PgError, SqlState } from "../errors.js";
import type { ListResult, ObjectStore } from "./storage/object-store.js";

/** PostgreSQL's words for its own row size limit (heapam.c: "row is too big: size %zu, maximum size %zu"). */
export function rowTooBig(bytes: number, max: number): PgError {
  return new PgError(SqlState.programLimitExceeded, `row is too big: size ${bytes}, maximum size ${max}`, {
    detail: "The proxy holds a whole row in memory while it encodes it; exports.maxRowBytes bounds that.",
    hint: "Raise exports.maxRowBytes in the proxy's config file (each export may then use a few times that much memory), or export the large column separately.",
  });
}

/**
 * Materialize's words (src/storage-types/src/sinks/s3_oneshot_sink.rs, "contains {} objects"),
 * with the plural right; when a crashed export's sentinel is there, the HINT says how to clear it.
 */
export function notEmpty(store: ObjectStore, listed: ListResult, connection: string | undefined): PgError {
  const n = listed.count;
  const sentinel = listed.keys.find((k) => /(^|\/)mz-[^/]+-INCOMPLETE$/.test(k));
  const cleanup = `copy-to-s3-proxy cleanup ${store.location}${connection === undefined ? "" : ` --connection ${connection}`}`;
  return new PgError(
    SqlState.systemError,
    `S3 bucket path is not empty, contains ${n} object${n === 1 ? "" : "s"}`,
    {
      detail: `${store.location} already holds ${n} object${n === 1 ? "" : "s"}, e.g. ${sentinel ?? listed.keys[0] ?? ""}.`,
      hint:
        sentinel === undefined
          ? "Export into an empty prefix, or remove the existing objects first."
          : `${store.url(sentinel)} is the sentinel of an export that did not finish. If its proxy is gone, "${cleanup}" shows what it left and "${cleanup} --yes" removes it; then export again.`,
    },
  );
}
