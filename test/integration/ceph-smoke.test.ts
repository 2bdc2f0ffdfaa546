// Smoke test of the Ceph RadosGW the suite starts with C2S_CEPH=1: the multipart calls the exporter
// depends on, checked with the SDK and, independently, with the AWS CLI.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import { promisify } from "node:util";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  HeadObjectCommand,
  ListMultipartUploadsCommand,
  ListPartsCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";

const endpoint = inject("cephEndpoint");
const skipReason = inject("cephSkipReason") ?? "no cephEndpoint provided";
const run = promisify(execFile);
const MiB = 1024 * 1024;

describe.skipIf(!endpoint)(`Ceph RadosGW smoke${endpoint ? "" : ` — skipped: ${skipReason}`}`, () => {
  const region = inject("cephRegion") ?? "us-east-1";
  const accessKeyId = inject("cephAccessKeyId") ?? "";
  const secretAccessKey = inject("cephSecretAccessKey") ?? "";
  const Bucket = `smoke-${process.pid}-${Date.now()}`;
  let s3: S3Client;

  /** The AWS CLI (v1, preinstalled), isolated from any ~/.aws configuration. */
  async function aws(...args: string[]): Promise<string> {
    const { stdout } = await run("aws", ["--endpoint-url", endpoint!, "--output", "json", ...args], {
      env: {
        ...process.env,
        AWS_ACCESS_KEY_ID: accessKeyId,
        AWS_SECRET_ACCESS_KEY: secretAccessKey,
        AWS_DEFAULT_REGION: region,
        AWS_CONFIG_FILE: "/dev/null",
        AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
        AWS_EC2_METADATA_DISABLED: "true",
      },
    });
    return stdout;
  }

  beforeAll(async () => {
    s3 = new S3Client({
      endpoint,
      region,
      forcePathStyle: true,
      credentials: { accessKeyId, secretAccessKey },
    });
    await s3.send(new CreateBucketCommand({ Bucket }));
  });
  afterAll(() => s3?.destroy());

  test("multipart upload: list, abort — seen the same by the SDK and the AWS CLI", async () => {
    const Key = "exports/part-0001.csv";
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    expect(UploadId).toBeTruthy();
    const p1 = await s3.send(
      new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: Buffer.alloc(5 * MiB, 0x61) }),
    );
    const p2 = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 2, Body: "tail\n" }));
    expect(p1.ETag).toBeTruthy();
    expect(p2.ETag).toBeTruthy();

    const listed = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
    expect(listed.Uploads?.map((u) => [u.Key, u.UploadId])).toEqual([[Key, UploadId]]);
    const parts = await s3.send(new ListPartsCommand({ Bucket, Key, UploadId }));
    expect(parts.Parts?.map((p) => [p.PartNumber, p.Size])).toEqual([
      [1, 5 * MiB],
      [2, 5],
    ]);

    const cli = JSON.parse(await aws("s3api", "list-multipart-uploads", "--bucket", Bucket)) as {
      Uploads?: { Key: string; UploadId: string }[];
    };
    expect(cli.Uploads?.map((u) => [u.Key, u.UploadId])).toEqual([[Key, UploadId]]);

    await s3.send(new AbortMultipartUploadCommand({ Bucket, Key, UploadId }));
    const after = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
    expect(after.Uploads ?? []).toEqual([]);
    // `list-multipart-uploads` prints nothing at all when there are none.
    const cliAfter = (await aws("s3api", "list-multipart-uploads", "--bucket", Bucket)).trim();
    expect(cliAfter === "" ? [] : ((JSON.parse(cliAfter) as { Uploads?: unknown[] }).Uploads ?? [])).toEqual(
      [],
    );
    expect((await aws("s3", "ls", `s3://${Bucket}/`, "--recursive")).trim()).toBe("");
  });

  test("completed multipart upload lands byte for byte (checked with aws s3 cp)", async () => {
    const Key = "exports/done.bin";
    const body1 = Buffer.alloc(5 * MiB, 0x62);
    const body2 = Buffer.from("the end\n");
    const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key }));
    const p1 = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 1, Body: body1 }));
    const p2 = await s3.send(new UploadPartCommand({ Bucket, Key, UploadId, PartNumber: 2, Body: body2 }));
    await s3.send(
      new CompleteMultipartUploadCommand({
        Bucket,
        Key,
        UploadId,
        MultipartUpload: {
          Parts: [
            { PartNumber: 1, ETag: p1.ETag },
            { PartNumber: 2, ETag: p2.ETag },
          ],
        },
      }),
    );
    // RadosGW's CompleteMultipartUpload ETag may be empty (TESTING.md); HeadObject's is right.
    const head = await s3.send(new HeadObjectCommand({ Bucket, Key }));
    expect(head.ContentLength).toBe(body1.length + body2.length);
    expect(head.ETag).toMatch(/-2"$/);

    const { stdout } = await run(
      "bash",
      ["-c", `set -o pipefail; aws --endpoint-url "$EP" s3 cp "s3://${Bucket}/${Key}" - | sha256sum`],
      {
        env: {
          ...process.env,
          EP: endpoint!,
          AWS_ACCESS_KEY_ID: accessKeyId,
          AWS_SECRET_ACCESS_KEY: secretAccessKey,
          AWS_DEFAULT_REGION: region,
          AWS_CONFIG_FILE: "/dev/null",
          AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
        },
      },
    );
    const want = createHash("sha256").update(body1).update(body2).digest("hex");
    expect(stdout.split(" ")[0]).toBe(want);
  });
});
