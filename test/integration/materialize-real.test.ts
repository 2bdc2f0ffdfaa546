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
import { waitUntil } from "../support/export-checks.js";
import { basicSetup, type MzEnv, materializeScenarios, typesSetup } from "../support/mz-e2e.js";
import { materializeRoundTripScenarios } from "../support/mz-round-trips.js";
import { materializeTypeScenarios } from "../support/mz-types-e2e.js";
import type { TestProxy } from "../support/proxy.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";

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

  // Materialize ends a session idle in a transaction past idle_in_transaction_session_timeout
  // (src/sql/src/session/vars/definitions.rs, src/pgwire/src/protocol.rs); while uploads are held
  // the proxy stops reading inside the SUBSCRIBE's transaction. docs/materialize.md "Idle in transaction".
  test("uploads held past the client's idle_in_transaction_session_timeout: the export completes, the session lives on", async () => {
    const url = new URL(MZ_URL!);
    const s3 = s3Access();
    const faults = await S3FaultProxy.start(s3.endpoint);
    const p2 = await startCopyProxy({
      upstreamPort: Number(url.port || 6875),
      s3: { ...s3, endpoint: faults.endpoint },
      args: ["--upstream", `${url.hostname}:${url.port || 6875}`],
      config: { exports: { partSize: 5 * 1024 * 1024, partsInFlight: 1, filesCompleting: 1 } },
    });
    const user = decodeURIComponent(url.username || "materialize");
    const password = url.password ? decodeURIComponent(url.password) : undefined;
    const c2 = new pg.Client({
      connectionString: p2.url(user, url.pathname.slice(1) || "materialize", password),
    });
    c2.on("notice", () => {});
    c2.on("error", () => {});
    await c2.connect();
    try {
      await c2.query("SET idle_in_transaction_session_timeout = '1s'");
      faults.setRules({ op: "UploadPart", fault: "hold" });
      const q = c2.query(
        `COPY (SELECT g, repeat('x', 100) AS pad FROM generate_series(1, 120000) g) TO 's3://${bucket}/idle-held' WITH (FORMAT = 'csv')`,
      );
      q.catch(() => {});
      try {
        await faults.waitFor("UploadPart", 1);
        const held = Date.now();
        await waitUntil("uploads held three times the session's timeout", () =>
          Date.now() - held > 3000 ? true : null,
        );
      } finally {
        faults.clear();
      }
      expect((await q).rowCount).toBe(120_000);
      expect((await c2.query("SHOW idle_in_transaction_session_timeout")).rows[0]).toEqual({
        idle_in_transaction_session_timeout: "1 s",
      });
    } finally {
      await c2.end().catch(() => {});
      await p2.shutdown(0);
      await faults.close();
    }
  }, 60_000);

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

// Opening the snapshot: one round trip, two with the peek, an error mid-write as Materialize
// answers it (test/support/mz-round-trips.ts; the double runs them in mz-snapshot-round-trips.test.ts).
describe.skipIf(!MZ_URL)(`Materialize snapshot round trips against a real Materialize${skipped}`, () => {
  const RT_SCHEMA = "c2s_round_trips";
  let direct: pg.Client;
  beforeAll(async () => {
    direct = new pg.Client({ connectionString: MZ_URL });
    await direct.connect();
    await direct.query(`DROP SCHEMA IF EXISTS ${RT_SCHEMA} CASCADE`);
    await direct.query(`CREATE SCHEMA ${RT_SCHEMA}`);
    await direct.query(`CREATE TABLE ${RT_SCHEMA}.rt (a int, b text)`);
    await direct.query(`INSERT INTO ${RT_SCHEMA}.rt SELECT g, 'row ' || g FROM generate_series(1, 25) g`);
  }, 60_000);
  afterAll(async () => {
    await direct?.query(`DROP SCHEMA IF EXISTS ${RT_SCHEMA} CASCADE`).catch(() => {});
    await direct?.end();
  });
  materializeRoundTripScenarios(() => {
    const url = new URL(MZ_URL!);
    return {
      port: Number(url.port || 6875),
      host: url.hostname,
      user: decodeURIComponent(url.username || "materialize"),
      database: url.pathname.slice(1) || "materialize",
      table: `${RT_SCHEMA}.rt`,
      rows: 25,
    };
  });
});
