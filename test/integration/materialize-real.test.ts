// The Materialize scenarios (test/support/mz-e2e.ts) against a REAL Materialize: the same tests the
// wire double passes, run where a Materialize is reachable. Skipped, with the reason in the test
// name, unless MZ_URL is set, e.g. with Materialize's emulator image:
//
//   docker run -d -p 6875:6875 -p 6876:6876 materialize/materialized
//   MZ_URL=postgres://materialize@127.0.0.1:6875/materialize npx vitest run test/integration/materialize-real.test.ts
//
// The proxy writes to the suite's moto server unless C2S_TEST_S3_ENDPOINT (+ _REGION,
// _ACCESS_KEY_ID, _SECRET_ACCESS_KEY) names another S3 endpoint; Materialize itself needs no S3.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { basicSetup, type MzEnv, materializeScenarios, typesSetup } from "../support/mz-e2e.js";
import { materializeTypeScenarios } from "../support/mz-types-e2e.js";
import type { TestProxy } from "../support/proxy.js";

const MZ_URL = process.env.MZ_URL;
const SCHEMA = "c2s_test";

function s3Access(): S3Access {
  const endpoint = process.env.C2S_TEST_S3_ENDPOINT;
  if (!endpoint) return motoAccess();
  return {
    endpoint,
    region: process.env.C2S_TEST_S3_REGION ?? "us-east-1",
    accessKeyId: process.env.C2S_TEST_S3_ACCESS_KEY_ID ?? "",
    secretAccessKey: process.env.C2S_TEST_S3_SECRET_ACCESS_KEY ?? "",
  };
}

const skipped = MZ_URL
  ? ""
  : " — skipped: set MZ_URL=postgres://user@host:6875/db to run against a real Materialize";
if (!MZ_URL) console.log(`[materialize-real]${skipped}`);

describe.skipIf(!MZ_URL)(`COPY TO S3 through the proxy in front of a real Materialize${skipped}`, () => {
  let proxy: TestProxy;
  let client: pg.Client;
  let direct: pg.Client;
  let check: S3Check;
  let bucket: string;

  beforeAll(async () => {
    const url = new URL(MZ_URL!);
    direct = new pg.Client({ connectionString: MZ_URL });
    await direct.connect();
    await direct.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`);
    await direct.query(`CREATE SCHEMA ${SCHEMA}`);
    await direct.query(`SET search_path = ${SCHEMA}`);
    for (const sql of [...basicSetup(), ...typesSetup("real")]) await direct.query(sql);
    const s3 = s3Access();
    check = new S3Check(s3);
    proxy = await startCopyProxy({
      upstreamPort: Number(url.port || 6875),
      s3,
      args: ["--upstream", `${url.hostname}:${url.port || 6875}`],
      // Catalog connections' roles are assumed by the "default" connection at its own endpoint;
      // the prefix covers an emulator without an external-ID prefix of its own.
      config: { catalogIdentity: "default", catalogExternalIdPrefix: "c2s-real" },
    });
    const db = url.pathname.slice(1) || "materialize";
    const user = decodeURIComponent(url.username || "materialize");
    const password = url.password ? decodeURIComponent(url.password) : undefined;
    client = new pg.Client({ connectionString: proxy.url(user, db, password) });
    await client.connect();
    await client.query(`SET search_path = ${SCHEMA}`);
    bucket = `c2s-mz-real-${Date.now().toString(36)}`;
    await check.bucket(bucket);
  }, 120_000);

  afterAll(async () => {
    await client?.end();
    await direct?.query(`DROP SCHEMA IF EXISTS ${SCHEMA} CASCADE`).catch(() => {});
    await direct?.end();
    await proxy?.shutdown(0);
  });

  const env = (): MzEnv => ({
    client,
    check,
    bucket,
    kind: "real",
    setup: async (sql) => {
      await direct.query(sql);
    },
  });

  materializeScenarios(env);
  materializeTypeScenarios(env, "real");

  // After Materialize test/copy/s3-auth-checks.td; decisions in docs/materialize.md.
  test("AWS CONNECTION names a catalog connection with keys: refused, its secret cannot be read", async () => {
    const s3 = s3Access();
    await direct.query(`CREATE SECRET c2s_s3_secret AS '${s3.secretAccessKey.replace(/'/g, "''")}'`);
    await direct.query(
      `CREATE CONNECTION c2s_s3 TO AWS (ENDPOINT = '${s3.endpoint}', REGION = '${s3.region}',
         ACCESS KEY ID = '${s3.accessKeyId}', SECRET ACCESS KEY = SECRET c2s_s3_secret) WITH (VALIDATE = false)`,
    );
    await expect(
      client.query(
        `COPY dup TO 's3://${bucket}/catalog-keys' WITH (FORMAT = 'csv', AWS CONNECTION = c2s_s3)`,
      ),
    ).rejects.toMatchObject({ code: "0A000" });
  });

  test("AWS CONNECTION names a catalog ASSUME ROLE connection: the proxy's identity assumes it", async () => {
    const s3 = s3Access();
    await direct.query(
      `CREATE CONNECTION c2s_role TO AWS (ENDPOINT = '${s3.endpoint}', REGION = '${s3.region}',
         ASSUME ROLE ARN = 'arn:aws:iam::123456789012:role/c2s-real') WITH (VALIDATE = false)`,
    );
    const r = await client.query(
      `COPY dup TO 's3://${bucket}/catalog-role' WITH (FORMAT = 'csv', AWS CONNECTION = c2s_role)`,
    );
    expect(r.rowCount).toBe(5);
    expect((await check.keys(bucket, "catalog-role/")).some((k) => k.endsWith(".csv"))).toBe(true);
  });
});
