import { describe, expect, test } from "vitest";
import {
  type CopyOptions,
  normalizeCopyOptions,
  numberValue,
  parseByteSize,
  type RawCopyOption,
  type RawOptionValue,
} from "../../src/copy/options.js";
import { PgError } from "../../src/errors.js";

const MB = 1024 * 1024;
const GB = 1024 * MB;

const str = (text: string): RawOptionValue => ({ kind: "string", text });
const word = (text: string): RawOptionValue => ({ kind: "word", text });
const num = (text: string): RawOptionValue => ({ kind: "number", text });

/** `opt("HEADER")`, `opt("FORMAT", word("csv"))`; positions count up so errors can name them. */
let nextPosition = 100;
function opt(name: string, value?: RawOptionValue): RawCopyOption {
  return { name, value, position: nextPosition++ };
}
const csv = () => opt("FORMAT", word("csv"));
const parquet = () => opt("FORMAT", word("parquet"));

function thrown(fn: () => unknown): PgError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PgError);
    return err as PgError;
  }
  throw new Error("expected a PgError");
}

describe("defaults", () => {
  test("csv", () => {
    expect(normalizeCopyOptions([csv()])).toEqual({
      format: "csv",
      maxFileSize: 256 * MB,
      header: false,
      delimiter: ",",
      quote: '"',
      escape: '"',
      null: "",
      compression: "none",
    } satisfies CopyOptions);
  });

  test("parquet", () => {
    expect(normalizeCopyOptions([parquet()])).toEqual({
      format: "parquet",
      maxFileSize: 256 * MB,
      header: false,
      delimiter: ",",
      quote: '"',
      escape: '"',
      null: "",
      compression: "snappy",
    } satisfies CopyOptions);
  });

  test("ESCAPE defaults to QUOTE", () => {
    expect(normalizeCopyOptions([csv(), opt("QUOTE", str("`"))])).toMatchObject({ quote: "`", escape: "`" });
    expect(normalizeCopyOptions([csv(), opt("QUOTE", str("`")), opt("ESCAPE", str("\\"))])).toMatchObject({
      quote: "`",
      escape: "\\",
    });
  });
});

// Materialize `src/sql/src/plan/statement/dml.rs` plan_copy_to_expr reads the CSV options only in
// its CSV branch and never reads FILES or PATTERN (COPY FROM filters): accepted and ignored.
describe("options Materialize's COPY TO ignores", () => {
  test("CSV options with FORMAT parquet have no effect and are named in `ignored`", () => {
    const o = normalizeCopyOptions([
      parquet(),
      opt("HEADER"),
      opt("DELIMITER", str("ab")),
      opt("QUOTE", str(",")),
      opt("ESCAPE", str("\\")),
      opt("NULL", str("\n")),
    ]);
    expect(o).toMatchObject({ format: "parquet", header: false, delimiter: ",", quote: '"', null: "" });
    expect(o.ignored).toEqual(["HEADER", "DELIMITER", "QUOTE", "ESCAPE", "NULL"]);
  });
  test("an ignored HEADER must still be a boolean (Materialize extracts it as bool)", () => {
    const err = thrown(() => normalizeCopyOptions([parquet(), opt("HEADER", word("maybe"))]));
    expect([err.code, err.message]).toEqual(["42601", "HEADER requires a Boolean value"]);
  });
  test("FILES and PATTERN are ignored in either format", () => {
    const o = normalizeCopyOptions([
      csv(),
      opt("FILES", { kind: "list", text: "('a.csv')" }),
      opt("PATTERN", str("*.csv")),
    ]);
    expect(o.ignored).toEqual(["FILES", "PATTERN"]);
    expect(normalizeCopyOptions([csv()]).ignored).toBeUndefined();
  });
});

