// AWS CONNECTION names a connection of Materialize's catalog (`CREATE CONNECTION … TO AWS`) that the
// proxy's own configuration does not hold. Scenarios after Materialize's `test/copy/s3-auth-checks.td`
// (one connection per identity; a broken assume-role connection fails at COPY time; a failed
// attempt writes nothing, so the next one succeeds on the same path), through the
// MaterializeWireDouble's catalog (test/support/mz-double.ts R13) and moto's real STS, whose
// AssumeRole records every call with its ExternalId and session name (moto `sts/models.py`,
// served at /moto-api/data.json). AWS's rules for the call: STS API Reference, AssumeRole
// (ExternalId 2–1224 of [\w+=,.@:/-]; RoleSessionName 2–64 of [\w+=,.@-]).
import { createServer, type Server } from "node:net";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { type S3Server, startMoto } from "../support/moto.js";
import {
  MaterializeWireDouble,
  MZ_CATALOG_SETUP,
  MZ_EXTERNAL_ID_PREFIX,
  mzAwsConnectionSql,
  mzSearchPath,
} from "../support/mz-double.js";
import { freshPrefix } from "../support/mz-e2e.js";
import { freshPgDatabase } from "../support/postgres.js";
import type { TestProxy } from "../support/proxy.js";

const DB = "mz_catalog_conn";
const pgPort = inject("pgPort");
// A moto of its own: moto's /moto-api/data.json (where AssumeRole calls are read back) answers 500
// once the shared server holds other files' state, so this file's STS record must not share it.
let s3: S3Server;
let check: S3Check;
const run = Date.now().toString(36);
const roleArn = (name: string) => `arn:aws:iam::123456789012:role/${name}-${run}`;
let dbl: MaterializeWireDouble;
let proxy: TestProxy;
let direct: pg.Client;
let bucket: string;
/** A host the catalog points at that no configuration names: it counts who calls. */
let trap: Server;
let trapCalls = 0;
const ids: Record<string, string> = {};

async function catalogConnection(name: string, o: Parameters<typeof mzAwsConnectionSql>[1]): Promise<void> {
  const { id, sql } = mzAwsConnectionSql(name, o);
  ids[name] = id;
  for (const q of sql) await direct.query(q);
}

interface AssumedRole {
  role_arn: string;
  external_id: string | null;
  session_name: string;
}

async function assumed(arn: string): Promise<AssumedRole[]> {
  const r = await fetch(`${s3.endpoint}/moto-api/data.json`);
  const data = (await r.json()) as { sts?: { AssumedRole?: AssumedRole[] } };
  return (data.sts?.AssumedRole ?? []).filter((a) => a.role_arn === arn);
}

async function as<T>(p: TestProxy, user: string, f: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: p.url(user, DB) });
  await c.connect();
  try {
    return await f(c);
  } finally {
    await c.end();
  }
}

const copy = (conn: string, prefix = freshPrefix()) =>
  `COPY (SELECT generate_series(1, 100)) TO 's3://${bucket}/${prefix}' WITH (AWS CONNECTION = ${conn}, FORMAT = 'csv')`;

beforeAll(async () => {
  s3 = await startMoto();
  check = new S3Check(s3);
  direct = await freshPgDatabase(pgPort, DB);
  for (const sql of MZ_CATALOG_SETUP) await direct.query(sql);
  await direct.query(mzSearchPath(DB));
  await direct.query("DROP ROLE IF EXISTS mzc_nousage; CREATE ROLE mzc_nousage LOGIN");
  await direct.query("DROP ROLE IF EXISTS mzc_usage; CREATE ROLE mzc_usage LOGIN");
  trap = createServer((sock) => {
    trapCalls++;
    sock.destroy();
  });
  await new Promise<void>((ok) => trap.listen(0, "127.0.0.1", ok));
  const trapUrl = `http://127.0.0.1:${(trap.address() as { port: number }).port}`;

  await catalogConnection("role_conn", {
    assumeRoleArn: roleArn("exporter"),
    endpoint: s3.endpoint,
    region: "us-east-1",
    usage: ["mzc_usage"],
  });
  await catalogConnection("named_session", {
    assumeRoleArn: roleArn("named"),
    assumeRoleSessionName: "nightly-export",
    endpoint: s3.endpoint,
    region: "us-east-1",
  });
  await catalogConnection("keys_conn", {
    accessKeyId: "AKIAEXAMPLE",
    endpoint: s3.endpoint,
    region: "us-east-1",
  });
  await catalogConnection("elsewhere", {
    assumeRoleArn: roleArn("elsewhere"),
    endpoint: trapUrl,
    region: "us-east-1",
  });
  await catalogConnection("no_ext_id", { assumeRoleArn: roleArn("noext"), endpoint: s3.endpoint });
  await direct.query(
    `UPDATE mz_internal.mz_aws_connections SET external_id = NULL WHERE id = '${ids.no_ext_id}'`,
  );

  dbl = await MaterializeWireDouble.start({ pgPort });
  // The proxy's identity for catalog connections: its "default" connection (moto, static keys),
  // so STS is asked at moto — the proxy's own endpoint.
  proxy = await startCopyProxy({ upstreamPort: dbl.port, s3, config: { catalogIdentity: "default" } });
  bucket = await check.bucket("mz-catalog-conn");
}, 60_000);

