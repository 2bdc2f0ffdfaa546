// Cancel latency of COPY ... TO 's3://...' per phase: Ctrl-C (a CancelRequest on a new connection,
// as libpq sends it) → ReadyForQuery, with the S3 server's own share of that time shown apart, and
// what the export left behind.
//
//   npx tsx bench/cancel-latency.ts [--rows 1000000] [--cancels 20] [--format csv,parquet] [--seed N]
//                                   [--phases preflight,read,tail,completing,commit] [--baseline DIR]
//
// Starts a throwaway PostgreSQL and moto (test/support), the fault-injecting S3 proxy in front of
// moto (it injects nothing here: it timestamps every request it forwards, so the time the S3
// server spent answering is known), a table of --rows rows (~110 bytes of CSV each), and the proxy
// as its own process (src/cli.ts through tsx; --baseline DIR runs another checkout's, e.g. the
// previous build, against the same servers). Per format, one uncancelled export gives the phases'
// lengths (the proxy's "export complete" log line) and its S3 requests; then cancels are placed in
// each phase, triggered by what the S3 proxy sees and delayed by a uniform random share of the
// phase's length:
//   preflight  — from the Query (plan and preflight: target, describe, list, probe, sentinel)
//   read       — from the sentinel's PutObject answer, while rows are read
//   tail       — from the UploadPart that was in flight when the last row was read: the upload tail
//   completing — from the last CompleteMultipartUpload's arrival, while the server completes it
//   commit     — from the first _meta/ PutObject: manifests, the stray-upload sweep, the sentinel
// Each cancel is counted in the phase the proxy's "export cancelled" line names (a Complete in
// flight at the cancel makes it "completing"); an export that finished before its cancel landed
// (COPY n) is counted apart. Every phase is tried until it has --cancels cancels (at most 8× as many
// tries). After every cancel, ListMultipartUploads and ListObjectsV2 on the prefix must be empty.
//
// Prints one line per cancel and per format and phase: median and worst of Ctrl-C → ReadyForQuery,
// of the S3 server's busy time inside that window, and of the rest (the proxy's own time).
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
import { RawPg, startupMessage } from "../test/support/raw-pg.js";
import { S3FaultProxy, type SeenRequest } from "../test/support/s3-fault-proxy.js";

const { values: argv } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    cancels: { type: "string", default: "20" },
    format: { type: "string", default: "csv,parquet" },
    seed: { type: "string" },
    phases: { type: "string", default: "preflight,read,tail,completing,commit" },
    baseline: { type: "string" },
  },
});
type Phase = "preflight" | "read" | "tail" | "completing" | "commit";
const PHASES = argv.phases.split(",") as Phase[];
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
    sock.write(startupMessage("postgres", database));
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

interface Sample {
  ms: number;
  s3: number;
}

const stats = (xs: number[]): string =>
  xs.length === 0 ? "-" : `${median(xs).toFixed(0)} / ${Math.max(...xs).toFixed(0)}`;

interface Build {
  name: string;
  proxy: Awaited<ReturnType<typeof spawnCopyProxy>>;
  wire: Wire;
  /** Per phase: when its cancels are triggered, and the window they are spread over. */
  plan: Record<Phase, { window: number }> & { tailPart: number; completes: number };
  got: Map<string, Sample[]>;
  finishedFirst: number;
  left: number;
  D: number;
}

