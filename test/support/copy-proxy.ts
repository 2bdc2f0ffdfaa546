// A proxy with the COPY TO S3 feature on, in front of the suite's PostgreSQL, whose "default" AWS
// connection points at an S3 server of the suite (moto or Ceph).

import { execFile } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import {
  CreateBucketCommand,
  GetObjectCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  S3Client,
} from "@aws-sdk/client-s3";
import { inject } from "vitest";
import { loadConfig } from "../../src/config.js";
import { createCopyHook } from "../../src/copy/hook.js";
import { createLogger } from "../../src/log.js";
import { startProxy } from "../../src/proxy/server.js";
import type { TestProxy } from "./proxy.js";

const execFileP = promisify(execFile);

export interface S3Access {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
}

/** The suite's moto server (any access key works there). */
export function motoAccess(): S3Access {
  return {
    endpoint: inject("s3Endpoint"),
    region: "us-east-1",
    accessKeyId: "test",
    secretAccessKey: "test",
  };
}

export async function startCopyProxy(opts: {
  upstreamPort: number;
  s3: S3Access;
  args?: string[];
  /** More config-file keys (e.g. `exports`), next to the "default" connection. */
  config?: Record<string, unknown>;
}): Promise<TestProxy> {
  const dir = mkdtempSync(join(tmpdir(), "c2s-proxy-"));
  const configFile = join(dir, "config.json");
  writeFileSync(
    configFile,
    JSON.stringify({
      ...opts.config,
      connections: {
        ...(opts.config?.connections as Record<string, unknown> | undefined),
        default: {
          endpoint: opts.s3.endpoint,
          region: opts.s3.region,
          accessKeyId: { env: "C2S_TEST_S3_KEY" },
          secretAccessKey: { env: "C2S_TEST_S3_SECRET" },
        },
      },
    }),
  );
  process.env.C2S_TEST_S3_KEY = opts.s3.accessKeyId;
  process.env.C2S_TEST_S3_SECRET = opts.s3.secretAccessKey;
  const { config } = loadConfig(
    [
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      `127.0.0.1:${opts.upstreamPort}`,
      "--upstream-tls",
      "disable",
      "--log-level",
      process.env.C2S_TEST_LOG ?? "silent",
      "--config",
      configFile,
      ...(opts.args ?? []),
    ],
    process.env,
  );
  const log = createLogger(config.logLevel);
  const copy = await createCopyHook(config, log);
  const p = await startProxy(config, log, copy);
  const port = p.address.port;
  return Object.assign(p, {
    port,
    url: (user = "postgres", database = "postgres", password?: string) =>
      `postgres://${encodeURIComponent(user)}${password ? `:${encodeURIComponent(password)}` : ""}@127.0.0.1:${port}/${database}`,
  });
}

/** The AWS CLI (an independent S3 client), as an operator would run it; its JSON output parsed. */
export async function awsCli(s3: S3Access, ...args: string[]): Promise<unknown> {
  const { stdout } = await execFileP(
    "aws",
    ["--endpoint-url", s3.endpoint, "--region", s3.region, "--output", "json", ...args],
    { env: { ...process.env, AWS_ACCESS_KEY_ID: s3.accessKeyId, AWS_SECRET_ACCESS_KEY: s3.secretAccessKey } },
  );
  return stdout.trim() === "" ? {} : JSON.parse(stdout);
}

/** Object keys under `prefix` as the AWS CLI lists them, sorted. */
export async function awsCliKeys(s3: S3Access, bucket: string, prefix: string): Promise<string[]> {
  const r = (await awsCli(s3, "s3api", "list-objects-v2", "--bucket", bucket, "--prefix", prefix)) as {
    Contents?: Array<{ Key: string }>;
  };
  return (r.Contents ?? []).map((o) => o.Key).sort();
}

/** An independent S3 client (the SDK, not the project's store) to check what landed. */
export class S3Check {
  readonly client: S3Client;
  constructor(readonly s3: S3Access) {
    this.client = new S3Client({
      endpoint: s3.endpoint,
      region: s3.region,
      forcePathStyle: true,
      credentials: { accessKeyId: s3.accessKeyId, secretAccessKey: s3.secretAccessKey },
    });
  }

  async bucket(name: string): Promise<string> {
    await this.client.send(new CreateBucketCommand({ Bucket: name }));
    return name;
  }

  async keys(bucket: string, prefix = ""): Promise<string[]> {
    const out: string[] = [];
    let token: string | undefined;
    do {
      const r = await this.client.send(
        new ListObjectsV2Command({ Bucket: bucket, Prefix: prefix, ContinuationToken: token }),
      );
      for (const o of r.Contents ?? []) out.push(o.Key!);
      token = r.NextContinuationToken;
    } while (token);
    return out.sort();
  }

  async get(bucket: string, key: string): Promise<Buffer> {
    const r = await this.client.send(new GetObjectCommand({ Bucket: bucket, Key: key }));
    return Buffer.from(await r.Body!.transformToByteArray());
  }

  async uploads(bucket: string, prefix = ""): Promise<string[]> {
    const r = await this.client.send(new ListMultipartUploadsCommand({ Bucket: bucket, Prefix: prefix }));
    return (r.Uploads ?? []).map((u) => u.Key!);
  }
}
