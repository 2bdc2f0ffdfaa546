import { beforeAll, describe, expect, test } from "vitest";
import type { CopyOptions } from "../../src/copy/options.js";
import { initParser, splitTokens, tokenize } from "../../src/copy/sql-tokens.js";
import { type CopySource, type CopyTarget, parseCopyTo } from "../../src/copy/statement.js";
import { assertTargetUrl } from "../../src/copy/storage/target-url.js";
import { PgError } from "../../src/errors.js";

beforeAll(async () => {
  await initParser();
});

function thrown(fn: () => unknown): PgError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PgError);
    return err as PgError;
  }
  throw new Error("expected a PgError");
}

describe("not ours: forwarded untouched", () => {
  test.each([
    "copy t to stdout",
    "COPY t TO STDOUT WITH (FORMAT csv)",
    "COPY (select 1) TO STDOUT",
    "COPY t TO STDIN",
    "COPY t FROM 's3://x'",
    "COPY t FROM STDIN",
    "COPY t (a) FROM 's3://b/p' (FORMAT csv)",
    "COPY t TO '/tmp/f'",
    "COPY t TO '/tmp/f' (FORMAT csv, HEADER)",
    "COPY t TO 'relative.csv'",
    "COPY t TO ''",
    "COPY t TO E'/tmp/x\\n'",
    "COPY t TO $$/tmp/f$$",
    "COPY t TO PROGRAM 'gzip > /tmp/x.gz'",
    "COPY (select 1) TO PROGRAM 'cat'",
    "COPY BINARY t TO 's3://b/p'",
    "COPY 123 TO 's3://b/p'",
    "COPY t TO",
    "COPY",
    "COPYX t TO 's3://b/p'",
    "select 1",
    "",
    "   -- only a comment",
    // The scanner refuses these; the upstream answers with its own syntax error.
    "COPY t TO 'unterminated",
    "COPY (select 'x) TO 's3://b/p' (FORMAT csv)",
    "COPY t TO 's3://b/p' (FORMAT csv, MAX FILE SIZE 100MB)",
  ])("%j", (sql) => {
    expect(parseCopyTo(sql)).toBeNull();
  });
});

const CSV_DEFAULTS: CopyOptions = {
  format: "csv",
  maxFileSize: 256 * 1024 * 1024,
  header: false,
  delimiter: ",",
  quote: '"',
  escape: '"',
  null: "",
  compression: "none",
};

