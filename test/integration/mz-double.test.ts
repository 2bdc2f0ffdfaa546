// The MaterializeWireDouble itself (test/support/mz-double.ts — a test double, not Materialize),
// checked against the rules it claims from Materialize's documentation, with a plain driver and
// raw protocol messages. If one of these fails, the double no longer says what Materialize says.
import pg from "pg";
import { serialize } from "pg-protocol";
import postgres from "postgres";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { waitUntil } from "../support/export-checks.js";
import { MaterializeWireDouble, MZ_TYPES_SETUP, MZ_VERSION, mzSearchPath } from "../support/mz-double.js";
import { freshPgDatabase } from "../support/postgres.js";
import { WireClient } from "../support/wire-client.js";

const DB = "mz_double_rules";
const pgPort = inject("pgPort");
let dbl: MaterializeWireDouble;
let c: pg.Client;

/** Values as sent, unparsed. */
const RAW = { getTypeParser: () => (v: string) => v } as unknown as pg.CustomTypesConfig;

beforeAll(async () => {
  const direct = await freshPgDatabase(pgPort, DB);
  for (const sql of MZ_TYPES_SETUP) await direct.query(sql);
  await direct.query(mzSearchPath(DB));
  await direct.query(
    "CREATE TABLE t (a int, u mz_catalog.uint4, l mz_catalog.int4_list, m mz_catalog.int4_map)",
  );
  await direct.query(
    `INSERT INTO t VALUES (1, 7, '{1,NULL}', '{"b":2,"a":1}'), (1, 7, '{1,NULL}', '{"b":2,"a":1}'), (2, 0, '{}', '{}')`,
  );
  await direct.end();
  dbl = await MaterializeWireDouble.start({ pgPort, historyMs: 5_000 });
  c = new pg.Client({ connectionString: dbl.url("postgres", DB) });
  await c.connect();
});

afterAll(async () => {
  await c?.end();
  await dbl?.stop();
});

function fields(body: Buffer): Array<Buffer | null> {
  const out: Array<Buffer | null> = [];
  let p = 2;
  for (let i = 0; i < body.readInt16BE(0); i++) {
    const len = body.readInt32BE(p);
    p += 4;
    out.push(len < 0 ? null : body.subarray(p, p + len));
    p += Math.max(len, 0);
  }
  return out;
}

async function fetchRows(sql: string) {
  return c.query({ text: sql, rowMode: "array", types: RAW });
}

describe("R1 startup and mz_version", () => {
  test("ParameterStatus mz_version and server_version 9.5.0; SELECT mz_version() agrees", async () => {
    const sql = postgres(dbl.url("postgres", DB), { max: 1 });
    try {
      await sql`select 1`;
      expect(sql.parameters.mz_version).toBe(MZ_VERSION);
      expect(sql.parameters.server_version).toBe("9.5.0");
    } finally {
      await sql.end();
    }
    expect((await c.query("SELECT mz_version()")).rows[0].mz_version).toBe(MZ_VERSION);
  });
});

