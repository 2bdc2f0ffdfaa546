// Many proxies, one run: each occurrence of a job has a lease object
// `<target>/_leases/<snapshot>.json`, and only the proxy whose conditional PutObject created it
// runs the occurrence. S3 guarantees the rest (conditional writes, AWS since 2024): a create with
// `If-None-Match: *` succeeds for exactly one writer (412 for the others), and `If-Match: <ETag>`
// replaces the object only if nobody else wrote it since. No consensus of our own.
//
// The holder renews its lease (If-Match) every ttl/3 while the run goes on. If it dies mid-run the
// lease expires; the next proxy to ask takes it over with If-Match on the ETag it read, removes
// what the dead run left under the snapshot prefix (as the cleanup command would), and runs the
// occurrence. A finished lease is marked done, so nobody runs that occurrence again.
import { randomUUID } from "node:crypto";
import { hostname } from "node:os";
import { GetObjectCommand, PutObjectCommand } from "@aws-sdk/client-s3";
import { executeCleanup, planCleanup } from "../copy/cleanup-command.js";
import type { ObjectStore } from "../copy/storage/object-store.js";
import { S3Store } from "../copy/storage/s3-store.js";
import { PgError, SqlState } from "../errors.js";
import type { Logger } from "../log.js";
import type { Clock } from "./clock.js";
import type { JobSpec } from "./jobs.js";
import type { HeldLease, OccurrenceLeases } from "./scheduler.js";

interface LeaseBody {
  owner: string;
  state: "running" | "done";
  /** ms since the epoch; a running lease not renewed by then is free to take over. */
  expires: number;
  outcome?: "succeeded" | "failed";
}

export const LEASE_DIR = "_leases";

/** Conditional PutObject/GetObject on an S3 store; other stores (file://) have no lease. */
class LeaseObject {
  constructor(
    private readonly store: S3Store,
    readonly key: string,
  ) {}

  /** The new ETag, or null on 412 (the condition failed: someone else wrote it). */
  async put(
    body: LeaseBody,
    cond: { ifNoneMatch: true } | { ifMatch: string },
    signal?: AbortSignal,
  ): Promise<string | null> {
    try {
      const out = await this.store.client.send(
        new PutObjectCommand({
          Bucket: this.store.bucket,
          Key: this.store.fullKey(this.key),
          Body: JSON.stringify(body),
          ContentType: "application/json",
          ...("ifNoneMatch" in cond ? { IfNoneMatch: "*" } : { IfMatch: cond.ifMatch }),
        }),
        { abortSignal: signal },
      );
      return out.ETag ?? null;
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      // 412 PreconditionFailed; 409 ConditionalRequestConflict (a concurrent conditional write).
      if (status === 412 || status === 409) return null;
      throw new PgError(SqlState.ioError, `could not write the lease ${this.store.url(this.key)}`, {
        detail: (e as Error).message,
      });
    }
  }

  async get(signal?: AbortSignal): Promise<{ body: LeaseBody; etag: string } | null> {
    try {
      const out = await this.store.client.send(
        new GetObjectCommand({ Bucket: this.store.bucket, Key: this.store.fullKey(this.key) }),
        { abortSignal: signal },
      );
      const body = JSON.parse(await out.Body!.transformToString()) as LeaseBody;
      return { body, etag: out.ETag ?? "" };
    } catch (e) {
      if ((e as { name?: string }).name === "NoSuchKey") return null;
      throw new PgError(SqlState.ioError, `could not read the lease ${this.store.url(this.key)}`, {
        detail: (e as Error).message,
      });
    }
  }
}

export class StoreLeases implements OccurrenceLeases {
  readonly owner = `${hostname()}:${process.pid}:${randomUUID()}`;

  constructor(
    private readonly storeFor: (job: JobSpec) => ObjectStore,
    private readonly clock: Clock,
    private readonly log: Logger,
    private readonly ttlMs = 60_000,
  ) {}

  async acquire(
    job: JobSpec,
    snapshot: string,
    signal: AbortSignal,
  ): Promise<HeldLease | { busyUntil: number } | null> {
    const store = this.storeFor(job);
    if (!(store instanceof S3Store)) return unleased();
    const lease = new LeaseObject(store, `${LEASE_DIR}/${snapshot}.json`);
    const mine = (): LeaseBody => ({
      owner: this.owner,
      state: "running",
      expires: this.clock.now() + this.ttlMs,
    });
    let etag = await lease.put(mine(), { ifNoneMatch: true }, signal);
    if (etag === null) {
      const cur = await lease.get(signal);
      if (cur === null || cur.body.state === "done") return null;
      if (cur.body.expires > this.clock.now()) return { busyUntil: cur.body.expires };
      // Its holder stopped renewing: it died mid-run. Take over, then clear what it left.
      etag = await lease.put(mine(), { ifMatch: cur.etag }, signal);
      if (etag === null) return { busyUntil: this.clock.now() + this.ttlMs };
      this.log.warn(
        { job: job.name, snapshot, previousOwner: cur.body.owner },
        "taking over an occurrence whose proxy stopped renewing its lease",
      );
      const plan = await planCleanup(store, signal, 0);
      const leftovers = {
        ...plan,
        exports: plan.exports.filter((e) => e.dir === snapshot || e.dir.startsWith(`${snapshot}/`)),
      };
      const r = await executeCleanup(
        store,
        {
          ...leftovers,
          orphanUploads: leftovers.orphanUploads.filter((u) => u.key.startsWith(`${snapshot}/`)),
          foreignUploads: [],
        },
        () => {},
      );
      if (r.failures.length > 0)
        throw new PgError(SqlState.ioError, `could not clear the unfinished run in ${store.url(snapshot)}`, {
          detail: r.failures.join("; "),
        });
    }
    return this.hold(lease, etag, mine, job);
  }

  private hold(lease: LeaseObject, first: string, mine: () => LeaseBody, job: JobSpec): HeldLease {
    const lost = new AbortController();
    let etag = first;
    let renewing: Promise<void> = Promise.resolve();
    let timer: unknown;
    const renew = (): void => {
      renewing = (async () => {
        const next = await lease.put(mine(), { ifMatch: etag }).catch((e: unknown) => {
          this.log.warn(
            { job: job.name, err: PgError.from(e).message },
            "could not renew the occurrence's lease",
          );
          return etag; // a transient failure: try again at the next renewal, before it expires
        });
        if (next === null) {
          lost.abort(new PgError(SqlState.queryCanceled, "another proxy took over this scheduled snapshot"));
          return;
        }
        etag = next;
        timer = this.clock.setTimer(renew, this.ttlMs / 3);
      })();
    };
    timer = this.clock.setTimer(renew, this.ttlMs / 3);
    return {
      lost: lost.signal,
      finish: async (outcome) => {
        this.clock.clearTimer(timer);
        await renewing;
        this.clock.clearTimer(timer);
        if (lost.signal.aborted) return;
        await lease.put({ owner: this.owner, state: "done", expires: 0, outcome }, { ifMatch: etag });
      },
    };
  }
}

function unleased(): HeldLease {
  return { lost: new AbortController().signal, finish: async () => {} };
}
