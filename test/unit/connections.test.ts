// AWS connections from config + env, secret handling, and target → store resolution.
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, test } from "vitest";
import { ConnectionConfigError } from "../../src/copy/connection-settings.js";
import { loadConnections } from "../../src/copy/connections.js";
import { createStore } from "../../src/copy/create-store.js";
import { FileStore } from "../../src/copy/storage/file-store.js";
import { S3Store } from "../../src/copy/storage/s3-store.js";
import {
  formatTargetUrl,
  parseTargetUrl,
  UNSUPPORTED_TARGET as UNSUPPORTED,
} from "../../src/copy/storage/target-url.js";
import { PgError } from "../../src/errors.js";

const SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY";
const TOKEN = "FwoGZXIvYXdzEXAMPLE-session-token";
let dir: string;
let secretFile: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), "connections-"));
  secretFile = join(dir, "secret");
  await writeFile(secretFile, `${SECRET}\n`);
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

function load(section: unknown, env: NodeJS.ProcessEnv = {}) {
  const warnings: string[] = [];
  const reg = loadConnections(section, env, { warn: (m) => warnings.push(m) });
  return { reg, warnings };
}

describe("loading", () => {
  test("config file: camelCase, Materialize and snake_case names; env and file secrets", async () => {
    const { reg, warnings } = load(
      {
        minio: {
          endpoint: "http://127.0.0.1:9000/",
          region: "eu-central-1",
          accessKeyId: "AKIAEXAMPLE",
          secretAccessKey: { env: "MINIO_SECRET" },
        },
        "ceph-prod": { "ACCESS KEY ID": { env: "CEPH_KEY" }, secret_access_key: { file: secretFile } },
        role: { "Assume Role ARN": "arn:aws:iam::1:role/r", assumeRoleSessionName: "s" },
      },
      { MINIO_SECRET: SECRET, CEPH_KEY: "AKIACEPH" },
    );
    expect(warnings).toEqual([]);
    expect(reg.names()).toEqual(["ceph-prod", "minio", "role"]);
    const minio = reg.get("minio");
    expect(minio).toMatchObject({
      endpoint: "http://127.0.0.1:9000",
      region: "eu-central-1",
      authentication: "static",
    });
    expect(reg.get("role")).toMatchObject({
      assumeRoleArn: "arn:aws:iam::1:role/r",
      assumeRoleSessionName: "s",
      authentication: "assume-role",
    });

    // The secrets reach the SDK (and only the SDK), read when it asks.
    const creds = await minio.s3Client({ maxAttempts: 1, requestTimeoutMs: 1000 }).config.credentials();
    expect(creds).toMatchObject({ accessKeyId: "AKIAEXAMPLE", secretAccessKey: SECRET });
    const ceph = await reg
      .get("ceph-prod")
      .s3Client({ maxAttempts: 1, requestTimeoutMs: 1000 })
      .config.credentials();
    expect(ceph).toMatchObject({ accessKeyId: "AKIACEPH", secretAccessKey: SECRET }); // file trimmed
    reg.close();
  });

  test("a rotated secret file is read again, not frozen at start", async () => {
    const f = join(dir, "rotating");
    await writeFile(f, "old-secret");
    const { reg } = load({ c: { accessKeyId: "AKIA", secretAccessKey: { file: f } } });
    await writeFile(f, "new-secret");
    const creds = await reg
      .get("c")
      .s3Client({ maxAttempts: 1, requestTimeoutMs: 1000 })
      .config.credentials();
    expect(creds.secretAccessKey).toBe("new-secret");
    expect(creds.expiration).toBeInstanceOf(Date); // so the SDK asks again later
  });

  test("inline secrets work for development but warn; an inline access key id does not", () => {
    const { reg, warnings } = load({
      dev: { accessKeyId: "AKIA", secretAccessKey: SECRET, sessionToken: TOKEN },
    });
    expect(reg.get("dev").authentication).toBe("static");
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatch(/secretAccessKey is written inline/);
    expect(warnings.join()).not.toContain(SECRET);
  });

  test("environment: C2S_CONNECTION_<NAME>_<SETTING>, names fold to lower case, env wins over the file", async () => {
    const { reg } = load(
      { my_minio: { region: "from-file", endpoint: "http://file:1" } },
      {
        C2S_CONNECTION_MY_MINIO_ENDPOINT: "http://127.0.0.1:9000",
        C2S_CONNECTION_MY_MINIO_ACCESS_KEY_ID: "AKIAENV",
        C2S_CONNECTION_MY_MINIO_SECRET_ACCESS_KEY: SECRET,
        C2S_CONNECTION_MY_MINIO_SESSION_TOKEN: TOKEN,
        C2S_CONNECTION_ROLE_ASSUME_ROLE_ARN: "arn:aws:iam::1:role/x",
        C2S_CONNECTION_ROLE_ASSUME_ROLE_SESSION_NAME: "sess",
        C2S_CONNECTION_FILED_ACCESS_KEY_ID_FILE: secretFile,
        C2S_CONNECTION_FILED_SECRET_ACCESS_KEY_FILE: secretFile,
        UNRELATED: "x",
      },
    );
    expect(reg.names()).toEqual(["filed", "my_minio", "role"]);
    expect(reg.get("my_minio")).toMatchObject({ endpoint: "http://127.0.0.1:9000", region: "from-file" });
    expect(reg.get("role")).toMatchObject({
      assumeRoleArn: "arn:aws:iam::1:role/x",
      assumeRoleSessionName: "sess",
    });
    const creds = await reg
      .get("my_minio")
      .s3Client({ maxAttempts: 1, requestTimeoutMs: 1000 })
      .config.credentials();
    expect(creds).toMatchObject({ accessKeyId: "AKIAENV", secretAccessKey: SECRET, sessionToken: TOKEN });
    expect(reg.get("filed").toJSON()).toMatchObject({ secretAccessKey: { file: secretFile } });
  });

  test("no name: 'default' if configured, else the SDK chain with AWS_REGION / AWS_ENDPOINT_URL", () => {
    const ambient = load(undefined, {
      AWS_REGION: "ap-south-1",
      AWS_ENDPOINT_URL: "http://localhost:4566",
    }).reg.get();
    expect(ambient).toMatchObject({
      region: "ap-south-1",
      endpoint: "http://localhost:4566",
      authentication: "default-chain",
    });
    expect(load(null, { AWS_DEFAULT_REGION: "us-west-2" }).reg.get()).toMatchObject({
      region: "us-west-2",
      endpoint: undefined,
    });
    const def = load({ default: { region: "eu-west-1" } }, { AWS_REGION: "ignored" }).reg.get();
    expect(def).toMatchObject({ name: "default", region: "eu-west-1" });
  });

  test("an unknown name is 42704 in Materialize's words; lookup folds case when unambiguous", () => {
    const { reg } = load({ Prod: { region: "r" } });
    expect(reg.get("prod").name).toBe("Prod");
    const err = (() => {
      try {
        reg.get("nope");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(PgError);
    expect(err).toMatchObject({ code: "42704", message: "unknown catalog item 'nope'" });
    // The HINT never lists the configured connections (issue 12: they may be meant for others).
    expect((err as PgError).hint).not.toContain("Prod");
    expect(() => load({}).reg.get("default")).toThrow("unknown catalog item 'default'");
  });

  test.each([
    [{ c: "x" }, {}, /settings must be an object/],
    [[1], {}, /must be an object/],
    [{ c: { secretKey: "x" } }, {}, /unknown setting "secretKey"/],
    [{ c: { accessKeyId: "A" } }, {}, /must be given together/],
    [{ c: { sessionToken: { env: "T" } } }, { T: "t" }, /sessionToken needs/],
    [{ c: { accessKeyId: "A", secretAccessKey: { env: "MISSING" } } }, {}, /MISSING is not set/],
    [
      { c: { accessKeyId: "A", secretAccessKey: { file: "/nonexistent/secret" } } },
      {},
      /could not read secret file/,
    ],
    [{ c: { accessKeyId: "A", secretAccessKey: { env: "A", file: "/x" } } }, { A: "a" }, /must be \{"env"/],
    [{ c: { endpoint: "ftp://x" } }, {}, /http:\/\/ or https:\/\//],
    [{ c: { endpoint: "not a url" } }, {}, /not a URL/],
    [{ c: { assumeRoleArn: "role/x" } }, {}, /must be an ARN/],
    [{ c: { assumeRoleSessionName: "s" } }, {}, /needs assumeRoleArn/],
    [{ c: { externalId: "e1" } }, {}, /externalId needs assumeRoleArn/],
    [{ c: { assumeRoleArn: "arn:aws:iam::1:role/r", externalId: "a b" } }, {}, /externalId must be/],
    [{ c: { region: 5 } }, {}, /non-empty string/],
    [{}, { C2S_CONNECTION_X_SECRET: "s" }, /C2S_CONNECTION_X_SECRET: expected/],
    [{}, { C2S_CONNECTION__REGION: "r" }, /expected/],
    [{}, { C2S_CONNECTION_X_REGION: "" }, /is empty/],
  ])("config error %#", (section, env, message) => {
    expect(() => loadConnections(section, env, { warn: () => {} })).toThrow(ConnectionConfigError);
    expect(() => loadConnections(section, env, { warn: () => {} })).toThrow(message);
  });

  test("catalog connections: the identity must be configured; only configured endpoints are allowed", () => {
    const section = {
      minio: { endpoint: "http://127.0.0.1:9000/", accessKeyId: "A", secretAccessKey: { env: "S" } },
      role: { assumeRoleArn: "arn:aws:iam::1:role/r", externalId: "ext-1" },
    };
    expect(() => loadConnections(section, { S: "s" }, { catalog: { identity: "nope" } })).toThrow(
      /catalogIdentity: no configured connection is named 'nope'/,
    );
    expect(() =>
      loadConnections(section, { S: "s" }, { catalog: { externalIdPrefix: "has space" } }),
    ).toThrow(/catalogExternalIdPrefix/);
    const reg = loadConnections(
      section,
      { S: "s", AWS_ENDPOINT_URL: "https://s3.internal:8443" },
      { catalog: { identity: "minio", externalIdPrefix: "env-1" } },
    );
    expect(reg.catalog.identity).toBe(reg.get("minio"));
    expect(reg.catalog.externalIdPrefix).toBe("env-1");
    expect(reg.get("role").toJSON()).toMatchObject({ externalId: "ext-1" });
    const allows = reg.catalog.allowsEndpoint;
    expect(allows("http://127.0.0.1:9000")).toBe(true);
    expect(allows("HTTP://127.0.0.1:9000/")).toBe(true);
    expect(allows("http://127.0.0.1:80")).toBe(false);
    expect(allows("http://127.0.0.1:9001")).toBe(false);
    expect(allows("https://127.0.0.1:9000")).toBe(false);
    expect(allows("http://127.0.0.1:9000/other")).toBe(false);
    expect(allows("http://x:y@127.0.0.1:9000")).toBe(false);
    expect(allows("http://127.0.0.1:9000?a=b")).toBe(false);
    expect(allows("https://s3.internal:8443/")).toBe(true);
    expect(allows("not a url")).toBe(false);
    // Without an identity: the SDK's default chain, no endpoint of a catalog's choosing.
    const plain = loadConnections({}, {});
    expect(plain.catalog.identity.endpoint).toBeUndefined();
    expect(plain.catalog.identity.authentication).toBe("default-chain");
  });

  test("an endpoint with a password is refused without echoing it", () => {
    let msg = "";
    try {
      load({ c: { endpoint: `https://user:${SECRET}@minio.example` } });
    } catch (e) {
      msg = String(e);
    }
    expect(msg).toMatch(/must not contain credentials/);
    expect(msg).not.toContain(SECRET);
  });
});

describe("secrets never show", () => {
  test("toJSON, inspect, String and spreading a connection or the registry", () => {
    const { reg } = load(
      {
        inline: { accessKeyId: "AKIAINLINE", secretAccessKey: SECRET, sessionToken: TOKEN },
        fromEnv: { accessKeyId: { env: "K" }, secretAccessKey: { env: "S" } },
      },
      { K: "AKIAENVKEY", S: SECRET },
    );
    for (const name of ["inline", "fromEnv"]) {
      const c = reg.get(name);
      const shown = [
        JSON.stringify(c),
        JSON.stringify({ conn: c }),
        inspect(c, { depth: 20, showHidden: true }),
        inspect({ c }, { depth: 20 }),
        String(c),
        `${c}`,
        JSON.stringify({ ...c }),
        inspect(reg, { depth: 20, showHidden: true }),
        JSON.stringify(
          Object.getOwnPropertyNames(c).map((k) => (c as unknown as Record<string, unknown>)[k]),
        ),
      ].join("\n");
      expect(shown).not.toContain(SECRET);
      expect(shown).not.toContain(TOKEN);
      expect(shown).not.toContain("AKIAINLINE");
      expect(shown).not.toContain("AKIAENVKEY");
    }
    expect(reg.get("fromEnv").toJSON()).toMatchObject({
      accessKeyId: { env: "K" },
      secretAccessKey: { env: "S" },
    });
    expect(reg.get("inline").toJSON()).toMatchObject({
      secretAccessKey: "[redacted]",
      sessionToken: "[redacted]",
    });
  });
});

describe("targets", () => {
  test.each([
    ["s3://bucket", { scheme: "s3", bucket: "bucket", prefix: "" }],
    ["s3://bucket/", { scheme: "s3", bucket: "bucket", prefix: "" }],
    ["s3://bucket/a/b/", { scheme: "s3", bucket: "bucket", prefix: "a/b" }],
    [
      "S3://my.bucket-1//exports/2024 01//",
      { scheme: "s3", bucket: "my.bucket-1", prefix: "exports/2024 01" },
    ],
    // Materialize accepts gs:// (GCS through its S3 API): same addressing, its own name kept.
    ["gs://bucket/x/", { scheme: "s3", bucket: "bucket", prefix: "x", alias: "gs" }],
    ["s3://b/a%3Fb", { scheme: "s3", bucket: "b", prefix: "a%3Fb" }],
    ["s3://b/x2", { scheme: "s3", bucket: "b", prefix: "x2" }],
    ["file:///tmp/exports/", { scheme: "file", dir: "/tmp/exports", prefix: "" }],
    ["file://localhost/tmp/a%20b", { scheme: "file", dir: "/tmp/a b", prefix: "" }],
    ["file:/tmp/x/../y", { scheme: "file", dir: "/tmp/y", prefix: "" }],
  ])("%s", (url, expected) => {
    expect(parseTargetUrl(url)).toEqual(expected);
  });

  test.each([
    ["https://bucket.s3.amazonaws.com/x", "0A000", UNSUPPORTED],
    ["/tmp/file.csv", "0A000", UNSUPPORTED],
    ["", "0A000", UNSUPPORTED],
    ["gs:///x", "22023", "missing bucket name from 's3://...' url"],
    // Issue 12 item 8: a pasted presigned URL is refused, and its signature is never echoed.
    [
      `s3://b/p?X-Amz-Credential=AKIAEXAMPLE%2F20260101&X-Amz-Signature=${SECRET}`,
      "22023",
      "COPY TO target url must not have a query string or fragment",
    ],
    [`s3://b?X-Amz-Signature=${SECRET}`, "22023", "invalid bucket name in 's3://...' url"],
    [`gs://b/p#${SECRET}`, "22023", "COPY TO target url must not have a query string or fragment"],
    // Empty segments: AWS keeps `a//b`, path-normalising stores write `a/b`.
    ["s3://b/a//b", "22023", "COPY TO target path must not contain empty segments"],
    ["file:///tmp/a%00b", "22023", "could not parse COPY TO target url"],
    ["s3://", "22023", "missing bucket name from 's3://...' url"],
    ["s3:///prefix", "22023", "missing bucket name from 's3://...' url"],
    ["s3:bucket/prefix", "22023", "missing bucket name from 's3://...' url"],
    [`s3://AKIA:${SECRET}@bucket/x`, "22023", "invalid bucket name in 's3://...' url"],
    ["s3://b/a/../c", "22023", "COPY TO target path must not contain '.' or '..' segments"],
    ["file://otherhost/tmp/x", "22023", "could not parse COPY TO target url"],
    ["file:///", "22023", "a 'file://' COPY TO target must name a directory below /"],
    ["file:///tmp/x?y", "22023", "could not parse COPY TO target url"],
  ])("%s is refused", (url, code, message) => {
    let err: unknown;
    try {
      parseTargetUrl(url);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PgError);
    expect(err).toMatchObject({ code, message });
    expect(JSON.stringify((err as PgError).fields)).not.toContain(SECRET);
  });

  test("formatTargetUrl", () => {
    expect(formatTargetUrl({ scheme: "s3", bucket: "b", prefix: "" })).toBe("s3://b");
    expect(formatTargetUrl({ scheme: "s3", bucket: "b", prefix: "a/b" })).toBe("s3://b/a/b");
    expect(formatTargetUrl(parseTargetUrl("gs://b/a/"))).toBe("gs://b/a");
    expect(formatTargetUrl({ scheme: "file", dir: "/tmp/a b", prefix: "" })).toBe("file:///tmp/a%20b");
  });

  test("createStore picks the store by scheme, validates options and shares one client per connection", () => {
    const { reg } = load(
      { m: { endpoint: "http://127.0.0.1:1", accessKeyId: "A", secretAccessKey: { env: "S" } } },
      { S: "s" },
    );
    const conn = reg.get("m");
    const s3 = createStore(conn, parseTargetUrl("s3://bkt/exports/daily/"));
    expect(s3).toBeInstanceOf(S3Store);
    expect(s3.location).toBe("s3://bkt/exports/daily");
    expect(s3.url("mz-1-batch-0000-0000.csv")).toBe("s3://bkt/exports/daily/mz-1-batch-0000-0000.csv");
    const again = createStore(conn, parseTargetUrl("s3://other"));
    expect((again as S3Store).client).toBe((s3 as S3Store).client);
    const file = createStore(undefined, parseTargetUrl("file:///tmp/exp"));
    expect(file).toBeInstanceOf(FileStore);
    expect(file.location).toBe("file:///tmp/exp");
    expect(() => createStore(conn, parseTargetUrl("s3://b"), { partSize: 1024 })).toThrow(
      /between 5 MiB and 5 GiB/,
    );
    expect(() => createStore(conn, parseTargetUrl("s3://b"), { partsInFlight: 0 })).toThrow(/at least 1/);
    reg.close();
  });
});
