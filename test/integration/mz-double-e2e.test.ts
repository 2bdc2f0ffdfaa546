// COPY … TO S3 through the proxy in front of the MaterializeWireDouble (a test double of
// Materialize's pgwire behaviour in front of the suite's PostgreSQL — see test/support/mz-double.ts).
// The shared Materialize scenarios, plus what only a double can stage: a snapshot that trickles in
// over many FETCHes, a retraction in the snapshot, a cancel while a FETCH waits.
import pg from "pg";
import { afterAll, afterEach, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { expectNothingLeft, failure, keyOf, sendCancel, waitUntil } from "../support/export-checks.js";
import { MaterializeWireDouble, MZ_TYPES_SETUP, mzSearchPath } from "../support/mz-double.js";
import {
  basicSetup,
  freshPrefix,
  type MzEnv,
  materializeScenarios,
  parseCsv,
  typesSetup,
} from "../support/mz-e2e.js";
import { materializeTypeScenarios } from "../support/mz-types-e2e.js";
import type { TestProxy } from "../support/proxy.js";

const DB = "mz_double_e2e";
const pgPort = inject("pgPort");
const s3 = motoAccess();
const check = new S3Check(s3);
let dbl: MaterializeWireDouble;
let proxy: TestProxy;
let client: pg.Client;
let direct: pg.Client;
let bucket: string;

beforeAll(async () => {
  const admin = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres" });
  await admin.connect();
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await admin.query(`CREATE DATABASE ${DB}`);
  await admin.end();
  direct = new pg.Client({ port: pgPort, host: "127.0.0.1", user: "postgres", database: DB });
  await direct.connect();
  for (const sql of MZ_TYPES_SETUP) await direct.query(sql);
  await direct.query(mzSearchPath(DB));
  await direct.query('SET search_path = "$user", public, mz_catalog');
  for (const sql of [...basicSetup(), ...typesSetup("double")]) await direct.query(sql);
  await direct.query(
    "CREATE TABLE trickle AS SELECT g AS id, 'row ' || g AS t FROM generate_series(1, 12) g",
  );
  // AWS connections from the catalog: test/integration/mz-catalog-connections.test.ts.
  dbl = await MaterializeWireDouble.start({ pgPort });
  proxy = await startCopyProxy({ upstreamPort: dbl.port, s3 });
  client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
  await client.connect();
  bucket = await check.bucket("mz-double-e2e");
}, 60_000);

afterAll(async () => {
  await client?.end();
  await direct?.end();
  await proxy?.shutdown(0);
  await dbl?.stop();
});

afterEach(() => dbl.resetKnobs());

const env = (): MzEnv => ({
  client,
  check,
  bucket,
  kind: "double",
  setup: async (sql) => {
    await direct.query(sql);
  },
  lastAsOf: () => dbl.lastAsOf,
});

describe("through the Materialize wire double", () => {
  test("the session is detected as Materialize (mz_version) and the export speaks SUBSCRIBE", async () => {
    const from = dbl.events.length;
    await client.query(`COPY dup TO 's3://${bucket}/${freshPrefix()}' WITH (FORMAT = 'csv')`);
    const seen = dbl.events.slice(from);
    expect(seen[0]).toBe("BEGIN");
    expect(seen[1]).toBe("DECLARE SUBSCRIBE PROGRESS");
    expect(seen.some((e) => /^parse FETCH 10000 timeout=100$/.test(e))).toBe(true);
    expect(seen.slice(-2)).toEqual(["CLOSE", "ROLLBACK"]);
  });

  materializeScenarios(env);
  materializeTypeScenarios(env);
});

describe("what only the double can stage", () => {
  test("a snapshot that arrives over many FETCHes, with empty timeouts in between, is exported whole", async () => {
    dbl.knobs.snapshotChunkRows = 4;
    dbl.knobs.snapshotChunkIntervalMs = 350;
    const from = dbl.events.length;
    const prefix = freshPrefix();
    const r = await client.query(`COPY trickle TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
    expect(r.rowCount).toBe(12);
    const fetches = dbl.events.slice(from).filter((e) => e.startsWith("parse FETCH 10000"));
    // Three chunks, 350 ms apart, FETCH timeout 100 ms: at least two empty FETCHes between chunks.
    expect(fetches.length).toBeGreaterThanOrEqual(6);
    const keys = (await check.keys(bucket, `${prefix}/`)).filter((k) => k.endsWith(".csv"));
    const rows = parseCsv((await check.get(bucket, keys[0]!)).toString());
    expect(rows.map((x) => Number(x[0])).sort((a, b) => a - b)).toEqual(
      Array.from({ length: 12 }, (_, i) => i + 1),
    );
  });

  test("a retraction in the snapshot ends the export with Materialize's error; nothing is left", async () => {
    dbl.knobs.retractRow = 1;
    const prefix = freshPrefix();
    await expect(
      client.query(
        `COPY (SELECT id, t FROM trickle WHERE id <= 3) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
      ),
    ).rejects.toMatchObject({
      code: "XX000",
      message: expect.stringMatching(
        /^Invalid data in source, saw retractions \(1\) for row that does not exist: \(/,
      ),
    });
    await expectNothingLeft(check, bucket, prefix);
    expect((await client.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });

  test("a cancel while a FETCH waits: 57014, nothing left, the session usable", async () => {
    dbl.knobs.snapshotChunkRows = 2;
    dbl.knobs.snapshotChunkIntervalMs = 60_000;
    const prefix = freshPrefix();
    const from = dbl.events.length;
    const q = client.query(`COPY trickle TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'parquet')`);
    let t0 = 0;
    const failed = failure(q, () => t0);
    await waitUntil("a FETCH waiting for rows", () =>
      dbl.events.slice(from).filter((e) => e.startsWith("parse FETCH 10000")).length >= 2 ? true : null,
    );
    t0 = performance.now();
    await sendCancel(proxy.port, keyOf(client));
    const { err, ms } = await failed;
    expect(err).toMatchObject({ code: "57014", message: "canceling statement due to user request" });
    expect(ms).toBeLessThan(2000);
    await expectNothingLeft(check, bucket, prefix);
    expect(dbl.events.at(-1)).toBe("ROLLBACK");
    expect((await client.query("SELECT 2 AS ok")).rows[0].ok).toBe(2);
  });

  test("an error raised while the SUBSCRIBE runs arrives as XX000 and cleans up", async () => {
    const prefix = freshPrefix();
    await expect(
      client.query(
        `COPY (SELECT 1 / (n - 1500) AS x FROM nums) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
      ),
    ).rejects.toMatchObject({ code: "XX000", message: "Evaluation error: division by zero" });
    await expectNothingLeft(check, bucket, prefix);
  });

  test("--upstream-kind postgres in front of a Materialize-looking upstream uses the PostgreSQL snapshot", async () => {
    const p2 = await startCopyProxy({ upstreamPort: dbl.port, s3, args: ["--upstream-kind", "postgres"] });
    const c2 = new pg.Client({ connectionString: p2.url("postgres", DB) });
    await c2.connect();
    try {
      const prefix = freshPrefix();
      const from = dbl.events.length;
      expect((await c2.query(`COPY dup TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`)).rowCount).toBe(
        5,
      );
      expect(dbl.events.slice(from)[0]).toBe("BEGIN");
      expect(dbl.events.slice(from).some((e) => e.includes("SUBSCRIBE"))).toBe(false);
      const key = (await check.keys(bucket, `${prefix}/`)).find((k) => k.endsWith("-manifest.json"))!;
      expect(JSON.parse((await check.get(bucket, key)).toString()).snapshot.upstream).toBe("postgres");
    } finally {
      await c2.end();
      await p2.shutdown(0);
    }
  });
});