describe("ours", () => {
  const cases: [string, { source?: CopySource; target?: CopyTarget; options?: Partial<CopyOptions> }][] = [
    [
      "COPY (select 1) TO 's3://b/p' (FORMAT csv)",
      {
        source: { kind: "query", sql: "select 1" },
        target: { kind: "literal", value: "s3://b/p" },
        options: CSV_DEFAULTS,
      },
    ],
    [
      "copy t to 's3://b/p' with (format 'csv')",
      { source: { kind: "relation", name: "t" }, target: { kind: "literal", value: "s3://b/p" } },
    ],
    [
      "COPY t TO 's3://b/p' WITH (FORMAT = 'csv', MAX FILE SIZE = '100MB', AWS CONNECTION = my_conn, HEADER = true)",
      {
        options: {
          ...CSV_DEFAULTS,
          maxFileSize: 100 * 1024 * 1024,
          awsConnection: "my_conn",
          header: true,
        },
      },
    ],
    // Materialize's COPY TO ignores CSV options with Parquet, and FILES / PATTERN (dml.rs).
    [
      "COPY t TO 's3://b/p' WITH (FORMAT = 'parquet', HEADER = true, DELIMITER = ';', FILES = ['a.csv', 'b.csv'], PATTERN = '*.csv')",
      {
        options: {
          ...CSV_DEFAULTS,
          format: "parquet",
          compression: "snappy",
          ignored: ["HEADER", "DELIMITER", "FILES", "PATTERN"],
        },
      },
    ],
    [
      "COPY t TO 's3://b/p' (FORMAT csv, FILES ('a.csv'))",
      { options: { ...CSV_DEFAULTS, ignored: ["FILES"] } },
    ],
    // PostgreSQL's own spelling, with HEADER given no value.
    [
      "COPY t TO 's3://b/p' (FORMAT csv, HEADER, DELIMITER ';')",
      { options: { ...CSV_DEFAULTS, header: true, delimiter: ";" } },
    ],
    ["COPY t TO 's3://b/p' (FORMAT csv, HEADER true)", { options: { ...CSV_DEFAULTS, header: true } }],
    // WITH is optional; so is the `=`.
    [
      "COPY t TO 's3://b/p' (FORMAT parquet, MAX FILE SIZE 33554432, AWS CONNECTION conn)",
      {
        options: {
          ...CSV_DEFAULTS,
          format: "parquet",
          compression: "snappy",
          maxFileSize: 32 * 1024 * 1024,
          awsConnection: "conn",
        },
      },
    ],
    // Materialize's own test suite quotes the size as an identifier.
    [
      "COPY t TO 's3://b/p' WITH (AWS CONNECTION = aws_conn, MAX FILE SIZE = \"100MB\", FORMAT = 'csv')",
      { options: { ...CSV_DEFAULTS, maxFileSize: 100 * 1024 * 1024, awsConnection: "aws_conn" } },
    ],
    // Unquoted identifiers fold to lower case, quoted ones keep their spelling.
    [
      "COPY t TO 's3://b/p' (FORMAT CSV, AWS CONNECTION = \"My Conn\")",
      { options: { awsConnection: "My Conn" } },
    ],
    [
      "COPY t TO 's3://b/p' (FORMAT CSV, AWS CONNECTION = My_Conn)",
      { options: { awsConnection: "my_conn" } },
    ],
    [
      "COPY t TO 's3://b/p' (FORMAT CSV, AWS CONNECTION = mz.public.conn)",
      { options: { awsConnection: "mz.public.conn" } },
    ],
    [
      "/* leading */ -- comment\n  COPY t TO 's3://b/p' -- between\n (FORMAT csv) -- trailing",
      { source: { kind: "relation", name: "t" }, target: { kind: "literal", value: "s3://b/p" } },
    ],
    ["COPY t TO 's3://b/p' (FORMAT csv);", { source: { kind: "relation", name: "t" } }],
    ["COPY t TO 's3://b/p' (FORMAT csv) ; ; -- nothing else", { source: { kind: "relation", name: "t" } }],
    [
      'COPY "My Schema"."Ta""ble" TO \'s3://b/p\' (FORMAT csv)',
      { source: { kind: "relation", name: '"My Schema"."Ta""ble"' } },
    ],
    [
      "COPY mz.public.my_view TO 's3://b/p' (FORMAT csv)",
      { source: { kind: "relation", name: "mz.public.my_view" } },
    ],
    ["COPY public . t TO 's3://b/p' (FORMAT csv)", { source: { kind: "relation", name: "public.t" } }],
    ["COPY text TO 's3://b/p' (FORMAT csv)", { source: { kind: "relation", name: "text" } }],
    ["COPY s.select TO 's3://b/p' (FORMAT csv)", { source: { kind: "relation", name: "s.select" } }],
    ["COPY \"to\" TO 's3://b/p' (FORMAT csv)", { source: { kind: "relation", name: '"to"' } }],
    // The query keeps its own text: the word TO, parentheses, strings and dollar quotes with `)`.
    [
      "COPY (SELECT a AS \"to\", ')' AS p, $$)$$ AS d, $x$ ) TO 's3://z' $x$ FROM t WHERE f(a) IN (1, 2)) TO 's3://b/p' (FORMAT csv)",
      {
        source: {
          kind: "query",
          sql: "SELECT a AS \"to\", ')' AS p, $$)$$ AS d, $x$ ) TO 's3://z' $x$ FROM t WHERE f(a) IN (1, 2)",
        },
        target: { kind: "literal", value: "s3://b/p" },
      },
    ],
    // Comments just inside the parentheses are not part of the query text.
    [
      "COPY ( -- c\n select 1 -- d\n) TO 's3://b/p' (FORMAT csv)",
      { source: { kind: "query", sql: "select 1" } },
    ],
    [
      "COPY (WITH x AS (SELECT 1 AS a ORDER BY 1) SELECT a, row_number() OVER (ORDER BY a) FROM x) TO 's3://b/p' (FORMAT csv)",
      {
        source: {
          kind: "query",
          sql: "WITH x AS (SELECT 1 AS a ORDER BY 1) SELECT a, row_number() OVER (ORDER BY a) FROM x",
        },
      },
    ],
    [
      "COPY ((select 1 order by 1)) TO 's3://b/p' (FORMAT csv)",
      { source: { kind: "query", sql: "(select 1 order by 1)" } },
    ],
    [
      "COPY (VALUES (1), (2)) TO 's3://b/p' (FORMAT csv)",
      { source: { kind: "query", sql: "VALUES (1), (2)" } },
    ],
    ["COPY (TABLE t) TO 's3://b/p' (FORMAT csv)", { source: { kind: "query", sql: "TABLE t" } }],
    [
      "COPY (select 'é🎉') TO 's3://b/é🎉' (FORMAT csv)",
      { target: { kind: "literal", value: "s3://b/é🎉" } },
    ],
    // Literal spellings are decoded by the real parser.
    ["COPY t TO E's3://b/\\x41' (FORMAT csv)", { target: { kind: "literal", value: "s3://b/A" } }],
    ["COPY t TO 's3://b/it''s' (FORMAT csv)", { target: { kind: "literal", value: "s3://b/it's" } }],
    ["COPY t TO $$s3://b/p$$ (FORMAT csv)", { target: { kind: "literal", value: "s3://b/p" } }],
    ["COPY t TO 's3://b/'\n'p' (FORMAT csv)", { target: { kind: "literal", value: "s3://b/p" } }],
    [
      "COPY t TO U&'s3://b/!0070' UESCAPE '!' (FORMAT csv)",
      { target: { kind: "literal", value: "s3://b/p" } },
    ],
    ["COPY t TO 'file:///tmp/out' (FORMAT csv)", { target: { kind: "literal", value: "file:///tmp/out" } }],
    // Expression targets, with and without WITH before the options.
    [
      "COPY t TO 's3://b/' || to_char(now(), 'YYYY-MM-DD') WITH (FORMAT csv)",
      { target: { kind: "expression", sql: "'s3://b/' || to_char(now(), 'YYYY-MM-DD')", params: 0 } },
    ],
    [
      "COPY t TO 's3://b/' || to_char(now(), 'YYYY-MM-DD') (FORMAT csv)",
      { target: { kind: "expression", sql: "'s3://b/' || to_char(now(), 'YYYY-MM-DD')", params: 0 } },
    ],
    [
      "COPY t TO ('s3://b/' || ('x' || upper(lower('y')))) (FORMAT csv)",
      { target: { kind: "expression", sql: "('s3://b/' || ('x' || upper(lower('y'))))", params: 0 } },
    ],
    // `text (` could open a type modifier or a call: the parser decides where the options start.
    [
      "COPY t TO 's3://b/p'::text (FORMAT csv)",
      { target: { kind: "expression", sql: "'s3://b/p'::text", params: 0 } },
    ],
    [
      "COPY t TO 's3://b/p'::varchar(20) (FORMAT csv)",
      { target: { kind: "expression", sql: "'s3://b/p'::varchar(20)", params: 0 } },
    ],
    [
      "COPY t TO upper('s3://b/p') (FORMAT csv)",
      { target: { kind: "expression", sql: "upper('s3://b/p')", params: 0 } },
    ],
    ["COPY t TO my_setting (FORMAT csv)", { target: { kind: "expression", sql: "my_setting", params: 0 } }],
    [
      "COPY t TO concat('s3://', 'b/p') (FORMAT csv)",
      { target: { kind: "expression", sql: "concat('s3://', 'b/p')", params: 0 } },
    ],
    [
      "COPY t TO 's3://b/' || -- a comment\n 'p' (FORMAT csv)",
      { target: { kind: "expression", sql: "'s3://b/' || -- a comment\n 'p'", params: 0 } },
    ],
    ["COPY t TO NULL (FORMAT csv)", { target: { kind: "expression", sql: "NULL", params: 0 } }],
    [
      "COPY t TO 's3://b/' || $2 || $1 (FORMAT csv)",
      { target: { kind: "expression", sql: "'s3://b/' || $2 || $1", params: 2 } },
    ],
    [
      "COPY t TO current_setting('x.prefix') (FORMAT csv)",
      { target: { kind: "expression", sql: "current_setting('x.prefix')", params: 0 } },
    ],
  ];
  test.each(cases)("%j", (sql, expected) => {
    const got = parseCopyTo(sql);
    expect(got).not.toBeNull();
    if (expected.source) expect(got!.source).toEqual(expected.source);
    if (expected.target) expect(got!.target).toEqual(expected.target);
    if (expected.options) expect(got!.options).toMatchObject(expected.options);
  });

  test("the inner query of Materialize-only syntax passes in the materialize dialect", () => {
    const sql = "COPY (SELECT LIST[1, 2] AS l, MAP['a' => 1] AS m) TO 's3://b/p' (FORMAT parquet)";
    expect(parseCopyTo(sql, { dialect: "materialize" })?.source).toEqual({
      kind: "query",
      sql: "SELECT LIST[1, 2] AS l, MAP['a' => 1] AS m",
    });
    expect(thrown(() => parseCopyTo(sql)).code).toBe("42601");
  });

  test("Materialize's SELECT … AS OF cannot ride inside SUBSCRIBE (…): refused where it was written", () => {
    const sql = "COPY (SELECT * FROM t AS OF AT LEAST 5) TO 's3://b/p' (FORMAT csv)";
    const err = thrown(() => parseCopyTo(sql, { dialect: "materialize" }));
    expect([err.code, err.message, err.position]).toEqual([
      "0A000",
      "AS OF is not supported in the query of COPY ... TO 's3://...'",
      23,
    ]);
    // An alias named "of" is PostgreSQL's (and Materialize's) ordinary syntax.
    expect(
      parseCopyTo("COPY (SELECT 1 AS of) TO 's3://b/p' (FORMAT csv)", { dialect: "materialize" })?.source,
    ).toEqual({ kind: "query", sql: "SELECT 1 AS of" });
    // SUBSCRIBE is not a query (Materialize dml.rs: CopyRelation::Subscribe → "COPY TO … not supported").
    expect(
      thrown(() => parseCopyTo("COPY (SUBSCRIBE t) TO 's3://b/p' (FORMAT csv)", { dialect: "materialize" }))
        .code,
    ).toBe("0A000");
  });
});