describe("R2–R6 DECLARE … SUBSCRIBE and FETCH", () => {
  test("DECLARE outside a transaction block: 25P01", async () => {
    await expect(c.query("DECLARE x CURSOR FOR SUBSCRIBE t")).rejects.toMatchObject({
      code: "25P01",
      message: "DECLARE CURSOR can only be used in transaction blocks",
    });
  });

  test("WITH (PROGRESS): progress row at T first, consolidated rows at T, then progress past T", async () => {
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE (SELECT a, u, l, m FROM t) WITH (PROGRESS)");
      const r = await fetchRows("FETCH 100 c WITH (timeout = '0.3s')");
      expect(r.fields.map((f) => [f.name, f.dataTypeID])).toEqual([
        ["mz_timestamp", 1700],
        ["mz_progressed", 16],
        ["mz_diff", 20],
        ["a", 23],
        ["u", 16462],
        ["l", 16384],
        ["m", 16385],
      ]);
      const rows = r.rows as string[][];
      const t = rows[0]![0]!;
      expect(t).toBe(dbl.lastAsOf);
      expect(rows[0]!.slice(1)).toEqual(["t", null, null, null, null, null]);
      const data = rows.filter((x) => x[1] === "f");
      expect(data.every((x) => x[0] === t)).toBe(true);
      expect(data.map((x) => x.slice(2)).sort()).toEqual([
        ["1", "2", "0", "{}", "{}"],
        ["2", "1", "7", "{1,NULL}", "{a=>1,b=>2}"],
      ]);
      const after = rows.slice(1 + data.length);
      expect(after.length).toBeGreaterThanOrEqual(1);
      expect(BigInt(after[0]![0]!)).toBeGreaterThan(BigInt(t));
      expect(after[0]![1]).toBe("t");
      await c.query("CLOSE c");
    } finally {
      await c.query("ROLLBACK");
    }
  });

  test("without PROGRESS there is no mz_progressed column; FETCH with a timeout returns empty after it", async () => {
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE t WITH (SNAPSHOT = false)");
      const t0 = performance.now();
      const r = await fetchRows("FETCH 5 c WITH (timeout = '0.25s')");
      const ms = performance.now() - t0;
      expect(r.fields.map((f) => f.name)).toEqual(["mz_timestamp", "mz_diff", "a", "u", "l", "m"]);
      expect(r.rows).toEqual([]);
      expect(r.command).toBe("FETCH");
      expect(ms).toBeGreaterThanOrEqual(200);
    } finally {
      await c.query("ROLLBACK");
    }
  });

  test("FETCH without a count returns one row", async () => {
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE t WITH (PROGRESS)");
      expect((await fetchRows("FETCH c")).rows).toHaveLength(1);
    } finally {
      await c.query("ROLLBACK");
    }
  });
});

describe("R7 AS OF and UP TO", () => {
  test("AS OF T UP TO T+1: the snapshot, then the SUBSCRIBE ends by itself", async () => {
    const t = BigInt(Date.now());
    const r = await fetchRows(`SUBSCRIBE (SELECT a FROM t) AS OF ${t} UP TO ${t + 1n}`);
    expect(r.fields.map((f) => f.name)).toEqual(["mz_timestamp", "mz_diff", "a"]);
    expect((r.rows as string[][]).map((x) => [x[0], x[1], x[2]]).sort()).toEqual([
      [String(t), "1", "2"],
      [String(t), "2", "1"],
    ]);
  });

  test("AS OF = UP TO: zero rows; FETCH on the finished cursor returns at once", async () => {
    const t = BigInt(Date.now());
    await c.query("BEGIN");
    try {
      await c.query(`DECLARE c CURSOR FOR SUBSCRIBE t AS OF ${t} UP TO ${t}`);
      // A FETCH without a timeout on an unfinished subscribe never returns: this one must.
      expect((await fetchRows("FETCH ALL c")).rows).toEqual([]);
    } finally {
      await c.query("ROLLBACK");
    }
  });

  test("UP TO before AS OF, and AS OF before the retained history, are errors", async () => {
    const t = BigInt(Date.now());
    await expect(c.query(`SUBSCRIBE t AS OF ${t} UP TO ${t - 10n}`)).rejects.toMatchObject({ code: "XX000" });
    await expect(c.query(`SUBSCRIBE t AS OF ${t - 3_600_000n} UP TO ${t}`)).rejects.toMatchObject({
      message: expect.stringMatching(/^Timestamp \(\d+\) is not valid for all inputs/),
    });
  });
});

