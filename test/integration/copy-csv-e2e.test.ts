// COPY ... TO 's3://...' through the proxy, as a user runs it: a real driver, a real PostgreSQL
// upstream, a real S3 server. What lands must equal PostgreSQL's own COPY ... (FORMAT csv) output.
// Every test runs twice: straight in front of PostgreSQL, and in front of the Materialize wire double
// (test/support/mz-double.ts) over the same PostgreSQL, where the export reads a SUBSCRIBE.
import { PutObjectCommand } from "@aws-sdk/client-s3";
import pg from "pg";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { AWKWARD_SETUP } from "../support/awkward-table.js";
import { awsCliKeys, motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { RawPg } from "../support/raw-pg.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";
import { expectSameCsv, UPSTREAMS } from "../support/upstreams.js";

const DB = "copy_csv_e2e";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let oracle: RawPg;
let client: pg.Client;
let bucket: string;

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  for (const sql of AWKWARD_SETUP) await oracle.query(sql);
  await oracle.query(`CREATE TABLE big AS
    SELECT g AS id, md5(g::text) AS h, repeat(chr(65 + g % 26), 40 + g % 50) AS pad,
      (g * 1.25)::numeric(14, 2) AS amount, timestamptz '2024-01-01 00:00+00' + g * interval '1 second' AS at
    FROM generate_series(1, 400000) g`);
  await oracle.query("CREATE ROLE nosel LOGIN");
  await oracle.query("CREATE TABLE secret (x int)");
}, 120_000);

afterAll(async () => {
  await oracle?.close();
});

let prefixN = 0;
const freshPrefix = (): string => `run${++prefixN}`;

async function dataFiles(prefix: string): Promise<string[]> {
  return (await check.keys(bucket, `${prefix}/`)).filter((k) => /-batch-\d{4}-\d{4}\.csv(\.gz)?$/.test(k));
}

async function concatFiles(prefix: string): Promise<Buffer> {
  const keys = await dataFiles(prefix);
  return Buffer.concat(await Promise.all(keys.map((k) => check.get(bucket, k))));
}

const COMBOS: Array<{ name: string; mz: string; pgopts: string; quote?: string; escape?: string }> = [
  { name: "defaults", mz: "FORMAT = 'csv'", pgopts: "FORMAT csv" },
  { name: "header (PostgreSQL syntax)", mz: "FORMAT csv, HEADER true", pgopts: "FORMAT csv, HEADER" },
  {
    name: "pipe delimiter, NULL string, header",
    mz: "FORMAT = 'csv', DELIMITER = '|', NULL = 'NULL', HEADER",
    pgopts: "FORMAT csv, DELIMITER '|', NULL 'NULL', HEADER",
  },
  {
    name: "single-quote quote, backslash escape",
    mz: "FORMAT 'csv', DELIMITER ';', QUOTE '''', ESCAPE '\\'",
    pgopts: "FORMAT csv, DELIMITER ';', QUOTE '''', ESCAPE '\\'",
    quote: "'",
    escape: "\\",
  },
];

