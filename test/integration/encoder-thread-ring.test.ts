// exports.encoderHost = "thread" (the default): once an export's rows flow, the relay stops framing
// them and writes each upstream read as it is into a ring the encoder thread reads
// (src/encoders/worker/row-ring.ts; docs/isolation.md, "Rows to the encoder thread without
// framing"). The thread frames the DataRows and gives the stream back at its first other message.
// The files are PostgreSQL's own COPY bytes (CSV) and every value through DuckDB (Parquet); what
// follows the rows — CommandComplete, a NOTICE between rows, an oversized row, a cancel's error —
// is the relay's again, and the session goes on as before.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { rowRingTestHooks } from "../../src/encoders/worker/row-ring.js";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import {
  CREATE_WIDE,
  csvFiles,
  type DivertedSession,
  expectFirstRowLargerThanARead,
  expectSessionGoesOn,
  FIRST_READ,
  relayedDuring,
} from "../support/diverted-rows.js";
import { expectNothingLeft, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { createMixedTable, expectMixedParquet } from "../support/mixed-table.js";
import { type ProxyStack, startProxyStack } from "../support/proxy-stack.js";
import { expectSameCsv, UPSTREAMS } from "../support/upstreams.js";

const DB = "encoder_thread_ring";
const MiB = 1024 * 1024;
const pgPort = inject("pgPort");

let stack: ProxyStack;
let client: pg.Client;
let direct: pg.Client;
let duck: DuckDBConnection;
let root: string;

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "c2s-ring-"));
  stack = await startProxyStack({
    database: DB,
    bucket: "ring",
    args: ["--file-root", root],
    config: { exports: { encoderHost: "thread", partSize: 5 * MiB, s3MaxAttempts: 2 } },
  });
  const { oracle } = stack;
  // ~40 MB of CSV: many ring laps.
  await oracle.query(CREATE_WIDE);
  await oracle.query(createMixedTable(150000));
  // A NOTICE from the middle of a result: the backend sends it between two DataRows.
  await oracle.query(`CREATE FUNCTION c2s_note(v int, at int) RETURNS int LANGUAGE plpgsql AS $$
    BEGIN IF v = at THEN RAISE NOTICE 'row % passed', v; END IF; RETURN v; END $$`);
  client = await stack.connect();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  duck = await (await DuckDBInstance.create(":memory:")).connect();
}, 120_000);

afterAll(async () => {
  await direct?.end();
  await stack?.stop();
  if (root) rmSync(root, { recursive: true, force: true });
});

let n = 0;
const freshPrefix = (): string => `r${++n}`;
const session = (): DivertedSession => ({
  client,
  oracle: stack.oracle,
  freshDir: () => join(root, freshPrefix()),
});

async function oracleCsv(sql: string): Promise<Buffer> {
  return (await stack.oracle.query(`COPY (${sql}) TO STDOUT (FORMAT csv)`)).copyData;
}

