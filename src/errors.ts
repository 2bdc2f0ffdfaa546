// The one error type that crosses into the wire layer: it carries a SQLSTATE and knows how to
// become an ErrorResponse.
import { type ErrorFields, errorResponse } from "./wire/backend.js";

export const SqlState = {
  syntaxError: "42601",
  invalidParameterValue: "22023",
  undefinedObject: "42704",
  invalidAuthorizationSpecification: "28000",
  featureNotSupported: "0A000",
  activeSqlTransaction: "25001",
  inFailedSqlTransaction: "25P02",
  queryCanceled: "57014",
  adminShutdown: "57P01",
  systemError: "58000",
  ioError: "58030",
  protocolViolation: "08P01",
  connectionFailure: "08006",
  cannotConnectNow: "57P03",
  tooManyConnections: "53300",
  programLimitExceeded: "54000",
  insufficientPrivilege: "42501",
  internalError: "XX000",
  dataException: "22000",
  numericValueOutOfRange: "22003",
  nullValueNotAllowed: "22004",
  invalidTextRepresentation: "22P02",
  datetimeFieldOverflow: "22008",
  objectInUse: "55006",
  invalidSqlStatementName: "26000",
  undefinedParameter: "42P02",
} as const;
export type SqlStateCode = (typeof SqlState)[keyof typeof SqlState];

export interface PgErrorOptions {
  detail?: string | undefined;
  hint?: string | undefined;
  position?: number | undefined;
  severity?: "ERROR" | "FATAL";
  cause?: unknown;
}

export class PgError extends Error {
  readonly code: string;
  readonly detail: string | undefined;
  readonly hint: string | undefined;
  readonly position: number | undefined;
  readonly severity: "ERROR" | "FATAL";

  constructor(code: string, message: string, opts: PgErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = "PgError";
    this.code = code;
    this.detail = opts.detail;
    this.hint = opts.hint;
    this.position = opts.position;
    this.severity = opts.severity ?? "ERROR";
  }

  get fields(): ErrorFields {
    return {
      severity: this.severity,
      code: this.code,
      message: this.message,
      detail: this.detail,
      hint: this.hint,
      position: this.position,
    };
  }

  toWire(): Buffer {
    return errorResponse(this.fields);
  }

  /** Wraps anything thrown into a PgError; unknown errors become XX000 without leaking internals. */
  static from(err: unknown, fallbackCode: string = SqlState.internalError): PgError {
    if (err instanceof PgError) return err;
    const msg = err instanceof Error ? err.message : String(err);
    return new PgError(fallbackCode, msg, { cause: err });
  }
}

export const canceled = (): PgError =>
  new PgError(SqlState.queryCanceled, "canceling statement due to user request");
