// Opening a Materialize snapshot takes one round trip (two when SUBSCRIBE refuses the query and the
// peek takes over), through the MaterializeWireDouble, which answers pipelined messages as
// Materialize's pgwire code does (rule R12a). The same scenarios run against a real Materialize
// in materialize-real.test.ts when MZ_URL is set.
import { afterAll, beforeAll, describe, inject } from "vitest";
import { MaterializeWireDouble, MZ_TYPES_SETUP, mzSearchPath } from "../support/mz-double.js";
import { materializeRoundTripScenarios } from "../support/mz-round-trips.js";
import { freshPgDatabase } from "../support/postgres.js";

const DB = "mz_round_trips";
const pgPort = inject("pgPort");
let dbl: MaterializeWireDouble;

beforeAll(async () => {
  const direct = await freshPgDatabase(pgPort, DB);
  for (const sql of MZ_TYPES_SETUP) await direct.query(sql);
  await direct.query(mzSearchPath(DB));
  await direct.query("CREATE TABLE rt (a int, b text)");
  await direct.query("INSERT INTO rt SELECT g, 'row ' || g FROM generate_series(1, 25) g");
  await direct.end();
  dbl = await MaterializeWireDouble.start({ pgPort, historyMs: 5_000 });
});

afterAll(async () => {
  await dbl?.stop();
});

describe("Materialize snapshot round trips (through the wire double)", () => {
  materializeRoundTripScenarios(() => ({
    port: dbl.port,
    host: "127.0.0.1",
    user: "postgres",
    database: DB,
    table: "rt",
    rows: 25,
  }));
});
