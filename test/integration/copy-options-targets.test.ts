// Options and targets as a user's script meets them through the proxy (decisions in
// docs/materialize.md, "Options and targets"): what Materialize's COPY TO ignores is ignored here
// too, with a NOTICE; gs:// is accepted; targets that would leak or mislead are refused.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";

const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let client: pg.Client;
let bucket: string;
const notices: { message?: string }[] = [];

beforeAll(async () => {
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3 });
  client = new pg.Client({ connectionString: proxy.url() });
  client.on("notice", (n) => notices.push(n));
  await client.connect();
  bucket = await check.bucket("options-targets");
});
afterAll(async () => {
  await client?.end();
  await proxy?.shutdown(0);
});

describe("options Materialize's COPY TO ignores (Materialize src/sql/src/plan/statement/dml.rs)", () => {
  test("CSV options with FORMAT parquet, FILES and PATTERN: the export runs, a NOTICE names them", async () => {
    notices.length = 0;
    const r = await client.query(
      `COPY (SELECT g FROM generate_series(1, 10) g) TO 's3://${bucket}/pq-header'
       WITH (FORMAT = 'parquet', HEADER = true, DELIMITER = ';', FILES = ['a.csv'], PATTERN = '*.csv')`,
    );
    expect(r.rowCount).toBe(10);
    expect((await check.keys(bucket, "pq-header/")).filter((k) => k.endsWith(".parquet"))).toHaveLength(1);
    expect(notices.map((n) => n.message)).toContain(
      "ignoring COPY options HEADER, DELIMITER, FILES, PATTERN",
    );
  });
});

describe("targets", () => {
  test("gs:// is accepted (GCS's S3-compatible API at the connection's endpoint) and kept in the manifest", async () => {
    const r = await client.query(`COPY (SELECT 1 AS a) TO 'gs://${bucket}/gs-target' WITH (FORMAT = 'csv')`);
    expect(r.rowCount).toBe(1);
    const keys = await check.keys(bucket, "gs-target/");
    const manifest = JSON.parse(
      (await check.get(bucket, keys.find((k) => k.endsWith("manifest.json"))!)).toString(),
    );
    expect(manifest.target).toBe(`gs://${bucket}/gs-target`);
  });

  test("a presigned URL's query string is refused, and its signature appears in no field", async () => {
    const signature = "f00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeedf00dfeed";
    const err = await client
      .query(
        `COPY (SELECT 1) TO 's3://${bucket}/signed?X-Amz-Credential=AKIAEXAMPLE&X-Amz-Signature=${signature}' WITH (FORMAT = 'csv')`,
      )
      .catch((e: unknown) => e as pg.DatabaseError);
    expect(err).toMatchObject({
      code: "22023",
      message: "COPY TO target url must not have a query string or fragment",
    });
    expect(JSON.stringify({ ...err, message: (err as Error).message })).not.toContain(signature);
    expect(await check.keys(bucket, "signed")).toEqual([]);
  });

  test("empty path segments are refused before anything is written", async () => {
    await expect(
      client.query(`COPY (SELECT 1) TO 's3://${bucket}/a//b' WITH (FORMAT = 'csv')`),
    ).rejects.toMatchObject({
      code: "22023",
      message: "COPY TO target path must not contain empty segments",
    });
    expect(await check.keys(bucket, "a/")).toEqual([]);
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });
});
