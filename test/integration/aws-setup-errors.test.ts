// A connection that lacks a region or credentials: the first export says which connection and
// where to set the missing setting, instead of the AWS SDK's "Region is missing" or
// "CredentialsProviderError … Could not load credentials from any providers".
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test } from "vitest";
import { motoAccess, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";

let proxy: TestProxy;
let client: pg.Client;
const s3 = motoAccess();
// The SDK's credential chain must not wait for an EC2 metadata service that is not there.
process.env.AWS_EC2_METADATA_DISABLED = "true";
for (const v of [
  "AWS_REGION",
  "AWS_DEFAULT_REGION",
  "AWS_ACCESS_KEY_ID",
  "AWS_SECRET_ACCESS_KEY",
  "AWS_PROFILE",
])
  delete process.env[v];

beforeAll(async () => {
  proxy = await startCopyProxy({
    upstreamPort: inject("pgPort"),
    s3,
    config: {
      connections: {
        noregion: { accessKeyId: "test", secretAccessKey: "test" },
        nocreds: { endpoint: s3.endpoint, region: "us-east-1" },
      },
    },
  });
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
});
afterAll(async () => {
  await client?.end();
  await proxy?.shutdown(0);
});

test("a connection without a region is named, with the key and the variable that set it", async () => {
  await expect(
    client.query(`COPY (SELECT 1) TO 's3://aws-setup/a' WITH (FORMAT csv, AWS CONNECTION = noregion)`),
  ).rejects.toMatchObject({
    code: "22023",
    message: 'AWS connection "noregion" has no region',
    hint: 'Set "region" for it: config file "connections": { "noregion": { "region": "…" } }, or C2S_CONNECTION_NOREGION_REGION.',
  });
});

test("a connection without credentials is named, with the keys and variables that set them", async () => {
  await expect(
    client.query(`COPY (SELECT 1) TO 's3://aws-setup/b' WITH (FORMAT csv, AWS CONNECTION = nocreds)`),
  ).rejects.toMatchObject({
    code: "28000",
    message: 'AWS connection "nocreds" found no credentials',
    hint: expect.stringContaining(
      "C2S_CONNECTION_NOCREDS_ACCESS_KEY_ID and C2S_CONNECTION_NOCREDS_SECRET_ACCESS_KEY",
    ),
  });
  // The session is still usable.
  expect((await client.query("SELECT 1 AS one")).rows[0].one).toBe(1);
});
