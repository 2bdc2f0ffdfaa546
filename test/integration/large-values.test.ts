// A single huge value: an export holds a whole row while it encodes it, so rows above
// exports.maxRowBytes are refused with 54000 (PostgreSQL's "row is too big" words) as soon as
// their length is known, before they are assembled; the prefix is left as found and the session
// stays usable. Rows up to the limit export as before. Real PostgreSQL, moto.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { expectNothingLeft } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { RawPg } from "../support/raw-pg.js";

const DB = "large_values";
const LIMIT = 64 * 1024;
const s3 = motoAccess();
const check = new S3Check(s3);
let oracle: RawPg;
let proxy: TestProxy;
let client: pg.Client;
let bucket: string;

beforeAll(async () => {
  const pgPort = inject("pgPort");
  oracle = await RawPg.freshDatabase(pgPort, DB);
  // Row 2 is ~200 kB (over the limit), rows 1 and 3 are small; "fits" holds one row just under it.
  await oracle.query(
    "CREATE TABLE huge AS SELECT g AS id, CASE WHEN g = 2 THEN repeat('x', 200000) ELSE 'small' END AS v FROM generate_series(1, 3) g",
  );
  await oracle.query(`CREATE TABLE fits AS SELECT 1 AS id, repeat('y', ${LIMIT - 100}) AS v`);
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3, config: { exports: { maxRowBytes: LIMIT } } });
  client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  client.on("notice", () => {});
  await client.connect();
  bucket = await check.bucket("large-values");
}, 60_000);

afterAll(async () => {
  await client?.end();
  await oracle?.close();
  await proxy?.shutdown(0);
});

describe.each(["csv", "parquet"])("%s", (format) => {
  test("a row over exports.maxRowBytes: 54000 naming its size and the limit, nothing left", async () => {
    const prefix = `over-${format}`;
    const err = await client
      .query(`COPY huge TO 's3://${bucket}/${prefix}' WITH (FORMAT = '${format}')`)
      .then(
        () => null,
        (e: pg.DatabaseError) => e,
      );
    expect(err).toMatchObject({ code: "54000" });
    expect(err!.message).toMatch(/^row is too big: size 2000\d\d, maximum size 65536$/);
    expect(err!.hint).toContain("exports.maxRowBytes");
    await expectNothingLeft(check, bucket, prefix);
    // The session is still usable, and its upstream outside any transaction.
    expect((await client.query("SELECT count(*)::int AS n FROM huge")).rows).toEqual([{ n: 3 }]);
  });

  test("a row just under the limit exports", async () => {
    const r = await client.query(`COPY fits TO 's3://${bucket}/under-${format}' WITH (FORMAT = '${format}')`);
    expect(r.rowCount).toBe(1);
  });
});