describe("R8–R10 types, catalog and pg_typeof", () => {
  test("SHOW COLUMNS names types as mz_columns does; pg_typeof as humanize_scalar_type does", async () => {
    const r = await c.query("SHOW COLUMNS FROM t");
    expect(r.rows.map((x) => [x.name, x.type])).toEqual([
      ["a", "integer"],
      ["u", "uint4"],
      ["l", "list"],
      ["m", "map"],
    ]);
    const ty = await c.query({
      text: "SELECT pg_typeof(l) AS l, pg_typeof(m) AS m, pg_typeof(u) AS u, pg_typeof(now()::timestamp) AS ts FROM t LIMIT 1",
      rowMode: "array",
    });
    expect(ty.fields.map((f) => f.dataTypeID)).toEqual([25, 25, 25, 25]);
    // src/pgrepr/src/types.rs Type::name: TIMESTAMP is `timestamp without time zone`.
    expect(ty.rows[0]).toEqual([
      "integer list",
      "map[text=>integer]",
      "uint4",
      "timestamp without time zone",
    ]);
  });

  test("R8a typmods: numeric is numeric(39,s), unconstrained numeric(39,39), arrays -1, mz_timestamp numeric(39,0)", async () => {
    const tm = (p: number, s: number) => ((p << 16) | s) + 4;
    const r = await c.query({
      text: "SELECT 1.5::numeric AS n, 1.5::numeric(10,2) AS n2, ARRAY[1.5::numeric(10,2)] AS na, 'x'::varchar(5) AS v",
      rowMode: "array",
    });
    expect(r.fields.map((f) => [f.name, f.dataTypeID, f.dataTypeModifier])).toEqual([
      ["n", 1700, tm(39, 39)],
      ["n2", 1700, tm(39, 2)],
      ["na", 1231, -1],
      ["v", 1043, 9],
    ]);
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE (SELECT a, a::numeric AS n FROM t) WITH (PROGRESS)");
      const f = await fetchRows("FETCH 1 c WITH (timeout = '0.3s')");
      expect(f.fields.map((x) => [x.name, x.dataTypeModifier])).toEqual([
        ["mz_timestamp", tm(39, 0)],
        ["mz_progressed", -1],
        ["mz_diff", -1],
        ["a", -1],
        ["n", tm(39, 39)],
      ]);
    } finally {
      await c.query("ROLLBACK");
    }
  });

  test("binary results: uint4 as 4 big-endian bytes; a binary list is refused at Bind (08P01)", async () => {
    const w = await WireClient.connect(dbl.port, { database: DB });
    try {
      w.send(serialize.query("BEGIN"));
      await w.untilReady(1);
      w.send(
        serialize.query("DECLARE c CURSOR FOR SUBSCRIBE (SELECT u, l FROM t WHERE a = 2) WITH (PROGRESS)"),
      );
      await w.untilReady(1);
      w.drain();
      const bind = (formats: number[]): Buffer => {
        const b = Buffer.alloc(2 + 2 + 2 + 2 + 2 * formats.length + 2);
        // portal "" \0, statement "" \0, 0 param formats, 0 params, n result formats
        let p = 0;
        b[p++] = 0;
        b[p++] = 0;
        b.writeInt16BE(0, p);
        p += 2;
        b.writeInt16BE(0, p);
        p += 2;
        b.writeInt16BE(formats.length, p);
        p += 2;
        for (const f of formats) {
          b.writeInt16BE(f, p);
          p += 2;
        }
        const out = Buffer.alloc(5 + p);
        out[0] = 0x42;
        out.writeInt32BE(4 + p, 1);
        b.copy(out, 5, 0, p);
        return out;
      };
      w.send(
        serialize.parse({ text: "FETCH 3 c WITH (timeout = '0.2s')" }),
        bind([0, 0, 0, 1, 0]),
        serialize.execute({}),
        serialize.sync(),
      );
      const ok = await w.untilReady(1);
      expect(ok.some((m) => m.type === "E")).toBe(false);
      // mz_timestamp, mz_progressed, mz_diff in text; u (column 4) in binary.
      const data = ok
        .filter((m) => m.type === "D")
        .map((m) => fields(m.body))
        .find((f) => f[1]?.toString() === "f");
      expect(data?.[3]).toEqual(Buffer.from([0, 0, 0, 0]));
      expect(data?.[4]?.toString()).toBe("{}");
      w.send(
        serialize.parse({ text: "FETCH 3 c WITH (timeout = '0.2s')" }),
        bind([0, 0, 0, 0, 1]),
        serialize.execute({}),
        serialize.sync(),
      );
      const bad = await w.untilReady(1);
      const err = bad.find((m) => m.type === "E");
      expect(err?.body.toString()).toContain("binary encoding of list types is not implemented");
      expect(err?.body.toString()).toContain("C08P01");
    } finally {
      await w.close();
    }
  });
});

