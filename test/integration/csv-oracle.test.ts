// The CSV encoder against its oracle: PostgreSQL's own COPY (q) TO STDOUT (FORMAT csv, ...) for the
// same query and options, byte for byte. The encoder is fed the text-format DataRows the same
// server returns for q over a bare socket, exactly what the proxy will receive.
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { gunzipSync } from "node:zlib";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { type CsvOptions, createCsvEncoder } from "../../src/encoders/csv-encoder.js";
import type { FileSink } from "../../src/encoders/types.js";
import { AWKWARD_SETUP as SETUP } from "../support/awkward-table.js";
import { RawPg } from "../support/raw-pg.js";

const DB = "csv_oracle";
let db: RawPg;
let dir: string;

beforeAll(async () => {
  const port = inject("pgPort");
  db = await RawPg.freshDatabase(port, DB);
  for (const sql of SETUP) await db.query(sql);
  dir = mkdtempSync(join(tmpdir(), "csv-oracle-"));
});

afterAll(async () => {
  await db?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

interface Combo {
  name: string;
  /** Options in PostgreSQL's COPY syntax (after FORMAT csv). */
  copy: string;
  opts: Partial<Omit<CsvOptions, "columnNames">>;
}

const b = (s: string): number => s.charCodeAt(0);
const COMBOS: Combo[] = [
  { name: "defaults", copy: "", opts: {} },
  { name: "header", copy: "HEADER", opts: { header: true } },
  {
    name: "pipe, NULL 'NULL'",
    copy: "HEADER, DELIMITER '|', NULL 'NULL'",
    opts: { header: true, delimiter: b("|"), null: "NULL" },
  },
  {
    name: "semicolon, single quote, backslash escape",
    copy: "DELIMITER ';', QUOTE '''', ESCAPE '\\'",
    opts: { delimiter: b(";"), quote: b("'"), escape: b("\\") },
  },
  {
    name: "tab, \\N, backslash escape",
    copy: "HEADER, DELIMITER E'\\t', NULL '\\N', ESCAPE '\\'",
    opts: { header: true, delimiter: b("\t"), null: "\\N", escape: b("\\") },
  },
  {
    name: "hash, percent quote, bang escape, <null>",
    copy: "DELIMITER '#', QUOTE '%', ESCAPE '!', NULL '<null>'",
    opts: { delimiter: b("#"), quote: b("%"), escape: b("!"), null: "<null>" },
  },
  { name: "NULL '∅' (multi-byte)", copy: "HEADER, NULL '∅'", opts: { header: true, null: "∅" } },
  {
    name: "QUOTE = ESCAPE = backslash",
    copy: "QUOTE '\\', NULL 'x'",
    opts: { quote: b("\\"), escape: b("\\"), null: "x" },
  },
];

function csvOptions(c: Combo, columnNames: string[], extra: Partial<CsvOptions> = {}): CsvOptions {
  const quote = c.opts.quote ?? b('"');
  return {
    header: false,
    delimiter: b(","),
    null: "",
    compression: "none",
    maxFileSize: 256 << 20,
    ...c.opts,
    quote,
    escape: c.opts.escape ?? quote,
    columnNames,
    ...extra,
  };
}

class MemorySink implements FileSink {
  files: Array<{ chunks: Buffer[]; rows: number }> = [];
  openFile(index: number): void {
    expect(index).toBe(this.files.length);
    this.files.push({ chunks: [], rows: -1 });
  }
  write(chunk: Uint8Array): void {
    this.files.at(-1)!.chunks.push(Buffer.from(chunk));
  }
  closeFile(rows: number): void {
    this.files.at(-1)!.rows = rows;
  }
  get buffers(): Buffer[] {
    return this.files.map((f) => Buffer.concat(f.chunks));
  }
}

/**
 * Encodes q's rows. `runs`: as the encoder thread does, whole DataRow messages in runs of
 * RUN_ROWS through writeRows, with the columns' type OIDs (so the word-at-a-time paths and the
 * unscanned typed columns are used for all but a run's last values); otherwise row by row.
 */
async function encodeQuery(
  q: string,
  c: Combo,
  extra: Partial<CsvOptions> = {},
  runs = false,
): Promise<MemorySink> {
  const res = await db.query(q);
  const sink = new MemorySink();
  const enc = createCsvEncoder(
    csvOptions(
      c,
      res.fields.map((f) => f.name),
      { ...(runs ? { columnTypes: res.fields.map((f) => f.typeOid) } : {}), ...extra },
    ),
    sink,
  );
  expect(enc.resultFormats).toEqual(res.fields.map(() => 0));
  if (runs) {
    for (let i = 0; i < res.rows.length; i += RUN_ROWS) {
      const buf = Buffer.concat(res.rows.slice(i, i + RUN_ROWS).flatMap((body) => [messageHead(body), body]));
      enc.writeRows(buf, 0, buf.length);
      if (enc.wantsFlush) await enc.flush();
    }
  } else {
    for (const row of res.rows) {
      enc.writeRow(row, 2, row.readInt16BE(0));
      if (enc.wantsFlush) await enc.flush();
    }
  }
  await enc.finish();
  enc.dispose();
  expect(sink.files.reduce((s, f) => s + f.rows, 0)).toBe(res.rows.length);
  return sink;
}

const RUN_ROWS = 100;

/** 'D' and the int32 length of a DataRow message whose body (field count onwards) is `body`. */
function messageHead(body: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h[0] = 0x44;
  h.writeInt32BE(4 + body.length, 1);
  return h;
}

async function oracle(q: string, c: Combo): Promise<Buffer> {
  const res = await db.query(`COPY (${q}) TO STDOUT (FORMAT csv${c.copy ? `, ${c.copy}` : ""})`);
  return res.copyData;
}

/** Buffer equality with a readable failure: the first differing offset and its surroundings. */
function expectSameBytes(actual: Buffer, expected: Buffer): void {
  if (actual.equals(expected)) return;
  let i = 0;
  while (i < actual.length && i < expected.length && actual[i] === expected[i]) i++;
  const around = (x: Buffer): string =>
    JSON.stringify(x.subarray(Math.max(0, i - 60), i + 60).toString("latin1"));
  expect.fail(
    `bytes differ at offset ${i} (lengths ${actual.length} vs ${expected.length}):\n encoder ${around(actual)}\n oracle  ${around(expected)}`,
  );
}

const AWKWARD = "SELECT * FROM awkward ORDER BY id";

describe("CSV encoder = PostgreSQL COPY ... TO STDOUT (FORMAT csv)", () => {
  for (const c of COMBOS) {
    test(`all types, awkward values: ${c.name}`, async () => {
      const sink = await encodeQuery(AWKWARD, c);
      expect(sink.files).toHaveLength(1);
      expectSameBytes(sink.buffers[0]!, await oracle(AWKWARD, c));
    });
  }

  for (const c of COMBOS) {
    test(`all types, awkward values, in runs with column types: ${c.name}`, async () => {
      const sink = await encodeQuery(AWKWARD, c, {}, true);
      expectSameBytes(sink.buffers[0]!, await oracle(AWKWARD, c));
    });
  }

  test("single column: `\\.` is quoted, also as the header name", async () => {
    for (const q of [
      "SELECT t FROM awkward ORDER BY id",
      'SELECT vc AS "\\." FROM awkward ORDER BY id',
      "SELECT ch FROM awkward ORDER BY id",
    ]) {
      for (const c of [COMBOS[0]!, COMBOS[1]!, COMBOS[4]!]) {
        const sink = await encodeQuery(q, c);
        expectSameBytes(sink.buffers[0]!, await oracle(q, c));
      }
    }
  });

  test("header names that need quoting (NULL string, delimiter, quote, newline, unicode)", async () => {
    const q = `SELECT id AS "NULL", t AS "a,b", vc AS "q""uote", ch AS "new
line", n AS "∅", f4 AS "|", f8 AS "x x" FROM awkward ORDER BY id`;
    for (const c of COMBOS.filter((c) => c.opts.header)) {
      const sink = await encodeQuery(q, c);
      expectSameBytes(sink.buffers[0]!, await oracle(q, c));
    }
  });

  test("empty result and zero-column rows", async () => {
    for (const q of [
      "SELECT * FROM awkward WHERE false",
      "SELECT FROM awkward",
      "SELECT FROM awkward WHERE false",
    ]) {
      for (const c of [COMBOS[0]!, COMBOS[1]!]) {
        const sink = await encodeQuery(q, c);
        expect(sink.files).toHaveLength(1);
        expectSameBytes(sink.buffers[0]!, await oracle(q, c));
      }
    }
  });

  test("many rows", async () => {
    const q = "SELECT * FROM many ORDER BY id";
    for (const c of [COMBOS[1]!, COMBOS[3]!]) {
      const sink = await encodeQuery(q, c);
      expectSameBytes(sink.buffers[0]!, await oracle(q, c));
    }
  });
});

describe("typed columns copied without a scan", () => {
  // Options whose delimiter, quote or NULL string are bytes or values that typed columns print,
  // so the type table must fall back to scanning (or the NULL check must still quote).
  const TYPED_COMBOS: Combo[] = [
    {
      name: "delimiter '-', NULL '0'",
      copy: "DELIMITER '-', NULL '0'",
      opts: { delimiter: b("-"), null: "0" },
    },
    {
      name: "delimiter '.', NULL 't'",
      copy: "DELIMITER '.', NULL 't'",
      opts: { delimiter: b("."), null: "t" },
    },
    {
      name: "delimiter ':', quote 'e'",
      copy: "DELIMITER ':', QUOTE 'e'",
      opts: { delimiter: b(":"), quote: b("e") },
    },
    {
      name: "delimiter ' ', NULL 'NaN'",
      copy: "DELIMITER ' ', NULL 'NaN'",
      opts: { delimiter: b(" "), null: "NaN" },
    },
    {
      name: "delimiter 'a', quote 'f'",
      copy: "DELIMITER 'a', QUOTE 'f'",
      opts: { delimiter: b("a"), quote: b("f") },
    },
    { name: "delimiter '/'", copy: "DELIMITER '/'", opts: { delimiter: b("/") } },
    {
      name: "delimiter '|', quote '@'",
      copy: "DELIMITER '|', QUOTE '@'",
      opts: { delimiter: b("|"), quote: b("@") },
    },
    {
      name: "delimiter '1', quote '+'",
      copy: "DELIMITER '1', QUOTE '+'",
      opts: { delimiter: b("1"), quote: b("+") },
    },
    { name: "delimiter 'D' (the message type byte)", copy: "DELIMITER 'D'", opts: { delimiter: b("D") } },
  ];
  const SETTINGS = [
    "SET DateStyle = 'ISO, MDY'; SET IntervalStyle = 'postgres'; SET TimeZone = 'UTC'",
    "SET DateStyle = 'SQL, DMY'; SET IntervalStyle = 'postgres_verbose'; SET TimeZone = 'America/New_York'",
    "SET DateStyle = 'German'; SET IntervalStyle = 'sql_standard'; SET TimeZone = 'Asia/Kolkata'",
    "SET DateStyle = 'Postgres, YMD'; SET IntervalStyle = 'iso_8601'; SET TimeZone = '<a,b>+5'",
  ];
  const TYPED = "SELECT *, id::oid AS o, tm::timetz AS ttz FROM awkward ORDER BY id";

  afterAll(async () => {
    await db.query("RESET DateStyle; RESET IntervalStyle; RESET TimeZone");
  });

  for (const settings of SETTINGS) {
    test(`every option combination, ${settings}`, async () => {
      await db.query(settings);
      if (settings.includes("<a,b>")) {
        // This time zone's abbreviation holds the delimiter: timestamptz must stay scanned.
        const tstz = await oracle("SELECT tstz FROM awkward WHERE id = 5", COMBOS[0]!);
        expect(tstz.toString()).toContain('"Tue Feb 29 13:29:59.999999 2000 A,B"');
      }
      for (const c of [...COMBOS, ...TYPED_COMBOS]) {
        const sink = await encodeQuery(TYPED, c, {}, true);
        expectSameBytes(sink.buffers[0]!, await oracle(TYPED, c));
      }
    });
  }

  test("many rows, in runs", async () => {
    const q =
      "SELECT *, id::int8 * 2654435761 AS big, id % 3 = 0 AS flag, id / 7.0::float8 AS score FROM many ORDER BY id";
    for (const c of [COMBOS[1]!, COMBOS[3]!, TYPED_COMBOS[1]!]) {
      const sink = await encodeQuery(q, c, {}, true);
      expectSameBytes(sink.buffers[0]!, await oracle(q, c));
    }
  });
});

describe("split files", () => {
  const LIMIT = 64 * 1024;
  const QUERIES = [AWKWARD, "SELECT * FROM many ORDER BY id"];

  test("without HEADER the files concatenate to the oracle", async () => {
    for (const q of QUERIES) {
      const sink = await encodeQuery(q, COMBOS[3]!, { maxFileSize: LIMIT });
      expect(sink.files.length).toBeGreaterThan(q === AWKWARD ? 2 : 10);
      sink.buffers.forEach((f, i) => {
        if (f.length > LIMIT) expect(sink.files[i]!.rows).toBe(1);
      });
      expectSameBytes(Buffer.concat(sink.buffers), await oracle(q, COMBOS[3]!));
    }
  });

  test("with HEADER every file starts with the header line", async () => {
    for (const q of QUERIES) {
      const c = COMBOS[2]!;
      const expected = await oracle(q, c);
      const headerLine = expected.subarray(0, expected.indexOf(0x0a) + 1);
      const sink = await encodeQuery(q, c, { maxFileSize: LIMIT });
      expect(sink.files.length).toBeGreaterThan(2);
      const bodies = sink.buffers.map((f, i) => {
        expect(f.subarray(0, headerLine.length).equals(headerLine)).toBe(true);
        if (f.length > LIMIT) expect(sink.files[i]!.rows).toBe(1);
        return f.subarray(headerLine.length);
      });
      expectSameBytes(Buffer.concat([headerLine, ...bodies]), expected);
    }
  });
});

describe("gzip", () => {
  test("split .csv.gz files: within the limit, and gunzip, python's gzip and DuckDB read them whole", async () => {
    const q = "SELECT * FROM many ORDER BY id";
    const c = COMBOS[1]!;
    const expected = await oracle(q, c);
    const headerLine = expected.subarray(0, expected.indexOf(0x0a) + 1);
    const limit = 256 * 1024;
    const split = await encodeQuery(q, c, { compression: "gzip", maxFileSize: limit });
    const whole = await encodeQuery(q, c, { compression: "gzip" });
    expect(split.files.length).toBeGreaterThan(2);
    expect(whole.files).toHaveLength(1);
    // One file of several deflate blocks, and several files that each end in a run of small blocks.
    expect(gunzipSync(whole.buffers[0]!).length).toBeGreaterThan(2 << 20);

    const paths: string[] = [];
    const bodies: Buffer[] = [];
    for (const [i, gz] of split.buffers.entries()) {
      expect(gz.length).toBeLessThanOrEqual(limit);
      const path = join(dir, `split-${i}.csv.gz`);
      writeFileSync(path, gz);
      paths.push(path);
      const plain = gunzipSync(gz);
      expect(plain.subarray(0, headerLine.length).equals(headerLine)).toBe(true);
      bodies.push(plain.subarray(headerLine.length));
      const viaPython = execFileSync("python3", [
        "-c",
        "import gzip, sys; sys.stdout.buffer.write(gzip.open(sys.argv[1]).read())",
        path,
      ]);
      expect(viaPython.equals(plain)).toBe(true);
    }
    expectSameBytes(Buffer.concat([headerLine, ...bodies]), expected);
    const wholePath = join(dir, "whole.csv.gz");
    writeFileSync(wholePath, whole.buffers[0]!);
    expectSameBytes(gunzipSync(whole.buffers[0]!), expected);
    expect(execFileSync("gzip", ["-t", wholePath, ...paths]).length).toBe(0);

    const duck = await DuckDBInstance.create(":memory:");
    const conn = await duck.connect();
    try {
      for (const files of [[wholePath], paths]) {
        const list = files.map((p) => `'${p}'`).join(", ");
        const r = await conn.runAndReadAll(
          `SELECT count(*)::int AS n, sum(id)::bigint AS s, count(t)::int AS nt, max(h) AS mh
           FROM read_csv([${list}], header = true, compression = 'gzip')`,
        );
        expect(r.getRowObjectsJS()).toEqual([
          { n: 30000, s: 450015000n, nt: 30000 - 4285, mh: expect.any(String) },
        ]);
      }
    } finally {
      conn.closeSync();
      duck.closeSync();
    }
  });

  test("awkward values round-trip through gzip, oversized rows included", async () => {
    const c = COMBOS[4]!;
    const expected = await oracle(AWKWARD, c);
    const headerLine = expected.subarray(0, expected.indexOf(0x0a) + 1);
    const sink = await encodeQuery(AWKWARD, c, { compression: "gzip", maxFileSize: 16 * 1024 });
    const bodies = sink.buffers.map((gz, i) => {
      if (gz.length > 16 * 1024) expect(sink.files[i]!.rows).toBe(1);
      return gunzipSync(gz).subarray(headerLine.length);
    });
    expectSameBytes(Buffer.concat([headerLine, ...bodies]), expected);
  });
});
