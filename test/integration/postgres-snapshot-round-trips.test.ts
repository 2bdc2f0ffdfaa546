// Opening a PostgreSQL snapshot (the plan of every export) takes two round trips to the upstream:
// the transaction, the snapshot's SELECT and the prepare go out in one write, then the type names
// (and the catalog's description of user-defined types) in another. Against a real PostgreSQL,
// over a bare socket: a round trip is a burst of the client's writes that waits for the server's
// answer, and PostgreSQL's own answers decide what an error in the pipelined write does.
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { PostgresSnapshot } from "../../src/copy/snapshot/postgres-snapshot.js";
import type { CopySource } from "../../src/copy/statement.js";
import { UpstreamClient } from "../../src/copy/upstream-client.js";
import { countingSession } from "../support/counting-channel.js";
import { RawPg } from "../support/raw-pg.js";

const pgPort = inject("pgPort");
const DB = "snapshot_round_trips";

/** An UpstreamChannel on a fresh session of the test's database, counting the client's write bursts. */
const session = () => countingSession(pgPort, "postgres", DB);

const prepared = async (client: UpstreamClient): Promise<string[]> =>
  (await client.query("SELECT name FROM pg_prepared_statements ORDER BY name")).rows.map((r) => r[0]!);

beforeAll(async () => {
  const admin = await RawPg.freshDatabase(pgPort, DB);
  await admin.query(
    "CREATE TYPE mood AS ENUM ('sad', 'ok'); CREATE TABLE t (id int, amount numeric(12,2), m mood); INSERT INTO t VALUES (1, 2.50, 'ok')",
  );
  await admin.close();
});

afterAll(async () => {
  const admin = await RawPg.connect({ port: pgPort });
  await admin.query(`DROP DATABASE IF EXISTS ${DB} WITH (FORCE)`);
  await admin.close();
});

const signal = new AbortController().signal;
const table: CopySource = { kind: "relation", name: "t" };

describe("PostgresSnapshot.open: two round trips", () => {
  test.each([
    { typeInfo: false, inTransaction: false },
    { typeInfo: true, inTransaction: false },
    { typeInfo: true, inTransaction: true },
  ])(
    "typeInfo %o: columns, type names, snapshot, and the rows after it",
    async ({ typeInfo, inTransaction }) => {
      const s = await session();
      try {
        const client = new UpstreamClient(s.ch);
        if (inTransaction) await client.query("BEGIN");
        const before = s.roundTrips();
        const snap = new PostgresSnapshot(client, table, inTransaction);
        const opened = await snap.open({ typeInfo }, signal);
        expect(s.roundTrips() - before).toBe(2);
        expect(opened.columns.map((c) => c.name)).toEqual(["id", "amount", "m"]);
        expect(opened.typeNames).toEqual(["integer", "numeric(12,2)", "mood"]);
        // The enum is described from the catalog only when asked (Parquet).
        expect(opened.columns[2]!.type).toEqual(typeInfo ? { name: "mood", kind: "e" } : undefined);
        expect(opened.snapshot.at).toMatch(/^\d{4}-\d\d-\d\d /);
        expect(opened.snapshot.timestamp).toMatch(/^\d+:\d+:/);
        expect(client.txStatus).toBe("T");
        let rows = 0;
        await snap.read(
          [0, 0, 0],
          {
            rows: (_b, _s, _e, n) => {
              rows += n;
            },
            row: () => {},
          },
          signal,
        );
        await snap.end?.();
        expect(rows).toBe(1);
        expect(client.txStatus).toBe(inTransaction ? "T" : "I");
        expect(await prepared(client)).toEqual([]);
      } finally {
        s.close();
      }
    },
  );

  test.each([
    { what: "a missing relation", source: { kind: "relation", name: "nope" } as CopySource, code: "42P01" },
    {
      what: "a query that does not parse",
      source: { kind: "query", sql: "SELEC 1" } as CopySource,
      code: "42601",
    },
  ])(
    "$what: the prepare's own error (not 25P02), and abandon() leaves the session as found",
    async ({ source, code }) => {
      for (const inTransaction of [false, true]) {
        const s = await session();
        try {
          const client = new UpstreamClient(s.ch);
          if (inTransaction) {
            await client.query("BEGIN");
          }
          const snap = new PostgresSnapshot(client, source, inTransaction);
          await expect(snap.open({ typeInfo: true }, signal)).rejects.toMatchObject({ code });
          await snap.abandon();
          // In a client's transaction the export fails it afterwards anyway (export.ts), as any
          // failing statement would.
          if (inTransaction) await client.query("ROLLBACK");
          expect(client.txStatus).toBe("I");
          expect(await prepared(client)).toEqual([]);
          // The session opens the next snapshot as if nothing had happened.
          const next = new PostgresSnapshot(client, table, false);
          await expect(next.open({ typeInfo: false }, signal)).resolves.toMatchObject({
            typeNames: ["integer", "numeric(12,2)", "mood"],
          });
          await next.abandon();
        } finally {
          s.close();
        }
      }
    },
  );
});
