import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { awsCliKeys, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";
import { RawPg } from "../support/raw-pg.js";

const cephEndpoint = inject("cephEndpoint");
const DB = "copy_ceph_e2e";

describe.skipIf(cephEndpoint === undefined)(
  `COPY TO S3 against Ceph RadosGW${cephEndpoint ? "" : ` (skipped: ${inject("cephSkipReason")})`}`,
  () => {
    const s3: S3Access = {
      endpoint: cephEndpoint ?? "",
      region: inject("cephRegion") ?? "us-east-1",
      accessKeyId: inject("cephAccessKeyId") ?? "",
      secretAccessKey: inject("cephSecretAccessKey") ?? "",
    };
    const check = new S3Check(s3);
    const pgPort = inject("pgPort");
    let proxy: TestProxy;
    let oracle: RawPg;
    let client: pg.Client;
    let bucket: string;

    beforeAll(async () => {
      const admin = await RawPg.connect({ port: pgPort });
      await admin.query(`DROP DATABASE IF EXISTS ${DB}`);
      await admin.query(`CREATE DATABASE ${DB}`);
      await admin.close();
      oracle = await RawPg.connect({ port: pgPort, database: DB });
      await oracle.query(`CREATE TABLE wide AS
      SELECT g AS id, md5(g::text) AS h, repeat(md5((g * 7)::text), 3) AS pad, g % 3 = 0 AS flag,
        CASE WHEN g % 11 = 0 THEN NULL ELSE (g * 0.01)::numeric(12, 2) END AS amount
      FROM generate_series(1, 250000) g`);
      proxy = await startCopyProxy({ upstreamPort: pgPort, s3 });
      client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
      await client.connect();
      bucket = await check.bucket("ceph-e2e");
    }, 120_000);

    afterAll(async () => {
      await client?.end();
      await oracle?.close();
      await proxy?.shutdown(0);
    });

    const dataKeys = async (prefix: string): Promise<string[]> =>
      (await check.keys(bucket, `${prefix}/`)).filter((k) => /-batch-\d{4}-\d{4}\./.test(k));

    test("multi-file CSV with multipart uploads equals PostgreSQL's COPY output; the AWS CLI agrees", async () => {
      const r = await client.query(
        `COPY wide TO 's3://${bucket}/csv' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
      );
      expect(r.rowCount).toBe(250000);
      const keys = await dataKeys("csv");
      expect(keys.length).toBeGreaterThanOrEqual(2);
      const files = await Promise.all(keys.map((k) => check.get(bucket, k)));
      for (const f of files) expect(f.length).toBeLessThanOrEqual(16 * 1024 * 1024);
      // Larger than one 8 MiB part: these went through CreateMultipartUpload/UploadPart/Complete.
      expect(Math.max(...files.map((f) => f.length))).toBeGreaterThan(8 * 1024 * 1024);
      const want = (await oracle.query("COPY wide TO STDOUT (FORMAT csv)")).copyData;
      expect(Buffer.concat(files).equals(want)).toBe(true);
      const all = await check.keys(bucket, "csv/");
      expect(all.filter((k) => k.endsWith("-INCOMPLETE"))).toEqual([]);
      expect(all.filter((k) => k.endsWith("-manifest.json"))).toHaveLength(1);
      const cli = await awsCliKeys(s3, bucket, `csv/`);
      expect(cli).toEqual(all);
      expect(await check.uploads(bucket)).toEqual([]);
    });

    test("Parquet lands and its manifest counts every row", async () => {
      const r = await client.query(
        `COPY (SELECT * FROM wide WHERE id <= 50000) TO 's3://${bucket}/pq' WITH (FORMAT = 'parquet')`,
      );
      expect(r.rowCount).toBe(50000);
      const manifestKey = (await check.keys(bucket, "pq/")).find((k) => k.endsWith("-manifest.json"))!;
      const manifest = JSON.parse((await check.get(bucket, manifestKey)).toString());
      expect(manifest.format).toBe("parquet");
      expect(manifest.rows).toBe(50000);
      const keys = await dataKeys("pq");
      expect(manifest.files.map((f: { key: string }) => `pq/${f.key}`)).toEqual(keys);
      const first = await check.get(bucket, keys[0]!);
      expect(first.subarray(0, 4).toString()).toBe("PAR1");
      expect(first.subarray(-4).toString()).toBe("PAR1");
    });

    test("a failure mid-export leaves the prefix empty and no multipart upload behind", async () => {
      await expect(
        client.query(
          `COPY (SELECT id, pad, 1 / (id - 200000) AS boom FROM wide) TO 's3://${bucket}/fail' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB')`,
        ),
      ).rejects.toMatchObject({ code: "22012" });
      expect(await check.keys(bucket, "fail/")).toEqual([]);
      expect(await check.uploads(bucket, "fail/")).toEqual([]);
      // The same export can be re-run at once.
      const r = await client.query(
        `COPY (SELECT id FROM wide WHERE id < 10) TO 's3://${bucket}/fail' WITH (FORMAT = 'csv')`,
      );
      expect(r.rowCount).toBe(9);
    });

    test("a non-empty prefix is refused; 'x' is not confused with 'x2/'", async () => {
      await client.query(`COPY (SELECT 1) TO 's3://${bucket}/dir2/a' WITH (FORMAT = 'csv')`);
      await client.query(`COPY (SELECT 1) TO 's3://${bucket}/dir' WITH (FORMAT = 'csv')`);
      await expect(
        client.query(`COPY (SELECT 1) TO 's3://${bucket}/dir' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "58000",
        message: "S3 bucket path is not empty, contains 3 objects",
      });
    });
  },
);
