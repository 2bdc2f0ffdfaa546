// Who may export with which AWS connection (docs/security.md): a connection with `requireRole`
// is usable only by members of that upstream role, decided by PostgreSQL in the user's own session
// (pg_has_role); the refusal (42501) and the unknown-name error (42704) name no other connection.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";

const pgPort = inject("pgPort");
const s3 = motoAccess();
const check = new S3Check(s3);
const ENV = {
  C2S_CONNECTION_RESTRICTED_ENDPOINT: s3.endpoint,
  C2S_CONNECTION_RESTRICTED_REGION: s3.region,
  C2S_CONNECTION_RESTRICTED_ACCESS_KEY_ID: s3.accessKeyId,
  C2S_CONNECTION_RESTRICTED_SECRET_ACCESS_KEY: s3.secretAccessKey,
  C2S_CONNECTION_RESTRICTED_REQUIRE_ROLE: "s3_exporters",
  C2S_CONNECTION_GHOST_ENDPOINT: s3.endpoint,
  C2S_CONNECTION_GHOST_REGION: s3.region,
  C2S_CONNECTION_GHOST_REQUIRE_ROLE: "no_such_role",
};

let proxy: TestProxy;
let admin: pg.Client;
let bucket: string;

beforeAll(async () => {
  admin = new pg.Client({ host: "127.0.0.1", port: pgPort, user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query("DROP ROLE IF EXISTS s3_exporters");
  await admin.query("CREATE ROLE s3_exporters NOLOGIN");
  await admin.query("DROP ROLE IF EXISTS exporter_member");
  await admin.query("CREATE ROLE exporter_member LOGIN IN ROLE s3_exporters");
  Object.assign(process.env, ENV);
  try {
    proxy = await startCopyProxy({ upstreamPort: pgPort, s3 });
  } finally {
    for (const k of Object.keys(ENV)) delete process.env[k];
  }
  bucket = await check.bucket("connection-authorization");
});
afterAll(async () => {
  await proxy?.shutdown(0);
  await admin?.query("DROP ROLE IF EXISTS exporter_member");
  await admin?.query("DROP ROLE IF EXISTS s3_exporters");
  await admin?.end();
});

async function exportAs(user: string, connection: string | null, prefix: string): Promise<unknown> {
  const c = new pg.Client({ connectionString: proxy.url(user) });
  c.on("notice", () => {});
  await c.connect();
  try {
    const r = await c.query(
      `COPY (SELECT 1 AS one) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv'${connection === null ? "" : `, AWS CONNECTION = ${connection}`})`,
    );
    return r.rowCount;
  } catch (e) {
    const { code, message, hint, detail } = e as pg.DatabaseError;
    return { code, message, hint, detail };
  } finally {
    await c.end();
  }
}

describe("requireRole", () => {
  test("a member of the role (directly, or as superuser) exports; anyone else gets 42501", async () => {
    expect(await exportAs("exporter_member", "restricted", "member")).toBe(1);
    expect(await exportAs("postgres", "restricted", "superuser")).toBe(1);
    const refused = (await exportAs("plainuser", "restricted", "plain")) as Record<string, unknown>;
    expect(refused).toMatchObject({
      code: "42501",
      message: 'permission denied for AWS connection "restricted"',
    });
    expect(JSON.stringify(refused)).not.toMatch(/ghost|default|s3_exporters/);
    expect(await check.keys(bucket, "plain/")).toEqual([]);
  });

  test("a role that does not exist refuses everyone but superusers, with the same words", async () => {
    expect(await exportAs("plainuser", "ghost", "ghost")).toMatchObject({
      code: "42501",
      message: 'permission denied for AWS connection "ghost"',
    });
  });

  test("a connection without requireRole stays open to every user (what docs/security.md warns about)", async () => {
    expect(await exportAs("plainuser", null, "open")).toBe(1);
  });

  test("an unknown connection name lists none of the configured ones", async () => {
    const err = (await exportAs("plainuser", "nope", "nope")) as Record<string, unknown>;
    expect(err).toMatchObject({ code: "42704", message: "unknown catalog item 'nope'" });
    expect(JSON.stringify(err)).not.toMatch(/restricted|ghost|default/);
  });
});