afterAll(async () => {
  await direct?.end();
  await proxy?.shutdown(0);
  await dbl?.stop();
  await new Promise((ok) => trap?.close(ok));
  await s3?.stop();
});

describe("AWS CONNECTION from Materialize's catalog (after Materialize test/copy/s3-auth-checks.td)", () => {
  test("ASSUME ROLE ARN: the proxy's identity assumes the role with Materialize's ExternalId mz_<prefix>_<id>", async () => {
    const prefix = freshPrefix();
    const r = await as(proxy, "postgres", (c) => c.query(copy("role_conn", prefix)));
    expect(r.rowCount).toBe(100);
    expect((await check.keys(bucket, `${prefix}/`)).filter((k) => k.endsWith(".csv"))).toHaveLength(1);
    const calls = await assumed(roleArn("exporter"));
    expect(calls.length).toBeGreaterThanOrEqual(1);
    for (const a of calls) {
      // Materialize's AwsAssumeRole::external_id (src/storage-types/src/connections/aws.rs).
      expect(a.external_id).toBe(`mz_${MZ_EXTERNAL_ID_PREFIX}_${ids.role_conn}`);
      expect(a.session_name).toBe(`copy-to-s3-proxy-${ids.role_conn}`);
    }
  });

  test("ASSUME ROLE SESSION NAME is the session name STS sees", async () => {
    const r = await as(proxy, "postgres", (c) => c.query(copy("named_session")));
    expect(r.rowCount).toBe(100);
    const calls = await assumed(roleArn("named"));
    expect(calls.map((a) => a.session_name)).toContain("nightly-export");
  });

  test("ACCESS KEY ID / SECRET ACCESS KEY: refused (0A000) — the secret lives in Materialize's secret store", async () => {
    const prefix = freshPrefix();
    await expect(as(proxy, "postgres", (c) => c.query(copy("keys_conn", prefix)))).rejects.toMatchObject({
      code: "0A000",
      message: `AWS CONNECTION "${DB}.public.keys_conn" authenticates with ACCESS KEY ID and SECRET ACCESS KEY, which the proxy cannot read`,
    });
    expect(await check.keys(bucket, `${prefix}/`)).toEqual([]);
  });

  test("an ENDPOINT the proxy's configuration does not name: 42501, and no request ever reaches it", async () => {
    const before = trapCalls;
    const err = await as(proxy, "postgres", (c) => c.query(copy("elsewhere"))).catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: "42501",
      message: `AWS CONNECTION "${DB}.public.elsewhere" names an ENDPOINT this proxy does not send credentials to`,
    });
    expect(JSON.stringify(err)).not.toContain("127.0.0.1");
    expect(trapCalls).toBe(before);
    expect(await assumed(roleArn("elsewhere"))).toEqual([]);
  });

  test("no external ID in the catalog and none configured: 0A000, STS is not asked", async () => {
    await expect(as(proxy, "postgres", (c) => c.query(copy("no_ext_id")))).rejects.toMatchObject({
      code: "0A000",
      message: `AWS CONNECTION "${DB}.public.no_ext_id" has no external ID`,
    });
    expect(await assumed(roleArn("noext"))).toEqual([]);
  });

  test("USAGE on the connection is required, as Materialize requires it; a refusal writes nothing, the next COPY succeeds", async () => {
    const prefix = freshPrefix();
    await as(proxy, "mzc_nousage", async (c) => {
      await expect(c.query(copy("role_conn", prefix))).rejects.toMatchObject({
        code: "42501",
        message: `permission denied for CONNECTION "${DB}.public.role_conn"`,
      });
    });
    expect(await check.keys(bucket, `${prefix}/`)).toEqual([]);
    const r = await as(proxy, "mzc_usage", (c) => c.query(copy("role_conn", prefix)));
    expect(r.rowCount).toBe(100);
  });

  test("a name neither the proxy nor the catalog knows is still 42704", async () => {
    await expect(as(proxy, "postgres", (c) => c.query(copy("nope")))).rejects.toMatchObject({
      code: "42704",
      message: "unknown catalog item 'nope'",
    });
  });
});

