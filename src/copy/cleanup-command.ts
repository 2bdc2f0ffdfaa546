// `copy-to-s3-proxy cleanup s3://bucket/prefix [--yes] [--connection NAME]` (SPEC §2.2): finds what
// exports that never finished left under a prefix — a proxy killed with -9, a host that died, a
// cleanup that failed — and, with --yes, removes it.
//
// An unfinished export is recognised by its sentinel `<dir>/mz-<id>-INCOMPLETE` (the sentinel goes
// last on success and stays on any failure of the cleanup). For each one: its multipart uploads
// are aborted, then its objects (`<dir>/mz-<id>-…` data files, `<dir>/_meta/mz-<id>-…` manifests) are deleted, and the
// sentinel last, so an interrupted cleanup can simply be run again. Multipart uploads named like
// an export's data files whose export has no sentinel are orphans too and are aborted. Anything
// else under the prefix is listed as left alone and never touched.
//
// Without --yes nothing is changed: the command prints what it would do.
//
// A running export also has a sentinel, but it re-writes it every few minutes
// (exports.sentinelRefreshMs). Exports whose sentinel is younger than --older-than (default three
// refresh intervals) are reported as possibly running and left alone, uploads and files included.

import { DEFAULT_EXPORT_LIMITS } from "../config.js";
import { PgError, SqlState } from "../errors.js";
import type { AwsConnection } from "./aws-connection.js";
import { explainAwsSetup } from "./aws-setup-errors.js";
import type { ConnectionRegistry } from "./connections.js";
import { createStore } from "./create-store.js";
import { META_DIR } from "./manifest.js";
import { plural } from "./progress-notice.js";
import type { ObjectStore, PendingUpload, StoreOptions } from "./storage/object-store.js";
import { parseTargetUrl, type TargetUrl } from "./storage/target-url.js";

/** Default --older-than: three missed sentinel refreshes. */
export const olderThanDefault = (sentinelRefreshMs = DEFAULT_EXPORT_LIMITS.sentinelRefreshMs): number =>
  3 * sentinelRefreshMs;

