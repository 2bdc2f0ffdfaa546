// Which result columns the CSV encoder may copy without looking for bytes that force quoting.
// PostgreSQL's CopyAttributeOutCSV (src/backend/commands/copyto.c) quotes a value only when it
// equals the NULL string, is `\.` as the only column, or contains the delimiter, the quote, CR or
// LF. For some built-in types the text output can only ever hold a few known bytes; a column of
// such a type needs no scan when neither the delimiter nor the quote is one of them (CR and LF
// never are). The NULL-string and `\.` checks still apply to every value.
//
// Each alphabet covers the type's output in every DateStyle and IntervalStyle (ISO, SQL, German,
// Postgres; postgres_verbose, sql_standard, iso_8601), BC dates, infinities and NaN, and
// Materialize's text output of the same types (Materialize `src/pgrepr/src/value.rs`, encode_text,
// and the `strconv` formatters it calls), which uses the same OIDs. Left out on purpose: timestamptz, whose non-ISO DateStyles print the session's
// time zone abbreviation, and a POSIX TimeZone such as `<a,b>5` makes that any text; money
// (locale); every user-defined type (OIDs from 16384, where Materialize also puts its own types).

const DIGITS = "0123456789";
const LETTERS = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
/** Integers. */
const INTEGER = `${DIGITS}-`;
/** float4/float8 (`1.5e+20`, `Infinity`, `NaN`) and numeric (`-1.5`, `NaN`, `Infinity`). */
const NUMBER = `${DIGITS}-+.eEInfityNa`;
/**
 * date, time, timetz, timestamp, interval: `2000-01-01 12:00:00.5+05:30 BC`, `01/01/2000`,
 * `01.01.2000`, `Sat Jan 01 12:00:00 2000`, `@ 1 year 2 mons ago`, `P1Y2M`, `-infinity`.
 */
const DATETIME = `${DIGITS}${LETTERS} +-:./@`;

/** pg_type OID → every byte its text output may contain. */
const ALPHABETS = new Map<number, string>([
  [16, "tf"], // bool
  [20, INTEGER], // int8
  [21, INTEGER], // int2
  [23, INTEGER], // int4
  [26, DIGITS], // oid
  [700, NUMBER], // float4
  [701, NUMBER], // float8
  [1700, NUMBER], // numeric
  [2950, `${DIGITS}abcdef-`], // uuid
  [1082, DATETIME], // date
  [1083, DATETIME], // time
  [1114, DATETIME], // timestamp
  [1186, DATETIME], // interval
  [1266, DATETIME], // timetz
]);

/**
 * Per column, 1 where no value of the column's type can contain `delimiter` or `quote`; 0 where
 * values must be scanned (unknown types, and types whose output may hold either byte).
 */
export function plainColumns(typeOids: readonly number[], delimiter: number, quote: number): Uint8Array {
  const plain = new Uint8Array(typeOids.length);
  const d = String.fromCharCode(delimiter);
  const q = String.fromCharCode(quote);
  typeOids.forEach((oid, i) => {
    const alphabet = ALPHABETS.get(oid);
    if (alphabet !== undefined && !alphabet.includes(d) && !alphabet.includes(q)) plain[i] = 1;
  });
  return plain;
}