describe("the proxy's identity for catalog connections", () => {
  test("catalogExternalIdPrefix: ExternalId mz_<prefix>_<connection id>, whatever the catalog says", async () => {
    const p = await startCopyProxy({
      upstreamPort: dbl.port,
      s3,
      config: { catalogIdentity: "default", catalogExternalIdPrefix: "proxy-env-1" },
    });
    try {
      for (const conn of ["role_conn", "no_ext_id"]) {
        const r = await as(p, "postgres", (c) => c.query(copy(conn)));
        expect(r.rowCount).toBe(100);
      }
      expect((await assumed(roleArn("noext"))).map((a) => a.external_id)).toEqual([
        `mz_proxy-env-1_${ids.no_ext_id}`,
      ]);
      expect((await assumed(roleArn("exporter"))).map((a) => a.external_id)).toContain(
        `mz_proxy-env-1_${ids.role_conn}`,
      );
    } finally {
      await p.shutdown(0);
    }
  });

  test("without catalogIdentity: the SDK's default chain at the default STS endpoint (Materialize's arrangement)", async () => {
    // An operator aims the SDK's own STS endpoint with AWS_ENDPOINT_URL_STS (here at moto); the
    // default chain reads AWS_ACCESS_KEY_ID. Neither comes from the catalog.
    const saved = { ...process.env };
    Object.assign(process.env, {
      AWS_ENDPOINT_URL_STS: s3.endpoint,
      AWS_ACCESS_KEY_ID: s3.accessKeyId,
      AWS_SECRET_ACCESS_KEY: s3.secretAccessKey,
    });
    const p = await startCopyProxy({ upstreamPort: dbl.port, s3 });
    try {
      const before = (await assumed(roleArn("exporter"))).length;
      const r = await as(p, "postgres", (c) => c.query(copy("role_conn")));
      expect(r.rowCount).toBe(100);
      const calls = await assumed(roleArn("exporter"));
      expect(calls.length).toBeGreaterThan(before);
      expect(calls.at(-1)!.external_id).toBe(`mz_${MZ_EXTERNAL_ID_PREFIX}_${ids.role_conn}`);
    } finally {
      await p.shutdown(0);
      for (const k of ["AWS_ENDPOINT_URL_STS", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"]) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
    }
  });

  test("an identity with its own ASSUME ROLE ARN is the jump role, hopped through first (Materialize's aws_connection_role_arn)", async () => {
    const p = await startCopyProxy({
      upstreamPort: dbl.port,
      s3,
      config: {
        catalogIdentity: "jump",
        connections: {
          jump: {
            endpoint: s3.endpoint,
            region: "us-east-1",
            accessKeyId: { env: "C2S_TEST_S3_KEY" },
            secretAccessKey: { env: "C2S_TEST_S3_SECRET" },
            assumeRoleArn: roleArn("jump"),
          },
        },
      },
    });
    try {
      const before = (await assumed(roleArn("named"))).length;
      const r = await as(p, "postgres", (c) => c.query(copy("named_session")));
      expect(r.rowCount).toBe(100);
      const jumps = await assumed(roleArn("jump"));
      expect(jumps.length).toBeGreaterThanOrEqual(1);
      // Inside the proxy's own sphere of trust no ExternalId is sent, as Materialize does for its jump role.
      expect(jumps.every((a) => a.external_id === null)).toBe(true);
      expect((await assumed(roleArn("named"))).length).toBeGreaterThan(before);
    } finally {
      await p.shutdown(0);
    }
  });
});
