// Cancel latency of COPY ... TO 's3://...': Ctrl-C (a CancelRequest on a new connection, as libpq
// sends it) → ReadyForQuery, at random points of a large export, and what the export left behind.
//
//   npx tsx bench/cancel-latency.ts [--rows 1000000] [--cancels 20] [--format csv,parquet] [--seed N]
//
// Starts a throwaway PostgreSQL and moto (test/support), a table of --rows rows (~110 bytes of CSV
// each), and the proxy as its own process (src/cli.ts through tsx: its event loop is not this
// one's). Per format: one uncancelled export measures its duration D; then --cancels exports each
// get a CancelRequest at a point drawn uniformly from [0, D) after the Query was sent — so the
// points fall in every phase in proportion to its length (plan and preflight are short; reading,
// encoding and uploading fill most of D). An export that ends before its cancel lands (COPY n) is
// reported and replaced by a new draw. After every cancel, ListMultipartUploads and ListObjectsV2
// on the export's prefix must be empty: leftovers are counted and printed.
//
// Prints one line per cancel (offset into the export, Ctrl-C → ErrorResponse, → ReadyForQuery,
// the SQLSTATE) and per format the median and the worst of Ctrl-C → ReadyForQuery. Target:
// worst < 1000 ms, 0 leftovers.
import { connect, type Socket } from "node:net";
import { parseArgs } from "node:util";
import {
  CreateBucketCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { startMoto } from "../test/support/moto.js";
import { startPostgres } from "../test/support/postgres.js";
import { spawnCopyProxy } from "../test/support/proxy-process.js";
import { RawPg } from "../test/support/raw-pg.js";

const { values: argv } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    cancels: { type: "string", default: "20" },
    format: { type: "string", default: "csv,parquet" },
    seed: { type: "string" },
  },
});
const ROWS = Number(argv.rows);
const CANCELS = Number(argv.cancels);
const FORMATS = argv.format.split(",") as Array<"csv" | "parquet">;

// A small seeded PRNG (mulberry32), so a run can be repeated with --seed.
let seed = argv.seed !== undefined ? Number(argv.seed) : Math.floor(Math.random() * 2 ** 31);
const random = (): number => {
  seed = (seed + 0x6d2b79f5) | 0;
  let t = seed;
  t = Math.imul(t ^ (t >>> 15), t | 1);
  t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
  return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
};

interface Msg {
  type: string;
  body: Buffer;
  at: number;
}

/** A bare pgwire client that timestamps every message as it arrives (trust auth). */
class Wire {
  private buf = Buffer.alloc(0);
  readonly msgs: Msg[] = [];
  private wake: (() => void) | null = null;
  pid = 0;
  secret = 0;

  private constructor(private readonly sock: Socket) {
    sock.on("data", (d: Buffer) => {
      const at = performance.now();
      this.buf = Buffer.concat([this.buf, d]);
      while (this.buf.length >= 5) {
        const len = this.buf.readInt32BE(1);
        if (this.buf.length < 1 + len) break;
        const m = {
          type: String.fromCharCode(this.buf[0]!),
          body: Buffer.from(this.buf.subarray(5, 1 + len)),
          at,
        };
        this.buf = this.buf.subarray(1 + len);
        if (m.type === "K") {
          this.pid = m.body.readInt32BE(0);
          this.secret = m.body.readInt32BE(4);
        }
        if (m.type !== "N" && m.type !== "S") this.msgs.push(m);
      }
      this.wake?.();
    });
  }