describe("R11, R12 errors and cancel", () => {
  test("an error of the running SUBSCRIBE arrives on the FETCH as XX000; the transaction is failed", async () => {
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE (SELECT 1 / (a - 1) FROM t) WITH (PROGRESS)");
      await expect(c.query("FETCH 10 c WITH (timeout = '0.2s')")).rejects.toMatchObject({
        code: "XX000",
        message: "Evaluation error: division by zero",
      });
      await expect(c.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
    } finally {
      await c.query("ROLLBACK");
    }
    expect((await c.query("SELECT 1 AS ok")).rows[0].ok).toBe(1);
  });
});

describe("R4a no timestamp dependency, or closed inputs: AS OF 18446744073709551615, then the end", () => {
  test("a view over a constant: progress row, data, then FETCH returns 0 rows at once (fetch-tail-timestamp-zero.td)", async () => {
    await c.query("CREATE OR REPLACE VIEW v1 AS SELECT 123");
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c1 CURSOR FOR SUBSCRIBE v1 WITH (PROGRESS = TRUE)");
      expect((await fetchRows("FETCH 1 FROM c1 WITH (timeout = '60s')")).rows).toEqual([
        ["18446744073709551615", "t", null, null],
      ]);
      expect((await fetchRows("FETCH 1 FROM c1 WITH (timeout = '60s')")).rows).toEqual([
        ["18446744073709551615", "f", "1", "123"],
      ]);
      // The SUBSCRIBE has ended: no progress row ever follows; FETCH returns nothing, at once,
      // whether it waits for rows (no timeout) or has a long timeout.
      expect((await fetchRows("FETCH ALL c1")).rows).toEqual([]);
      expect((await fetchRows("FETCH ALL c1 WITH (timeout = '60s')")).rows).toEqual([]);
    } finally {
      await c.query("ROLLBACK");
    }
  });

  test("SUBSCRIBE of a view over VALUES returns its rows at 18446744073709551615 and ends (cursor.slt)", async () => {
    await c.query("CREATE OR REPLACE VIEW v2 AS VALUES ('a', 'b'), ('c', 'd')");
    const r = await fetchRows("SUBSCRIBE v2");
    expect((r.rows as string[][]).sort()).toEqual([
      ["18446744073709551615", "1", "a", "b"],
      ["18446744073709551615", "1", "c", "d"],
    ]);
  });

  test("a query over a table keeps a real timestamp", async () => {
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE (SELECT a FROM t) WITH (PROGRESS)");
      const first = (await fetchRows("FETCH 1 c")).rows[0] as string[];
      expect(first[0]).not.toBe("18446744073709551615");
      expect(BigInt(first[0]!)).toBeLessThanOrEqual(BigInt(Date.now()));
    } finally {
      await c.query("ROLLBACK");
    }
  });
});

