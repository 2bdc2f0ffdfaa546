// docs/loading.md's recipes, run the way a user runs them: what a loader needs is in the manifest
// (dialect, compression, columns, exact lengths), the Redshift manifest lists the same files, the
// objects carry their Content-Type, a glob over the prefix reads data only (DuckDB), and the CSV
// files load into PostgreSQL (the stand-in warehouse) with the manifest's settings and nothing
// else. Oracles: the source table itself (EXCEPT both ways) and DuckDB as an independent reader.
import { chmodSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { HeadObjectCommand } from "@aws-sdk/client-s3";
import { type DuckDBConnection, DuckDBInstance } from "@duckdb/node-api";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";

const DB = "loading_recipes";
const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let client: pg.Client;
let direct: pg.Client;
let duck: DuckDBConnection;
let bucket: string;
let root: string;

interface Manifest {
  version: number;
  format: string;
  compression: string;
  csv?: { header: boolean; delimiter: string; quote: string; escape: string; null: string; encoding: string };
  snapshot: { upstream: string; at: string; postgresSnapshot?: string };
  columns: Array<{ name: string; type: string }>;
  rows: number;
  files: Array<{ key: string; url: string; rows: number; bytes: number }>;
}

const SOURCE = `CREATE TABLE orders AS
  SELECT g AS id,
    CASE g % 5 WHEN 0 THEN NULL WHEN 1 THEN '' WHEN 2 THEN 'semi;colon, comma' WHEN 3 THEN 'quote '' and "dq"' ELSE E'two\\nlines' END AS note,
    (g * 1.25)::numeric(12, 2) AS amount,
    timestamptz '2026-01-01 00:00+00' + g * interval '1 minute' AS at
  FROM generate_series(1, 2000) g`;

beforeAll(async () => {
  const admin = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: "postgres" });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB}`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  await direct.query(SOURCE);
  // The PostgreSQL server runs as another OS user: it reads the downloaded files from here.
  root = mkdtempSync(join(tmpdir(), "loading-"));
  chmodSync(root, 0o755);
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3, args: ["--file-root", root] });
  client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  await client.connect();
  bucket = await check.bucket("loading-recipes");
  duck = await (await DuckDBInstance.create(":memory:")).connect();
}, 120_000);

afterAll(async () => {
  await client?.end();
  await direct?.end();
  await proxy?.shutdown(0);
  if (root) rmSync(root, { recursive: true, force: true });
});

async function s3Manifest(prefix: string, kind: "-manifest.json" | "-redshift.manifest"): Promise<string> {
  const key = (await check.keys(bucket, `${prefix}/_meta/`)).find((k) => k.endsWith(kind));
  expect(key, `${kind} under ${prefix}/_meta/`).toBeDefined();
  return (await check.get(bucket, key!)).toString();
}

const head = (key: string) => check.client.send(new HeadObjectCommand({ Bucket: bucket, Key: key }));
const sqlString = (s: string): string => `'${s.replaceAll("'", "''")}'`;

