// What the tests of an export's rows leaving the relay's thread share: the encoder host reading
// them from a lent socket (encoder-host-process.test.ts) and the encoder thread framing them from a
// ring (encoder-thread-ring.test.ts). Either way the relay frames at most its first read's rows,
// and what follows the rows is the relay's again, so the same scenarios hold for both.
import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type pg from "pg";
import { expect } from "vitest";
import { rowRelayTestHooks } from "../../src/copy/row-relay.js";
import { rowRingTestHooks } from "../../src/encoders/worker/row-ring.js";
import { expectSameCsv, UPSTREAMS } from "./upstreams.js";

/** The relay's upstream read buffer: the rows of the first read are framed by the relay. */
export const FIRST_READ = 64 * 1024;

/** ~40 MB of CSV in 120,000 rows: many reads, chunks, parts and ring laps. */
export const CREATE_WIDE =
  "CREATE TABLE wide AS SELECT g, md5(g::text) AS h, repeat(md5(g::text), 9) AS pad FROM generate_series(1, 120000) g";

/**
 * Row bytes the relay's own thread framed and handed to the encoders during `run`
 * (row-relay.ts counts them), the bytes that went into rings unframed (row-ring.ts), and the part
 * of those the relay copied there (the rest the upstream socket's reads put there themselves).
 */
export async function relayedDuring<T>(
  run: () => Promise<T>,
): Promise<{ result: T; relayed: number; ringed: number; copied: number }> {
  const before = rowRelayTestHooks.relayedBytes;
  const ringBefore = rowRingTestHooks.bytes;
  const copiedBefore = rowRingTestHooks.copied;
  const result = await run();
  return {
    result,
    relayed: rowRelayTestHooks.relayedBytes - before,
    ringed: rowRingTestHooks.bytes - ringBefore,
    copied: rowRingTestHooks.copied - copiedBefore,
  };
}

/** The CSV files of a file:// export, concatenated in their names' order. */
export function csvFiles(dir: string): Buffer {
  return Buffer.concat(
    readdirSync(dir)
      .filter((f) => f.endsWith(".csv"))
      .sort()
      .map((f) => readFileSync(join(dir, f))),
  );
}

export interface DivertedSession {
  /** A client of the proxy under test, connected to the database holding `wide` and `mixed`. */
  client: pg.Client;
  /** The oracle: PostgreSQL's own COPY output. */
  oracle: { query: (sql: string) => Promise<{ copyData: Buffer }> };
  /** A fresh directory under the proxy's --file-root. */
  freshDir: () => string;
}

/**
 * The first DataRow spans reads, so the relay assembles it and hands it on alone; the rest of the
 * read that completed it (whole small rows and part of one) was read by the relay before the rows
 * left its thread, and must follow them there, not be lost.
 */
export async function expectFirstRowLargerThanARead(s: DivertedSession): Promise<void> {
  const sql =
    "SELECT g, CASE WHEN g = 1 THEN repeat('x', 100000) ELSE md5(g::text) END AS v FROM generate_series(1, 200000) g";
  const dir = s.freshDir();
  const { result, relayed } = await relayedDuring(() =>
    s.client.query(`COPY (${sql}) TO 'file://${dir}' WITH (FORMAT = 'csv')`),
  );
  expect(result.rowCount).toBe(200000);
  expect(relayed).toBeLessThanOrEqual(FIRST_READ + 100100);
  const want = (await s.oracle.query(`COPY (${sql}) TO STDOUT (FORMAT csv)`)).copyData;
  expectSameCsv(csvFiles(dir), want, UPSTREAMS[0]!, { header: false });
}

/**
 * After the rows are given back the session goes on as before: a query, another export (Parquet,
 * its rows diverted again), an export inside BEGIN/COMMIT reading the transaction's own rows, and
 * the extended protocol. `tempTable` names the transaction's table (one per calling file).
 */
export async function expectSessionGoesOn(s: DivertedSession, tempTable: string): Promise<void> {
  const { client } = s;
  expect((await client.query(`COPY wide TO 'file://${s.freshDir()}' WITH (FORMAT = 'csv')`)).rowCount).toBe(
    120000,
  );
  expect((await client.query("SELECT count(*)::int AS n FROM wide")).rows).toEqual([{ n: 120000 }]);
  const again = s.freshDir();
  const { result, relayed } = await relayedDuring(() =>
    client.query(`COPY mixed TO 'file://${again}' WITH (FORMAT = 'parquet')`),
  );
  expect(result.rowCount).toBe(150000);
  expect(relayed).toBeLessThanOrEqual(FIRST_READ);
  await client.query("BEGIN");
  try {
    await client.query(`CREATE TEMP TABLE ${tempTable} AS SELECT g FROM generate_series(1, 50000) g`);
    const inTx = s.freshDir();
    expect((await client.query(`COPY ${tempTable} TO 'file://${inTx}' WITH (FORMAT = 'csv')`)).rowCount).toBe(
      50000,
    );
    // The export read the transaction's own uncommitted rows and left it open and usable.
    expect((await client.query(`SELECT count(*)::int AS n FROM ${tempTable}`)).rows).toEqual([{ n: 50000 }]);
    await client.query("COMMIT");
  } catch (e) {
    await client.query("ROLLBACK");
    throw e;
  }
  // Extended protocol (a bound parameter) right after.
  expect((await client.query("SELECT $1::int + 1 AS n", [41])).rows).toEqual([{ n: 42 }]);
}