describe("ours but invalid", () => {
  const S = "s3://b/p";
  const cases: [sql: string, code: string, message: string, position?: number][] = [
    // Other schemes are ours so that the user hears why.
    [
      "COPY t TO 'az://b/p' (FORMAT csv)",
      "0A000",
      "only 's3://...' and 'gs://...' urls are supported as COPY TO target",
      11,
    ],
    [
      "COPY t TO 'https://x/y' (FORMAT csv)",
      "0A000",
      "only 's3://...' and 'gs://...' urls are supported as COPY TO target",
      11,
    ],
    [
      `COPY t (a, b) TO '${S}' (FORMAT csv)`,
      "0A000",
      "specifying columns for COPY <table_name> TO commands not yet supported; use COPY (SELECT...) TO ... instead",
      8,
    ],
    [
      `COPY (select a from t order by a) TO '${S}' (FORMAT csv)`,
      "0A000",
      "ORDER BY is not supported in SELECT query for COPY statements",
      23,
    ],
    [
      `COPY (select 1 union select 2 ORDER  BY 1 limit 1) TO '${S}' (FORMAT csv)`,
      "0A000",
      "ORDER BY is not supported in SELECT query for COPY statements",
      31,
    ],
    [`COPY t TO 's3://b/' || mz_now() (FORMAT csv)`, "0A000", "cannot call mz_now in this context", 24],
    [
      `COPY t TO 's3://b/' || to_char(mz_now()::timestamp, 'YYYY') (FORMAT csv)`,
      "0A000",
      "cannot call mz_now in this context",
      32,
    ],
    [`COPY t TO 's3://b/' || MZ_NOW ( ) (FORMAT csv)`, "0A000", "cannot call mz_now in this context", 24],
    [
      `COPY t TO 's3://b/' || (select 'x') (FORMAT csv)`,
      "0A000",
      "COPY TO target does not allow subqueries",
      25,
    ],
    // Parameters are bound in the target only; the query is read through a statement of the proxy's.
    [
      `COPY (SELECT $1::int) TO 's3://b/' (FORMAT csv)`,
      "0A000",
      "COPY ... TO 's3://...' does not support parameters in its query",
      14,
    ],
    // Syntax errors carry PostgreSQL's text and a position in the original statement.
    [`COPY (select 1 from) TO '${S}' (FORMAT csv)`, "42601", 'syntax error at or near ")"', 20],
    [`COPY (selec 1) TO '${S}' (FORMAT csv)`, "42601", 'syntax error at or near "selec"', 7],
    [
      `/* é🎉 */ COPY (select 'é🎉' frm x) TO '${S}' (FORMAT csv)`,
      "42601",
      'syntax error at or near "x"',
      32,
    ],
    [`COPY () TO '${S}' (FORMAT csv)`, "42601", 'syntax error at or near ")"', 7],
    [`COPY (select 1; select 2) TO '${S}' (FORMAT csv)`, "42601", 'syntax error at or near ";"', 15],
    [`COPY t () TO '${S}' (FORMAT csv)`, "42601", 'syntax error at or near ")"', 9],
    [`COPY t TO '${S}' (FORMAT csv) garbage`, "42601", 'syntax error at or near "garbage"', 35],
    [`COPY t TO '${S}' CSV HEADER`, "42601", 'syntax error at or near "CSV"', 22],
    [`COPY t TO '${S}' WITH CSV`, "42601", 'syntax error at or near "CSV"', 27],
    [`COPY t TO '${S}' WITH`, "42601", "syntax error at end of input", 26],
    [`COPY t TO '${S}' ()`, "42601", 'syntax error at or near ")"', 23],
    [`COPY t TO '${S}' (FORMAT csv,)`, "42601", 'syntax error at or near ")"', 34],
    [`COPY t TO '${S}' (, FORMAT csv)`, "42601", 'syntax error at or near ","', 23],
    [`COPY t TO '${S}' (FORMAT =)`, "42601", 'syntax error at or near ")"', 31],
    [`COPY t TO '${S}' (FORMAT csv parquet)`, "42601", 'syntax error at or near "parquet"', 34],
    [`COPY t TO '${S}' (FORMAT csv, DELIMITER (','))`, "42601", 'syntax error at or near "("', 45],
    [`COPY t TO 's3://b/' || (FORMAT csv)`, "42601", 'syntax error at or near "csv"', 32],
    [`COPY t TO 's3://b/' || 'x') (FORMAT csv)`, "42601", 'syntax error at or near ")"', 27],
    [`COPY t TO 's3://b/' || 'x', 'y' (FORMAT csv)`, "42601", 'syntax error at or near ","', 27],
    [`COPY t TO 's3://b/' || (FORMAT csv`, "42601", "syntax error at end of input", 35],
    [`COPY t TO '${S}' (FORMAT csv`, "42601", "syntax error at end of input", 33],
    [`COPY t TO 's3://b/' || WITH (FORMAT csv)`, "42601", 'syntax error at or near "WITH"', 24],
    // Option errors keep the statement position of the option.
    [`COPY t TO '${S}' (FORMAT csv, FORMAT csv)`, "42601", "conflicting or redundant options", 35],
    [`COPY t TO '${S}' (FORMAT csv, force_quote *)`, "42601", 'option "force_quote" not recognized', 35],
    [`COPY t TO '${S}' (FORMAT csv, Max Size = 1)`, "42601", 'option "max size" not recognized', 35],
    [`COPY t TO '${S}'`, "42601", "COPY TO <expr> requires a FORMAT option"],
    [
      `COPY t TO '${S}' (FORMAT csv, ROW GROUP SIZE 5)`,
      "0A000",
      "COPY ROW GROUP SIZE requires PARQUET mode",
      35,
    ],
    [`COPY t TO '${S}' (FORMAT csv, FILES ('a'), PATTERN 'x' x)`, "42601", 'syntax error at or near "x"', 60],
    [`COPY t TO '${S}' (FORMAT csv, FORMAT ('csv'))`, "42601", 'syntax error at or near "("', 42],
    [`COPY t TO '${S}' (FORMAT 'json')`, "22023", "unknown FORMAT: json", 23],
    [
      `COPY t TO '${S}' (FORMAT csv, MAX FILE SIZE = '1kB')`,
      "22023",
      "MAX FILE SIZE cannot be less than 16MB",
      35,
    ],
    // More than one statement in the text: refused, whichever comes first.
    [
      `COPY t TO '${S}' (FORMAT csv); select 1`,
      "0A000",
      "COPY ... TO 's3://...' cannot be combined with other statements in one query",
    ],
    [
      `COPY t TO STDOUT; COPY t TO '${S}' (FORMAT csv)`,
      "0A000",
      "COPY ... TO 's3://...' cannot be combined with other statements in one query",
    ],
    [
      `COPY (select 1) TO 's3://b/p' (FORMAT csv) -- c\n; COPY (select 2) TO 's3://b/q' (FORMAT csv)`,
      "0A000",
      "COPY ... TO 's3://...' cannot be combined with other statements in one query",
    ],
    [
      `COPY (insert into t values (1) returning *) TO '${S}' (FORMAT csv)`,
      "0A000",
      "COPY ... TO 's3://...' supports only SELECT, VALUES and TABLE queries",
      7,
    ],
    [`COPY (select 1 into t2) TO '${S}' (FORMAT csv)`, "0A000", "COPY (SELECT INTO) is not supported", 7],
  ];
  test.each(cases)("%j", (sql, code, message, position) => {
    const err = thrown(() => parseCopyTo(sql));
    expect({ code: err.code, message: err.message }).toEqual({ code, message });
    if (position !== undefined) expect(err.position).toBe(position);
  });

  test("a combined query text says what to do", () => {
    const err = thrown(() => parseCopyTo("select 1; COPY t TO 's3://b/p' (FORMAT csv)"));
    expect(err.hint).toBe("Send the COPY statement on its own.");
  });

  test.each([
    "COPY (SUBSCRIBE t) TO 's3://b/p' (FORMAT csv)",
    "COPY (SUBSCRIBE TO t) TO 's3://b/p' (FORMAT csv)",
    "COPY (insert into t values (1) returning *) TO 's3://b/p' (FORMAT csv)",
  ])("only queries, in the materialize dialect too: %j", (sql) => {
    const err = thrown(() => parseCopyTo(sql, { dialect: "materialize" }));
    expect([err.code, err.message, err.position]).toEqual([
      "0A000",
      "COPY ... TO 's3://...' supports only SELECT, VALUES and TABLE queries",
      7,
    ]);
  });

  test("ORDER BY is refused in the materialize dialect too", () => {
    const err = thrown(() =>
      parseCopyTo("COPY (select 1 order by 1) TO 's3://b/p' (FORMAT csv)", { dialect: "materialize" }),
    );
    expect(err.message).toBe("ORDER BY is not supported in SELECT query for COPY statements");
  });
});