describe("accepted values", () => {
  const cases: [RawCopyOption[], Partial<CopyOptions>][] = [
    [[opt("FORMAT", str("CSV"))], { format: "csv" }],
    [[opt("FORMAT", str("Parquet"))], { format: "parquet" }],
    [[opt("FORMAT", word("csv"))], { format: "csv" }],
    [[csv(), opt("HEADER")], { header: true }],
    [[csv(), opt("HEADER", word("true"))], { header: true }],
    [[csv(), opt("HEADER", word("on"))], { header: true }],
    [[csv(), opt("HEADER", str("TRUE"))], { header: true }],
    [[csv(), opt("HEADER", num("1"))], { header: true }],
    [[csv(), opt("HEADER", word("false"))], { header: false }],
    [[csv(), opt("HEADER", word("off"))], { header: false }],
    [[csv(), opt("HEADER", num("0"))], { header: false }],
    [[csv(), opt("DELIMITER", str(";"))], { delimiter: ";" }],
    [[csv(), opt("DELIMITER", str("\t"))], { delimiter: "\t" }],
    [[csv(), opt("DELIMITER", num("1"))], { delimiter: "1" }],
    [[csv(), opt("NULL", str("\\N"))], { null: "\\N" }],
    [[csv(), opt("NULL", str("NULL"))], { null: "NULL" }],
    [[csv(), opt("COMPRESSION", word("gzip"))], { compression: "gzip" }],
    [[csv(), opt("COMPRESSION", str("NONE"))], { compression: "none" }],
    [[parquet(), opt("COMPRESSION", word("zstd"))], { compression: "zstd" }],
    [[parquet(), opt("COMPRESSION", word("gzip"))], { compression: "gzip" }],
    [[parquet(), opt("COMPRESSION", word("none"))], { compression: "none" }],
    [[parquet(), opt("ROW GROUP SIZE", num("100000"))], { rowGroupSize: 100_000 }],
    [[parquet(), opt("ROW GROUP SIZE", str("5000"))], { rowGroupSize: 5000 }],
    [[csv(), opt("AWS CONNECTION", word("conn"))], { awsConnection: "conn" }],
    [[csv(), opt("AWS CONNECTION", str("My Conn"))], { awsConnection: "My Conn" }],
    [[csv(), opt("MAX FILE SIZE", str("16MB"))], { maxFileSize: 16 * MB }],
    [[csv(), opt("MAX FILE SIZE", str("4GB"))], { maxFileSize: 4 * GB }],
    [[csv(), opt("MAX FILE SIZE", str("100 MB"))], { maxFileSize: 100 * MB }],
    [[csv(), opt("MAX FILE SIZE", str("1.5GB"))], { maxFileSize: 1536 * MB }],
    [[csv(), opt("MAX FILE SIZE", str("20000kB"))], { maxFileSize: 20000 * 1024 }],
    [[csv(), opt("MAX FILE SIZE", str("16777216"))], { maxFileSize: 16 * MB }],
    [[csv(), opt("MAX FILE SIZE", str("16777216B"))], { maxFileSize: 16 * MB }],
    [[csv(), opt("MAX FILE SIZE", num("16777216"))], { maxFileSize: 16 * MB }],
    [[csv(), opt("MAX FILE SIZE", num("4294967296"))], { maxFileSize: 4 * GB }],
    [[csv(), opt("MAX FILE SIZE", word("100MB"))], { maxFileSize: 100 * MB }],
  ];
  test.each(cases)("%j", (raw, expected) => {
    expect(normalizeCopyOptions(raw)).toMatchObject(expected);
  });

  test("no awsConnection or rowGroupSize key unless given", () => {
    const got = normalizeCopyOptions([parquet()]);
    expect("awsConnection" in got).toBe(false);
    expect("rowGroupSize" in got).toBe(false);
  });
});

