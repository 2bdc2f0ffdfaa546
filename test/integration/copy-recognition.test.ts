// Which statements the proxy runs itself and which it forwards: only COPY ... TO <url> is ours;
// everything else, including other COPYs and huge statements that merely mention a URL, goes to
// the upstream untouched.
import pg from "pg";
import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";
import { WireClient } from "../support/wire-client.js";

const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let client: pg.Client;
let bucket: string;

beforeAll(async () => {
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3 });
  client = new pg.Client({ connectionString: proxy.url() });
  await client.connect();
  bucket = await check.bucket("recognition");
});
afterAll(async () => {
  await client?.end();
  await proxy?.shutdown(0);
});

describe("recognition", () => {
  test("comments, lower case and a trailing semicolon before/after the COPY are fine", async () => {
    const r = await client.query(
      `/* nightly */ -- export\n  copy (select 1 as a) to 's3://${bucket}/commented' with (format = 'csv');`,
    );
    expect(r.rowCount).toBe(1);
    expect((await check.keys(bucket, "commented/")).some((k) => k.endsWith(".csv"))).toBe(true);
  });

  test("a 2 MB statement holding a URL reaches the upstream intact", async () => {
    const big = "x".repeat(2 * 1024 * 1024);
    const r = await client.query(`select 'see s3://not-a-copy/' as u, length('${big}') as n`);
    expect(r.rows[0]).toEqual({ u: "see s3://not-a-copy/", n: big.length });
  });

  test("a COPY TO S3 text over 16 MB is not parsed here: the upstream answers it", async () => {
    const pad = "x".repeat(17 * 1024 * 1024);
    // PostgreSQL's own grammar rejects Materialize's "FORMAT = 'csv'": proof it went upstream.
    await expect(
      client.query(`COPY (SELECT '${pad}') TO 's3://${bucket}/huge' WITH (FORMAT = 'csv')`),
    ).rejects.toMatchObject({ code: "42601", message: 'syntax error at or near "="' });
    expect(await check.keys(bucket, "huge")).toEqual([]);
  });

  test("a short statement mentioning a URL is still answered by the upstream", async () => {
    const r = await client.query("select 'https://example.com/x' as u");
    expect(r.rows[0].u).toBe("https://example.com/x");
  });

  test("COPY ... FROM STDIN and COPY ... TO STDOUT are forwarded byte for byte", async () => {
    const direct = await WireClient.connect(pgPort);
    const via = await WireClient.connect(proxy.port);
    try {
      for (const c of [direct, via]) {
        c.send(serialize.query("create temp table t (a int, b text)"));
        await c.untilReady();
        c.send(serialize.query("copy t from stdin"));
        await c.until((ms) => ms.some((m) => m.type === "G"));
        c.send(serialize.copyData(Buffer.from("1\ta\n2\tb\n")), serialize.copyDone());
        await c.untilReady();
      }
      const out = async (c: WireClient): Promise<string[]> => {
        c.send(serialize.query("copy t to stdout with (format csv, header)"));
        return (await c.untilReady()).map((m) => `${m.type}:${m.body.toString("hex")}`);
      };
      expect(await out(via)).toEqual(await out(direct));
    } finally {
      await direct.close();
      await via.close();
    }
  });
});