describe("what a loader reads", () => {
  test("CSV+gzip in S3: the manifest says how to read it, Redshift's lists the same files, and PostgreSQL loads them with exactly those settings", async () => {
    await client.query(
      `COPY orders TO 's3://${bucket}/csv' WITH (FORMAT csv, HEADER, DELIMITER ';', QUOTE '''', ESCAPE '\\', NULL 'NULL', COMPRESSION gzip, MAX FILE SIZE '16MB')`,
    );
    const m = JSON.parse(await s3Manifest("csv", "-manifest.json")) as Manifest;
    expect(m).toMatchObject({
      version: 2,
      format: "csv",
      compression: "gzip",
      csv: { header: true, delimiter: ";", quote: "'", escape: "\\", null: "NULL", encoding: "UTF8" },
      snapshot: { upstream: "postgres" },
      rows: 2000,
    });
    expect(m.snapshot.at).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    expect(Math.abs(Date.parse(m.snapshot.at) - Date.now())).toBeLessThan(3_600_000);
    expect(m.snapshot.postgresSnapshot).toMatch(/^\d+:\d+:/);
    expect(m.columns).toEqual([
      { name: "id", type: "integer" },
      { name: "note", type: "text" },
      { name: "amount", type: "numeric(12,2)" },
      { name: "at", type: "timestamp with time zone" },
    ]);
    // Each file: its URL, exact length, gzip type and no Content-Encoding (see content-type.ts).
    const dataKeys = (await check.keys(bucket, "csv/")).filter((k) => !k.startsWith("csv/_meta/"));
    expect(m.files.map((f) => `csv/${f.key}`)).toEqual(dataKeys);
    for (const f of m.files) {
      expect(f.url).toBe(`s3://${bucket}/csv/${f.key}`);
      const h = await head(`csv/${f.key}`);
      expect(h.ContentLength).toBe(f.bytes);
      expect(h.ContentType).toBe("application/gzip");
      expect(h.ContentEncoding).toBeUndefined();
    }
    const metaKey = (await check.keys(bucket, "csv/_meta/")).find((k) => k.endsWith("-manifest.json"))!;
    expect((await head(metaKey)).ContentType).toBe("application/json");
    const rs = JSON.parse(await s3Manifest("csv", "-redshift.manifest")) as {
      entries: Array<{ url: string; mandatory: boolean; meta: { content_length: number } }>;
    };
    expect(rs.entries).toEqual(
      m.files.map((f) => ({ url: f.url, mandatory: true, meta: { content_length: f.bytes } })),
    );

    // The stand-in warehouse: the files the manifest lists, with the dialect it names.
    const d = m.csv!;
    const cols = m.columns.map((c) => `"${c.name}" ${c.type}`).join(", ");
    await direct.query(`DROP TABLE IF EXISTS loaded; CREATE TABLE loaded (${cols})`);
    for (const f of m.files) {
      const path = join(root, f.key);
      writeFileSync(path, await check.get(bucket, `csv/${f.key}`), { mode: 0o644 });
      await direct.query(
        `COPY loaded FROM PROGRAM ${sqlString(`gzip -dc ${path}`)} WITH (FORMAT csv, HEADER ${d.header}, DELIMITER ${sqlString(d.delimiter)}, QUOTE ${sqlString(d.quote)}, ESCAPE ${sqlString(d.escape)}, NULL ${sqlString(d.null)}, ENCODING ${sqlString(d.encoding)})`,
      );
    }
    const diff = await direct.query(
      "SELECT count(*)::int AS n FROM ((TABLE orders EXCEPT ALL TABLE loaded) UNION ALL (TABLE loaded EXCEPT ALL TABLE orders)) x",
    );
    expect(diff.rows[0].n).toBe(0);
    expect((await direct.query("SELECT count(*)::int AS n FROM loaded")).rows[0].n).toBe(2000);
  });

  test("Parquet: Content-Type, and DuckDB's read_parquet('<prefix>/*') reads the data files only", async () => {
    const dir = join(root, "pq");
    await client.query(`COPY orders TO 'file://${dir}' WITH (FORMAT parquet)`);
    const all = await duck.runAndReadAll(
      `SELECT count(*)::INTEGER, sum(amount)::VARCHAR FROM read_parquet('${dir}/*')`,
    );
    const want = await direct.query("SELECT sum(amount)::text AS s FROM orders");
    expect(all.getRows()[0]).toEqual([2000, want.rows[0].s]);
    // The manifest's file list is the other way in; its lengths are the files' own.
    const meta = join(dir, "_meta");
    const { readdirSync, statSync } = await import("node:fs");
    const name = readdirSync(meta).find((n) => n.endsWith("-manifest.json"))!;
    const m = JSON.parse(readFileSync(join(meta, name), "utf8")) as Manifest;
    const paths = m.files.map((f) => fileURLToPath(f.url));
    for (const [i, p] of paths.entries()) expect(statSync(p).size).toBe(m.files[i]!.bytes);
    const viaManifest = await duck.runAndReadAll(
      `SELECT count(*)::INTEGER FROM read_parquet([${paths.map(sqlString).join(",")}])`,
    );
    expect(viaManifest.getRows()[0]).toEqual([2000]);
    // In S3 the type says what the object is.
    await client.query(`COPY orders TO 's3://${bucket}/pq' WITH (FORMAT parquet)`);
    const key = (await check.keys(bucket, "pq/")).find((k) => k.endsWith(".parquet"))!;
    expect((await head(key)).ContentType).toBe("application/vnd.apache.parquet");
  });

  test("DuckDB reads the CSV files through the manifest's dialect", async () => {
    const dir = join(root, "csv");
    await client.query(
      `COPY orders TO 'file://${dir}' WITH (FORMAT csv, HEADER, DELIMITER '|', NULL '\\N', COMPRESSION gzip)`,
    );
    const { readdirSync } = await import("node:fs");
    const name = readdirSync(join(dir, "_meta")).find((n) => n.endsWith("-manifest.json"))!;
    const m = JSON.parse(readFileSync(join(dir, "_meta", name), "utf8")) as Manifest;
    const d = m.csv!;
    const columns = `{${m.columns.map((c) => `${sqlString(c.name)}: ${sqlString(duckType(c.type))}`).join(", ")}}`;
    const r = await duck.runAndReadAll(
      `SELECT count(*)::INTEGER, count(note)::INTEGER, sum(amount)::VARCHAR FROM read_csv([${m.files
        .map((f) => sqlString(fileURLToPath(f.url)))
        .join(
          ",",
        )}], header = ${d.header}, delim = ${sqlString(d.delimiter)}, quote = ${sqlString(d.quote)}, escape = ${sqlString(d.escape)}, nullstr = ${sqlString(d.null)}, compression = ${sqlString(m.compression)}, columns = ${columns})`,
    );
    const want = await direct.query(
      "SELECT count(*)::int AS n, count(note)::int AS notes, sum(amount)::text AS s FROM orders",
    );
    expect(r.getRows()[0]).toEqual([2000, want.rows[0].notes, want.rows[0].s]);
  });
});

/** The manifest's PostgreSQL type names as DuckDB spells them (the few this table has). */
function duckType(t: string): string {
  if (t === "timestamp with time zone") return "TIMESTAMPTZ";
  if (t.startsWith("numeric")) return t.replace("numeric", "DECIMAL");
  return t;
}
