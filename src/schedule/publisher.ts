// A job's target after each run: `latest.json` names the newest complete snapshot, and retention
// removes complete snapshots no longer kept. Both work from one listing of the target, so neither
// needs to read an object back:
// - complete = the snapshot's manifest is there and its sentinel is not (SPEC §2: the sentinel
//   goes last); a snapshot without both is running, or was left by a crash for the cleanup
//   command, and is never touched here;
// - latest.json names the newest complete snapshot, so it never moves backwards when an older
//   occurrence finishes after a newer one, and the snapshot it names is never pruned.
import type { ObjectStore } from "../copy/storage/object-store.js";
import { PgError, SqlState } from "../errors.js";
import type { JobSpec } from "./jobs.js";
import type { SnapshotPublisher } from "./occurrence-run.js";

export const LATEST_KEY = "latest.json";
const SNAPSHOT = /^snapshot=(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z)$/;

export interface SnapshotDir {
  name: string;
  /** ms since the epoch, from the name. */
  at: number;
  complete: boolean;
  dataKeys: string[];
  metaKeys: string[];
  manifest: string | undefined;
  redshift: string | undefined;
}

/** The snapshots under a job's target, oldest first. */
export async function listSnapshots(store: ObjectStore, signal: AbortSignal): Promise<SnapshotDir[]> {
  const { keys } = await store.list("", signal, Number.POSITIVE_INFINITY);
  const dirs = new Map<string, SnapshotDir>();
  const incomplete = new Set<string>();
  for (const key of keys) {
    const slash = key.indexOf("/");
    if (slash < 0) continue;
    const name = key.slice(0, slash);
    const m = SNAPSHOT.exec(name);
    if (m === null) continue;
    let d = dirs.get(name);
    if (d === undefined) {
      d = {
        name,
        at: Date.parse(m[1]!),
        complete: false,
        dataKeys: [],
        metaKeys: [],
        manifest: undefined,
        redshift: undefined,
      };
      dirs.set(name, d);
    }
    const rest = key.slice(slash + 1);
    if (rest.startsWith("_meta/")) {
      d.metaKeys.push(key);
      if (rest.endsWith("-manifest.json")) d.manifest = key;
      if (rest.endsWith("-redshift.manifest")) d.redshift = key;
    } else {
      d.dataKeys.push(key);
      if (rest.endsWith("-INCOMPLETE")) incomplete.add(name);
    }
  }
  for (const d of dirs.values()) d.complete = d.manifest !== undefined && !incomplete.has(d.name);
  return [...dirs.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/** Which complete snapshots retention removes (pure, for tests). */
export function snapshotsToPrune(
  dirs: readonly SnapshotDir[],
  rule: { keep: number | undefined; maxAgeMs: number | undefined },
  protect: readonly string[],
  now: number,
): SnapshotDir[] {
  if (rule.keep === undefined && rule.maxAgeMs === undefined) return [];
  const complete = dirs.filter((d) => d.complete);
  const newest = complete.at(-1)?.name;
  const kept = new Set<string>(protect);
  if (newest !== undefined) kept.add(newest);
  if (rule.keep !== undefined) for (const d of complete.slice(-rule.keep)) kept.add(d.name);
  if (rule.maxAgeMs !== undefined) for (const d of complete) if (now - d.at < rule.maxAgeMs) kept.add(d.name);
  // With only maxAge, "keep" imposes nothing; with only keep, age imposes nothing.
  return complete.filter((d) => !kept.has(d.name));
}

export class TargetPublisher implements SnapshotPublisher {
  constructor(private readonly storeFor: (job: JobSpec) => ObjectStore) {}

  async publish(job: JobSpec, snapshot: string, signal: AbortSignal): Promise<void> {
    const store = this.storeFor(job);
    const dirs = await listSnapshots(store, signal);
    const mine = dirs.find((d) => d.name === snapshot);
    if (mine === undefined || !mine.complete) {
      throw new PgError(
        SqlState.systemError,
        `snapshot ${store.url(snapshot)} is not complete; latest.json not moved`,
      );
    }
    const newest = dirs.filter((d) => d.complete).at(-1)!;
    await store.put(LATEST_KEY, latestDocument(job, store, newest), signal);
  }

  async prune(job: JobSpec, keep: readonly string[], now: number, signal: AbortSignal): Promise<string[]> {
    const store = this.storeFor(job);
    const gone = snapshotsToPrune(await listSnapshots(store, signal), job, keep, now);
    for (const d of gone) {
      // Data first, the manifests last: an interrupted prune leaves a snapshot that still looks
      // complete and is pruned again next time, never one that looks unfinished forever.
      await store.delete(d.dataKeys, signal);
      await store.delete(d.metaKeys, signal);
      // Its lease (lease.ts), done long ago.
      await store.delete(
        (await store.list(`_leases/${d.name}`, signal, Number.POSITIVE_INFINITY)).keys,
        signal,
      );
    }
    return gone.map((d) => d.name);
  }
}

/** The body of latest.json. */
export function latestDocument(job: JobSpec, store: ObjectStore, d: SnapshotDir): string {
  return `${JSON.stringify(
    {
      version: 1,
      job: job.name,
      snapshot: d.name,
      at: new Date(d.at).toISOString(),
      prefix: store.url(d.name),
      manifest: d.manifest === undefined ? null : store.url(d.manifest),
      redshiftManifest: d.redshift === undefined ? null : store.url(d.redshift),
      files: d.dataKeys.map((k) => store.url(k)),
    },
    null,
    2,
  )}\n`;
}
