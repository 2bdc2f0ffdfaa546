// Validation and normalisation of the option list of a COPY ... TO 's3://...' statement.
//
// Error texts follow SPEC §1 first, then Materialize (src/sql/src/plan/statement/dml.rs,
// src/repr/src/bytes.rs, src/pgcopy), then PostgreSQL 18 (src/backend/commands/copy.c) for the
// CSV checks Materialize does not make. Every check here runs before anything is written.
import { PgError, SqlState } from "../errors.js";

export type CopyFormat = "csv" | "parquet";
export type CopyCompression = "none" | "gzip" | "snappy" | "zstd";

export interface CopyOptions {
  format: CopyFormat;
  /** Name of a configured connection; resolved (and rejected when unknown) by the planner. */
  awsConnection?: string;
  /** Bytes. */
  maxFileSize: number;
  header: boolean;
  delimiter: string;
  quote: string;
  escape: string;
  null: string;
  compression: CopyCompression;
  /** Parquet only; undefined lets the encoder derive it. */
  rowGroupSize?: number;
  /** Options accepted and ignored as Materialize ignores them (told to the user in a NOTICE). */
  ignored?: CopyOptionName[];
}

/** Canonical spelling of every option we accept: upper case, words separated by one space. */
export const COPY_OPTION_NAMES = [
  "FORMAT",
  "AWS CONNECTION",
  "MAX FILE SIZE",
  "HEADER",
  "DELIMITER",
  "QUOTE",
  "ESCAPE",
  "NULL",
  "COMPRESSION",
  "ROW GROUP SIZE",
  // Materialize's COPY FROM filters; its COPY TO accepts and ignores them.
  "FILES",
  "PATTERN",
] as const;
export type CopyOptionName = (typeof COPY_OPTION_NAMES)[number];

/**
 * An option value as written. `word` is an identifier or non-reserved keyword: unquoted ones
 * arrive lower-cased (PostgreSQL folds them), quoted ones verbatim; Materialize treats both as
 * strings, and so do we.
 */
export interface RawOptionValue {
  /** `list`: a bracketed sequence, `('a', 'b')` or `['a', 'b']` (Materialize's FILES); text is its source. */
  kind: "string" | "word" | "number" | "list";
  text: string;
}

export interface RawCopyOption {
  /** A CopyOptionName when recognised; otherwise the name as written, lower-cased. */
  name: string;
  value?: RawOptionValue | undefined;
  /** 1-based character position of the option name in the statement, for the ErrorResponse. */
  position?: number | undefined;
}

export const MIN_MAX_FILE_SIZE = 16 * 1024 * 1024;
export const MAX_MAX_FILE_SIZE = 4 * 1024 * 1024 * 1024;
export const DEFAULT_MAX_FILE_SIZE = 256 * 1024 * 1024;

const CSV_ONLY: readonly CopyOptionName[] = ["HEADER", "DELIMITER", "QUOTE", "ESCAPE", "NULL"];
/** Known to Materialize's option list but never read by its COPY TO (Materialize `src/sql/src/plan/statement/dml.rs`). */
const COPY_FROM_ONLY: readonly CopyOptionName[] = ["FILES", "PATTERN"];
const PARQUET_ONLY: readonly CopyOptionName[] = ["ROW GROUP SIZE"];
const COMPRESSIONS: Record<CopyFormat, readonly CopyCompression[]> = {
  csv: ["none", "gzip"],
  parquet: ["snappy", "zstd", "gzip", "none"],
};

const isOptionName = (name: string): name is CopyOptionName =>
  (COPY_OPTION_NAMES as readonly string[]).includes(name);