async function main(): Promise<void> {
  console.log(
    `cancel latency: ${ROWS} rows, ${CANCELS} cancels per phase (${PHASES.join(",")}), formats ${FORMATS.join(",")}, seed ${seed}${argv.baseline ? `, alternating with the proxy of ${argv.baseline}` : ""}`,
  );
  const [pgServer, moto] = await Promise.all([startPostgres(), startMoto()]);
  const faults = await S3FaultProxy.start(moto.endpoint);
  const s3 = { endpoint: faults.endpoint, region: moto.region, accessKeyId: "test", secretAccessKey: "test" };
  const proxies = [await spawnCopyProxy({ upstreamPort: pgServer.port, s3 })];
  if (argv.baseline) {
    proxies.push(await spawnCopyProxy({ upstreamPort: pgServer.port, s3, root: argv.baseline }));
  }
  const names = ["this build", "baseline"];
  const check = new S3Client({
    endpoint: moto.endpoint,
    region: moto.region,
    forcePathStyle: true,
    credentials: { accessKeyId: "test", secretAccessKey: "test" },
  });
  const bucket = "cancel-bench";
  /** A build's log line about the export into `prefix` with message `msg`. */
  const waitLog = async (
    b: Build,
    prefix: string,
    msg: string,
  ): Promise<Record<string, unknown> | undefined> => {
    for (let i = 0; i < 300; i++) {
      for (const l of b.proxy.output().split("\n")) {
        if (l.includes(`"${msg}"`) && l.includes(`/${prefix}"`))
          return JSON.parse(l) as Record<string, unknown>;
      }
      await new Promise((r) => setTimeout(r, 10));
    }
    return undefined;
  };
  const poll = async (what: () => number | undefined, timeoutMs = 120_000): Promise<number> => {
    const deadline = performance.now() + timeoutMs;
    for (;;) {
      const r = what();
      if (r !== undefined) return r;
      if (performance.now() > deadline) throw new Error("trigger not seen");
      await new Promise((res) => setTimeout(res, 2));
    }
  };
  const ops = (op: string): SeenRequest[] => faults.log.filter((r) => r.op === op);
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
      const builds: Build[] = [];
      for (const [i, proxy] of proxies.entries()) {
        const wire = await Wire.connect(proxy.port, "postgres");
        // The uncancelled export: how long each phase lasts and which requests mark them.
        faults.resetStats();
        const fullPrefix = `full-${format}-${i}`;
        const t0 = performance.now();
        wire.query(copy(fullPrefix));
        const done = await wire.next("C");
        await wire.next("Z");
        const D = performance.now() - t0;
        const b: Build = {
          name: names[i]!,
          proxy,
          wire,
          plan: undefined as unknown as Build["plan"],
          got: new Map(),
          finishedFirst: 0,
          left: 0,
          D,
        };
        const complete = await waitLog(b, fullPrefix, "export complete");
        const pm = (complete?.phaseMs ?? {}) as Record<string, number>;
        const readEnd = t0 + (pm.plan ?? 0) + (pm.preflight ?? 0) + (pm.read ?? 0);
        const parts = ops("UploadPart");
        const completes = ops("CompleteMultipartUpload");
        const last = completes.at(-1);
        const completeMs = last ? (last.answered ?? last.at) - last.at : 0;
        b.plan = {
          preflight: { window: (pm.plan ?? 0) + (pm.preflight ?? 0) },
          read: { window: pm.read ?? 0 },
          tail: { window: Math.max(1, (pm.upload ?? 0) - completeMs) },
          completing: { window: Math.max(1, completeMs) },
          commit: { window: Math.max(1, pm.commit ?? 0) },
          tailPart: Math.max(1, parts.filter((r) => r.at <= readEnd).length),
          completes: completes.length,
        };
        console.log(
          `\n${format}, ${b.name}: uncancelled export ${done.body.toString("utf8", 0, done.body.length - 1)} in ${D.toFixed(0)} ms; ` +
            `phases (ms) ${JSON.stringify(pm)}; last Complete ${completeMs.toFixed(0)} ms; ` +
            `${parts.length} parts, the tail from part ${b.plan.tailPart}`,
        );
        builds.push(b);
      }
      const trial = async (b: Build, target: Phase): Promise<void> => {
        const prefix = `c${++n}`;
        faults.resetStats();
        const start = performance.now();
        b.wire.query(copy(prefix));
        const from =
          target === "preflight"
            ? start
            : target === "read"
              ? await poll(
                  () =>
                    faults.log.find((r) => r.op === "PutObject" && r.key.endsWith("-INCOMPLETE"))?.answered,
                )
              : target === "tail"
                ? await poll(() => ops("UploadPart")[b.plan.tailPart - 1]?.at)
                : target === "completing"
                  ? await poll(() => ops("CompleteMultipartUpload")[b.plan.completes - 1]?.at)
                  : await poll(() => ops("CompleteMultipartUpload")[b.plan.completes - 1]?.answered);
        const at = from + random() * b.plan[target].window;
        await new Promise((r) => setTimeout(r, Math.max(0, at - performance.now())));
        const c0 = performance.now();
        await sendCancel(b.proxy.port, b.wire.pid, b.wire.secret);
        const z = await b.wire.next("Z");
        const e = b.wire.msgs.find((m) => m.type === "E");
        b.wire.msgs.length = 0;
        const tag = `  ${b.name.padEnd(10)} ${target.padEnd(10)} +${(c0 - start).toFixed(0).padStart(6)} ms`;
        if (e === undefined) {
          b.finishedFirst++;
          console.log(`${tag}: finished first (COPY n)`);
          return;
        }
        const code = /C([0-9A-Z]{5})\0/.exec(e.body.toString("latin1"))?.[1] ?? "?";
        const line = await waitLog(b, prefix, "export cancelled");
        const logged = String(line?.phase ?? "?");
        const inComplete = faults.log.some(
          (r) =>
            r.op === "CompleteMultipartUpload" && r.at <= c0 && (r.answered ?? Number.POSITIVE_INFINITY) > c0,
        );
        const phase =
          logged === "plan" || logged === "preflight"
            ? "preflight"
            : (logged === "upload" || logged === "read") && inComplete
              ? "completing"
              : logged === "upload"
                ? "tail"
                : logged;
        const ms = z.at - c0;
        const s3ms = faults.serverBusyMs(c0, z.at);
        const l = await leftovers(prefix);
        b.left += l;
        if (!b.got.has(phase)) b.got.set(phase, []);
        b.got.get(phase)!.push({ ms, s3: s3ms });
        console.log(
          `${tag} → ${phase.padEnd(10)} Ctrl-C → ReadyForQuery ${ms.toFixed(1).padStart(7)} ms (S3 server busy ${s3ms.toFixed(1).padStart(7)} ms), ${code}, leftovers ${l}`,
        );
      };
      for (const target of PHASES) {
        // The builds take turns, so that the machine's load falls on both alike.
        for (let tries = 0; tries < CANCELS * 8; tries++) {
          const wanting = builds.filter((b) => (b.got.get(target)?.length ?? 0) < CANCELS);
          if (wanting.length === 0) break;
          for (const b of wanting) await trial(b, target);
        }
      }
      for (const b of builds) {
        summary.push(
          `${format}, ${b.name}: Ctrl-C → ReadyForQuery, median / worst ms (the uncancelled export takes ${b.D.toFixed(0)} ms)`,
          `  ${"phase".padEnd(11)} ${"n".padStart(3)}  ${"total".padEnd(13)} ${"S3 server".padEnd(13)} proxy+upstream (total − S3)`,
        );
        for (const p of ["preflight", "read", "tail", "completing", "commit"]) {
          const xs = b.got.get(p) ?? [];
          summary.push(
            `  ${p.padEnd(11)} ${String(xs.length).padStart(3)}  ${stats(xs.map((x) => x.ms)).padEnd(13)} ${stats(xs.map((x) => x.s3)).padEnd(13)} ${stats(xs.map((x) => x.ms - x.s3))}`,
          );
        }
        summary.push(
          `  leftover uploads+objects: ${b.left}; exports that finished before their cancel: ${b.finishedFirst}`,
        );
        b.wire.close();
      }
    }
    console.log(`\n${summary.join("\n")}`);
  } finally {
    for (const p of proxies) await p.stop();
    await faults.close();
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
