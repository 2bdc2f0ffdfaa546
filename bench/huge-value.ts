// Peak memory of the proxy process for one huge value, per format: a fresh proxy process (the
// CLI through tsx) exports a one-row table whose only value is N MiB of text, and its peak RSS
// (VmHWM from /proc, the kernel's own high-water mark) is read after the export. The baseline is
// the same run with a 1 KiB value, in the same invocation; the difference is what the value cost.
//
//   npx tsx bench/huge-value.ts [--sizes 30,60,110] [--format csv,parquet] [--limit-mib 64]
//
// Each size runs with exports.maxRowBytes = --limit-mib (the default 64): sizes above it are
// refused (54000) and should cost nothing; --limit-mib 1024 shows what accepting them costs.
import { spawn } from "node:child_process";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { CreateBucketCommand, S3Client } from "@aws-sdk/client-s3";
import pg from "pg";
import { startMoto } from "../test/support/moto.js";
import { freePort } from "../test/support/ports.js";
import { startPostgres } from "../test/support/postgres.js";

const { values } = parseArgs({
  options: {
    sizes: { type: "string", default: "30,60,110" },
    format: { type: "string", default: "csv,parquet" },
    "limit-mib": { type: "string", default: "64" },
  },
});
const MiB = 1024 * 1024;
const sizes = values.sizes.split(",").map(Number);
const formats = values.format.split(",");
const limit = Number(values["limit-mib"]) * MiB;
const ROOT = new URL("..", import.meta.url).pathname;

const [pgServer, moto] = await Promise.all([startPostgres(), startMoto()]);
const s3 = new S3Client({
  endpoint: moto.endpoint,
  region: "us-east-1",
  forcePathStyle: true,
  credentials: { accessKeyId: "test", secretAccessKey: "test" },
});
await s3.send(new CreateBucketCommand({ Bucket: "huge" }));
const admin = new pg.Client({
  host: "127.0.0.1",
  port: pgServer.port,
  user: "postgres",
  database: "postgres",
});
await admin.connect();

const dir = mkdtempSync(join(tmpdir(), "c2s-huge-"));
const configFile = join(dir, "config.json");
writeFileSync(
  configFile,
  JSON.stringify({
    exports: { maxRowBytes: limit },
    connections: {
      default: { endpoint: moto.endpoint, region: "us-east-1", accessKeyId: "test", secretAccessKey: "test" },
    },
  }),
);

let run = 0;
async function measure(format: string, bytes: number): Promise<{ peakMiB: number; outcome: string }> {
  await admin.query("DROP TABLE IF EXISTS v");
  await admin.query(`CREATE TABLE v AS SELECT repeat('x', ${bytes}) AS v`);
  const port = await freePort();
  const proc = spawn(
    process.execPath,
    [
      "--import",
      "tsx",
      join(ROOT, "src/cli.ts"),
      "--listen",
      `127.0.0.1:${port}`,
      "--upstream",
      `127.0.0.1:${pgServer.port}`,
      "--upstream-tls",
      "disable",
      "--log-level",
      "warn",
      "--config",
      configFile,
    ],
    { cwd: ROOT, stdio: "ignore" },
  );
  const exited = new Promise((r) => proc.once("exit", r));
  let c: pg.Client;
  for (let i = 0; ; i++) {
    c = new pg.Client({ host: "127.0.0.1", port, user: "postgres", database: "postgres" });
    try {
      await c.connect();
      break;
    } catch (e) {
      if (i > 300) throw e;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  let outcome: string;
  try {
    const r = await c.query(`COPY v TO 's3://huge/run${++run}' WITH (FORMAT = '${format}')`);
    outcome = `COPY ${r.rowCount}`;
  } catch (e) {
    outcome = `${(e as { code?: string }).code} ${(e as Error).message}`;
  }
  const status = readFileSync(`/proc/${proc.pid}/status`, "utf8");
  const peakKiB = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? Number.NaN);
  await c.end();
  proc.kill("SIGTERM");
  await exited;
  return { peakMiB: peakKiB / 1024, outcome };
}

console.log(`exports.maxRowBytes = ${limit / MiB} MiB; node ${process.version}`);
console.log("format   value MiB  peak RSS MiB  over baseline  outcome");
try {
  for (const format of formats) {
    const base = await measure(format, 1024);
    console.log(
      `${format.padEnd(8)} ${"0.001".padStart(9)}  ${base.peakMiB.toFixed(0).padStart(12)}  ${"—".padStart(13)}  ${base.outcome}`,
    );
    for (const size of sizes) {
      const m = await measure(format, size * MiB);
      const over = m.peakMiB - base.peakMiB;
      console.log(
        `${format.padEnd(8)} ${String(size).padStart(9)}  ${m.peakMiB.toFixed(0).padStart(12)}  ${`${over.toFixed(0)} (${(over / size).toFixed(1)}×)`.padStart(13)}  ${m.outcome.slice(0, 60)}`,
      );
    }
  }
} finally {
  await admin.end();
  await Promise.all([pgServer.stop(), moto.stop()]);
}