describe("errors: exact text, SQLSTATE and position", () => {
  const cases: [name: string, raw: () => RawCopyOption[], code: string, message: string][] = [
    ["FORMAT missing", () => [opt("HEADER")], "42601", "COPY TO <expr> requires a FORMAT option"],
    ["no options at all", () => [], "42601", "COPY TO <expr> requires a FORMAT option"],
    ["FORMAT without value", () => [opt("FORMAT")], "42601", "FORMAT requires a parameter"],
    ["FORMAT text", () => [opt("FORMAT", word("text"))], "0A000", "FORMAT TEXT not yet supported"],
    ["FORMAT 'TEXT'", () => [opt("FORMAT", str("TEXT"))], "0A000", "FORMAT TEXT not yet supported"],
    ["FORMAT binary", () => [opt("FORMAT", word("binary"))], "0A000", "FORMAT BINARY not yet supported"],
    ["FORMAT unknown", () => [opt("FORMAT", str("JSON"))], "22023", "unknown FORMAT: JSON"],
    ["FORMAT number", () => [opt("FORMAT", num("1"))], "22023", "unknown FORMAT: 1"],
    ["unknown option", () => [csv(), opt("force_quote")], "42601", 'option "force_quote" not recognized'],
    [
      "unknown option, any case",
      () => [csv(), opt("Encoding", str("UTF8"))],
      "42601",
      'option "encoding" not recognized',
    ],
    [
      "duplicate option",
      () => [csv(), opt("FORMAT", word("csv"))],
      "42601",
      "conflicting or redundant options",
    ],
    [
      "duplicate HEADER",
      () => [csv(), opt("HEADER"), opt("HEADER", word("false"))],
      "42601",
      "conflicting or redundant options",
    ],
    [
      "MAX FILE SIZE below 16MB",
      () => [csv(), opt("MAX FILE SIZE", str("1kB"))],
      "22023",
      "MAX FILE SIZE cannot be less than 16MB",
    ],
    [
      "MAX FILE SIZE one byte short",
      () => [csv(), opt("MAX FILE SIZE", num("16777215"))],
      "22023",
      "MAX FILE SIZE cannot be less than 16MB",
    ],
    [
      "MAX FILE SIZE above 4GB",
      () => [csv(), opt("MAX FILE SIZE", str("5GB"))],
      "22023",
      "MAX FILE SIZE cannot be greater than 4GB",
    ],
    [
      "MAX FILE SIZE one byte over",
      () => [csv(), opt("MAX FILE SIZE", num("4294967297"))],
      "22023",
      "MAX FILE SIZE cannot be greater than 4GB",
    ],
    [
      "MAX FILE SIZE 1TB",
      () => [csv(), opt("MAX FILE SIZE", str("1TB"))],
      "22023",
      "MAX FILE SIZE cannot be greater than 4GB",
    ],
    [
      "MAX FILE SIZE unit is case-sensitive",
      () => [csv(), opt("MAX FILE SIZE", str("100mb"))],
      "22023",
      'invalid MAX FILE SIZE option value: invalid bytes value: couldn\'t parse "mb" into a known SI unit, invalid BytesUnit: mb. Valid units are B, kB, MB, GB, and TB',
    ],
    [
      "MAX FILE SIZE KB is not kB",
      () => [csv(), opt("MAX FILE SIZE", str("20000KB"))],
      "22023",
      'invalid MAX FILE SIZE option value: invalid bytes value: couldn\'t parse "KB" into a known SI unit, invalid BytesUnit: KB. Valid units are B, kB, MB, GB, and TB',
    ],
    [
      "MAX FILE SIZE without a number",
      () => [csv(), opt("MAX FILE SIZE", str("MB"))],
      "22023",
      'invalid MAX FILE SIZE option value: invalid bytes value: couldn\'t parse "MB" as a number',
    ],
    [
      "MAX FILE SIZE negative",
      () => [csv(), opt("MAX FILE SIZE", num("-1"))],
      "22023",
      'invalid MAX FILE SIZE option value: invalid bytes value: couldn\'t parse "-1" as a number',
    ],
    [
      "MAX FILE SIZE without value",
      () => [csv(), opt("MAX FILE SIZE")],
      "42601",
      "MAX FILE SIZE requires a parameter",
    ],
    [
      "DELIMITER two chars",
      () => [csv(), opt("DELIMITER", str(";;"))],
      "0A000",
      "COPY delimiter must be a single one-byte character",
    ],
    [
      "DELIMITER empty",
      () => [csv(), opt("DELIMITER", str(""))],
      "0A000",
      "COPY delimiter must be a single one-byte character",
    ],
    [
      "DELIMITER multi-byte",
      () => [csv(), opt("DELIMITER", str("é"))],
      "0A000",
      "COPY delimiter must be a single one-byte character",
    ],
    [
      "QUOTE two chars",
      () => [csv(), opt("QUOTE", str("''"))],
      "0A000",
      "COPY quote must be a single one-byte character",
    ],
    [
      "ESCAPE multi-byte",
      () => [csv(), opt("ESCAPE", str("€"))],
      "0A000",
      "COPY escape must be a single one-byte character",
    ],
    ["DELIMITER without value", () => [csv(), opt("DELIMITER")], "42601", "DELIMITER requires a parameter"],
    [
      "DELIMITER = default QUOTE",
      () => [csv(), opt("DELIMITER", str('"'))],
      "22023",
      "COPY delimiter and quote must be different",
    ],
    [
      "QUOTE = default DELIMITER",
      () => [csv(), opt("QUOTE", str(","))],
      "22023",
      "COPY delimiter and quote must be different",
    ],
    [
      "DELIMITER = QUOTE",
      () => [csv(), opt("DELIMITER", str(";")), opt("QUOTE", str(";"))],
      "22023",
      "COPY delimiter and quote must be different",
    ],
    [
      "DELIMITER newline",
      () => [csv(), opt("DELIMITER", str("\n"))],
      "22023",
      "COPY delimiter cannot be newline or carriage return",
    ],
    [
      "NULL with newline",
      () => [csv(), opt("NULL", str("a\rb"))],
      "22023",
      "COPY null representation cannot use newline or carriage return",
    ],
    [
      "NULL contains DELIMITER",
      () => [csv(), opt("NULL", str("a,b"))],
      "22023",
      "COPY delimiter character must not appear in the NULL specification",
    ],
    [
      "NULL contains QUOTE",
      () => [csv(), opt("NULL", str('"null"'))],
      "22023",
      "CSV quote character must not appear in the NULL specification",
    ],
    [
      "HEADER not boolean",
      () => [csv(), opt("HEADER", str("yes please"))],
      "42601",
      "HEADER requires a Boolean value",
    ],
    ["HEADER match", () => [csv(), opt("HEADER", word("match"))], "42601", "HEADER requires a Boolean value"],
    ["HEADER 2", () => [csv(), opt("HEADER", num("2"))], "42601", "HEADER requires a Boolean value"],
    [
      "ROW GROUP SIZE with csv",
      () => [csv(), opt("ROW GROUP SIZE", num("10"))],
      "0A000",
      "COPY ROW GROUP SIZE requires PARQUET mode",
    ],
    [
      "ROW GROUP SIZE zero",
      () => [parquet(), opt("ROW GROUP SIZE", num("0"))],
      "22023",
      "invalid ROW GROUP SIZE option value: must be a positive integer",
    ],
    [
      "ROW GROUP SIZE fractional",
      () => [parquet(), opt("ROW GROUP SIZE", num("1.5"))],
      "22023",
      "invalid ROW GROUP SIZE option value: must be a positive integer",
    ],
    [
      "ROW GROUP SIZE text",
      () => [parquet(), opt("ROW GROUP SIZE", word("many"))],
      "22023",
      "invalid ROW GROUP SIZE option value: must be a positive integer",
    ],
    [
      "COMPRESSION unknown",
      () => [csv(), opt("COMPRESSION", word("lz4"))],
      "22023",
      "unknown COMPRESSION: lz4",
    ],
    [
      "COMPRESSION snappy with csv",
      () => [csv(), opt("COMPRESSION", word("snappy"))],
      "0A000",
      "COMPRESSION snappy is not supported with FORMAT csv",
    ],
    [
      "COMPRESSION zstd with csv",
      () => [csv(), opt("COMPRESSION", str("ZSTD"))],
      "0A000",
      "COMPRESSION zstd is not supported with FORMAT csv",
    ],
    [
      "COMPRESSION without value",
      () => [csv(), opt("COMPRESSION")],
      "42601",
      "COMPRESSION requires a parameter",
    ],
    [
      "AWS CONNECTION without value",
      () => [csv(), opt("AWS CONNECTION")],
      "42601",
      "AWS CONNECTION requires a parameter",
    ],
    [
      "AWS CONNECTION number",
      () => [csv(), opt("AWS CONNECTION", num("1"))],
      "22023",
      "invalid AWS CONNECTION option value: must provide a connection name",
    ],
  ];
  test.each(cases)("%s", (_name, raw, code, message) => {
    const options = raw();
    const err = thrown(() => normalizeCopyOptions(options));
    expect({ code: err.code, message: err.message }).toEqual({ code, message });
    if (options.length > 0 && message !== "COPY TO <expr> requires a FORMAT option") {
      // Every option error names one of the options given.
      expect(options.map((o) => o.position)).toContain(err.position);
    }
  });

  test("a duplicate is reported at its second occurrence", () => {
    const first = opt("HEADER");
    const second = opt("HEADER");
    expect(thrown(() => normalizeCopyOptions([csv(), first, second])).position).toBe(second.position);
  });

  test("unknown options are reported before anything else is checked", () => {
    const err = thrown(() => normalizeCopyOptions([opt("FORMAT", word("text")), opt("bogus")]));
    expect(err.message).toBe('option "bogus" not recognized');
  });
});