  static async connect(port: number, database: string): Promise<Wire> {
    const sock = connect({ host: "127.0.0.1", port, noDelay: true });
    await new Promise((r, j) => sock.once("connect", r).once("error", j));
    const w = new Wire(sock);
    const params = Buffer.from(`user\0postgres\0database\0${database}\0\0`);
    const startup = Buffer.alloc(8 + params.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE(196608, 4);
    params.copy(startup, 8);
    sock.write(startup);
    await w.next("Z");
    w.msgs.length = 0;
    return w;
  }

  query(sql: string): void {
    const b = Buffer.from(`${sql}\0`);
    const m = Buffer.alloc(5 + b.length);
    m[0] = 0x51;
    m.writeInt32BE(4 + b.length, 1);
    b.copy(m, 5);
    this.sock.write(m);
  }

  /** Resolves with the first message of `type` not yet taken. */
  async next(type: string): Promise<Msg> {
    for (;;) {
      const i = this.msgs.findIndex((m) => m.type === type);
      if (i >= 0) return this.msgs.splice(i, 1)[0]!;
      await new Promise<void>((r) => {
        this.wake = r;
      });
    }
  }

  close(): void {
    this.sock.end(Buffer.from([0x58, 0, 0, 0, 4]));
  }
}

/** libpq's PQcancel: a new connection carrying only the CancelRequest; resolves once it is closed. */
async function sendCancel(port: number, pid: number, secret: number): Promise<void> {
  const req = Buffer.alloc(16);
  req.writeInt32BE(16, 0);
  req.writeInt32BE(80877102, 4);
  req.writeInt32BE(pid, 8);
  req.writeInt32BE(secret, 12);
  const s = connect({ host: "127.0.0.1", port, noDelay: true });
  await new Promise((r) => s.once("connect", r));
  // The proxy closes the connection once it has acted on the request: waiting for that keeps a
  // cancel that came too late from landing on the next export.
  const closed = new Promise((r) => s.once("close", r));
  s.end(req);
  await closed;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function main(): Promise<void> {
  console.log(
    `cancel latency: ${ROWS} rows, ${CANCELS} cancels per format, formats ${FORMATS.join(",")}, seed ${seed}`,
  );
  const [pgServer, moto] = await Promise.all([startPostgres(), startMoto()]);
  const s3 = { endpoint: moto.endpoint, region: moto.region, accessKeyId: "test", secretAccessKey: "test" };
  const proxy = await spawnCopyProxy({ upstreamPort: pgServer.port, s3 });
  const check = new S3Client({
    endpoint: s3.endpoint,
    region: s3.region,
    forcePathStyle: true,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const bucket = "cancel-bench";
  try {
    const admin = await RawPg.connect({ port: pgServer.port });
    await admin.query(
      `CREATE TABLE t AS SELECT g AS id, g * 7 AS k, md5(g::text) AS h, (g * 1.25)::numeric(12,2) AS amount,
         timestamptz '2024-01-01 00:00+00' + g * interval '1 second' AS at, g % 3 = 0 AS flag,
         g / 7.0::float8 AS ratio, date '2024-01-01' + g % 1000 AS day
       FROM generate_series(1, ${ROWS}) g`,
    );
    await admin.query("VACUUM ANALYZE t");
    await admin.close();
    await check.send(new CreateBucketCommand({ Bucket: bucket }));
    const wire = await Wire.connect(proxy.port, "postgres");
    let n = 0;
    const leftovers = async (prefix: string): Promise<number> => {
      const deadline = Date.now() + 2000;
      for (;;) {
        const u = await check.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: `${prefix}/` }));
        const o = await check.send(new ListObjectsV2Command({ Bucket: bucket, Prefix: `${prefix}/` }));
        const left = (u.Uploads?.length ?? 0) + (o.KeyCount ?? 0);
        if (left === 0 || Date.now() > deadline) return left;
        await new Promise((r) => setTimeout(r, 50));
      }
    };
    const summary: string[] = [];
    for (const format of FORMATS) {
      const copy = (prefix: string) => `COPY t TO 's3://${bucket}/${prefix}' WITH (FORMAT = '${format}')`;
      const t0 = performance.now();
      wire.query(copy(`full-${format}`));
      const done = await wire.next("C");
      await wire.next("Z");
      const D = performance.now() - t0;
      console.log(
        `\n${format}: uncancelled export ${done.body.toString("utf8", 0, done.body.length - 1)} in ${D.toFixed(0)} ms`,
      );
      const toReady: number[] = [];
      let left = 0;
      let finishedFirst = 0;
      while (toReady.length < CANCELS) {
        const prefix = `c${++n}`;
        const offset = random() * D;
        const start = performance.now();
        wire.query(copy(prefix));
        await new Promise((r) => setTimeout(r, Math.max(0, offset - (performance.now() - start))));
        const c0 = performance.now();
        await sendCancel(proxy.port, wire.pid, wire.secret);
        const z = await wire.next("Z");
        const e = wire.msgs.find((m) => m.type === "E");
        const cc = wire.msgs.find((m) => m.type === "C");
        wire.msgs.length = 0;
        if (e === undefined) {
          finishedFirst++;
          console.log(
            `  at ${offset.toFixed(0).padStart(5)} ms: the export finished first (${cc?.body.toString().replace(/\0$/, "")})`,
          );
          continue;
        }
        const code = /C([0-9A-Z]{5})\0/.exec(e.body.toString("latin1"))?.[1] ?? "?";
        const ms = z.at - c0;
        toReady.push(ms);
        const l = await leftovers(prefix);
        left += l;
        console.log(
          `  at ${offset.toFixed(0).padStart(5)} ms (${((offset / D) * 100).toFixed(0).padStart(3)}%): ` +
            `Ctrl-C → ErrorResponse ${(e.at - c0).toFixed(1).padStart(6)} ms, → ReadyForQuery ${ms.toFixed(1).padStart(6)} ms, ${code}, leftovers ${l}`,
        );
      }
      const line =
        `${format}: Ctrl-C → ReadyForQuery over ${toReady.length} cancels: median ${median(toReady).toFixed(1)} ms, ` +
        `worst ${Math.max(...toReady).toFixed(1)} ms (export of ${ROWS} rows takes ${D.toFixed(0)} ms); ` +
        `leftover uploads+objects: ${left}; exports that finished before their cancel: ${finishedFirst}`;
      summary.push(line);
    }
    wire.close();
    console.log(`\n${summary.join("\n")}`);
  } finally {
    await proxy.stop();
    await Promise.allSettled([pgServer.stop(), moto.stop()]);
  }
}

main().then(
  () => process.exit(0),
  (e: unknown) => {
    console.error(e);
    process.exit(1);
  },
);
