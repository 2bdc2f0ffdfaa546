// What the S3 client signs: the part body's SHA-256, or UNSIGNED-PAYLOAD where the AWS CLI sends it
// (TLS plus a CRC32 checksum). The request is caught at the transport, before any network: the
// question is what createS3Client puts into the signature, not how a server answers.
import { createHash, webcrypto } from "node:crypto";
import { PutObjectCommand, type S3Client, UploadPartCommand } from "@aws-sdk/client-s3";
import { describe, expect, test } from "vitest";
import { createS3Client } from "../../src/copy/storage/s3-client.js";

interface Sent {
  protocol: string;
  headers: Record<string, string>;
}

async function sent(client: S3Client, command: UploadPartCommand | PutObjectCommand): Promise<Sent> {
  let caught: Sent | null = null;
  const handler = client.config.requestHandler as { handle(req: Sent): Promise<unknown> };
  handler.handle = async (req) => {
    caught = { protocol: req.protocol, headers: { ...req.headers } };
    throw new Error("caught before the network");
  };
  await expect(client.send(command as UploadPartCommand)).rejects.toThrow(/caught before the network/);
  return caught!;
}

const credentials = { accessKeyId: "AKIDEXAMPLE", secretAccessKey: "secret" };
const body = Buffer.alloc(64 * 1024, 7);
const sha256 = createHash("sha256").update(body).digest("hex");
// As the multipart driver sends a part: with ChecksumAlgorithm only where checksums are on (AWS).
const part = (checksum: boolean): UploadPartCommand =>
  new UploadPartCommand({
    Bucket: "b",
    Key: "p/x.parquet",
    UploadId: "u",
    PartNumber: 1,
    Body: body,
    ...(checksum ? { ChecksumAlgorithm: "CRC32" as const } : {}),
  });
const base = { maxAttempts: 1, requestTimeoutMs: 5000, credentials };

describe("payload signing", () => {
  test("AWS over https with a CRC32 checksum: UNSIGNED-PAYLOAD, still a signed request", async () => {
    const client = createS3Client({ ...base, region: "us-east-1" });
    for (const command of [part(true), new PutObjectCommand({ Bucket: "b", Key: "p/m.json", Body: body })]) {
      const s = await sent(client, command);
      expect(s.protocol).toBe("https:");
      expect(Object.keys(s.headers).some((h) => h.startsWith("x-amz-checksum-"))).toBe(true);
      expect(s.headers["x-amz-content-sha256"]).toBe("UNSIGNED-PAYLOAD");
      expect(s.headers.authorization).toMatch(/^AWS4-HMAC-SHA256 .*SignedHeaders=[^,]*x-amz-content-sha256/);
    }
  });

  test("an http:// endpoint keeps the body's SHA-256 in the signature", async () => {
    const client = createS3Client({ ...base, endpoint: "http://127.0.0.1:9" });
    const s = await sent(client, part(true));
    expect(s.protocol).toBe("http:");
    expect(s.headers["x-amz-content-sha256"]).toBe(sha256);
  });

  test("the body's SHA-256 comes from WebCrypto (libuv's thread pool), not from the signer on the calling thread", async () => {
    const client = createS3Client({ ...base, endpoint: "http://127.0.0.1:9" });
    // The signer hashes with the class in config.sha256 (node:crypto, synchronous on this thread).
    const proto = (client.config as unknown as { sha256: { prototype: { update(d: Uint8Array): void } } })
      .sha256.prototype;
    const update = proto.update;
    const hashed: number[] = [];
    proto.update = function (this: unknown, d: Uint8Array) {
      hashed.push(d.length);
      update.call(this, d);
    };
    try {
      for (const command of [
        part(false),
        new PutObjectCommand({ Bucket: "b", Key: "p/m.json", Body: body }),
      ]) {
        const s = await sent(client, command);
        expect(s.headers["x-amz-content-sha256"]).toBe(sha256);
      }
    } finally {
      proto.update = update;
    }
    expect(hashed.length).toBeGreaterThan(0); // the signer did sign, with this class
    expect(Math.max(...hashed)).toBeLessThan(body.length);
  });

  test("the upload thread's client (hashInPlace) hashes the body where it is: no WebCrypto copy, the same SHA-256", async () => {
    // WebCrypto copies the body into fresh native memory before hashing it; in the upload thread
    // those 8 MiB copies stayed resident (docs/decisions.md, "S3 part uploads off the relay's thread").
    const client = createS3Client({ ...base, endpoint: "http://127.0.0.1:9", hashInPlace: true });
    const subtle = webcrypto.subtle as { digest: typeof webcrypto.subtle.digest };
    const digest = subtle.digest;
    const digested: number[] = [];
    subtle.digest = function (this: unknown, algorithm, data) {
      digested.push((data as Uint8Array).byteLength);
      return digest.call(this, algorithm, data);
    } as typeof digest;
    try {
      for (const command of [
        part(false),
        new PutObjectCommand({ Bucket: "b", Key: "p/m.json", Body: body }),
      ]) {
        const s = await sent(client, command);
        expect(s.headers["x-amz-content-sha256"]).toBe(sha256);
        expect(s.headers.authorization).toMatch(/SignedHeaders=[^,]*x-amz-content-sha256/);
      }
    } finally {
      subtle.digest = digest;
    }
    expect(digested).toEqual([]);
    // The relay's client (the default) still leaves the hash to WebCrypto's pool: the witness sees it.
    subtle.digest = function (this: unknown, algorithm, data) {
      digested.push((data as Uint8Array).byteLength);
      return digest.call(this, algorithm, data);
    } as typeof digest;
    try {
      await sent(createS3Client({ ...base, endpoint: "http://127.0.0.1:9" }), part(false));
    } finally {
      subtle.digest = digest;
    }
    expect(digested).toEqual([body.length]);
  });

  test("an https:// S3-compatible endpoint (no checksums sent) keeps the SHA-256 too", async () => {
    const client = createS3Client({ ...base, endpoint: "https://127.0.0.1:9" });
    const s = await sent(client, part(false));
    expect(s.protocol).toBe("https:");
    expect(Object.keys(s.headers).some((h) => h.startsWith("x-amz-checksum-"))).toBe(false);
    expect(s.headers["x-amz-content-sha256"]).toBe(sha256);
  });
});