describe.each(UPSTREAMS)("through $name", (up) => {
  let upstream: { port: number; stop(): Promise<void> };
  beforeAll(async () => {
    upstream = await up.start(pgPort);
    proxy = await startCopyProxy({ upstreamPort: upstream.port, s3 });
    client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    await client.connect();
    bucket = await check.bucket(up.ordered ? "csv-e2e" : "csv-e2e-mz");
  }, 60_000);

  afterAll(async () => {
    await client?.end();
    await proxy?.shutdown(0);
    await upstream?.stop();
  });

  describe("CSV export equals PostgreSQL's COPY output", () => {
    for (const c of COMBOS) {
      test(c.name, async () => {
        const prefix = freshPrefix();
        const q = "SELECT * FROM awkward ORDER BY id";
        const r = await client.query(
          `COPY (${q.replace(" ORDER BY id", "")}) TO 's3://${bucket}/${prefix}' WITH (${c.mz})`,
        );
        expect(r.command).toBe("COPY");
        expect(r.rowCount).toBe(17);
        const want = (await oracle.query(`COPY (SELECT * FROM awkward) TO STDOUT (${c.pgopts})`)).copyData;
        expectSameCsv(await concatFiles(prefix), want, up, {
          quote: c.quote,
          escape: c.escape,
          header: c.pgopts.includes("HEADER"),
        });
      });
    }

    test("COPY <table> TO exports every column, like COPY (SELECT * ...)", async () => {
      const prefix = freshPrefix();
      await client.query(`COPY awkward TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
      const want = (await oracle.query("COPY awkward TO STDOUT (FORMAT csv)")).copyData;
      expectSameCsv(await concatFiles(prefix), want, up);
    });

    test("a target expression is evaluated upstream", async () => {
      const r = await client.query(
        `COPY (SELECT 1 AS one) TO 's3://${bucket}/' || 'expr-' || to_char(date '2024-05-06', 'YYYY-MM-DD') WITH (FORMAT = 'csv')`,
      );
      expect(r.rowCount).toBe(1);
      expect((await concatFiles("expr-2024-05-06")).toString()).toBe("1\n");
    });

    test("splitting: ~60 MB under MAX FILE SIZE 16MB gives ≥ 4 files, none over, header in each", async () => {
      const prefix = freshPrefix();
      const r = await client.query(
        `COPY big TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv', MAX FILE SIZE = '16MB', HEADER)`,
      );
      expect(r.rowCount).toBe(400000);
      const keys = await dataFiles(prefix);
      expect(keys.length).toBeGreaterThanOrEqual(4);
      const header = "id,h,pad,amount,at\n";
      const bodies: Buffer[] = [];
      for (const k of keys) {
        const f = await check.get(bucket, k);
        expect(f.length).toBeLessThanOrEqual(16 * 1024 * 1024);
        expect(f.subarray(0, header.length).toString()).toBe(header);
        expect(f.at(-1)).toBe(0x0a); // files end at a row boundary
        bodies.push(f.subarray(header.length));
      }
      const want = (await oracle.query("COPY big TO STDOUT (FORMAT csv)")).copyData;
      expectSameCsv(Buffer.concat(bodies), want, up);
      // The manifest lists every file with its rows and bytes.
      const manifestKey = (await check.keys(bucket, `${prefix}/`)).find((k) => k.endsWith("-manifest.json"))!;
      const manifest = JSON.parse((await check.get(bucket, manifestKey)).toString());
      expect(manifest.files.map((f: { key: string }) => `${prefix}/${f.key}`)).toEqual(keys);
      expect(manifest.files.reduce((n: number, f: { rows: number }) => n + f.rows, 0)).toBe(400000);
      expect(manifest.rows).toBe(400000);
      expect(manifest.columns.map((c: { name: string; type: string }) => `${c.name}:${c.type}`)).toEqual([
        "id:integer",
        "h:text",
        "pad:text",
        // Materialize sends numeric(14,2) as numeric(39,2): the declared precision never reaches
        // the proxy (src/pgrepr/src/types.rs), and the manifest says what the value fits in.
        up.name === "PostgreSQL" ? "amount:numeric(14,2)" : "amount:numeric(38,2)",
        "at:timestamp with time zone",
      ]);
      // 60 MB exported, downloaded and compared with the oracle's: over 60 s at load 17-20.
    }, 120_000);

    test("gzip compression: the files decompress to PostgreSQL's output", async () => {
      const prefix = freshPrefix();
      await client.query(
        `COPY (SELECT * FROM many) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv', COMPRESSION = 'gzip')`,
      );
      const keys = await dataFiles(prefix);
      expect(keys.every((k) => k.endsWith(".csv.gz"))).toBe(true);
      const { gunzipSync } = await import("node:zlib");
      const got = Buffer.concat(
        await Promise.all(keys.map(async (k) => gunzipSync(await check.get(bucket, k)))),
      );
      expectSameCsv(
        got,
        (await oracle.query("COPY (SELECT * FROM many) TO STDOUT (FORMAT csv)")).copyData,
        up,
      );
    });
  });

  describe("layout, preflight and commit", () => {
    test("sentinel exists during the export and is gone after; the AWS CLI sees the same files", async () => {
      // The data file's upload is held (a proxy of its own, behind the fault proxy): the export
      // cannot end before the test has looked, whatever the machine's speed, and a sentinel
      // removed too early cannot slip between two looks.
      const prefix = freshPrefix();
      const faults = await S3FaultProxy.start(s3.endpoint);
      const held = await startCopyProxy({
        upstreamPort: upstream.port,
        s3: { ...s3, endpoint: faults.endpoint },
      });
      const c = new pg.Client({ connectionString: held.url("postgres", DB) });
      c.on("notice", () => {});
      await c.connect();
      let running: Promise<pg.QueryResult> | undefined;
      try {
        faults.setRules(
          { op: "PutObject", key: /\.csv$/, fault: "hold" },
          { op: "CompleteMultipartUpload", fault: "hold" },
        );
        running = c.query(
          `COPY (SELECT g FROM generate_series(1, 3000) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
        );
        running.catch(() => {});
        await waitUntil("the data file's upload", () =>
          faults.log.some((r) => r.key.endsWith(".csv") || r.op === "CompleteMultipartUpload") ? true : null,
        );
        expect((await check.keys(bucket, `${prefix}/`)).some((k) => k.endsWith("-INCOMPLETE"))).toBe(true);
        faults.clear();
        expect((await running).rowCount).toBe(3000);
      } finally {
        faults.clear();
        await running?.catch(() => {});
        await c.end();
        await held.shutdown(0);
        await faults.close();
      }
      const keys = await check.keys(bucket, `${prefix}/`);
      expect(keys.some((k) => k.endsWith("-INCOMPLETE"))).toBe(false);
      expect(keys.filter((k) => k.endsWith("-manifest.json"))).toHaveLength(1);
      const id = /mz-([0-9a-f-]+)-batch-0000-0000\.csv$/.exec(keys.find((k) => k.endsWith(".csv"))!)![1];
      expect(keys).toContain(`${prefix}/_meta/mz-${id}-manifest.json`);
      const cliKeys = await awsCliKeys(s3, bucket, `${prefix}/`);
      expect(cliKeys).toEqual(keys);
    });

    test("a non-empty prefix is refused before anything is written", async () => {
      const prefix = freshPrefix();
      await client.query(`COPY (SELECT 1) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
      const before = await check.keys(bucket, `${prefix}/`);
      await expect(
        client.query(`COPY (SELECT 1) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "58000",
        message: "S3 bucket path is not empty, contains 3 objects",
      });
      expect(await check.keys(bucket, `${prefix}/`)).toEqual(before);
    });

    test("one object: 'contains 1 object'; a crashed export's sentinel: the HINT names cleanup", async () => {
      const one = freshPrefix();
      await check.client.send(new PutObjectCommand({ Bucket: bucket, Key: `${one}/notes.txt`, Body: "x" }));
      await expect(
        client.query(`COPY (SELECT 1) TO 's3://${bucket}/${one}' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "58000",
        message: "S3 bucket path is not empty, contains 1 object",
        hint: "Export into an empty prefix, or remove the existing objects first.",
      });
      const crashed = freshPrefix();
      const sentinel = `${crashed}/mz-0b5e7c1a-INCOMPLETE`;
      for (const key of [`${crashed}/mz-0b5e7c1a-batch-0000-0000.csv`, sentinel]) {
        await check.client.send(new PutObjectCommand({ Bucket: bucket, Key: key, Body: "" }));
      }
      await expect(
        client.query(
          `COPY (SELECT 1) TO 's3://${bucket}/${crashed}' WITH (FORMAT = 'csv', AWS CONNECTION = 'default')`,
        ),
      ).rejects.toMatchObject({
        code: "58000",
        message: "S3 bucket path is not empty, contains 2 objects",
        detail: expect.stringContaining(`e.g. mz-0b5e7c1a-INCOMPLETE`),
        hint: `s3://${bucket}/${sentinel} is the sentinel of an export that did not finish. If its proxy is gone, "copy-to-s3-proxy cleanup s3://${bucket}/${crashed} --connection default" shows what it left and "copy-to-s3-proxy cleanup s3://${bucket}/${crashed} --connection default --yes" removes it; then export again.`,
      });
    });

    test("a prefix too long for S3's 1024-byte keys is refused in the plan; the longest that fits exports", async () => {
      const tooLong = `${freshPrefix()}-${"k".repeat(1000)}`;
      await expect(
        client.query(`COPY (SELECT 1) TO 's3://${bucket}/${tooLong}' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "22023",
        message: expect.stringMatching(/^COPY TO target prefix is too long: .* S3 allows 1024$/),
        hint: "Use a prefix of at most 960 bytes.",
      });
      expect(await check.keys(bucket, tooLong.slice(0, 20))).toEqual([]);
      expect(await check.uploads(bucket, tooLong.slice(0, 20))).toEqual([]);
      const fits = `${freshPrefix()}-`.padEnd(960, "f");
      const r = await client.query(`COPY (SELECT 1) TO 's3://${bucket}/${fits}' WITH (FORMAT = 'csv')`);
      expect(r.rowCount).toBe(1);
      expect(Math.max(...(await check.keys(bucket, `${fits}/`)).map((k) => Buffer.byteLength(k)))).toBe(1024);
    });

    test("prefix 'x' is a directory: 'x2/...' does not make it non-empty", async () => {
      await client.query(`COPY (SELECT 1) TO 's3://${bucket}/dirtest2/sub' WITH (FORMAT = 'csv')`);
      const r = await client.query(`COPY (SELECT 2) TO 's3://${bucket}/dirtest' WITH (FORMAT = 'csv')`);
      expect(r.rowCount).toBe(1);
      expect((await concatFiles("dirtest")).toString()).toBe("2\n");
    });

    test("an empty result still produces one file (header only with HEADER)", async () => {
      const prefix = freshPrefix();
      const r = await client.query(
        `COPY (SELECT 1 AS a, 'x' AS b WHERE false) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv', HEADER)`,
      );
      expect(r.rowCount).toBe(0);
      const keys = await dataFiles(prefix);
      expect(keys).toHaveLength(1);
      expect((await check.get(bucket, keys[0]!)).toString()).toBe("a,b\n");
    });

    test("no multipart upload is left behind by successful exports", async () => {
      expect(await check.uploads(bucket)).toEqual([]);
    });
  });

  describe("errors, protocols and the session", () => {
    const errorCases: Array<[string, string, string]> = [
      ["COPY (SELECT 1) TO 's3://B/p' WITH (HEADER)", "42601", "COPY TO <expr> requires a FORMAT option"],
      ["COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'text')", "0A000", "FORMAT TEXT not yet supported"],
      ["COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'binary')", "0A000", "FORMAT BINARY not yet supported"],
      ["COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'xml')", "22023", "unknown FORMAT: xml"],
      [
        "COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'csv', MAX FILE SIZE = '1MB')",
        "22023",
        "MAX FILE SIZE cannot be less than 16MB",
      ],
      [
        "COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'csv', MAX FILE SIZE = '5GB')",
        "22023",
        "MAX FILE SIZE cannot be greater than 4GB",
      ],
      [
        "COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'csv', DELIMITER = ';;')",
        "0A000",
        "COPY delimiter must be a single one-byte character",
      ],
      [
        "COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'csv', DELIMITER = '\"')",
        "22023",
        "COPY delimiter and quote must be different",
      ],
      [
        "COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'csv', AWS CONNECTION = nope)",
        "42704",
        "unknown catalog item 'nope'",
      ],
      [
        "COPY (SELECT 1 ORDER BY 1) TO 's3://B/p' WITH (FORMAT = 'csv')",
        "0A000",
        "ORDER BY is not supported in SELECT query for COPY statements",
      ],
      [
        "COPY awkward (id) TO 's3://B/p' WITH (FORMAT = 'csv')",
        "0A000",
        "specifying columns for COPY <table_name> TO commands not yet supported; use COPY (SELECT...) TO ... instead",
      ],
      [
        "COPY (SELECT 1) TO 'az://B/p' WITH (FORMAT = 'csv')",
        "0A000",
        "only 's3://...' and 'gs://...' urls are supported as COPY TO target",
      ],
      [
        "COPY (SELECT 1) TO NULL::text WITH (FORMAT = 'csv')",
        "22004",
        "COPY TO target value can not be null",
      ],
      [
        "COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'csv', BOGUS = 1)",
        "42601",
        'option "bogus" not recognized',
      ],
      [
        "COPY (SELECT 1) TO 's3://B/p' WITH (FORMAT = 'csv', FORMAT = 'csv')",
        "42601",
        "conflicting or redundant options",
      ],
    ];

    for (const mode of ["simple", "extended"] as const) {
      test(`every option error has its SQLSTATE and text (${mode} protocol), and nothing is written`, async () => {
        for (const [sql0, code, message] of errorCases) {
          const sql = sql0.replace("s3://B/", `s3://${bucket}/errs-`);
          const q =
            mode === "simple"
              ? client.query(sql)
              : client.query({ text: sql, values: [], queryMode: "extended" } as pg.QueryConfig);
          await expect(q, sql).rejects.toMatchObject({ code, message });
          expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
        }
        expect(await check.keys(bucket, "errs-")).toEqual([]);
      });
    }

    test("extended protocol through postgres.js: a named prepared COPY runs and replies COPY n", async () => {
      const sql = postgres(proxy.url("postgres", DB), { max: 1, prepare: true, onnotice: () => {} });
      try {
        const prefix = freshPrefix();
        const r = await sql.unsafe(
          `COPY (SELECT g FROM generate_series(1, 5) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
          [],
          {
            prepare: true,
          },
        );
        expect(r.command).toBe("COPY");
        expect(r.count).toBe(5);
        expectSameCsv(await concatFiles(prefix), Buffer.from("1\n2\n3\n4\n5\n"), up);
        expect((await sql`select 1 as ok`)[0]!.ok).toBe(1);
      } finally {
        await sql.end();
      }
    });

    test("sent together with other statements in one Query: 0A000", async () => {
      await expect(
        client.query(`SELECT 1; COPY (SELECT 1) TO 's3://${bucket}/multi' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "0A000",
      });
      expect(await check.keys(bucket, "multi")).toEqual([]);
    });

    test("inside a transaction block: PostgreSQL runs it there, Materialize 25001; in a failed one: 25P02", async () => {
      await client.query("BEGIN");
      const inTx = client.query(`COPY (SELECT 1) TO 's3://${bucket}/intx' WITH (FORMAT = 'csv')`);
      if (up.ordered) {
        // In the client's transaction (copy-in-transaction.test.ts has the details).
        expect((await inTx).rowCount).toBe(1);
      } else {
        await expect(inTx).rejects.toMatchObject({
          code: "25001",
          message: "COPY ... TO 's3://...' cannot run inside a transaction block",
        });
      }
      await expect(client.query("SELECT 1/0")).rejects.toMatchObject({ code: "22012" });
      await expect(
        client.query(`COPY (SELECT 1) TO 's3://${bucket}/intx' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "25P02",
      });
      await client.query("ROLLBACK");
      expect((await check.keys(bucket, "intx/")).length).toBe(up.ordered ? 3 : 0);
    });

    test("the export runs as the client's user: no SELECT privilege → 42501, nothing written", async () => {
      const c = new pg.Client({ connectionString: proxy.url("nosel", DB) });
      await c.connect();
      try {
        await expect(
          c.query(`COPY secret TO 's3://${bucket}/priv' WITH (FORMAT = 'csv')`),
        ).rejects.toMatchObject({
          code: "42501",
          message: "permission denied for table secret",
        });
        expect(await check.keys(bucket, "priv")).toEqual([]);
      } finally {
        await c.end();
      }
    });

    test("an error in the query mid-stream cleans up and leaves the session usable", async () => {
      const prefix = freshPrefix();
      await expect(
        client.query(
          `COPY (SELECT 1 / (g - 50000) FROM generate_series(1, 60000) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
        ),
      ).rejects.toMatchObject(up.readError("22012", "division by zero"));
      expect(await check.keys(bucket, `${prefix}/`)).toEqual([]);
      expect(await check.uploads(bucket, `${prefix}/`)).toEqual([]);
      expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
    });

    test("the client's session is left exactly as it was", async () => {
      await client.query("SET search_path TO public, pg_catalog");
      await client.query({ name: "mine", text: "SELECT 42 AS v" });
      const before = await client.query(
        "SELECT current_setting('search_path') sp, current_setting('transaction_isolation') iso, current_setting('transaction_read_only') ro",
      );
      await client.query(`COPY (SELECT 1) TO 's3://${bucket}/${freshPrefix()}' WITH (FORMAT = 'csv')`);
      const after = await client.query(
        "SELECT current_setting('search_path') sp, current_setting('transaction_isolation') iso, current_setting('transaction_read_only') ro",
      );
      expect(after.rows).toEqual(before.rows);
      const prepared = await client.query("SELECT name FROM pg_prepared_statements ORDER BY name");
      expect(prepared.rows.map((r) => r.name)).toEqual(["mine"]);
      expect((await client.query({ name: "mine", text: "SELECT 42 AS v" })).rows[0].v).toBe(42);
    });

    test("COPY TO STDOUT and COPY to a server file still go to the upstream untouched", async () => {
      await expect(client.query("COPY (SELECT 1) TO '/nonexistent-dir/f.csv'")).rejects.toMatchObject({
        code: "58P01",
      });
      const out = await oracle.query("COPY (SELECT 1) TO STDOUT");
      expect(out.copyData.toString()).toBe("1\n");
    });
  });
});
