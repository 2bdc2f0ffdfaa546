// Materialize-only SQL in the COPY query (issue 10 item 8): what PostgreSQL's parser cannot read
// must still reach Materialize and export, or be refused clearly. Through the MaterializeWireDouble,
// whose R17 rewrites the constructs for its PostgreSQL (test/support/mz-double-sql.ts S1–S4, each
// citing Materialize's list.slt, map.slt and optimize/copy_to.rs). Before the double learned them,
// every one of these failed with the double's PostgreSQL's 42601 / 42883 although the proxy had
// passed the statement on (docs/materialize.md, "Materialize-only SQL in the query").
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { MaterializeWireDouble, MZ_TYPES_SETUP, mzSearchPath } from "../support/mz-double.js";
import { MZ_SQL_SETUP } from "../support/mz-double-sql.js";
import { freshPrefix, parseCsv } from "../support/mz-e2e.js";
import { freshPgDatabase } from "../support/postgres.js";
import type { TestProxy } from "../support/proxy.js";

const DB = "mz_only_sql";
const pgPort = inject("pgPort");
const s3 = motoAccess();
const check = new S3Check(s3);
let dbl: MaterializeWireDouble;
let proxy: TestProxy;
let client: pg.Client;
let bucket: string;

beforeAll(async () => {
  const direct = await freshPgDatabase(pgPort, DB);
  for (const sql of [...MZ_TYPES_SETUP, ...MZ_SQL_SETUP]) await direct.query(sql);
  await direct.query(mzSearchPath(DB));
  await direct.query(
    `CREATE TABLE events (id int, ts timestamp);
     INSERT INTO events VALUES (1, now() - INTERVAL '3 days'), (2, now() - INTERVAL '1 hour'), (3, now())`,
  );
  await direct.end();
  dbl = await MaterializeWireDouble.start({ pgPort });
  proxy = await startCopyProxy({ upstreamPort: dbl.port, s3 });
  client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  await client.connect();
  bucket = await check.bucket("mz-only-sql");
}, 60_000);

afterAll(async () => {
  await client?.end();
  await proxy?.shutdown(0);
  await dbl?.stop();
});

async function exportCsv(query: string): Promise<Array<Array<string | null>>> {
  const prefix = freshPrefix();
  await client.query(`COPY (${query}) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
  const key = (await check.keys(bucket, `${prefix}/`)).find((k) => k.endsWith(".csv"))!;
  return parseCsv((await check.get(bucket, key)).toString());
}

describe("Materialize-only SQL reaches Materialize and exports", () => {
  test("LIST[…] (Materialize test/sqllogictest/list.slt): a list column in Materialize's text form", async () => {
    expect(await exportCsv("SELECT LIST[1, 2, 3] AS l, LIST['a', 'b c'] AS t")).toEqual([
      ["{1,2,3}", '{a,"b c"}'],
    ]);
  });

  test("MAP[k => v] (test/sqllogictest/map.slt): a map column", async () => {
    expect(await exportCsv("SELECT MAP['a' => 1, 'b' => 2] AS m")).toEqual([["{a=>1,b=>2}"]]);
  });

  test("'{…}'::map[text=>int] (map.slt): the cast type and its literal", async () => {
    expect(await exportCsv("SELECT '{a=>1, b=>NULL}'::map[text=>int] AS m")).toEqual([["{a=>1,b=>NULL}"]]);
  });

  test("mz_now() in WHERE (a temporal filter; optimize/copy_to.rs resolves it at the read time)", async () => {
    const rows = await exportCsv("SELECT id FROM events WHERE mz_now() <= ts + INTERVAL '1 day'");
    expect(rows.map((r) => Number(r[0])).sort()).toEqual([2, 3]);
  });
});

describe("what cannot ride inside SUBSCRIBE is refused before anything is written", () => {
  test.each([
    ["SUBSCRIBE events", "COPY ... TO 's3://...' supports only SELECT, VALUES and TABLE queries"],
    ["SELECT * FROM events AS OF 1", "AS OF is not supported in the query of COPY ... TO 's3://...'"],
  ])("%s", async (query, message) => {
    const prefix = freshPrefix();
    await expect(
      client.query(`COPY (${query}) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`),
    ).rejects.toMatchObject({ code: "0A000", message });
    expect(await check.keys(bucket, `${prefix}/`)).toEqual([]);
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });
});