describe("the rows go to the thread through the ring, unframed by the relay", () => {
  test("CSV equals PostgreSQL's COPY output byte for byte; the relay framed only the first read's rows", async () => {
    const prefix = freshPrefix();
    const { result, relayed, ringed, copied } = await relayedDuring(() =>
      client.query(`COPY wide TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv', HEADER)`),
    );
    expect(result.rowCount).toBe(120000);
    expect(relayed).toBeGreaterThan(0);
    expect(relayed).toBeLessThanOrEqual(FIRST_READ);
    expect(ringed).toBeGreaterThan(30 * MiB);
    // Most reads go straight into the ring (RingWriter.lend); the relay copies the rest of the
    // first read, a read after each hold and the odd one at the ring's end.
    expect(copied).toBeLessThan(ringed / 4);
    const keys = (await stack.check.keys(stack.bucket, `${prefix}/`)).filter((k) => k.endsWith(".csv"));
    const got = Buffer.concat(await Promise.all(keys.map((k) => stack.check.get(stack.bucket, k))));
    const want = (await stack.oracle.query("COPY wide TO STDOUT (FORMAT csv, HEADER)")).copyData;
    expectSameCsv(got, want, UPSTREAMS[0]!, { header: true });
  }, 120_000);

  test("Parquet: DuckDB reads every value of the source", async () => {
    const dir = join(root, freshPrefix());
    const { result, relayed, ringed } = await relayedDuring(() =>
      client.query(`COPY mixed TO 'file://${dir}' WITH (FORMAT = 'parquet')`),
    );
    expect(result.rowCount).toBe(150000);
    expect(relayed).toBeLessThanOrEqual(FIRST_READ);
    expect(ringed).toBeGreaterThan(5 * MiB);
    await expectMixedParquet(duck, direct, dir);
  }, 120_000);

  test("Parquet: rows with values over 256 bytes (copied out of the ring before they are written) and short ones, every value read back", async () => {
    // Runs of long rows (values of 288–1248 bytes) between runs of short ones: the thread writes
    // short rows in place and copies long ones out first (encoder-worker.ts, WIDE_ROW_BYTES).
    const sql =
      "SELECT g, CASE WHEN (g / 700) % 2 = 0 THEN repeat(md5(g::text), 9 + g % 31) ELSE md5(g::text) END AS v FROM generate_series(1, 40000) g";
    const dir = join(root, freshPrefix());
    const { result, ringed } = await relayedDuring(() =>
      client.query(`COPY (${sql}) TO 'file://${dir}' WITH (FORMAT = 'parquet')`),
    );
    expect(result.rowCount).toBe(40000);
    expect(ringed).toBeGreaterThan(7 * MiB);
    const [[rows, wrong]] = (
      await duck.runAndReadAll(
        `SELECT count(*), count(*) FILTER (WHERE v IS DISTINCT FROM CASE WHEN (g // 700) % 2 = 0
           THEN repeat(md5(g::VARCHAR), 9 + g % 31) ELSE md5(g::VARCHAR) END)
         FROM read_parquet('${dir}/*.parquet')`,
      )
    ).getRows() as [[bigint, bigint]];
    expect([Number(rows), Number(wrong)]).toEqual([40000, 0]);
  }, 120_000);

  test("rows the relay had read past the first ones are not lost: a first row larger than a read, then small rows", async () => {
    await expectFirstRowLargerThanARead(session());
  }, 120_000);

  test("rows larger than a batch and than a read among small ones, framed by the thread across ring laps", async () => {
    const sql =
      "SELECT g, CASE WHEN g % 5000 = 7 THEN repeat(md5(g::text), 20000) ELSE md5(g::text) END AS v FROM generate_series(1, 60000) g";
    const dir = join(root, freshPrefix());
    const { result, relayed, ringed } = await relayedDuring(() =>
      client.query(`COPY (${sql}) TO 'file://${dir}' WITH (FORMAT = 'csv')`),
    );
    expect(result.rowCount).toBe(60000);
    expect(relayed).toBeLessThanOrEqual(FIRST_READ);
    expect(ringed).toBeGreaterThan(7 * MiB);
    expectSameCsv(csvFiles(dir), await oracleCsv(sql), UPSTREAMS[0]!, { header: false });
  }, 120_000);
});