describe("splitTokens: the statements of a text, split where the server splits them", () => {
  test.each([
    ["   ", 0],
    ["-- c", 0],
    [";;", 0],
    ["select 1", 1],
    ["select 1;", 1],
    ["select 1; select 2", 2],
    ["select ';'; select $$;$$; select \"a;b\" from t", 3],
    ["select 1 /* ; */ -- ;\n", 1],
    ["select (1; 2)", 1],
    ["COPY t TO 's3://b/p' (FORMAT csv); COPY t TO 's3://b/q' (FORMAT csv)", 2],
  ])("%j -> %i", (sql, n) => {
    expect(splitTokens(tokenize(sql)!)).toHaveLength(n);
  });

  test("a text the scanner rejects is not split", () => {
    expect(tokenize("select 'unterminated; select 2")).toBeNull();
  });
});

describe("assertTargetUrl (for evaluated expression targets)", () => {
  test.each(["s3://b/p", "S3://b", "file:///tmp/x", "gs://b/p"])("accepts %j", (url) => {
    expect(assertTargetUrl(url)).toBe(url);
  });
  test.each(["/tmp/x", "gcs://b/p", "s3:/b", "", "http://x"])("refuses %j", (url) => {
    const err = thrown(() => assertTargetUrl(url));
    expect([err.code, err.message]).toEqual([
      "0A000",
      "only 's3://...' and 'gs://...' urls are supported as COPY TO target",
    ]);
  });
  test("refuses NULL", () => {
    const err = thrown(() => assertTargetUrl(null));
    expect([err.code, err.message]).toEqual(["22004", "COPY TO target value can not be null"]);
  });
});

describe("stability of the WASM parser", () => {
  // pg-query-emscripten stops working after a few hundred calls in one process; libpg-query
  // must survive a long-lived proxy. Each call below scans once and parses twice.
  test("10 000 statements in one process", () => {
    for (let i = 0; i < 10_000; i++) {
      const sql =
        `COPY (SELECT a, '${i}' AS "x${i}", $$é)$$ FROM s.t WHERE a > ${i}) ` +
        `TO 's3://b/' || to_char(now(), 'YYYY') || '/${i}' ` +
        `WITH (FORMAT = 'csv', MAX FILE SIZE = '${16 + (i % 100)}MB', AWS CONNECTION = c${i}, HEADER)`;
      const got = parseCopyTo(sql);
      expect(got?.options.awsConnection).toBe(`c${i}`);
      if (i % 10 === 0) {
        // The error path frees its buffers too.
        expect(() => parseCopyTo(`COPY (SELECT FROM WHERE ${i}) TO 's3://b/p' (FORMAT csv)`)).toThrow(
          PgError,
        );
      }
    }
  });
});
