// COPY ... TO 's3://...' WITH (FORMAT = 'parquet') through the proxy, as a user runs it: the files
// that land in S3 are read back by DuckDB (an independent reader) and every value is compared with
// PostgreSQL's rendering of the source. Runs in front of PostgreSQL and in front of the Materialize wire
// double (test/support/mz-double.ts) over the same PostgreSQL.
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { threadPoolTestHooks } from "../../src/encoders/worker/thread-pool.js";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import { COLUMNS, compareEveryValue, SETUP_SQL } from "../support/parquet-fixture.js";
import type { TestProxy } from "../support/proxy.js";
import { UPSTREAMS } from "../support/upstreams.js";

const DB = "copy_parquet_e2e";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let client: pg.Client;
let direct: pg.Client;
let duck: DuckDBConnection;
let bucket: string;
let tmp: string;
const notices: string[] = [];
/**
 * Rows of "big": ~4 files of 16 MB uncompressed (~200 bytes a row), so "≥ 3 files" holds with room
 * to spare should the encoder's bytes per row change; more rows only cost time under load.
 */
const BIG_ROWS = 300_000;

beforeAll(async () => {
  const admin = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB}`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  await direct.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'");
  await direct.query(SETUP_SQL);
  await direct.query(`CREATE TABLE big AS
    SELECT g AS id, md5(g::text) AS h, repeat(md5((g * 3)::text), 4) AS pad, (g * 1.25)::numeric(14, 2) AS amount,
      timestamptz '2024-01-01 00:00+00' + g * interval '1 second' AS at, g % 2 = 0 AS even
    FROM generate_series(1, ${BIG_ROWS}) g`);
  duck = await (await DuckDBInstance.create(":memory:")).connect();
  tmp = mkdtempSync(join(tmpdir(), "parquet-e2e-"));
}, 180_000);

afterAll(async () => {
  await direct?.end();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Downloads the data files of an export and returns their local paths and sizes, in key order. */
async function download(prefix: string): Promise<Array<{ key: string; path: string; bytes: number }>> {
  const keys = (await check.keys(bucket, `${prefix}/`)).filter((k) => k.endsWith(".parquet"));
  const out = [];
  for (const key of keys) {
    const body = await check.get(bucket, key);
    const path = join(tmp, key.replaceAll("/", "_"));
    writeFileSync(path, body);
    out.push({ key, path, bytes: body.length });
  }
  return out;
}

async function duckRows(sql: string): Promise<Array<Array<string | null>>> {
  const r = await duck.runAndReadAll(sql);
  return r.getRows().map((row) => row.map((v) => (v === null ? null : String(v))));
}

/** PostgreSQL's own text output, unparsed: the oracle compares against exactly that. */
const RAW_TEXT = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

const list = (files: Array<{ path: string }>): string => `[${files.map((f) => `'${f.path}'`).join(",")}]`;

async function manifestOf(
  prefix: string,
): Promise<{ rows: number; files: Array<{ key: string; rows: number; bytes: number }> }> {
  const key = (await check.keys(bucket, `${prefix}/`)).find((k) => k.endsWith("-manifest.json"))!;
  return JSON.parse((await check.get(bucket, key)).toString());
}

describe.each(UPSTREAMS)("Parquet export through the proxy in front of $name, read back by DuckDB", (up) => {
  let upstream: { port: number; stop(): Promise<void> };
  beforeAll(async () => {
    upstream = await up.start(pgPort);
    proxy = await startCopyProxy({ upstreamPort: upstream.port, s3 });
    client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    await client.connect();
    // The same session settings as the oracle query, so text-exported columns render alike.
    await client.query("SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'");
    client.on("notice", (n) => notices.push(n.message ?? ""));
    bucket = await check.bucket(up.ordered ? "parquet-e2e" : "parquet-e2e-mz");
  }, 60_000);

  afterAll(async () => {
    await client?.end();
    await proxy?.shutdown(0);
    await upstream?.stop();
  });

  // PostgreSQL's catalog of types (enums, domains, composites, inet, ranges): Materialize spells
  // these differently or lacks them; its own types are checked through the double in mz-double-e2e.
  test.skipIf(!up.ordered)(
    "every value of every type equals the source; text-exported columns are announced",
    async () => {
      notices.length = 0;
      const r = await client.query(`COPY every TO 's3://${bucket}/every' WITH (FORMAT = 'parquet')`);
      expect(r.rowCount).toBe(9);
      expect(notices.some((n) => /exporting columns "e", "iv", "ine", "cm", "am" as text/.test(n))).toBe(
        true,
      );
      const files = await download("every");
      expect(files).toHaveLength(1);
      const pgRows = (
        await direct.query({
          text: `SELECT id::text, ${COLUMNS.map((c) => c[1]).join(", ")} FROM every ORDER BY id`,
          rowMode: "array",
          types: RAW_TEXT,
        })
      ).rows as Array<Array<string | null>>;
      const dRows = await duckRows(
        `SELECT id, ${COLUMNS.map((c) => c[2]).join(", ")} FROM read_parquet(${list(files)}) ORDER BY id`,
      );
      compareEveryValue(pgRows, dRows);
    },
  );

  for (const compression of ["snappy", "zstd", "gzip", "none"] as const) {
    test(`COMPRESSION ${compression}: the codec in the file is the one asked for`, async () => {
      const prefix = `codec-${compression}`;
      await client.query(
        `COPY (SELECT * FROM big WHERE id <= 20000) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'parquet', COMPRESSION = '${compression}')`,
      );
      const files = await download(prefix);
      const codecs = await duckRows(`SELECT DISTINCT compression FROM parquet_metadata(${list(files)})`);
      expect(codecs.map((c) => c[0])).toEqual([
        compression === "none" ? "UNCOMPRESSED" : compression.toUpperCase(),
      ]);
      const [[n, sum]] = (await duckRows(
        `SELECT count(*), sum(amount) FROM read_parquet(${list(files)})`,
      )) as [[string, string]];
      expect(n).toBe("20000");
      const want = (await direct.query("SELECT sum(amount)::text AS s FROM big WHERE id <= 20000")).rows[0].s;
      expect(Number(sum)).toBe(Number(want));
    });
  }

  test("≥ 3 files under MAX FILE SIZE 16MB, each within the limit + 5%, manifest counts match DuckDB's", async () => {
    const r = await client.query(
      `COPY big TO 's3://${bucket}/split' WITH (FORMAT = 'parquet', MAX FILE SIZE = '16MB', COMPRESSION = 'none')`,
    );
    expect(r.rowCount).toBe(BIG_ROWS);
    const files = await download("split");
    expect(files.length).toBeGreaterThanOrEqual(3);
    const limit = 16 * 1024 * 1024;
    for (const f of files) expect(f.bytes).toBeLessThanOrEqual(limit * 1.05);
    const manifest = await manifestOf("split");
    expect(manifest.rows).toBe(BIG_ROWS);
    for (const f of files) {
      const [[n]] = (await duckRows(`SELECT count(*) FROM read_parquet('${f.path}')`)) as [[string]];
      const m = manifest.files.find((x) => f.key.endsWith(x.key))!;
      expect(m.rows).toBe(Number(n));
      expect(m.bytes).toBe(f.bytes);
    }
    // Every row exactly once, in any order across files.
    const [[count, distinct, idsum]] = (await duckRows(
      `SELECT count(*), count(DISTINCT id), sum(id) FROM read_parquet(${list(files)})`,
    )) as [[string, string, string]];
    expect([count, distinct, idsum]).toEqual([
      String(BIG_ROWS),
      String(BIG_ROWS),
      String((BIG_ROWS * (BIG_ROWS + 1)) / 2),
    ]);
    // Exported, downloaded and read back by DuckDB: over 60 s at load 17-20.
  }, 120_000);

  test("a value Parquet cannot hold fails the export with the SPEC error and leaves nothing behind", async () => {
    await expect(
      client.query(
        `COPY (SELECT g, CASE WHEN g = 150000 THEN 'NaN'::numeric ELSE g::numeric END AS n FROM generate_series(1, 200000) g) TO 's3://${bucket}/nan' WITH (FORMAT = 'parquet')`,
      ),
    ).rejects.toMatchObject({ code: "22003", message: expect.stringMatching(/"n".*NaN/) });
    expect(await check.keys(bucket, "nan/")).toEqual([]);
    expect(await check.uploads(bucket, "nan/")).toEqual([]);
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });

  test("an export refused by its preflight ends the encoder thread it started meanwhile", async () => {
    // The proxy runs in this process: its encoder threads are this process's threads.
    const threads = (): number =>
      Number(/^Threads:\s+(\d+)/m.exec(readFileSync("/proc/self/status", "utf8"))![1]);
    // A prefix of its own per attempt: a retry must not find the first attempt's objects.
    const copy = `COPY (SELECT 1 AS a) TO 's3://${bucket}/taken-${Date.now()}' WITH (FORMAT = 'parquet')`;
    await client.query(copy);
    const before = threads();
    // A refused export's thread may come back while the next export has started one of its own:
    // the pool then keeps it idle for a burst (thread-pool.ts, SPARE_IDLE_MS). Kept briefly here,
    // so that only a thread nobody ends is still counted.
    threadPoolTestHooks.idleMs = 50;
    try {
      for (let i = 0; i < 3; i++) {
        await expect(client.query(copy)).rejects.toMatchObject({
          code: "58000",
          message: expect.stringMatching(/^S3 bucket path is not empty/),
        });
      }
      await waitUntil("the refused exports' encoder threads to end", () => threads() <= before, 10_000);
    } finally {
      delete threadPoolTestHooks.idleMs;
    }
  });

  test("a numeric scale Parquet cannot hold is refused before anything is written", async () => {
    await expect(
      client.query(
        `COPY (SELECT 1::numeric(5, -2) AS n) TO 's3://${bucket}/negscale' WITH (FORMAT = 'parquet')`,
      ),
    ).rejects.toMatchObject({ code: "0A000" });
    expect(await check.keys(bucket, "negscale")).toEqual([]);
  });
});