export function normalizeCopyOptions(raw: readonly RawCopyOption[]): CopyOptions {
  const given = new Map<CopyOptionName, RawCopyOption>();
  for (const opt of raw) {
    if (!isOptionName(opt.name)) {
      throw new PgError(SqlState.syntaxError, `option "${opt.name.toLowerCase()}" not recognized`, {
        position: opt.position,
      });
    }
    if (given.has(opt.name)) {
      throw new PgError(SqlState.syntaxError, "conflicting or redundant options", { position: opt.position });
    }
    given.set(opt.name, opt);
  }

  const format = parseFormat(given.get("FORMAT"));
  const csv = format === "csv";

  // ROW GROUP SIZE is ours: with CSV it is a mistake worth an error. CSV options with Parquet
  // are ignored, as Materialize's plan_copy_to_expr ignores them (it reads DELIMITER, QUOTE,
  // ESCAPE, HEADER and NULL only in its CSV branch), so a script written for it runs here too.
  if (csv) {
    for (const name of PARQUET_ONLY) {
      const opt = given.get(name);
      if (opt) {
        throw new PgError(SqlState.featureNotSupported, `COPY ${name} requires PARQUET mode`, {
          position: opt.position,
        });
      }
    }
  }
  const ignored = [...(csv ? [] : CSV_ONLY), ...COPY_FROM_ONLY].filter((n) => given.has(n));
  const pick = (name: CopyOptionName) => (csv ? given.get(name) : undefined);

  // Materialize types HEADER as a boolean while extracting the options, so even an ignored
  // HEADER must be one.
  const header = parseHeader(given.get("HEADER")) && csv;
  const delimiter = parseSingleByte(pick("DELIMITER"), "delimiter") ?? ",";
  const quote = parseSingleByte(pick("QUOTE"), "quote") ?? '"';
  // PostgreSQL and Materialize both default ESCAPE to the (possibly user-chosen) QUOTE.
  const escapeChar = parseSingleByte(pick("ESCAPE"), "escape") ?? quote;
  const nullOpt = pick("NULL");
  const nullString = nullOpt ? requireText(nullOpt) : "";

  if (format === "csv") {
    // A delimiter or NULL string containing a line break would make rows unparseable.
    if (delimiter === "\n" || delimiter === "\r") {
      throw invalid("COPY delimiter cannot be newline or carriage return", given.get("DELIMITER"));
    }
    if (nullString.includes("\n") || nullString.includes("\r")) {
      throw invalid("COPY null representation cannot use newline or carriage return", nullOpt);
    }
    if (delimiter === quote) {
      throw invalid(
        "COPY delimiter and quote must be different",
        given.get("QUOTE") ?? given.get("DELIMITER"),
      );
    }
    // Unquoted NULLs are told apart from data only if the NULL string never needs quoting.
    if (nullString.includes(delimiter)) {
      throw invalid("COPY delimiter character must not appear in the NULL specification", nullOpt);
    }
    if (nullString.includes(quote)) {
      throw invalid("CSV quote character must not appear in the NULL specification", nullOpt);
    }
  }

  const compression = parseCompression(given.get("COMPRESSION"), format);
  const maxFileSize = parseMaxFileSize(given.get("MAX FILE SIZE"));
  const rowGroupSize = parseRowGroupSize(given.get("ROW GROUP SIZE"));
  const awsConnection = parseConnection(given.get("AWS CONNECTION"));

  const out: CopyOptions = {
    format,
    maxFileSize,
    header,
    delimiter,
    quote,
    escape: escapeChar,
    null: nullString,
    compression,
  };
  if (awsConnection !== undefined) out.awsConnection = awsConnection;
  if (rowGroupSize !== undefined) out.rowGroupSize = rowGroupSize;
  if (ignored.length > 0) out.ignored = ignored;
  return out;
}

function invalid(message: string, opt: RawCopyOption | undefined): PgError {
  return new PgError(SqlState.invalidParameterValue, message, { position: opt?.position });
}

/** PostgreSQL's defGetString: a value is required, numbers count as their text. */
function requireText(opt: RawCopyOption): string {
  if (opt.value === undefined) {
    throw new PgError(SqlState.syntaxError, `${opt.name} requires a parameter`, { position: opt.position });
  }
  return opt.value.text;
}

function parseFormat(opt: RawCopyOption | undefined): CopyFormat {
  if (!opt) throw new PgError(SqlState.syntaxError, "COPY TO <expr> requires a FORMAT option");
  const text = requireText(opt);
  switch (text.toLowerCase()) {
    case "csv":
      return "csv";
    case "parquet":
      return "parquet";
    case "text":
      throw new PgError(SqlState.featureNotSupported, "FORMAT TEXT not yet supported", {
        position: opt.position,
      });
    case "binary":
      throw new PgError(SqlState.featureNotSupported, "FORMAT BINARY not yet supported", {
        position: opt.position,
      });
    default:
      throw new PgError(SqlState.invalidParameterValue, `unknown FORMAT: ${text}`, {
        position: opt.position,
        hint: "Use FORMAT csv or FORMAT parquet.",
      });
  }
}

/** PostgreSQL's defGetBoolean: no value means true; true/false/on/off or 1/0. */
function parseHeader(opt: RawCopyOption | undefined): boolean {
  if (!opt) return false;
  if (opt.value === undefined) return true;
  const v = opt.value.text.toLowerCase();
  if (opt.value.kind === "number") {
    if (numberValue(v) === 1) return true;
    if (numberValue(v) === 0) return false;
  } else {
    if (v === "true" || v === "on") return true;
    if (v === "false" || v === "off") return false;
  }
  throw new PgError(SqlState.syntaxError, "HEADER requires a Boolean value", { position: opt.position });
}

function parseSingleByte(opt: RawCopyOption | undefined, what: string): string | undefined {
  if (!opt) return undefined;
  const v = requireText(opt);
  // Materialize and PostgreSQL compare bytes, not characters: 'é' is two bytes and refused.
  if (Buffer.byteLength(v, "utf8") !== 1) {
    throw new PgError(SqlState.featureNotSupported, `COPY ${what} must be a single one-byte character`, {
      position: opt.position,
    });
  }
  return v;
}