/** "0", "90s", "15m", "2h", "1d" (a bare number is seconds) → milliseconds. */
export function parseDuration(s: string): number {
  const m = /^(\d+(?:\.\d+)?)\s*(s|m|h|d)?$/.exec(s.trim());
  if (!m) {
    throw new PgError(SqlState.invalidParameterValue, `invalid --older-than value "${s}"`, {
      hint: "Use a number with s, m, h or d, e.g. 15m; 0 means every unfinished export.",
    });
  }
  const unit = { s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[(m[2] ?? "s") as "s" | "m" | "h" | "d"];
  return Number(m[1]) * unit;
}

/** `mz-<id>-INCOMPLETE`; the id is ours (a UUID) or Materialize's, never containing "/". */
const SENTINEL = /^mz-([^/]+)-INCOMPLETE$/;
/** A data file of an export: `mz-<id>-batch-<BBBB>-<NNNN>.<ext>` (past file 9999 the index has more digits). */
const DATA_FILE = /^mz-([^/]+?)-batch-\d{4,}-\d{4,}\.[^/]+$/;

export interface UnfinishedExport {
  /** Directory of the export, relative to the store ("" = the store's own directory). */
  dir: string;
  id: string;
  sentinel: string;
  /** Objects of the export other than the sentinel (data files, manifest), relative keys. */
  objects: string[];
  uploads: PendingUpload[];
}

export interface CleanupPlan {
  location: string;
  exports: UnfinishedExport[];
  /** Exports whose sentinel is younger than --older-than: possibly still running, left alone. */
  recent: Array<UnfinishedExport & { age: number }>;
  /** Uploads named like an export's data files whose export has no sentinel. */
  orphanUploads: PendingUpload[];
  /** Uploads that no export made: reported, left alone. */
  foreignUploads: PendingUpload[];
}

const split = (key: string): { dir: string; name: string } => {
  const i = key.lastIndexOf("/");
  return i < 0 ? { dir: "", name: key } : { dir: key.slice(0, i), name: key.slice(i + 1) };
};
const join = (dir: string, name: string): string => (dir === "" ? name : `${dir}/${name}`);

export async function planCleanup(
  store: ObjectStore,
  signal: AbortSignal,
  olderThanMs = 0,
  now = Date.now(),
): Promise<CleanupPlan> {
  const { keys } = await store.list("", signal, Number.POSITIVE_INFINITY);
  const uploads = await store.listUploads("", signal);
  const byExport = new Map<string, UnfinishedExport>();
  for (const key of keys) {
    const { dir, name } = split(key);
    const m = SENTINEL.exec(name);
    if (m) byExport.set(join(dir, m[1]!), { dir, id: m[1]!, sentinel: key, objects: [], uploads: [] });
  }
  for (const e of byExport.values()) {
    const own = `mz-${e.id}-`;
    // Its data files lie beside the sentinel, its manifests in the _meta directory there.
    const meta = join(e.dir, META_DIR);
    e.objects = keys.filter((k) => {
      const { dir, name } = split(k);
      return (dir === e.dir || dir === meta) && name.startsWith(own) && k !== e.sentinel;
    });
  }
  const orphanUploads: PendingUpload[] = [];
  const foreignUploads: PendingUpload[] = [];
  for (const u of uploads) {
    const { dir, name } = split(u.key);
    const owner = [...byExport.values()].find((e) => e.dir === dir && name.startsWith(`mz-${e.id}-`));
    if (owner !== undefined) owner.uploads.push(u);
    else if (DATA_FILE.test(name)) orphanUploads.push(u);
    else foreignUploads.push(u);
  }
  const exports: UnfinishedExport[] = [];
  const recent: CleanupPlan["recent"] = [];
  for (const e of byExport.values()) {
    const modified = olderThanMs > 0 ? await store.modified(e.sentinel, signal) : undefined;
    const age = modified === undefined ? Number.POSITIVE_INFINITY : now - modified.getTime();
    if (age < olderThanMs) recent.push({ ...e, age });
    else exports.push(e);
  }
  return { location: store.location, exports, recent, orphanUploads, foreignUploads };
}

export interface CleanupResult {
  uploadsAborted: number;
  objectsDeleted: number;
  failures: string[];
}

/** Carries out a plan, printing one line per action. Never throws for S3 errors: they are counted. */
export async function executeCleanup(
  store: ObjectStore,
  plan: CleanupPlan,
  print: (line: string) => void,
): Promise<CleanupResult> {
  const r: CleanupResult = { uploadsAborted: 0, objectsDeleted: 0, failures: [] };
  const fail = (what: string, e: unknown): void => {
    const err = PgError.from(e);
    const msg = `${what}: ${err.message}${err.detail ? ` (${err.detail})` : ""}`;
    r.failures.push(msg);
    print(`  FAILED ${msg}`);
  };
  const abort = async (u: PendingUpload): Promise<boolean> => {
    try {
      await store.abortUpload(u.key, u.uploadId);
      r.uploadsAborted++;
      print(`  aborted multipart upload ${store.url(u.key)} (upload id ${u.uploadId})`);
      return true;
    } catch (e) {
      fail(`abort multipart upload ${store.url(u.key)} (upload id ${u.uploadId})`, e);
      return false;
    }
  };
  const remove = async (keys: string[]): Promise<boolean> => {
    if (keys.length === 0) return true;
    try {
      await store.delete(keys);
      r.objectsDeleted += keys.length;
      for (const k of keys) print(`  deleted ${store.url(k)}`);
      return true;
    } catch (e) {
      fail(`delete ${keys.map((k) => store.url(k)).join(", ")}`, e);
      return false;
    }
  };
  for (const e of plan.exports) {
    print(`export ${e.id} in ${store.url(e.dir)}:`);
    let ok = true;
    for (const u of e.uploads) ok = (await abort(u)) && ok;
    ok = (await remove(e.objects)) && ok;
    // The sentinel goes last, and only when everything else is gone.
    if (ok) await remove([e.sentinel]);
    else print(`  kept ${store.url(e.sentinel)}: the export is not fully removed; run cleanup again`);
  }
  if (plan.orphanUploads.length > 0) print("multipart uploads of exports without a sentinel:");
  for (const u of plan.orphanUploads) await abort(u);
  return r;
}

/** Prints a plan without changing anything. */
export function describePlan(store: ObjectStore, plan: CleanupPlan, print: (line: string) => void): void {
  for (const e of plan.exports) {
    print(`export ${e.id} in ${store.url(e.dir)}:`);
    for (const u of e.uploads)
      print(`  would abort multipart upload ${store.url(u.key)} (upload id ${u.uploadId})`);
    for (const k of [...e.objects, e.sentinel]) print(`  would delete ${store.url(k)}`);
  }
  if (plan.orphanUploads.length > 0) print("multipart uploads of exports without a sentinel:");
  for (const u of plan.orphanUploads)
    print(`  would abort multipart upload ${store.url(u.key)} (upload id ${u.uploadId})`);
}

export interface CleanupCommandOptions {
  target: string;
  yes: boolean;
  /** --older-than as given; default three times `sentinelRefreshMs`. */
  olderThan?: string | undefined;
  sentinelRefreshMs?: number;
  connection: string | undefined;
  connections: ConnectionRegistry;
  storeOptions?: StoreOptions;
  out: (line: string) => void;
}

/** The subcommand; resolves with the process exit code (0 done or dry run, 1 something failed). */
export async function runCleanupCommand(o: CleanupCommandOptions): Promise<number> {
  let target: TargetUrl;
  try {
    target = parseTargetUrl(o.target);
  } catch (e) {
    throw inCleanupWords(e);
  }
  const conn = target.scheme === "s3" ? cleanupConnection(o.connections, o.connection) : undefined;
  const store = createStore(conn, target, o.storeOptions);
  const signal = new AbortController().signal;
  const olderThanMs =
    o.olderThan === undefined ? olderThanDefault(o.sentinelRefreshMs) : parseDuration(o.olderThan);
  const plan = await planCleanup(store, signal, olderThanMs).catch((e: unknown) => {
    throw explainAwsSetup(e, conn, "no --connection was given");
  });
  for (const e of plan.recent) {
    o.out(
      `left alone (sentinel written ${Math.round(e.age / 1000)} s ago, under --older-than: may still be running): export ${e.id} in ${store.url(e.dir)}`,
    );
  }
  const nUploads = plan.exports.reduce((n, e) => n + e.uploads.length, 0) + plan.orphanUploads.length;
  const nObjects = plan.exports.reduce((n, e) => n + e.objects.length + 1, 0);
  o.out(
    `${store.location}: ${plural(plan.exports.length, "unfinished export")}, ${plural(nUploads, "multipart upload")} and ${plural(nObjects, "object")} to remove`,
  );
  for (const u of plan.foreignUploads) {
    o.out(`left alone (not an export's): multipart upload ${store.url(u.key)} (upload id ${u.uploadId})`);
  }
  if (nUploads === 0 && nObjects === 0) {
    o.out("nothing to do");
    return 0;
  }
  if (!o.yes) {
    describePlan(store, plan, o.out);
    o.out(
      "dry run: nothing was changed. Make sure no proxy is still running these exports, then run again with --yes.",
    );
    return 0;
  }
  const r = await executeCleanup(store, plan, o.out);
  const left = await store.listUploads("", signal).catch(() => null);
  const ours = left?.filter((u) => !plan.foreignUploads.some((f) => f.uploadId === u.uploadId));
  o.out(
    `done: ${plural(r.uploadsAborted, "multipart upload")} aborted, ${plural(r.objectsDeleted, "object")} deleted` +
      (r.failures.length > 0 ? `, ${plural(r.failures.length, "failure")}` : "") +
      (ours && ours.length > 0 ? `; ${plural(ours.length, "multipart upload")} still listed` : ""),
  );
  return r.failures.length > 0 ? 1 : 0;
}

/**
 * The target checks are the statement's, and speak of "COPY TO target"; here the user gave the
 * cleanup command a prefix.
 */
function inCleanupWords(e: unknown): unknown {
  if (!(e instanceof PgError)) return e;
  const say = (t: string | undefined): string | undefined =>
    t
      ?.replace(/as COPY TO target\b/g, "as the cleanup prefix")
      .replace(/COPY TO target\b/g, "cleanup prefix");
  return new PgError(e.code, say(e.message)!, { detail: say(e.detail), hint: say(e.hint), cause: e });
}

/**
 * --connection: a connection of the proxy's configuration (the statement's lookup also knows
 * Materialize's catalog, whose words are "unknown catalog item"). The operator running cleanup
 * may see the configured names.
 */
function cleanupConnection(connections: ConnectionRegistry, name: string | undefined): AwsConnection {
  try {
    return connections.get(name);
  } catch (e) {
    if (!(e instanceof PgError) || e.code !== SqlState.undefinedObject) throw e;
    const names = connections.names();
    throw new PgError(SqlState.undefinedObject, `unknown AWS connection "${name}" (--connection)`, {
      hint:
        names.length === 0
          ? 'No AWS connections are configured: add one under "connections" in the config file given with --config, or set C2S_CONNECTION_<NAME>_* variables; without --connection the AWS SDK\'s default chain is used.'
          : `Configured connections: ${names.join(", ")}.`,
      cause: e,
    });
  }
}
