// SPEC §2.2: a failed or cancelled export leaves the prefix as it found it; if that fails, the
// sentinel stays and the error names every key left. Everything that can go at once goes at once
// (the client waits for this before it gets its answer): completed files and the manifest are
// deleted while unfinished uploads are aborted, then one listing sweeps uploads whose ids never
// reached us (if there can be any), and the sentinel goes last.

import { PgError } from "../errors.js";
import type { Logger } from "../log.js";
import type { Sentinel } from "./sentinel.js";
import { abortUploadsOf, type ObjectStore } from "./storage/object-store.js";
import type { CleanupFailure } from "./upload-sink.js";

/** What took the export's files (its upload sinks): it takes them back, with `extra` keys. */
export interface TakesBack {
  takeBack(extra: readonly string[]): Promise<CleanupFailure[]>;
}

export interface TakeBack {
  store: ObjectStore;
  sink: TakesBack | null;
  sentinel: Sentinel;
  /** Keys written outside the sink that may exist (the manifest). */
  extra: string[];
  /** Every key of this export starts with it (`mz-<id>-`). */
  keyPrefix: string;
  log: Logger;
  exportId: string;
}

/** Undoes the export; on failure, adds what is left (and how to remove it) to `err`. */
export async function takeBackExport(t: TakeBack, err: PgError): Promise<PgError> {
  const { store, log, exportId } = t;
  const left: string[] = [];
  const reasons: string[] = [];
  const note = (what: string, e: unknown): void => {
    reasons.push(describeError(e));
    log.error({ exportId, err: describeError(e) }, `cleanup could not ${what}`);
  };
  // Whatever this export may have written, when a step cannot say what it left.
  const mayRemain = `objects of ${store.url(t.keyPrefix)}*`;
  await t.sentinel.stopHeartbeat();
  if (t.sink !== null) {
    try {
      for (const f of await t.sink.takeBack(t.extra)) {
        left.push(store.url(f.key));
        reasons.push(f.message);
      }
    } catch (e) {
      left.push(mayRemain);
      note("delete files", e);
    }
  } else if (t.extra.length > 0) {
    try {
      await store.delete(t.extra);
    } catch (e) {
      left.push(...t.extra.map((k) => store.url(k)));
      note("delete files", e);
    }
  }
  // Each upload aborted its own; a listing is needed only for one whose id never reached us.
  try {
    if (store.unknownUploadsPossible) await abortUploadsOf(store, t.keyPrefix);
  } catch (e) {
    left.push(PgError.from(e).detail ?? `multipart uploads of ${store.url(t.keyPrefix)}*`);
    note("abort multipart uploads", e);
  }
  if (left.length === 0) {
    try {
      await t.sentinel.remove();
    } catch (e) {
      note("delete the sentinel", e);
    }
  }
  // The sentinel stays whenever anything else does, so nobody mistakes the rest for complete.
  if (t.sentinel.mayExist) left.push(store.url(t.sentinel.key));
  if (left.length === 0) return err;
  return withLeftBehind(err, store, left, reasons);
}

/**
 * `err`, the export's own error, with what the cleanup left behind in its DETAIL and how to remove
 * it in its HINT (SPEC §2.2): the client learns why the export failed, and what is left.
 */
export function withLeftBehind(
  err: PgError,
  store: ObjectStore,
  left: readonly string[],
  reasons: readonly string[],
): PgError {
  const shown = left.length > 50 ? [...left.slice(0, 50), `… and ${left.length - 50} more`] : left;
  const detail = `cleanup failed (${[...new Set(reasons)].join("; ") || "unknown error"}); left behind: ${shown.join(", ")}`;
  return new PgError(err.code, err.message, {
    detail: err.detail ? `${err.detail}\n${detail}` : detail,
    hint: err.hint ?? `Remove them with: copy-to-s3-proxy cleanup ${store.location} --yes --older-than 0`,
    cause: err,
  });
}

export function describeError(e: unknown): string {
  const err = PgError.from(e);
  return err.detail ? `${err.message}: ${err.detail}` : err.message;
}
