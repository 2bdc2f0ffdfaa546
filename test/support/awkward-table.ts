// A table of values that break naive CSV writers and type decoders: NULLs, empty strings, quotes,
// delimiters, CR/LF, backslashes, \\., unicode, long text, numeric and float edges, BC dates,
// arrays, composites, jsonb, bytea. Shared by the encoder oracle and the end-to-end tests.

/** Statements that create `pair`, `awkward` (17 rows) and `many` (30 000 rows) in an empty database. */
export const AWKWARD_SETUP = [
  "CREATE TYPE pair AS (x int, y text)",
  `CREATE TABLE awkward (
     id int PRIMARY KEY, t text, vc varchar(20), ch char(5), i2 smallint, i8 bigint, n numeric,
     f4 real, f8 double precision, b boolean, d date, ts timestamp, tstz timestamptz, tm time,
     iv interval, ai int[], at text[], j jsonb, js json, by bytea, u uuid, p pair, r int4range
   )`,
  `INSERT INTO awkward (id) VALUES (1)`,
  `INSERT INTO awkward VALUES (2, '', '', '', 0, 0, 0, '-0', '-0', false, '4713-01-01 BC',
     '0044-03-15 12:00:00 BC', '0044-03-15 12:00:00+00 BC', '00:00', '0', '{}', '{}', '{}', '{}',
     '', '00000000-0000-0000-0000-000000000000', ROW(NULL, NULL), 'empty')`,
  `INSERT INTO awkward VALUES (3, '"', '"quoted"', 'a"b', -32768, -9223372036854775808, 'NaN',
     'NaN', 'NaN', true, '-infinity', '-infinity', '-infinity', '24:00', '-178000000 years',
     ARRAY[1, NULL, 3], ARRAY['a"b', NULL, 'c,d', 'NULL', '', E'x\\\\y', '{}'],
     '{"a": "b,\\"c\\"", "n": null, "e": "😀"}', '{ "spaced" :  [1, 2] }', '\\x00ff2c220a0d',
     'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', ROW(1, 'a,"b"'), '[1,10)')`,
  `INSERT INTO awkward VALUES (4, ',', 'a,b', ',', 32767, 9223372036854775807, 'Infinity',
     'Infinity', 'Infinity', NULL, 'infinity', 'infinity', 'infinity', '23:59:59.999999',
     '1 year 2 mons 3 days 04:05:06.789', '{{1,2},{3,4}}', '{{"x y",NULL},{"",z}}', 'null', 'null',
     '\\x', NULL, ROW(NULL, ''), '(,5]')`,
  `INSERT INTO awkward VALUES (5, E'line1\\nline2', E'cr\\rhere', E'\\r\\n', 1, 1, '-Infinity',
     '-Infinity', '-Infinity', true, '2000-02-29', '2000-02-29 23:59:59.999999',
     '2000-02-29 23:59:59.999999+05:30', '12:34:56', '-1 day +02:00', '{-1}', ARRAY[E'multi\\nline'],
     '[1, "two", {"3": [4]}]', '"str"', '\\x5c2e', NULL, ROW(2, E'x\\ny'), NULL)`,
  `INSERT INTO awkward (id, t, vc, ch, n, f4, f8) VALUES
     (6, E'tab\\there', E'back\\\\slash', E'\\\\', '123456789012345678901234567890.123456789012345678901234567890',
      '3.4028235e38', '1e308'),
     (7, E'\\\\.', E'\\\\.', E'\\\\.', '-0.0000000000000000000000000000000000000001', '1.4e-45', '5e-324'),
     (8, 'NULL', 'NULL', 'NULL', '0.0', '-1.5', '-0.1'),
     (9, E'\\\\N', E'\\\\N', E'\\\\N', '1e-100', '0.1', '0.30000000000000004'),
     (10, 'héllo wörld ñ 日本語', 'naïve', 'ñ', '-1', '1e-10', '2.2250738585072014e-308'),
     (11, '😀👍🏽👨‍👩‍👧 emoji', '🎉', '🎉', '42', '42', '42'),
     (12, repeat('x', 1048576), 'long', NULL, NULL, NULL, NULL),
     (13, repeat(E'a"b,\\n', 262144), 'long quoted', NULL, NULL, NULL, NULL),
     (14, E'''single'' | pipe ; semi % pct ! bang # hash', '|', ';', NULL, NULL, NULL),
     (15, ' leading and trailing ', ' ', '  ', NULL, NULL, NULL),
     (16, '∅', '<null>', 'x', NULL, NULL, NULL),
     (17, E'\\\\', '\\', E'"\\\\"', NULL, NULL, NULL)`,
  `CREATE TABLE many AS
     SELECT g AS id, md5(g::text) AS h,
       CASE WHEN g % 7 = 0 THEN NULL WHEN g % 5 = 0 THEN E'a,"b"\\n' || g ELSE repeat('z', g % 60) END AS t,
       (g * 1.25)::numeric(12, 2) AS amount, timestamptz '2024-01-01 00:00+00' + g * interval '1 minute' AS at
     FROM generate_series(1, 30000) g`,
];
