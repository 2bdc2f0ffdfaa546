// COPY … TO S3 through the proxy in front of the MaterializeWireDouble (a test double of
// Materialize's pgwire behaviour in front of the suite's PostgreSQL — see test/support/mz-double.ts).
// The shared Materialize scenarios, plus what only a double can stage: a snapshot that trickles in
// over many FETCHes, a retraction in the snapshot, a cancel while a FETCH waits.
import pg from "pg";
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, inject, test } from "vitest";
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
import { freshPgDatabase } from "../support/postgres.js";
import type { TestProxy } from "../support/proxy.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";

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
  direct = await freshPgDatabase(pgPort, DB);
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
    expect(seen[1]).toBe("SET LOCAL idle_in_transaction_session_timeout 0");
    expect(seen[2]).toBe("DECLARE SUBSCRIBE PROGRESS");
    // FETCH without a timeout: it waits for rows, and 0 rows means the SUBSCRIBE has ended.
    expect(seen.some((e) => /^parse FETCH 10000 timeout=none$/.test(e))).toBe(true);
    expect(seen.slice(-2)).toEqual(["CLOSE", "ROLLBACK"]);
  });

  materializeScenarios(env);
  materializeTypeScenarios(env, "double");
});

describe("what only the double can stage", () => {
  // A session per test: one whose test failed with its export still running (a FETCH waiting for
  // a chunk that never comes) ends with that test, and the next test starts on a clean session
  // instead of queueing behind the export or meeting its transaction.
  let client: pg.Client;
  beforeEach(async () => {
    client = new pg.Client({ connectionString: proxy.url("postgres", DB) });
    await client.connect();
  });
  afterEach(async () => {
    await client.end().catch(() => {});
  });

  /** Resolves once the export's read loop has a FETCH waiting for rows at the double. */
  const fetchWaiting = (what: string) => waitUntil(what, () => (dbl.fetchesWaiting > 0 ? true : null));

  test("a snapshot that arrives over many FETCHes, each waiting for its chunk, is exported whole", async () => {
    dbl.knobs.snapshotChunkRows = 4;
    dbl.knobs.snapshotChunksReleased = 1;
    const from = dbl.events.length;
    const prefix = freshPrefix();
    const q = client.query(`COPY trickle TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
    q.catch(() => {});
    // Each further chunk is released only once a FETCH waits for it.
    for (const chunk of [2, 3]) {
      await fetchWaiting(`a FETCH waiting for chunk ${chunk}`);
      dbl.releaseSnapshotChunk();
    }
    const r = await q;
    expect(r.rowCount).toBe(12);
    const fetches = dbl.events.slice(from).filter((e) => e.startsWith("parse FETCH 10000"));
    // A FETCH for each chunk (and one that sees the snapshot end).
    expect(fetches.length).toBeGreaterThanOrEqual(3);
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
    // The first chunk, and no second: the read's second FETCH waits until the cancel.
    dbl.knobs.snapshotChunkRows = 2;
    dbl.knobs.snapshotChunksReleased = 1;
    const prefix = freshPrefix();
    const from = dbl.events.length;
    const q = client.query(`COPY trickle TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'parquet')`);
    let t0 = 0;
    const failed = failure(q, () => t0);
    await fetchWaiting("the read's FETCH waiting for rows");
    expect(dbl.events.slice(from).filter((e) => e.startsWith("parse FETCH 10000")).length).toBe(2);
    t0 = performance.now();
    await sendCancel(proxy.port, keyOf(client));
    // No chunk ever comes: a cancel that waited for the FETCH would time the test out.
    const { err } = await failed;
    expect(err).toMatchObject({ code: "57014", message: "canceling statement due to user request" });
    await expectNothingLeft(check, bucket, prefix);
    expect(dbl.events.at(-1)).toBe("ROLLBACK");
    expect((await client.query("SELECT 2 AS ok")).rows[0].ok).toBe(2);
  });

  test("inputs whose frontier has closed: AS OF u64::MAX, the SUBSCRIBE ends after its data, so does the export", async () => {
    // Materialize src/adapter/src/coord/timestamp_selection.rs (a complete trace is read at
    // Timestamp::MAX) and active_compute_sink.rs (an empty upper sends no progress row).
    dbl.knobs.closedInputs = true;
    const prefix = freshPrefix();
    const r = await client.query(`COPY dup TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
    expect(r.rowCount).toBe(5);
    const key = (await check.keys(bucket, `${prefix}/`)).find((k) => k.endsWith("-manifest.json"))!;
    expect((await check.get(bucket, key)).toString()).toMatch(/"mzTimestamp": 18446744073709551615\b/);
  });

  /** A proxy with a 400 ms stall limit exports `table`: 57014, nothing left, the session usable. */
  async function expectStallEnds(table: string): Promise<void> {
    const p2 = await startCopyProxy({ upstreamPort: dbl.port, s3, args: ["--stall-timeout", "400"] });
    const c2 = new pg.Client({ connectionString: p2.url("postgres", DB) });
    await c2.connect();
    try {
      const prefix = freshPrefix();
      await expect(
        c2.query(`COPY ${table} TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`),
      ).rejects.toMatchObject({
        code: "57014",
        message: expect.stringMatching(/^canceling COPY TO: no rows came from the upstream for \d+ s$/),
      });
      await expectNothingLeft(check, bucket, prefix);
      expect(dbl.events.at(-1)).toBe("ROLLBACK");
      expect((await c2.query("SELECT 3 AS ok")).rows[0].ok).toBe(3);
    } finally {
      await c2.end();
      await p2.shutdown(0);
    }
  }

  test("a read that makes no progress ends after exports.stallTimeoutMs with 57014; nothing is left", async () => {
    // The second chunk of the snapshot never comes: the FETCH waits for it.
    dbl.knobs.snapshotChunkRows = 2;
    dbl.knobs.snapshotChunksReleased = 1;
    await expectStallEnds("trickle");
  });

  test("a SUBSCRIBE whose first progress row never comes: the same 57014 while the export opens", async () => {
    dbl.knobs.firstRowDelayMs = 60_000;
    await expectStallEnds("dup");
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

// Materialize terminates a session that sits idle in a transaction longer than
// idle_in_transaction_session_timeout (2 min by default; src/sql/src/session/vars/definitions.rs,
// src/pgwire/src/protocol.rs): rule R16 of the double, here with 300 ms. While the uploads are
// slow the proxy stops reading between FETCHes, and Materialize sees the session idle in the
// SUBSCRIBE's transaction.
describe("idle in transaction while the uploads are slow", () => {
  const TIMEOUT = 300;
  let slowDbl: MaterializeWireDouble;
  let faults: S3FaultProxy;
  let p: TestProxy;
  let c: pg.Client;

  beforeAll(async () => {
    await direct.query(
      "CREATE TABLE wide AS SELECT g, repeat(md5(g::text), 3) AS pad FROM generate_series(1, 120000) g",
    );
    slowDbl = await MaterializeWireDouble.start({ pgPort, idleInTransactionTimeoutMs: TIMEOUT });
    faults = await S3FaultProxy.start(s3.endpoint);
    p = await startCopyProxy({
      upstreamPort: slowDbl.port,
      s3: { ...s3, endpoint: faults.endpoint },
      config: { exports: { partSize: 5 * 1024 * 1024, partsInFlight: 1, filesCompleting: 1 } },
    });
    c = new pg.Client({ connectionString: p.url("postgres", DB) });
    c.on("notice", () => {});
    await c.connect();
  }, 60_000);

  afterAll(async () => {
    await c?.end().catch(() => {});
    await p?.shutdown(0);
    await faults?.close();
    await slowDbl?.stop();
  });

  test("uploads held far longer than the session's timeout: the export completes, the session lives on", async () => {
    const prefix = freshPrefix();
    faults.setRules({ op: "UploadPart", fault: "hold" });
    const q = c.query(`COPY wide TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`);
    q.catch(() => {});
    try {
      await faults.waitFor("UploadPart", 1);
      // The proxy has stopped reading; the double's session sits idle in the SUBSCRIBE's
      // transaction well past its idle_in_transaction_session_timeout.
      // The proxy stops reading once the held part's successors fill its upload buffers; a
      // loaded machine's niced encoder thread takes a while to encode that far.
      await waitUntil(
        "idle in transaction three times the timeout",
        () => (slowDbl.longestIdleInTransactionMs() > 3 * TIMEOUT ? true : null),
        60_000,
      );
    } finally {
      faults.clear();
    }
    expect((await q).rowCount).toBe(120_000);
    expect(slowDbl.events).not.toContain("idle-in-transaction timeout");
    // The client's own setting is as it was: the export's SET LOCAL ended with its transaction.
    expect((await c.query("SHOW idle_in_transaction_session_timeout")).rows[0]).toEqual({
      idle_in_transaction_session_timeout: "300 ms",
    });
    expect((await c.query("SELECT 4 AS ok")).rows[0].ok).toBe(4);
  }, 120_000);
});