describe("R14 what a maintained SUBSCRIBE cannot evaluate", () => {
  test("now() and current_user: DECLARE succeeds, the first FETCH fails with 0A000, the transaction is failed", async () => {
    for (const [expr, name] of [
      ["now() > '2000-01-01'::timestamptz", "current_timestamp"],
      ["current_user <> ''", "current_user"],
    ]) {
      await c.query("BEGIN");
      try {
        await c.query(`DECLARE c CURSOR FOR SUBSCRIBE (SELECT a FROM t WHERE ${expr}) WITH (PROGRESS)`);
        await expect(c.query("FETCH 1 c")).rejects.toMatchObject({
          code: "0A000",
          message: `cannot materialize call to ${name}`,
        });
        await expect(c.query("SELECT 1")).rejects.toMatchObject({ code: "25P02" });
      } finally {
        await c.query("ROLLBACK");
      }
    }
  });

  test("the same query through a plain cursor (a one-shot read) is evaluated", async () => {
    await c.query("BEGIN");
    try {
      await c.query("DECLARE p CURSOR FOR SELECT a FROM t WHERE now() > '2000-01-01'::timestamptz");
      expect((await fetchRows("FETCH ALL p")).rows).toHaveLength(3);
    } finally {
      await c.query("ROLLBACK");
    }
  });
});

describe("R15 a SUBSCRIBE is its transaction's only read", () => {
  test("after its first FETCH another read fails with 25000; SET is still allowed", async () => {
    await c.query("BEGIN");
    try {
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE t WITH (PROGRESS)");
      await fetchRows("FETCH 1 c");
      await c.query("SET LOCAL idle_in_transaction_session_timeout = 0");
      await expect(c.query("SELECT 1")).rejects.toMatchObject({
        code: "25000",
        message: "SUBSCRIBE in transactions must be the only read statement",
      });
    } finally {
      await c.query("ROLLBACK");
    }
  });

  test("a SUBSCRIBE after a SELECT: 25006 at its first FETCH", async () => {
    await c.query("BEGIN");
    try {
      await c.query("SELECT 1");
      await c.query("DECLARE c CURSOR FOR SUBSCRIBE t");
      await expect(c.query("FETCH 1 c")).rejects.toMatchObject({
        code: "25006",
        message: "transaction in read-only mode",
      });
    } finally {
      await c.query("ROLLBACK");
    }
  });
});

describe("R16 idle_in_transaction_session_timeout", () => {
  const session = async (): Promise<pg.Client> => {
    const k = new pg.Client({ connectionString: dbl.url("postgres", DB) });
    k.on("error", () => {});
    await k.connect();
    return k;
  };

  test("default 2 min; a session idle in a transaction past it gets FATAL 25P03 on its next message", async () => {
    const k = await session();
    try {
      expect((await k.query("SHOW idle_in_transaction_session_timeout")).rows[0]).toEqual({
        idle_in_transaction_session_timeout: "2 min",
      });
      await k.query("SET idle_in_transaction_session_timeout = '200ms'");
      const from = dbl.events.length;
      await k.query("BEGIN");
      await k.query("SELECT 1");
      await waitUntil("the timeout", () =>
        dbl.events.slice(from).includes("idle-in-transaction timeout") ? true : null,
      );
      await expect(k.query("SELECT 2")).rejects.toMatchObject({
        code: "25P03",
        message: "terminating connection due to idle-in-transaction timeout",
        severity: "FATAL",
      });
    } finally {
      await k.end().catch(() => {});
    }
  });

  test("SET LOCAL … = 0 turns it off for that transaction only", async () => {
    const k = await session();
    try {
      await k.query("SET idle_in_transaction_session_timeout = 100");
      await k.query("BEGIN");
      await k.query("SET LOCAL idle_in_transaction_session_timeout = 0");
      expect((await k.query("SHOW idle_in_transaction_session_timeout")).rows[0]).toEqual({
        idle_in_transaction_session_timeout: "0 s",
      });
      await k.query("SELECT 1");
      await waitUntil("idle in the transaction well past 100 ms", () =>
        dbl.longestIdleInTransactionMs() > 500 ? true : null,
      );
      expect((await k.query("SELECT 2 AS ok")).rows[0].ok).toBe(2);
      await k.query("COMMIT");
      expect((await k.query("SHOW idle_in_transaction_session_timeout")).rows[0]).toEqual({
        idle_in_transaction_session_timeout: "100 ms",
      });
    } finally {
      await k.end().catch(() => {});
    }
  });
});
