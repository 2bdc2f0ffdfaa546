// The round trips of opening a Materialize snapshot (src/copy/snapshot/materialize-snapshot.ts),
// written once and run against the MaterializeWireDouble (mz-snapshot-round-trips.test.ts) and a
// real Materialize when MZ_URL is set (materialize-real.test.ts). The snapshot runs on a bare
// session that counts the client's write bursts (test/support/counting-channel.ts); what the
// server answers to pipelined messages is Materialize's (the double's rule R12a cites its source).
import { expect, test } from "vitest";
import { MaterializeSnapshot } from "../../src/copy/snapshot/materialize-snapshot.js";
import { UpstreamClient } from "../../src/copy/upstream-client.js";
import { PgError } from "../../src/errors.js";
import { forEachDataRow } from "../../src/wire/backend.js";
import { countingSession } from "./counting-channel.js";

export interface MzRoundTripEnv {
  port: number;
  host: string;
  user: string;
  database: string;
  /** A relation (a int, b text) with `rows` rows, named so that a new session finds it. */
  table: string;
  rows: number;
}

async function opened(env: MzRoundTripEnv) {
  const s = await countingSession(env.port, env.user, env.database, env.host);
  return { ...s, client: new UpstreamClient(s.ch) };
}

/** Reads the whole snapshot; returns its row count. */
async function readAll(snap: MaterializeSnapshot, signal: AbortSignal): Promise<number> {
  let n = 0;
  await snap.read(
    [0, 0],
    {
      rows: (buf, start, end) =>
        forEachDataRow(buf, start, end, () => {
          n++;
        }),
      row: () => {
        n++;
      },
    },
    signal,
  );
  return n;
}

const codeOf = async (p: Promise<unknown>): Promise<string> => {
  try {
    await p;
    return "none";
  } catch (e) {
    return e instanceof PgError ? e.code : String(e);
  }
};

export function materializeRoundTripScenarios(env: () => MzRoundTripEnv): void {
  test("a SUBSCRIBE's snapshot opens in one round trip: BEGIN, SET LOCAL, DECLARE, the description and the first FETCH in one write", async () => {
    const e = env();
    const s = await opened(e);
    try {
      const signal = new AbortController().signal;
      const snap = new MaterializeSnapshot(s.client, { kind: "query", sql: `SELECT a, b FROM ${e.table}` });
      const o = await snap.open({ typeInfo: false }, signal);
      expect(s.roundTrips()).toBe(1);
      expect(o.columns.map((c) => c.name)).toEqual(["a", "b"]);
      expect(o.snapshot.timestamp).toMatch(/^\d+$/);
      expect(s.client.txStatus).toBe("T");
      expect(await readAll(snap, signal)).toBe(e.rows);
      expect(s.client.txStatus).toBe("I");
    } finally {
      s.close();
    }
  });

  test("SUBSCRIBE refuses now(): the failed transaction ends and the peek begins in one more round trip", async () => {
    const e = env();
    const s = await opened(e);
    try {
      const signal = new AbortController().signal;
      const snap = new MaterializeSnapshot(s.client, {
        kind: "query",
        sql: `SELECT a, b FROM ${e.table} WHERE now() IS NOT NULL`,
      });
      const o = await snap.open({ typeInfo: false }, signal);
      expect(s.roundTrips()).toBe(2);
      expect(o.snapshot.timestamp).toBeUndefined(); // the peek's: no mz_timestamp on the wire
      expect(o.columns.map((c) => c.name)).toEqual(["a", "b"]);
      expect(await readAll(snap, signal)).toBe(e.rows);
      expect(s.client.txStatus).toBe("I");
    } finally {
      s.close();
    }
  });

  test("an error in the middle of the write: the first error is the DECLARE's, nothing after it ran, and abandon() leaves the session idle", async () => {
    const e = env();
    const sql = `SELECT a, b FROM ${e.table}_no_such_relation`;
    // The oracle: what the same DECLARE answers on its own.
    const alone = await opened(e);
    let expected: string;
    try {
      await alone.client.query("BEGIN");
      expected = await codeOf(
        alone.client.query(`DECLARE c CURSOR FOR SUBSCRIBE (${sql}\n) WITH (PROGRESS)`),
      );
      // In the failed transaction everything but ROLLBACK is refused (25P02).
      expect(await codeOf(alone.client.query("FETCH 1 c"))).toBe("25P02");
      expect(await codeOf(alone.client.prepare("", "FETCH 0 c"))).toBe("25P02");
      expect(alone.client.txStatus).toBe("E");
    } finally {
      alone.close();
    }
    expect(expected).not.toBe("none");
    const s = await opened(e);
    try {
      const signal = new AbortController().signal;
      const snap = new MaterializeSnapshot(s.client, { kind: "query", sql });
      expect(await codeOf(snap.open({ typeInfo: false }, signal))).toBe(expected);
      expect(s.roundTrips()).toBe(1);
      expect(s.client.txStatus).toBe("E");
      await snap.abandon();
      expect(s.client.txStatus).toBe("I");
      expect((await s.client.query("SELECT 1 + 1")).rows).toEqual([["2"]]);
    } finally {
      s.close();
    }
  });
}
