// Many proxies, one run: only the proxy that holds an occurrence's lease runs it. The lease rests
// on one guarantee S3 gives (and Ceph RadosGW 16.2 and moto honour, checked in
// test/integration/schedule-lease.test.ts): a PutObject with `If-None-Match: *` creates the object
// for exactly one writer, everyone else gets 412. No consensus of our own, and no `If-Match`
// (RadosGW 16.2 answers every If-Match PutObject with 412, even with the current ETag).
//
// The lease of occurrence S is a sequence of terms, `<target>/_leases/S/term-000000.json`,
// `term-000001.json`, …, each created with If-None-Match: whoever creates term n holds the lease
// until that term's `expires`. The holder renews by creating term n+1 every ttl/3; a proxy that
// finds the newest term expired (its holder died mid-run) takes over by creating the next term,
// removes what the dead run left under the snapshot prefix (as the cleanup command would) and runs
// the occurrence. A holder whose renewal gets 412 has been taken over and stops. `done.json` marks
// the occurrence finished, so nobody runs it again. Retention removes a snapshot's lease with it.
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
import type { HeldLease, OccurrenceLeases } from "./occurrence-run.js";

interface LeaseBody {
  owner: string;
  /** ms since the epoch; a term not followed by the next one by then is free to take over. */
  expires: number;
  outcome?: "succeeded" | "failed";
}

export const LEASE_DIR = "_leases";
const termKey = (n: number): string => `term-${String(n).padStart(6, "0")}.json`;
const TERM = /term-(\d{6})\.json$/;

/** One occurrence's lease objects on an S3 store. */
class LeaseTerms {
  constructor(
    private readonly store: S3Store,
    readonly dir: string,
  ) {}

  /** True if this call created the object; false if it existed (412). */
  async create(name: string, body: LeaseBody, signal?: AbortSignal): Promise<boolean> {
    const key = `${this.dir}/${name}`;
    try {
      await this.store.client.send(
        new PutObjectCommand({
          Bucket: this.store.bucket,
          Key: this.store.fullKey(key),
          Body: JSON.stringify(body),
          ContentType: "application/json",
          IfNoneMatch: "*",
        }),
        { abortSignal: signal },
      );
      return true;
    } catch (e) {
      const status = (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode;
      // 412 PreconditionFailed; 409 ConditionalRequestConflict (a concurrent create, AWS).
      if (status === 412 || status === 409) return false;
      throw new PgError(SqlState.ioError, `could not write the lease ${this.store.url(key)}`, {
        detail: (e as Error).message,
      });
    }
  }

  /** The newest term and its body, and whether the occurrence is done. */
  async state(signal: AbortSignal): Promise<{ done: boolean; term: number; body: LeaseBody | undefined }> {
    const { keys } = await this.store.list(this.dir, signal, Number.POSITIVE_INFINITY);
    if (keys.some((k) => k.endsWith("/done.json"))) return { done: true, term: -1, body: undefined };
    let term = -1;
    for (const k of keys) {
      const m = TERM.exec(k);
      if (m !== null) term = Math.max(term, Number(m[1]));
    }
    if (term < 0) return { done: false, term, body: undefined };
    const out = await this.store.client.send(
      new GetObjectCommand({
        Bucket: this.store.bucket,
        Key: this.store.fullKey(`${this.dir}/${termKey(term)}`),
      }),
      { abortSignal: signal },
    );
    return { done: false, term, body: JSON.parse(await out.Body!.transformToString()) as LeaseBody };
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
    const lease = new LeaseTerms(store, `${LEASE_DIR}/${snapshot}`);
    const ttl = job.leaseTermMs ?? this.ttlMs;
    const mine = (): LeaseBody => ({ owner: this.owner, expires: this.clock.now() + ttl });
    if (await lease.create(termKey(0), mine(), signal)) return this.hold(lease, 0, mine, job, ttl);
    const cur = await lease.state(signal);
    if (cur.done) return null;
    if (cur.body === undefined || cur.body.expires > this.clock.now()) {
      return { busyUntil: cur.body?.expires ?? this.clock.now() + ttl };
    }
    // Its holder stopped renewing: it died mid-run. Take over, then clear what it left.
    if (!(await lease.create(termKey(cur.term + 1), mine(), signal)))
      return { busyUntil: this.clock.now() + ttl };
    this.log.warn(
      { job: job.name, snapshot, previousOwner: cur.body.owner },
      "taking over an occurrence whose proxy stopped renewing its lease",
    );
    const plan = await planCleanup(store, signal, 0);
    const inSnapshot = (key: string): boolean => key.startsWith(`${snapshot}/`);
    const r = await executeCleanup(
      store,
      {
        ...plan,
        exports: plan.exports.filter((e) => e.dir === snapshot || inSnapshot(e.dir)),
        recent: [],
        orphanUploads: plan.orphanUploads.filter((u) => inSnapshot(u.key)),
        foreignUploads: [],
      },
      () => {},
    );
    if (r.failures.length > 0) {
      throw new PgError(SqlState.ioError, `could not clear the unfinished run in ${store.url(snapshot)}`, {
        detail: r.failures.join("; "),
      });
    }
    // A holder that died after its COPY completed (before done.json) left a complete snapshot:
    // it is published, not run again (the prefix is not empty any more: a COPY would get 58000).
    const { keys } = await store.list(snapshot, signal, Number.POSITIVE_INFINITY);
    const complete =
      keys.some((k) => k.endsWith("-manifest.json")) && !keys.some((k) => k.endsWith("-INCOMPLETE"));
    return this.hold(lease, cur.term + 1, mine, job, ttl, complete);
  }

  private hold(
    lease: LeaseTerms,
    first: number,
    mine: () => LeaseBody,
    job: JobSpec,
    ttl: number,
    complete = false,
  ): HeldLease {
    const lost = new AbortController();
    let term = first;
    let renewing: Promise<void> = Promise.resolve();
    let timer: unknown;
    let finished = false;
    const renew = (): void => {
      renewing = (async () => {
        const created = await lease.create(termKey(term + 1), mine()).catch((e: unknown) => {
          this.log.warn(
            { job: job.name, err: PgError.from(e).message },
            "could not renew the occurrence's lease",
          );
          return undefined; // transient: try again at the next renewal, before the term expires
        });
        if (created === false) {
          lost.abort(new PgError(SqlState.queryCanceled, "another proxy took over this scheduled snapshot"));
          return;
        }
        if (created === true) term++;
        if (!finished) timer = this.clock.setTimer(renew, ttl / 3);
      })();
    };
    timer = this.clock.setTimer(renew, ttl / 3);
    return {
      lost: lost.signal,
      complete,
      finish: async (outcome) => {
        finished = true;
        this.clock.clearTimer(timer);
        await renewing;
        this.clock.clearTimer(timer);
        if (lost.signal.aborted) return;
        await lease.create("done.json", { owner: this.owner, expires: 0, outcome });
      },
    };
  }
}

function unleased(): HeldLease {
  return { lost: new AbortController().signal, finish: async () => {} };
}
