// Export throughput through the Materialize path vs the PostgreSQL path, on the same data:
// `COPY t TO 'file:///…' WITH (FORMAT …)` through the proxy straight in front of PostgreSQL, and in
// front of the MaterializeWireDouble over the same PostgreSQL (test/support/mz-double.ts — a test
// double, NOT Materialize), alternating, medians and the median of the per-round ratios.
//
//   npx tsx bench/mz-double-export.ts [--rows 1000000] [--rounds 3] [--format csv,parquet]
//
// What the ratio measures: the proxy's SUBSCRIBE/FETCH path (FETCH round trips, the three leading
// columns, mz_diff) PLUS the double's own cost (PostgreSQL GROUP BY for consolidation, rows re-framed
// in JavaScript). It bounds the proxy's Materialize-path overhead from above; it says nothing about
// a real Materialize's speed. The file:// target keeps S3 out of the measurement.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import pg from "pg";
import { loadConfig } from "../src/config.js";
import { createCopyHook } from "../src/copy/hook.js";
import { createLogger } from "../src/log.js";
import { startProxy } from "../src/proxy/server.js";
import { MaterializeWireDouble } from "../test/support/mz-double.js";
import { startPostgres } from "../test/support/postgres.js";

const { values: argv } = parseArgs({
  options: {
    rows: { type: "string", default: "1000000" },
    rounds: { type: "string", default: "3" },
    format: { type: "string", default: "csv,parquet" },
  },
});
const ROWS = Number(argv.rows);
const ROUNDS = Number(argv.rounds);
const FORMATS = argv.format!.split(",");

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};

async function proxyFor(port: number, root: string) {
  const { config } = loadConfig(
    [
      "--listen",
      "127.0.0.1:0",
      "--upstream",
      `127.0.0.1:${port}`,
      "--upstream-tls",
      "disable",
      "--log-level",
      "silent",
      "--file-root",
      root,
    ],
    {},
  );
  const log = createLogger(config.logLevel);
  const p = await startProxy(config, log, await createCopyHook(config, log));
  return p;
}

const pgServer = await startPostgres();
const root = mkdtempSync(join(tmpdir(), "mz-bench-"));
const dbl = await MaterializeWireDouble.start({ pgPort: pgServer.port });
const viaPg = await proxyFor(pgServer.port, root);
const viaMz = await proxyFor(dbl.port, root);
try {
  const setup = new pg.Client({ port: pgServer.port, host: "127.0.0.1", user: "postgres" });
  await setup.connect();
  await setup.query(`CREATE TABLE t AS SELECT g AS id, g::int8 * 7 AS big, md5(g::text) AS txt,
    (g * 1.25)::numeric(12,2) AS amount, timestamptz '2024-01-01' + g * interval '1 second' AS at,
    g % 2 = 0 AS flag, g / 3.0::float8 AS dbl, date '2020-01-01' + g % 3000 AS day
    FROM generate_series(1, ${ROWS}) g`);
  await setup.query("VACUUM ANALYZE t");
  await setup.end();
  const clients = {
    postgres: new pg.Client({ port: viaPg.address.port, host: "127.0.0.1", user: "postgres" }),
    double: new pg.Client({ port: viaMz.address.port, host: "127.0.0.1", user: "postgres" }),
  };
  await clients.postgres.connect();
  await clients.double.connect();
  let n = 0;
  const run = async (c: pg.Client, format: string): Promise<number> => {
    const dir = `${root}/run${++n}`;
    const t0 = performance.now();
    const r = await c.query(`COPY t TO 'file://${dir}' WITH (FORMAT = '${format}')`);
    const ms = performance.now() - t0;
    if (r.rowCount !== ROWS) throw new Error(`exported ${r.rowCount} rows, expected ${ROWS}`);
    rmSync(dir, { recursive: true, force: true });
    return ms;
  };
  console.log(`${ROWS} rows, ${ROUNDS} rounds (alternating), file:// target`);
  for (const format of FORMATS) {
    await run(clients.postgres, format); // warm-up, untimed
    await run(clients.double, format);
    const a: number[] = [];
    const b: number[] = [];
    const ratios: number[] = [];
    for (let i = 0; i < ROUNDS; i++) {
      const first = i % 2 === 0;
      const x = first ? await run(clients.postgres, format) : 0;
      const y = await run(clients.double, format);
      const x2 = first ? x : await run(clients.postgres, format);
      a.push(x2);
      b.push(y);
      ratios.push(y / x2);
    }
    const ma = median(a);
    const mb = median(b);
    console.log(
      `${format.padEnd(8)} PostgreSQL path ${ma.toFixed(0)} ms (${Math.round(ROWS / (ma / 1000))} rows/s)  ` +
        `Materialize path via the double ${mb.toFixed(0)} ms (${Math.round(ROWS / (mb / 1000))} rows/s)  ` +
        `ratio double/PostgreSQL ${median(ratios).toFixed(2)}`,
    );
  }
  await clients.postgres.end();
  await clients.double.end();
} finally {
  await viaPg.shutdown(0);
  await viaMz.shutdown(0);
  await dbl.stop();
  await pgServer.stop();
  rmSync(root, { recursive: true, force: true });
}
