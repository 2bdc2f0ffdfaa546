// The S3 upload thread: sends the UploadParts of every export of the process, so that the SDK's
// request machinery, the payload hash, the sockets' writes, the answers' parsing and the GC
// of all that stay off the relay's event loop (docs/decisions.md, "S3 part uploads off the
// relay's thread"). Each client here is the twin of one the relay built (same createS3Client
// settings); its credentials are asked of the relay, whose client resolves them (static keys,
// assumed roles, the default chain) and caches them as before. A part's buffer arrives
// transferred and goes back transferred once its request has settled: nothing here reads it after.
import { parentPort, threadId, workerData } from "node:worker_threads";
import { type S3Client, S3ServiceException, UploadPartCommand } from "@aws-sdk/client-s3";
import { lowerThread } from "../../encoders/worker/thread-priority.js";
import { buildS3Client } from "./s3-client-core.js";
import {
  type FromUploadThread,
  type ThreadClientSettings,
  type ToUploadThread,
  toWireS3Error,
  type UploadWorkerData,
  type WireCredentials,
} from "./upload-protocol.js";

const port = parentPort!;

function post(m: FromUploadThread, transfer: ArrayBuffer[] = []): void {
  port.postMessage(m, transfer);
}

const clients = new Map<number, S3Client>();
const inflight = new Map<number, AbortController>();
const asks = new Map<number, { resolve: (c: WireCredentials) => void; reject: (e: unknown) => void }>();
let nextAsk = 1;

const metrics = {
  attempt: (op: string, status: string, seconds: number) => post({ t: "attempt", op, status, seconds }),
  operation: (op: string, attempts: number, code: string | undefined) =>
    post({ t: "operation", op, attempts, code }),
};

function clientOf(id: number, settings: ThreadClientSettings): S3Client {
  const credentials = (): Promise<WireCredentials> =>
    new Promise((resolve, reject) => {
      const ask = nextAsk++;
      asks.set(ask, { resolve, reject });
      post({ t: "credentials", ask, client: id });
    });
  return buildS3Client({ ...settings, credentials, metrics, hashInPlace: true });
}

// Lowered to `nice` as the encoder threads are, but never SCHED_IDLE, whatever
// exports.workerPolicy says: a request starved mid-body would hold its socket silent until S3
// drops it (docs/decisions.md).
lowerThread((workerData as UploadWorkerData).nice);

async function part(m: Extract<ToUploadThread, { t: "part" }>): Promise<void> {
  const ac = new AbortController();
  inflight.set(m.req, ac);
  const body = Buffer.from(m.buf, m.offset, m.length);
  try {
    const client = clients.get(m.client);
    if (client === undefined) throw new Error(`upload thread: no client ${m.client}`);
    const out = await client.send(
      new UploadPartCommand({
        Bucket: m.part.bucket,
        Key: m.part.key,
        UploadId: m.part.uploadId,
        PartNumber: m.part.partNumber,
        Body: body,
        ContentLength: body.length,
      }),
      { abortSignal: ac.signal },
    );
    post(
      {
        t: "settled",
        req: m.req,
        buf: m.buf,
        result: {
          ETag: out.ETag,
          ChecksumCRC32: out.ChecksumCRC32,
          ChecksumCRC32C: out.ChecksumCRC32C,
          ChecksumCRC64NVME: out.ChecksumCRC64NVME,
          ChecksumSHA1: out.ChecksumSHA1,
          ChecksumSHA256: out.ChecksumSHA256,
          threadId,
        },
      },
      [m.buf],
    );
  } catch (err) {
    post(
      { t: "settled", req: m.req, buf: m.buf, error: toWireS3Error(err, err instanceof S3ServiceException) },
      [m.buf],
    );
  } finally {
    inflight.delete(m.req);
  }
}

port.on("message", (m: ToUploadThread) => {
  switch (m.t) {
    case "client":
      clients.get(m.client)?.destroy();
      clients.set(m.client, clientOf(m.client, m.settings));
      break;
    case "drop":
      clients.get(m.client)?.destroy();
      clients.delete(m.client);
      break;
    case "part":
      void part(m);
      break;
    case "cancel":
      inflight.get(m.req)?.abort();
      break;
    case "credentials": {
      const a = asks.get(m.ask);
      asks.delete(m.ask);
      if (m.credentials !== undefined) a?.resolve(m.credentials);
      else {
        const e = Object.assign(new Error(m.error?.message ?? "no credentials"), {
          name: m.error?.name ?? "CredentialsProviderError",
          code: m.error?.code,
        });
        a?.reject(e);
      }
      break;
    }
  }
});