describe("parseByteSize (Materialize's ByteSize)", () => {
  test.each([
    ["0", 0],
    ["500", 500],
    ["9.9", 10],
    ["0B", 0],
    ["1kB", 1024],
    ["1.5kB", 1536],
    ["1 kB", 1024],
    ["3 MB", 3 * MB],
    ["4GB", 4 * GB],
    ["88TB", 88 * 1024 * GB],
    ["1073741824.9", 1073741825],
    ["1.01kB", 1034],
    ["30.1MB", 30822 * 1024],
    ["30.1GB", 30822 * MB],
  ])("%j = %i", (text, bytes) => {
    expect(parseByteSize(text)).toBe(bytes);
  });
  test.each(["", "a124GB", "1K", "B", "1gb", "1KB", "1 MiB"])("%j is refused", (text) => {
    expect(() => parseByteSize(text)).toThrow();
  });
});

describe("numberValue (PostgreSQL 16+ numeric literals)", () => {
  test.each([
    ["16777216", 16777216],
    ["-1", -1],
    ["+2", 2],
    ["1_000_000", 1_000_000],
    ["0x1000000", 16777216],
    ["0o10", 8],
    ["0b101", 5],
    ["1.5", 1.5],
    ["1e3", 1000],
    [".5", 0.5],
  ])("%j = %d", (text, n) => {
    expect(numberValue(text)).toBe(n);
  });
  test.each(["abc", "1x", ""])("%j is NaN", (text) => {
    expect(numberValue(text)).toBeNaN();
  });
});