function parseCompression(opt: RawCopyOption | undefined, format: CopyFormat): CopyCompression {
  const allowed = COMPRESSIONS[format];
  if (!opt) return format === "parquet" ? "snappy" : "none";
  const text = requireText(opt);
  const v = text.toLowerCase();
  const known = COMPRESSIONS.parquet as readonly string[];
  if (!known.includes(v)) {
    throw new PgError(SqlState.invalidParameterValue, `unknown COMPRESSION: ${text}`, {
      position: opt.position,
      hint: `FORMAT ${format} supports COMPRESSION ${allowed.join(", ")}.`,
    });
  }
  if (!(allowed as readonly string[]).includes(v)) {
    throw new PgError(
      SqlState.featureNotSupported,
      `COMPRESSION ${v} is not supported with FORMAT ${format}`,
      { position: opt.position, hint: `FORMAT ${format} supports COMPRESSION ${allowed.join(", ")}.` },
    );
  }
  return v as CopyCompression;
}

function parseMaxFileSize(opt: RawCopyOption | undefined): number {
  if (!opt) return DEFAULT_MAX_FILE_SIZE;
  const text = requireText(opt);
  let bytes: number;
  try {
    bytes = parseByteSize(opt.value?.kind === "number" ? String(numberValue(text)) : text);
  } catch (err) {
    throw new PgError(
      SqlState.invalidParameterValue,
      `invalid MAX FILE SIZE option value: invalid bytes value: ${(err as Error).message}`,
      { position: opt.position },
    );
  }
  if (bytes < MIN_MAX_FILE_SIZE) {
    throw invalid("MAX FILE SIZE cannot be less than 16MB", opt);
  }
  if (bytes > MAX_MAX_FILE_SIZE) {
    throw invalid("MAX FILE SIZE cannot be greater than 4GB", opt);
  }
  return bytes;
}

const BYTE_UNITS: Record<string, number> = {
  B: 1,
  kB: 1024,
  MB: 1024 ** 2,
  GB: 1024 ** 3,
  TB: 1024 ** 4,
};
const LOWER_UNIT: Record<string, string> = { B: "B", kB: "B", MB: "kB", GB: "MB", TB: "GB" };

/**
 * Materialize's ByteSize (src/repr/src/bytes.rs), which follows PostgreSQL's GUC memory units:
 * units are case-sensitive powers of 1024, and a fractional count is rounded in the next lower
 * unit (1.5kB = 1536B, 30.1MB = 30822kB). Throws Error with Materialize's reason text.
 */
export function parseByteSize(input: string): number {
  const m = /^\s*(\d+(?:\.\d*)?|\.\d+)\s*(\S.*?)?\s*$/.exec(input);
  if (!m) {
    throw new Error(`couldn't parse ${JSON.stringify(input)} as a number`);
  }
  const [, num, unitText] = m as unknown as [string, string, string | undefined];
  let unit = unitText ?? "B";
  if (BYTE_UNITS[unit] === undefined) {
    throw new Error(
      `couldn't parse ${JSON.stringify(unit)} into a known SI unit, invalid BytesUnit: ${unit}. Valid units are B, kB, MB, GB, and TB`,
    );
  }
  let size = Number(num);
  if (!Number.isInteger(size)) {
    if (unit === "B") {
      size = Math.round(size);
    } else {
      size = Math.round(size * 1024);
      unit = LOWER_UNIT[unit]!;
    }
  }
  const bytes = size * BYTE_UNITS[unit]!;
  if (!Number.isSafeInteger(bytes)) throw new Error("bytes value exceeds u64 range");
  return bytes;
}

function parseRowGroupSize(opt: RawCopyOption | undefined): number | undefined {
  if (!opt) return undefined;
  const text = requireText(opt).trim();
  const n = opt.value?.kind === "number" ? numberValue(text) : /^\d+$/.test(text) ? Number(text) : Number.NaN;
  if (!Number.isSafeInteger(n) || n < 1) {
    throw invalid("invalid ROW GROUP SIZE option value: must be a positive integer", opt);
  }
  return n;
}

function parseConnection(opt: RawCopyOption | undefined): string | undefined {
  if (!opt) return undefined;
  const text = requireText(opt);
  if (opt.value?.kind === "number" || text === "") {
    throw invalid("invalid AWS CONNECTION option value: must provide a connection name", opt);
  }
  return text;
}

/**
 * Numeric literal text as PostgreSQL 16+ scans it: decimal, 0x/0o/0b prefixes and `_` digit
 * separators, with an optional sign. NaN when it is not an integer or float literal.
 */
export function numberValue(text: string): number {
  const t = text.replace(/_/g, "");
  const m = /^([+-]?)0([xXoObB])([0-9a-fA-F]+)$/.exec(t);
  if (m) {
    const [, sign, radix, digits] = m as unknown as [string, string, string, string];
    const base = { x: 16, o: 8, b: 2 }[radix.toLowerCase() as "x" | "o" | "b"];
    const n = Number.parseInt(digits, base);
    return sign === "-" ? -n : n;
  }
  if (!/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(t)) return Number.NaN;
  return Number(t);
}
