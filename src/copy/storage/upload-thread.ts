// The relay's side of the S3 upload thread (upload-worker.ts): one thread per process, started
// with the first part and shared by every export, which keeps its keep-alive sockets and loads the
// AWS SDK once (docs/decisions.md, "S3 part uploads off the relay's thread"). A part goes there
// with its buffer transferred, not copied; the promise settles when the thread's request has
// settled (so an upload's cleanup still waits for every part), with the buffer back. A thread that
// dies fails every part it held with an XX000 error and is replaced by the next part's.
import { Worker } from "node:worker_threads";
import { type S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { entryAt, profilerArgs } from "../../encoders/worker/worker-entry.js";
import { PgError, SqlState } from "../../errors.js";
import { s3Attempt, s3Operation } from "../../metrics/metrics.js";
import { threadSettingsOf } from "./s3-client.js";
import {
  type FromUploadThread,
  type PartRequest,
  type PartResult,
  type ToUploadThread,
  toWireS3Error,
  type WireS3Error,
} from "./upload-protocol.js";

/**
 * The upload thread's young generation, in MB (V8's default lets it grow to 48). The thread makes
 * a few hundred kB of garbage per part (the SDK's request and answer), so a small one costs a
 * scavenge every few parts; the default let its heap sit at ~29 MB committed for ~13 MB used,
 * all of it in the export's peak RSS (docs/decisions.md, "Peak RSS: malloc arenas and young
 * generations").
 */
export const UPLOAD_YOUNG_GENERATION_MB = 3;

interface Pending {
  resolve: (r: { result: PartResult; body: Buffer }) => void;
  reject: (e: { error: unknown; body: Buffer | undefined }) => void;
  offset: number;
  length: number;
}

/** Client ids, process-wide: a client keeps its id across threads. */
const ids = new WeakMap<S3Client, number>();
let nextId = 1;

/** Tests only: the thread of the process, to end it as a crash would. */
export const uploadThreadTestHooks: { current: () => UploadThread | undefined } = {
  current: () => shared,
};

let shared: UploadThread | undefined;

/**
 * The process's upload thread at niceness `nice`, started if there is none, if the last one died,
 * or if it runs at another niceness (a reload changed exports.workerNice: a thread cannot raise
 * its own priority back, so a new one starts and the old one ends once its parts have settled).
 */
export function uploadThread(nice: number): UploadThread {
  if (shared !== undefined && !shared.dead && shared.nice === nice) return shared;
  const old = shared;
  shared = new UploadThread(nice);
  old?.retire();
  return shared;
}

/** Whether parts of `client` can go to the upload thread: it was built by createS3Client. */
export function threadCanSend(client: S3Client): boolean {
  return threadSettingsOf(client) !== undefined;
}

/** The SDK error the thread saw, rebuilt with the fields s3-errors.ts and the callers read. */
function fromWire(w: WireS3Error): Error {
  const $metadata = { httpStatusCode: w.httpStatusCode, requestId: w.requestId, attempts: w.attempts };
  if (w.service) {
    return new S3ServiceException({
      name: w.name,
      $fault: w.fault ?? "server",
      $metadata,
      message: w.message,
    });
  }
  return Object.assign(new Error(w.message), { name: w.name, code: w.code, $metadata });
}

export class UploadThread {
  readonly #worker: Worker;
  readonly #pending = new Map<number, Pending>();
  /** The clients this thread has a twin of (by id), for the credentials it asks for. */
  readonly #clients = new Map<number, WeakRef<S3Client>>();
  readonly #forget = new FinalizationRegistry<number>((id) => {
    this.#clients.delete(id);
    this.#post({ t: "drop", client: id });
  });
  #nextReq = 1;
  #retiring = false;
  #died: PgError | undefined;
  /** The niceness asked for (the thread stays at the process's own if that is nicer already). */
  readonly nice: number;
  /** Parts sent through this thread (tests and the record). */
  partsSent = 0;

  constructor(nice: number) {
    this.nice = nice;
    // None of the process's node options but the profiler's (as the encoder threads: worker-entry.ts).
    this.#worker = new Worker(entryAt(new URL("./upload-worker.js", import.meta.url)), {
      workerData: { nice },
      execArgv: profilerArgs(),
      resourceLimits: { maxYoungGenerationSizeMb: UPLOAD_YOUNG_GENERATION_MB },
    });
    this.#worker.unref(); // held only while parts are in flight (#post of a part refs it)
    this.#worker.on("message", (m: FromUploadThread) => this.#receive(m));
    this.#worker.on("error", (e: Error) => this.#die(`the S3 upload thread failed: ${e.name}: ${e.message}`));
    this.#worker.on("exit", (code: number) => this.#die(`the S3 upload thread exited (code ${code})`));
  }

  /** Parts this thread holds whose requests have not settled. */
  get inFlight(): number {
    return this.#pending.size;
  }

  get dead(): boolean {
    return this.#died !== undefined;
  }

  /** No more parts come: the thread ends once those it holds have settled. */
  retire(): void {
    this.#retiring = true;
    if (this.#pending.size === 0) void this.#worker.terminate();
  }

  /** The thread's V8 limits as Node applied them (tests). */
  get resourceLimits(): Worker["resourceLimits"] {
    return this.#worker.resourceLimits;
  }

  /** Tests only: ends the thread as a crash would. */
  terminate(): Promise<number> {
    return this.#worker.terminate();
  }

  /**
   * Sends one UploadPart from the thread. `body` is a view of a part buffer of its own (byteOffset
   * and length within it): its ArrayBuffer is transferred, and unusable here until the promise
   * settles with it (`body` in the result, or in the rejection: undefined when the thread died).
   * `signal` cancels the request; the promise still waits for the thread to see it settle.
   */
  send(
    client: S3Client,
    part: PartRequest,
    body: Buffer,
    signal: AbortSignal,
  ): Promise<{ result: PartResult; body: Buffer }> {
    if (this.#died !== undefined) return Promise.reject({ error: this.#died, body });
    const clientId = this.#register(client);
    const req = this.#nextReq++;
    const buf = body.buffer as ArrayBuffer;
    return new Promise((resolve, reject) => {
      const onAbort = (): void => this.#post({ t: "cancel", req });
      this.#pending.set(req, {
        resolve: (r) => {
          signal.removeEventListener("abort", onAbort);
          resolve(r);
        },
        reject: (e) => {
          signal.removeEventListener("abort", onAbort);
          reject(e);
        },
        offset: body.byteOffset,
        length: body.length,
      });
      if (this.#pending.size === 1) this.#worker.ref();
      this.partsSent++;
      this.#post(
        { t: "part", req, client: clientId, part, buf, offset: body.byteOffset, length: body.length },
        [buf],
      );
      signal.addEventListener("abort", onAbort, { once: true });
      if (signal.aborted) onAbort();
    });
  }

  #register(client: S3Client): number {
    let id = ids.get(client);
    if (id === undefined) {
      id = nextId++;
      ids.set(client, id);
    }
    if (!this.#clients.has(id)) {
      this.#clients.set(id, new WeakRef(client));
      this.#forget.register(client, id);
      this.#post({ t: "client", client: id, settings: threadSettingsOf(client)! });
    }
    return id;
  }

  #post(m: ToUploadThread, transfer: ArrayBuffer[] = []): void {
    if (this.#died === undefined) this.#worker.postMessage(m, transfer);
  }

  #receive(m: FromUploadThread): void {
    switch (m.t) {
      case "settled": {
        const p = this.#pending.get(m.req);
        if (p === undefined) return;
        this.#settled(m.req);
        const body = Buffer.from(m.buf, p.offset, p.length);
        if (m.result !== undefined) p.resolve({ result: m.result, body });
        else p.reject({ error: fromWire(m.error!), body });
        break;
      }
      case "credentials":
        void this.#credentials(m.ask, m.client);
        break;
      case "attempt":
        s3Attempt(m.op, m.status, m.seconds);
        break;
      case "operation":
        s3Operation(m.op, m.attempts, m.code);
        break;
    }
  }

  /**
   * The thread's client asks for credentials: the relay's client resolves them (its provider
   * caches them and refreshes them before they expire) and they cross in this process only.
   */
  async #credentials(ask: number, clientId: number): Promise<void> {
    try {
      const client = this.#clients.get(clientId)?.deref();
      if (client === undefined) throw new Error("the connection's client is gone");
      const c = await client.config.credentials();
      this.#post({
        t: "credentials",
        ask,
        credentials: {
          accessKeyId: c.accessKeyId,
          secretAccessKey: c.secretAccessKey,
          sessionToken: c.sessionToken,
          expiration: c.expiration,
        },
      });
    } catch (err) {
      this.#post({ t: "credentials", ask, error: toWireS3Error(err, false) });
    }
  }

  #settled(req: number): void {
    this.#pending.delete(req);
    if (this.#pending.size > 0) return;
    this.#worker.unref();
    if (this.#retiring) void this.#worker.terminate();
  }

  #die(why: string): void {
    if (this.#died !== undefined) return;
    this.#died = new PgError(SqlState.internalError, "the S3 upload thread stopped", { detail: why });
    if (shared === this) shared = undefined;
    const failed = [...this.#pending.values()];
    this.#pending.clear();
    // Its requests' sockets went with it. The buffers did too: a part in flight is lost.
    for (const p of failed) p.reject({ error: this.#died, body: undefined });
  }
}