describe("what follows the rows is the relay's again", () => {
  test("the session goes on as before: a query, another export, an export inside BEGIN/COMMIT, the extended protocol", async () => {
    await expectSessionGoesOn(session(), "ring_tx");
  }, 120_000);

  test("a NOTICE between rows reaches the client; the rows after it go through a ring again; the file is whole", async () => {
    const notices: string[] = [];
    const onNotice = (m: { message?: string }): void => {
      notices.push(m.message ?? "");
    };
    client.on("notice", onNotice);
    try {
      const sql = "SELECT c2s_note(g, 60000) AS g, md5(g::text) AS h FROM generate_series(1, 120000) g";
      const dir = join(root, freshPrefix());
      const { result, relayed, ringed } = await relayedDuring(() =>
        client.query(`COPY (${sql}) TO 'file://${dir}' WITH (FORMAT = 'csv')`),
      );
      expect(result.rowCount).toBe(120000);
      expect(notices).toContain("row 60000 passed");
      // Both runs of rows went through rings: the relay framed the first read of each at most.
      expect(relayed).toBeLessThanOrEqual(2 * FIRST_READ);
      expect(ringed).toBeGreaterThan(4 * MiB);
      expectSameCsv(csvFiles(dir), await oracleCsv(sql), UPSTREAMS[0]!, { header: false });
    } finally {
      client.off("notice", onNotice);
    }
  }, 120_000);

  test("a row over exports.maxRowBytes in the middle of the ring: 54000, nothing left, the session usable", async () => {
    const limit = 256 * 1024;
    const p = await startCopyProxy({
      upstreamPort: pgPort,
      s3: motoAccess(),
      args: ["--file-root", root],
      config: { exports: { encoderHost: "thread", maxRowBytes: limit } },
    });
    const c = new pg.Client({ connectionString: p.url("postgres", DB) });
    await c.connect();
    try {
      const sql = `SELECT g, CASE WHEN g = 30000 THEN repeat('y', ${2 * limit}) ELSE md5(g::text) END AS v FROM generate_series(1, 60000) g`;
      const prefix = freshPrefix();
      const ringBefore = rowRingTestHooks.bytes;
      await expect(
        c.query(`COPY (${sql}) TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({ code: "54000" });
      expect(rowRingTestHooks.bytes - ringBefore).toBeGreaterThan(MiB);
      await expectNothingLeft(stack.check, stack.bucket, prefix);
      expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
      const dir = join(root, freshPrefix());
      expect((await c.query(`COPY wide TO 'file://${dir}' WITH (FORMAT = 'csv')`)).rowCount).toBe(120000);
    } finally {
      await c.end();
      await p.shutdown(0);
    }
  }, 120_000);

  test("a cancel mid-export: 57014, no object and no multipart upload left, the session usable", async () => {
    const prefix = freshPrefix();
    const ringBefore = rowRingTestHooks.bytes;
    let ringed = 0;
    await client.query("SET c2s.wait = '0.05'");
    const copy = client.query(
      `COPY (SELECT g, h, pad FROM wide UNION ALL SELECT c2s_wait(g), '', '' FROM generate_series(1, 100000) g)
       TO 's3://${stack.bucket}/${prefix}' WITH (FORMAT = 'csv')`,
    );
    copy.catch(() => {});
    try {
      await waitUntil(
        "a multipart upload under way",
        async () => (await stack.check.uploads(stack.bucket, `${prefix}/`)).length > 0,
        90_000,
      );
      ringed = rowRingTestHooks.bytes - ringBefore;
      await sendCancel(stack.proxy.port, keyOf(client));
      await expect(copy).rejects.toMatchObject({ code: "57014" });
    } finally {
      await client.query("RESET c2s.wait");
    }
    // The rows before the cancel went through the ring.
    expect(ringed).toBeGreaterThan(MiB);
    await expectNothingLeft(stack.check, stack.bucket, prefix);
    expect((await client.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    const dir = join(root, freshPrefix());
    expect((await client.query(`COPY wide TO 'file://${dir}' WITH (FORMAT = 'csv')`)).rowCount).toBe(120000);
  }, 120_000);

  test("a TLS upstream goes through the ring too (the relay has the plaintext): the files are the same", async () => {
    const p = await startCopyProxy({
      upstreamPort: pgPort,
      s3: motoAccess(),
      args: ["--file-root", root, "--upstream-tls", "require"],
      config: { exports: { encoderHost: "thread" } },
    });
    const c = new pg.Client({ connectionString: p.url("postgres", DB) });
    await c.connect();
    try {
      expect((await c.query("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")).rows).toEqual([
        { ssl: true },
      ]);
      const dir = join(root, freshPrefix());
      const { result, relayed, ringed, copied } = await relayedDuring(() =>
        c.query(`COPY wide TO 'file://${dir}' WITH (FORMAT = 'csv')`),
      );
      expect(result.rowCount).toBe(120000);
      expect(relayed).toBeLessThanOrEqual(FIRST_READ);
      expect(ringed).toBeGreaterThan(30 * MiB);
      // A TLS socket's reads are 'data' events of Node's own buffers: each copied into the ring.
      expect(copied).toBe(ringed);
      const want = (await stack.oracle.query("COPY wide TO STDOUT (FORMAT csv)")).copyData;
      expectSameCsv(csvFiles(dir), want, UPSTREAMS[0]!, { header: false });
      expect((await c.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    } finally {
      await c.end();
      await p.shutdown(0);
    }
  }, 120_000);
});
