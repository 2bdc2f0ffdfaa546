// MaterializeWireDouble — a TEST DOUBLE of Materialize's pgwire behaviour. It is NOT Materialize.
//
// No Materialize binary can be installed where this suite runs, so this double stands in for one:
// a pgwire server in front of the suite's real PostgreSQL. It forwards ordinary statements to
// PostgreSQL unchanged and answers, itself, the few things the proxy's Materialize path relies on,
// the way Materialize's documentation says Materialize answers them. Every rule below names the
// document (or, where the docs are silent, the Materialize source file) it follows. Anything not
// listed is PostgreSQL's behaviour, not Materialize's; `materialize-real.test.ts` runs the same
// scenarios against a real Materialize when MZ_URL is set.
//
// Rules (docs = materialize.com/docs; src = github.com/MaterializeInc/materialize):
//  R1  Startup: ParameterStatus `mz_version` and `server_version` = 9.5.0 (docs: sql/functions
//      "mz_version"; sql/show "server_version"); `SELECT mz_version()` answers the same string.
//  R2  `DECLARE c CURSOR FOR SUBSCRIBE …` only inside a transaction block, else 25P01 "DECLARE CURSOR
//      can only be used in transaction blocks" (docs: sql/subscribe "Subscribing with FETCH": "These
//      must be used within a transaction"; sql/declare; test/pgtest/cursors.pt:543-568).
//  R3  SUBSCRIBE output columns: mz_timestamp numeric, mz_progressed boolean (only WITH (PROGRESS)),
//      mz_diff bigint, then the query's columns (docs: sql/subscribe "Output";
//      src/adapter/src/active_compute_sink.rs:131-150 progress rows, 192-214 `push_row`).
//  R4  WITH (PROGRESS): the first update is a progress row at the AS OF time; progress rows carry
//      mz_progressed = true and NULL in every other column; snapshot updates carry the AS OF time
//      (docs: sql/subscribe "PROGRESS", "SNAPSHOT"; src/adapter/src/active_compute_sink.rs:126-128
//      `initialize`). After the snapshot the frontier advances: one progress row at a later time at
//      once, then one per second (Materialize's default 1 s timestamp interval; docs: sql/subscribe
//      example "Not all timestamps … progress").
//  R4a A query without a timestamp dependency (no table, source or materialized view below it:
//      constants, VALUES, generate_series over literals, views over those) gets AS OF
//      18446744073709551615 (src/adapter/src/coord/timestamp_selection.rs:111-119 "Anything without
//      a timestamp is given the maximum possible timestamp"), and so does a query whose inputs'
//      frontiers have all closed (timestamp_selection.rs:672-680 "A complete trace can be read in
//      its final form with this time"; knob `closedInputs`). Such a SUBSCRIBE sends its progress
//      row, its data, and then ends: its upper is empty, an empty upper sends no progress row, and
//      the finished subscribe closes its channel (active_compute_sink.rs:131-135, 369-377;
//      test/testdrive/fetch-tail-timestamp-zero.td, test/sqllogictest/cursor.slt).
//  R5  Snapshot rows are consolidated: one row per distinct value with mz_diff = its multiplicity
//      (docs: sql/subscribe "mz_diff: … mz_diff copies of the row were inserted";
//      active_compute_sink.rs:176 consolidate_update_iter). Consolidation is
//      done by PostgreSQL's GROUP BY; for types without equality (json, void) rows are sent one by
//      one with mz_diff 1 — still a valid update stream. Row order is whatever GROUP BY gives (i.e.
//      arbitrary, as in Materialize).
//  R6  FETCH n c [WITH (timeout = '…')] (docs: sql/fetch, sql/subscribe "Subscribing with FETCH";
//      src/pgwire/src/protocol.rs send_rows): count defaults to 1, ALL = no limit; with a timeout
//      FETCH collects rows until it has `count` or the timeout passes, then returns what it has
//      (possibly none); without one it waits for the first rows and returns what is ready then
//      (src/sql/src/plan/statement/scl.rs:254-255 "FETCH defaults to WaitOnce"). A finished
//      SUBSCRIBE (R4a, or UP TO reached) returns 0 rows at once, with or without a timeout: its
//      channel is closed (protocol.rs:2427, 2442). Tag `FETCH <n>`.
//  R7  AS OF [AT LEAST] t / UP TO u (docs: sql/subscribe "AS OF", "UP TO", "Interaction"): AS OF
//      inclusive, UP TO exclusive, AS OF = UP TO gives zero rows, UP TO < AS OF is an error; an AS
//      OF before the retained history fails with "Timestamp (t) is not valid for all inputs: …"
//      (src/adapter/src/coord/timestamp_selection.rs). DOUBLE LIMIT: PostgreSQL keeps no history,
//      so every AS OF inside the retention window (historyMs) reads the current data.
//  R8  Types: uint2/uint4/uint8 OIDs 16460/16462/16464, mz_timestamp 16552 (docs: sql/types/uint,
//      sql/types/mz_timestamp), list 16384 and map 16385 for every list/map (src/pgrepr/src/oid.rs;
//      SPEC §5). Binary: uints big-endian unsigned, mz_timestamp as its decimal text
//      (src/pgrepr/src/value.rs encode_binary); list and map have no binary encoding — a Bind that
//      asks for one fails with 08P01 "binary encoding of list types is not implemented"
//      (src/pgwire/src/protocol.rs). Text: list `{a,"b c",NULL}`, map `{k=>v}` with Materialize's
//      quoting (docs: sql/types/list "Output format", sql/types/map; src/repr/src/strconv.rs).
//      In PostgreSQL these types are domains in schema mz_catalog (see MZ_TYPES_SETUP).
//      DOUBLE LIMIT: arrays of uint2/4/8 and mz_timestamp keep PostgreSQL's array OIDs; Materialize
//      has its own, 16461/16463/16465/16553 (src/pgrepr-consts/src/oid.rs TYPE_UINT2_ARRAY_OID …).
//  R8a Typmods (src/pgrepr/src/types.rs `impl From<&SqlScalarType> for Type` and `Type::typmod`):
//      every numeric column goes out as numeric(39, s) — NUMERIC_DATUM_MAX_PRECISION 39, the declared
//      precision is not kept — and an unconstrained numeric as numeric(39,39), typmod
//      ((39 << 16) | 39) + 4 = 2555947; an array's typmod is -1 (`Type::constraint` has none for
//      Array). SUBSCRIBE's mz_timestamp column is numeric(39,0) (src/sql/src/plan/statement/dml.rs:
//      `SqlScalarType::Numeric { max_scale: Some(NumericMaxScale::ZERO) }`). The double rewrites
//      every RowDescription it sends accordingly.
//  R9  `SHOW COLUMNS FROM x` → name, nullable, type (docs: sql/show-columns; mz_columns.type is the
//      type's own name, `list`/`map` for those; docs: sql/system-catalog/mz_catalog "mz_columns").
//      DOUBLE LIMIT: nullability is PostgreSQL's attnotnull (views: always nullable).
//  R10 `pg_typeof` returns text with Materialize's type names — `integer list`,
//      `map[text=>integer]` (src/sql/src/func.rs pg_typeof → humanize_scalar_type in
//      src/adapter/src/catalog.rs: lists/maps spelled out, other types by mz_pgrepr `Type::name`,
//      src/pgrepr/src/types.rs: `timestamp without time zone`, `time`, `character varying`, and
//      `numeric` without its typmod). The double rewrites PostgreSQL's regtype results accordingly.
//      DOUBLE LIMIT: no records and no named (CREATE TYPE) lists/maps: PostgreSQL describes a
//      domain column by its base type, so a stand-in cannot be told from its base on the wire.
//  R11 Errors raised while a SUBSCRIBE runs arrive on the FETCH as XX000 (src/pgwire/src/protocol.rs:2500-2508
//      send_rows, FetchResult::Error → INTERNAL_ERROR; evaluation errors read "Evaluation error:
//      …", test/sqllogictest/subscribe_error.slt); a cancelled FETCH reports 57014 "canceling
//      statement due to user request" (protocol.rs:2509-2514; test/testdrive/cancel-subscribe.td).
//  R12 A failed transaction answers 25P02 "current transaction is aborted, commands ignored until
//      end of transaction block" until ROLLBACK (docs: sql/begin; PostgreSQL-compatible).
//  R12a Pipelined messages (several sent before any answer) are answered in order, each in the
//      state the ones before left (src/pgwire/src/protocol.rs `advance_ready` reads one message at
//      a time). A simple Query's error does not skip the next Query: `query` (protocol.rs:1177-1227)
//      leaves its statement loop and still ends with `ready()`. An error inside an explicit
//      transaction fails it (`send_error_and_get_state`, protocol.rs:3069-3103: InTransaction →
//      `fail_transaction`); then every Query statement but COMMIT/ROLLBACK is answered 25P02 and
//      ReadyForQuery 'E' (protocol.rs:1190-1194), and so is a Parse (protocol.rs:1284-1285), after
//      which everything up to the next Sync is dropped unanswered (`aborted_txn_error` returns
//      State::Drain; `advance_drain`, protocol.rs:1035-1047, skips to Sync); the same skip follows
//      any extended-protocol error. Whether the transaction has failed is judged after the answers
//      to everything before (a pipelined ROLLBACK ends a failed transaction for what follows it).
//  R14 SUBSCRIBE refuses what a maintained dataflow cannot evaluate: now()/current_timestamp,
//      current_user, session_user, current_database() → 0A000 "cannot materialize call to
//      current_timestamp" (…current_user, …), with the detail "See:
//      https://materialize.com/docs/sql/functions/now_and_mz_now/" for current_timestamp
//      (src/adapter/src/optimize/subscribe.rs:259 ExprPrepMaintained; text and detail:
//      src/adapter/src/optimize/mod.rs OptimizerError::UnmaterializableFunction; code:
//      src/adapter/src/error.rs FEATURE_NOT_SUPPORTED). Materialize plans the SUBSCRIBE when the
//      cursor is first FETCHed, so DECLARE succeeds and the first FETCH fails
//      (test/testdrive/fetch-tail-as-of.td shows the same for a bad AS OF). DOUBLE LIMIT: found by
//      name in the query text (string literals aside), not inside views it reads.
//  R15 A SUBSCRIBE must be the only read of its transaction. Its first FETCH adds
//      TransactionOps::Subscribe (src/adapter/src/coord/sequencer/inner/subscribe.rs:190-195); after
//      that any read (SELECT, VALUES, SHOW, FETCH of a plain cursor, another SUBSCRIBE) fails with
//      25000 "SUBSCRIBE in transactions must be the only read statement", and a SUBSCRIBE after a
//      read fails with 25006 "transaction in read-only mode" (src/adapter/src/session.rs
//      add_transaction_ops; texts and codes: src/adapter/src/error.rs SubscribeOnlyTransaction,
//      ReadOnlyTransaction). SET is no transaction op and stays allowed.
//  R16 idle_in_transaction_session_timeout: default 2 min (src/sql/src/session/vars/definitions.rs
//      IDLE_IN_TRANSACTION_SESSION_TIMEOUT; the double's `idleInTransactionTimeoutMs` option, short
//      in tests), `0` turns it off; SET [SESSION|LOCAL] / RESET / SHOW, values `<n>[us|ms|s|min|h|d]`
//      with ms as the default unit and SHOW's format `2 min` (src/sql/src/session/vars/value.rs
//      `impl Value for Duration`); SET LOCAL lasts until the transaction ends (docs: sql/set). After
//      each message the server has processed, a session in a transaction arms the timer; the next
//      message disarms it (src/pgwire/src/protocol.rs:866, 918, 1039). When it fires, the session is
//      terminated at once (its transaction and SUBSCRIBE are gone), and the client's next message
//      is answered with FATAL 25P03 "terminating connection due to idle-in-transaction timeout",
//      then the connection closes (protocol.rs:878-899; text: src/adapter/src/error.rs). The
//      double does not forward this setting to PostgreSQL, so only this rule enforces it.
//  R17 Materialize-only SQL (LIST[…], MAP[…], map[text=>T], mz_now()) is rewritten before it is
//      forwarded or subscribed to: rules S1–S4 in test/support/mz-double-sql.ts, each citing the
//      Materialize test or source it follows; the functions behind them are MZ_SQL_SETUP.
//  R13 AWS connections live in mz_catalog.mz_connections / mz_internal.mz_aws_connections, and
//      has_connection_privilege(oid, 'USAGE') / mz_is_superuser() answer for the current role
//      (docs: sql/system-catalog, sql/functions); in the double these are PostgreSQL tables and
//      SQL functions (MZ_CATALOG_SETUP), queried through the ordinary forwarding path. A connection
//      has either ACCESS KEY ID (+ secret) or ASSUME ROLE ARN (src: test/aws-localstack/aws-connection/
//      aws-connection.td "must specify either …"); `external_id` is `mz_<prefix>_<id>` for
//      assume-role connections, NULL otherwise (src/storage-types/src/connections/aws.rs
//      AwsAssumeRole::external_id; aws-connection.td's mz_aws_connections rows), with the double's
//      prefix MZ_EXTERNAL_ID_PREFIX.
//
// Test controls (not Materialize behaviour): `knobs` shape how the snapshot becomes ready (over
// time, or chunk by chunk as a test releases them) and can inject a retraction; `events` records
// the statements the double saw, and `fetchesWaiting` counts FETCHes waiting for rows right now.
import { connect, createServer, type Server, type Socket } from "node:net";
import { cstr, frame, int16, int32 } from "../../src/wire/frame.js";
import { loadTranslator, translateMzSql } from "./mz-double-sql.js";

export const MZ_VERSION = "v0.0.0 (MaterializeWireDouble — a test double, not Materialize)";

/** SQL that creates the PostgreSQL stand-ins for Materialize's types in a database (R8). */
export const MZ_TYPES_SETUP = [
  "CREATE SCHEMA IF NOT EXISTS mz_catalog",
  "CREATE DOMAIN mz_catalog.uint2 AS int4 CHECK (VALUE BETWEEN 0 AND 65535)",
  "CREATE DOMAIN mz_catalog.uint4 AS int8 CHECK (VALUE BETWEEN 0 AND 4294967295)",
  "CREATE DOMAIN mz_catalog.uint8 AS numeric(20,0) CHECK (VALUE BETWEEN 0 AND 18446744073709551615)",
  "CREATE DOMAIN mz_catalog.mz_timestamp AS numeric(20,0) CHECK (VALUE >= 0)",
  // `<element>_list` over an array: a one-layer list; over jsonb: nested lists as JSON arrays.
  "CREATE DOMAIN mz_catalog.int4_list AS int4[]",
  "CREATE DOMAIN mz_catalog.int8_list AS int8[]",
  "CREATE DOMAIN mz_catalog.text_list AS text[]",
  "CREATE DOMAIN mz_catalog.numeric_list AS numeric[]",
  "CREATE DOMAIN mz_catalog.float8_list AS float8[]",
  "CREATE DOMAIN mz_catalog.bool_list AS bool[]",
  "CREATE DOMAIN mz_catalog.date_list AS date[]",
  "CREATE DOMAIN mz_catalog.timestamptz_list AS timestamptz[]",
  "CREATE DOMAIN mz_catalog.uint4_list AS mz_catalog.uint4[]",
  "CREATE DOMAIN mz_catalog.int4_list_list AS jsonb",
  // `<value>_map` over jsonb objects.
  "CREATE DOMAIN mz_catalog.int4_map AS jsonb",
  "CREATE DOMAIN mz_catalog.text_map AS jsonb",
  "CREATE DOMAIN mz_catalog.float8_map AS jsonb",
  "CREATE DOMAIN mz_catalog.int4_list_map AS jsonb",
];

/**
 * The parts of Materialize's catalog the proxy reads for AWS connections, as PostgreSQL tables,
 * views and functions (docs: sql/system-catalog/mz_catalog "mz_connections", "mz_schemas",
 * "mz_databases"; mz_internal "mz_aws_connections"; sql/functions "has_connection_privilege",
 * "mz_is_superuser"). Privileges are a plain list of roles with USAGE, plus the owner.
 */
export const MZ_CATALOG_SETUP = [
  "CREATE SCHEMA IF NOT EXISTS mz_catalog",
  "CREATE SCHEMA IF NOT EXISTS mz_internal",
  "CREATE VIEW mz_catalog.mz_databases AS SELECT oid::text AS id, datname::text AS name FROM pg_catalog.pg_database",
  `CREATE VIEW mz_catalog.mz_schemas AS SELECT n.oid::text AS id, n.nspname::text AS name,
     (SELECT oid::text FROM pg_catalog.pg_database WHERE datname = current_database()) AS database_id
   FROM pg_catalog.pg_namespace n`,
  `CREATE TABLE mz_catalog.mz_connections (id text PRIMARY KEY, oid oid NOT NULL, schema_id text NOT NULL,
     name text NOT NULL, type text NOT NULL, owner_role text NOT NULL, usage_roles text[] NOT NULL DEFAULT '{}')`,
  `CREATE TABLE mz_internal.mz_aws_connections (id text PRIMARY KEY, endpoint text, region text,
     access_key_id text, assume_role_arn text, assume_role_session_name text, external_id text)`,
  `CREATE FUNCTION mz_catalog.has_connection_privilege(oid, text) RETURNS boolean LANGUAGE sql STABLE AS
     $$ SELECT upper($2) = 'USAGE' AND (current_user = c.owner_role OR current_user = ANY (c.usage_roles))
        FROM mz_catalog.mz_connections c WHERE c.oid = $1 $$`,
  `CREATE FUNCTION mz_catalog.mz_is_superuser() RETURNS boolean LANGUAGE sql STABLE AS
     $$ SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user $$`,
  "GRANT USAGE ON SCHEMA mz_catalog, mz_internal TO PUBLIC",
  "GRANT SELECT ON ALL TABLES IN SCHEMA mz_catalog, mz_internal TO PUBLIC",
];

let connectionSeq = 0;

/** The double's environment prefix of external IDs (a real one is the environment's UUID). */
export const MZ_EXTERNAL_ID_PREFIX = "00000000-0000-0000-0000-00000000d0b1";

/** What `CREATE CONNECTION <name> TO AWS (…)` would leave in the catalog (docs: sql/create-connection). */
export function mzAwsConnectionSql(
  name: string,
  o: {
    schema?: string;
    endpoint?: string;
    region?: string;
    owner?: string;
    usage?: string[];
  } & ({ assumeRoleArn: string; assumeRoleSessionName?: string } | { accessKeyId: string }),
): { id: string; sql: string[] } {
  const id = `u${9000 + ++connectionSeq}`;
  const role = "assumeRoleArn" in o ? o : undefined;
  const q = (v: string | undefined): string => (v === undefined ? "NULL" : `'${v.replace(/'/g, "''")}'`);
  const roles = `ARRAY[${(o.usage ?? []).map(q).join(",")}]::text[]`;
  return {
    id,
    sql: [
      `INSERT INTO mz_catalog.mz_connections VALUES (${q(id)}, ${20000 + connectionSeq},
       (SELECT id FROM mz_catalog.mz_schemas WHERE name = ${q(o.schema ?? "public")}), ${q(name)}, 'aws',
       ${q(o.owner ?? "postgres")}, ${roles})`,
      `INSERT INTO mz_internal.mz_aws_connections VALUES (${q(id)}, ${q(o.endpoint)}, ${q(o.region)},
       ${q("accessKeyId" in o ? o.accessKeyId : undefined)}, ${q(role?.assumeRoleArn)},
       ${q(role?.assumeRoleSessionName)}, ${role === undefined ? "NULL" : q(`mz_${MZ_EXTERNAL_ID_PREFIX}_${id}`)})`,
    ],
  };
}

/** Makes the stand-in types resolvable by their Materialize names in `database`. */
export const mzSearchPath = (database: string): string =>
  `ALTER DATABASE ${database} SET search_path = "$user", public, mz_catalog`;

export interface DoubleKnobs {
  /** Snapshot rows become ready this many at a time… */
  snapshotChunkRows?: number;
  /** …one chunk every this many ms (the first at once). */
  snapshotChunkIntervalMs?: number;
  /**
   * …or only this many chunks, until releaseSnapshotChunk() releases the next: a test waits for
   * `fetchesWaiting`, not for a clock (the interval counts from DECLARE, which a slow export's
   * preflight can outlast).
   */
  snapshotChunksReleased?: number;
  /** Emits the snapshot row with this index (0-based) with a negative mz_diff. */
  retractRow?: number;
  /** Every input's frontier has closed (R4a): AS OF u64::MAX and the SUBSCRIBE ends after its data. */
  closedInputs?: boolean;
  /** Nothing, not even the first progress row, is ready before this many ms after DECLARE. */
  firstRowDelayMs?: number;
}

/** R4a: the AS OF of a SUBSCRIBE without a timestamp dependency. */
export const U64_MAX = 18446744073709551615n;

// ---------------------------------------------------------------------------------------------
// Wire helpers

const msg = frame;
const i16 = int16;
const i32 = int32;

interface Field {
  name: string;
  oid: number;
  typmod: number;
  size: number;
  format: number;
}

function rowDescription(fields: Field[]): Buffer {
  return msg(
    "T",
    i16(fields.length),
    ...fields.flatMap((f) => [
      cstr(f.name),
      i32(0),
      i16(0),
      i32(f.oid),
      i16(f.size),
      i32(f.typmod),
      i16(f.format),
    ]),
  );
}

function parseRowDescription(body: Buffer): Field[] {
  const n = body.readInt16BE(0);
  const out: Field[] = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const z = body.indexOf(0, p);
    const name = body.toString("utf8", p, z);
    p = z + 1;
    out.push({
      name,
      oid: body.readUInt32BE(p + 6),
      size: body.readInt16BE(p + 10),
      typmod: body.readInt32BE(p + 12),
      format: body.readInt16BE(p + 16),
    });
    p += 18;
  }
  return out;
}

function dataRow(values: Array<Buffer | null>): Buffer {
  let len = 4 + 2;
  for (const v of values) len += 4 + (v === null ? 0 : v.length);
  const out = Buffer.allocUnsafe(1 + len);
  out[0] = 0x44; // D
  out.writeInt32BE(len, 1);
  out.writeInt16BE(values.length, 5);
  let p = 7;
  for (const v of values) {
    if (v === null) {
      out.writeInt32BE(-1, p);
      p += 4;
    } else {
      out.writeInt32BE(v.length, p);
      p += 4 + v.copy(out, p + 4);
    }
  }
  return out;
}

function splitRow(body: Buffer): Array<Buffer | null> {
  const n = body.readInt16BE(0);
  const out: Array<Buffer | null> = [];
  let p = 2;
  for (let i = 0; i < n; i++) {
    const len = body.readInt32BE(p);
    p += 4;
    if (len < 0) out.push(null);
    else {
      out.push(body.subarray(p, p + len));
      p += len;
    }
  }
  return out;
}

interface ErrFields {
  code: string;
  message: string;
  detail?: string;
  severity?: string;
}

function errorMsg(e: ErrFields, type = "E"): Buffer {
  const sev = e.severity ?? (type === "N" ? "NOTICE" : "ERROR");
  const parts = [
    Buffer.from("S"),
    cstr(sev),
    Buffer.from("V"),
    cstr(sev),
    Buffer.from("C"),
    cstr(e.code),
    Buffer.from("M"),
    cstr(e.message),
  ];
  if (e.detail !== undefined) parts.push(Buffer.from("D"), cstr(e.detail));
  parts.push(Buffer.from([0]));
  return msg(type, ...parts);
}

function parseErr(body: Buffer): ErrFields & Record<string, string> {
  const out: Record<string, string> = {};
  let i = 0;
  while (i < body.length && body[i] !== 0) {
    const tag = String.fromCharCode(body[i]!);
    const end = body.indexOf(0, i + 1);
    out[tag] = body.toString("utf8", i + 1, end);
    i = end + 1;
  }
  return { ...out, code: out.C ?? "XX000", message: out.M ?? "" };
}

const complete = (tag: string): Buffer => msg("C", cstr(tag));
const ready = (s: string): Buffer => msg("Z", Buffer.from(s));
const parameterStatus = (k: string, v: string): Buffer => msg("S", cstr(k), cstr(v));

class DoubleError extends Error {
  constructor(readonly fields: ErrFields) {
    super(fields.message);
  }
}
const fail = (code: string, message: string): never => {
  throw new DoubleError({ code, message });
};

// ---------------------------------------------------------------------------------------------
// Types (R8)

const OID = {
  uint2: 16460,
  uint4: 16462,
  uint8: 16464,
  mzTimestamp: 16552,
  list: 16384,
  map: 16385,
} as const;

type MzT =
  | { k: "pg"; oid: number }
  | { k: "uint"; width: 2 | 4 | 8 }
  | { k: "mzts" }
  | { k: "list"; elem: MzT; json: boolean }
  | { k: "map"; value: MzT };

/** Materialize's names for PostgreSQL's standard types (src/pgrepr/src/types.rs Type::name). */
const STD_NAMES = new Map<number, string>([
  [16, "boolean"],
  [17, "bytea"],
  [20, "bigint"],
  [21, "smallint"],
  [23, "integer"],
  [25, "text"],
  [26, "oid"],
  [114, "json"],
  [700, "real"],
  [701, "double precision"],
  [1042, "character"],
  [1043, "character varying"],
  [1082, "date"],
  [1083, "time"],
  [1114, "timestamp without time zone"],
  [1184, "timestamp with time zone"],
  [1186, "interval"],
  [1700, "numeric"],
  [2950, "uuid"],
  [3802, "jsonb"],
]);
const PG_TYPE_BY_NAME = new Map<string, number>([
  ["bool", 16],
  ["int2", 21],
  ["int4", 23],
  ["int8", 20],
  ["text", 25],
  ["float4", 700],
  ["float8", 701],
  ["numeric", 1700],
  ["date", 1082],
  ["timestamp", 1114],
  ["timestamptz", 1184],
  ["jsonb", 3802],
  ["uuid", 2950],
]);
/** RowDescription's type size (src/pgrepr/src/types.rs `Type::typlen`; -1 for the rest). */
const STD_SIZE = new Map<number, number>([
  [16, 1],
  [26, 4],
  [1186, 16],
  [20, 8],
  [21, 2],
  [23, 4],
  [700, 4],
  [701, 8],
  [1082, 4],
  [1083, 8],
  [1114, 8],
  [1184, 8],
  [2950, 16],
]);

function mzOid(t: MzT): number {
  switch (t.k) {
    case "pg":
      return t.oid;
    case "uint":
      return t.width === 2 ? OID.uint2 : t.width === 4 ? OID.uint4 : OID.uint8;
    case "mzts":
      return OID.mzTimestamp;
    case "list":
      return OID.list;
    case "map":
      return OID.map;
  }
}

function mzSize(t: MzT): number {
  if (t.k === "uint") return t.width;
  if (t.k === "mzts") return 8;
  if (t.k === "pg") return STD_SIZE.get(t.oid) ?? -1;
  return -1;
}

/** Materialize's humanized name (R10). */
function humanize(t: MzT, reg: Registry): string {
  switch (t.k) {
    case "pg":
      return reg.pgName(t.oid);
    case "uint":
      return `uint${t.width}`;
    case "mzts":
      return "mz_timestamp";
    case "list":
      return `${humanize(t.elem, reg)} list`;
    case "map":
      return `map[text=>${humanize(t.value, reg)}]`;
  }
}

/** mz_columns.type: the type's own name, `list`/`map` for those (R9). */
function columnTypeName(t: MzT, reg: Registry): string {
  if (t.k === "list") return "list";
  if (t.k === "map") return "map";
  return humanize(t, reg);
}

const special = (t: MzT): boolean => t.k !== "pg";

interface DomainRow {
  oid: number;
  name: string;
  baseOid: number;
  baseName: string;
  baseCategory: string;
  baseElem: number;
}

/** The PostgreSQL stand-ins of Materialize's types, read from the catalog (R8). */
class Registry {
  private readonly byOid = new Map<number, MzT>();
  private readonly byName = new Map<string, MzT>();
  private readonly pgNames = new Map<number, string>();

  constructor(
    domains: DomainRow[],
    arrays: Array<{ oid: number; elem: number }>,
    names: Array<[number, string]>,
  ) {
    for (const [o, n] of names) this.pgNames.set(o, n);
    const rows = new Map(domains.map((d) => [d.name, d]));
    const resolving = new Set<string>();
    const fromName = (name: string): MzT | undefined => {
      const known = this.byName.get(name);
      if (known) return known;
      const d = rows.get(name);
      if (d === undefined) {
        const oid = PG_TYPE_BY_NAME.get(name);
        return oid === undefined ? undefined : { k: "pg", oid };
      }
      if (resolving.has(name)) return undefined;
      resolving.add(name);
      const t = build(d);
      resolving.delete(name);
      if (t) {
        this.byName.set(name, t);
        this.byOid.set(d.oid, t);
      }
      return t;
    };
    const fromOid = (oid: number): MzT => {
      const d = domains.find((x) => x.oid === oid);
      if (d) return fromName(d.name) ?? { k: "pg", oid: d.baseOid };
      return { k: "pg", oid };
    };
    const build = (d: DomainRow): MzT | undefined => {
      if (d.name === "uint2") return { k: "uint", width: 2 };
      if (d.name === "uint4") return { k: "uint", width: 4 };
      if (d.name === "uint8") return { k: "uint", width: 8 };
      if (d.name === "mz_timestamp") return { k: "mzts" };
      if (d.name.endsWith("_list")) {
        if (d.baseCategory === "A") return { k: "list", elem: fromOid(d.baseElem), json: false };
        const elem = fromName(d.name.slice(0, -5));
        return elem && d.baseName === "jsonb" ? { k: "list", elem, json: true } : undefined;
      }
      if (d.name.endsWith("_map") && d.baseName === "jsonb") {
        const value = fromName(d.name.slice(0, -4));
        return value ? { k: "map", value } : undefined;
      }
      return undefined;
    };
    for (const d of domains) fromName(d.name);
    // Arrays of stand-ins (uint4[]) keep PostgreSQL's array OID; Materialize has its own.
    void arrays;
  }

  /** What Materialize would call a column of PostgreSQL type `oid` (domains resolved). */
  type(oid: number): MzT {
    return this.byOid.get(oid) ?? { k: "pg", oid: this.bases.get(oid)?.oid ?? oid };
  }

  pgName(oid: number): string {
    const std = STD_NAMES.get(oid);
    if (std) return std;
    const n = this.pgNames.get(oid);
    if (n?.endsWith("[]")) return n;
    return n ?? `oid ${oid}`;
  }

  /** A regtype's text output (R10): stand-ins by their Materialize names. */
  humanizeRegtype(text: string): string {
    let t = text.trim();
    let suffix = "";
    while (t.endsWith("[]")) {
      t = t.slice(0, -2);
      suffix += "[]";
    }
    const bare = t.replace(/^mz_catalog\./, "").replace(/^"(.*)"$/, "$1");
    const mz = this.byName.get(bare);
    if (mz) return humanize(mz, this) + suffix;
    // postgres_types' TIME is named `time`; TIMESTAMP keeps `timestamp without time zone` (R10).
    if (t === "time without time zone") return `time${suffix}`;
    return t + suffix;
  }

  static readonly QUERY = `SELECT t.oid::int8, t.typname::text, t.typbasetype::int8, bt.typname::text,
  bt.typcategory::text, bt.typelem::int8, (n.nspname = 'mz_catalog')::text, t.typtypmod
  FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
  JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype WHERE t.typtype = 'd'`;

  private readonly bases = new Map<number, { oid: number; typmod: number }>();

  /** Other domains: Materialize has none, so a column of one is its base type (with its typmod). */
  base(oid: number): { oid: number; typmod: number } | undefined {
    return this.bases.get(oid);
  }

  addBase(oid: number, base: number, typmod: number): void {
    this.bases.set(oid, { oid: base, typmod });
  }
}

/** The typmod Materialize sends for a column PostgreSQL describes with (oid, typmod) (R8a). */
function mzTypmod(oid: number, typmod: number): number {
  if (oid === 1700) {
    const scale = typmod >= 4 ? (((typmod - 4) & 0x7ff) ^ 1024) - 1024 : 39;
    return ((39 << 16) | (scale & 0x7ff)) + 4;
  }
  return ARRAY_OIDS.has(oid) ? -1 : typmod;
}
/** PostgreSQL's built-in array types that carry their element's typmod (R8a: Materialize's do not). */
const ARRAY_OIDS = new Set([1231, 1014, 1015, 1115, 1183, 1185, 1187]);

/** A RowDescription with Materialize's typmods (R8a). */
function withMzTypmods(fields: Field[]): Field[] {
  return fields.map((f) => ({ ...f, typmod: mzTypmod(f.oid, f.typmod) }));
}

// ---------------------------------------------------------------------------------------------
// Value conversion: PostgreSQL text → Materialize text/binary for the stand-in types (R8)

function needsQuotes(s: string, map: boolean): boolean {
  return s === "" || s === "NULL" || (map ? /[{},"\\=>\s]/ : /[{},"\\\s]/).test(s);
}
function quoteElem(s: string, map: boolean): string {
  return needsQuotes(s, map) ? `"${s.replace(/["\\]/g, (c) => `\\${c}`)}"` : s;
}

/** PostgreSQL one-dimensional array text → element texts. */
function parsePgArray(s: string): Array<string | null> {
  if (s === "{}") return [];
  if (!s.startsWith("{") || !s.endsWith("}") || s.startsWith("{{")) {
    return fail("0A000", `MaterializeWireDouble: only one-dimensional arrays stand in for lists (${s})`);
  }
  const out: Array<string | null> = [];
  let i = 1;
  while (i < s.length - 1) {
    if (s[i] === '"') {
      let v = "";
      i++;
      while (s[i] !== '"') {
        if (s[i] === "\\") i++;
        v += s[i++];
      }
      i++;
      out.push(v);
    } else {
      let j = i;
      while (j < s.length - 1 && s[j] !== ",") j++;
      const v = s.slice(i, j);
      out.push(v.toUpperCase() === "NULL" ? null : v);
      i = j;
    }
    if (s[i] === ",") i++;
  }
  return out;
}

/** A JSON value as the text of a Materialize value of type `t`. */
function jsonToMzText(v: unknown, t: MzT): string | null {
  if (v === null) return null;
  if (t.k === "list") {
    if (!Array.isArray(v)) return fail("22P02", `MaterializeWireDouble: expected a JSON array for a list`);
    return listText(
      v.map((e) => jsonToMzText(e, t.elem)),
      t.elem,
    );
  }
  if (t.k === "map") {
    if (typeof v !== "object" || Array.isArray(v)) return fail("22P02", "expected a JSON object for a map");
    return mapText(
      Object.entries(v as Record<string, unknown>).map(([k, x]) => [k, jsonToMzText(x, t.value)]),
      t.value,
    );
  }
  if (typeof v === "boolean") return v ? "t" : "f";
  if (typeof v === "string") return v;
  return JSON.stringify(v);
}

const nests = (t: MzT): boolean => t.k === "list" || t.k === "map";

function listText(elems: Array<string | null>, elem: MzT): string {
  return `{${elems.map((e) => (e === null ? "NULL" : nests(elem) ? e : quoteElem(e, false))).join(",")}}`;
}

function mapText(entries: Array<[string, string | null]>, value: MzT): string {
  // Materialize's maps are ordered by key (a BTreeMap of Rust strings: byte order).
  const sorted = [...entries].sort((a, b) => Buffer.compare(Buffer.from(a[0]), Buffer.from(b[0])));
  return `{${sorted
    .map(([k, v]) => `${quoteElem(k, true)}=>${v === null ? "NULL" : nests(value) ? v : quoteElem(v, true)}`)
    .join(",")}}`;
}

/** PostgreSQL's text of a stand-in value → Materialize's text. */
function pgTextToMzText(t: MzT, text: string): string {
  switch (t.k) {
    case "uint":
    case "mzts":
      return text;
    case "list":
      if (t.json) return jsonToMzText(JSON.parse(text), t) ?? "NULL";
      return listText(
        parsePgArray(text).map((e) => (e === null ? null : pgTextToMzText(t.elem, e))),
        t.elem,
      );
    case "map":
      return jsonToMzText(JSON.parse(text), t) ?? "NULL";
    case "pg":
      return text;
  }
}

/** Materialize's binary for a stand-in value, from its text (R8). */
function mzBinary(t: MzT, text: string): Buffer {
  if (t.k === "uint") {
    const b = Buffer.alloc(t.width);
    const v = BigInt(text);
    if (t.width === 2) b.writeUInt16BE(Number(v));
    else if (t.width === 4) b.writeUInt32BE(Number(v));
    else b.writeBigUInt64BE(v);
    return b;
  }
  if (t.k === "mzts") return Buffer.from(text, "latin1"); // binary mz_timestamp is its text
  return fail("08P01", `binary encoding of ${t.k} types is not implemented`);
}

/** A non-negative integer as PostgreSQL/Materialize binary numeric. */
function numericBinaryOfInteger(digits: string): Buffer {
  const d = digits.replace(/^0+/, "");
  if (d === "") return Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]);
  const padded = d.padStart(Math.ceil(d.length / 4) * 4, "0");
  const groups: number[] = [];
  for (let i = 0; i < padded.length; i += 4) groups.push(Number(padded.slice(i, i + 4)));
  const weight = groups.length - 1;
  while (groups.length > 0 && groups[groups.length - 1] === 0) groups.pop();
  const b = Buffer.alloc(8 + 2 * groups.length);
  b.writeUInt16BE(groups.length, 0);
  b.writeInt16BE(weight, 2);
  b.writeUInt16BE(0, 4);
  b.writeUInt16BE(0, 6);
  for (const [i, g] of groups.entries()) b.writeUInt16BE(g, 8 + 2 * i);
  return b;
}

// ---------------------------------------------------------------------------------------------
// SQL recognition

const IDENT = '(?:"(?:[^"]|"")+"|[A-Za-z_][A-Za-z0-9_$]*)';
const unquote = (s: string): string =>
  s.startsWith('"') ? s.slice(1, -1).replace(/""/g, '"') : s.toLowerCase();

/** R12: what a failed transaction answers to everything but COMMIT/ROLLBACK (docs: sql/begin). */
const ABORTED = new DoubleError({
  code: "25P02",
  message: "current transaction is aborted, commands ignored until end of transaction block",
});

/** Statements a failed transaction still runs (protocol.rs `is_txn_exit_stmt`: COMMIT, ROLLBACK). */
function isTxnExit(stmt: string): boolean {
  return /^(rollback|abort|commit|end)\b/i.test(stmt);
}

function stripStatement(sql: string): string {
  return sql
    .replace(/^\s*(?:--[^\n]*\n\s*)*/, "")
    .trim()
    .replace(/;\s*$/, "")
    .trim();
}

interface SubscribeSpec {
  query: string;
  progress: boolean;
  snapshot: boolean;
  asOf?: { value: bigint; atLeast: boolean };
  upTo?: bigint;
}

function matchingParen(s: string, open: number): number {
  let depth = 0;
  let quote: string | null = null;
  for (let i = open; i < s.length; i++) {
    const c = s[i]!;
    if (quote) {
      if (c === quote) quote = null;
      continue;
    }
    if (c === "'" || c === '"') quote = c;
    else if (c === "(") depth++;
    else if (c === ")" && --depth === 0) return i;
  }
  return -1;
}

function parseSubscribe(body: string): SubscribeSpec {
  let rest = body.trim().replace(/^to\s+/i, "");
  let query: string;
  if (rest.startsWith("(")) {
    const close = matchingParen(rest, 0);
    if (close < 0) fail("42601", "syntax error: unbalanced parentheses in SUBSCRIBE");
    query = rest.slice(1, close);
    rest = rest.slice(close + 1).trim();
  } else {
    const m = new RegExp(`^(${IDENT}(?:\\.${IDENT}){0,2})`).exec(rest);
    if (!m) return fail("42601", "syntax error in SUBSCRIBE");
    query = `SELECT * FROM ${m[1]}`;
    rest = rest.slice(m[1]!.length).trim();
  }
  const spec: SubscribeSpec = { query, progress: false, snapshot: true };
  const w = /^with\s*\(/i.exec(rest);
  if (w) {
    const open = w[0].length - 1;
    const close = matchingParen(rest, open);
    for (const opt of rest.slice(open + 1, close).split(",")) {
      const m = /^\s*(progress|snapshot)\s*(?:=?\s*(true|false))?\s*$/i.exec(opt);
      if (!m) fail("0A000", `MaterializeWireDouble: unsupported SUBSCRIBE option ${opt.trim()}`);
      const on = m![2] === undefined || m![2]!.toLowerCase() === "true";
      if (m![1]!.toLowerCase() === "progress") spec.progress = on;
      else spec.snapshot = on;
    }
    rest = rest.slice(close + 1).trim();
  }
  const asOf = /^as\s+of\s+(at\s+least\s+)?(\d+)\s*/i.exec(rest);
  if (asOf) {
    spec.asOf = { value: BigInt(asOf[2]!), atLeast: asOf[1] !== undefined };
    rest = rest.slice(asOf[0].length);
  }
  const upTo = /^up\s+to\s+(\d+)\s*/i.exec(rest);
  if (upTo) {
    spec.upTo = BigInt(upTo[1]!);
    rest = rest.slice(upTo[0].length);
  }
  if (rest.trim() !== "")
    fail("0A000", `MaterializeWireDouble: unsupported SUBSCRIBE clause: ${rest.trim()}`);
  return spec;
}

/** `'1s'`, `'100ms'`, `'0.5 seconds'`, `'2'` (seconds) → ms. */
function parseTimeout(s: string): number {
  const m =
    /^\s*(\d+(?:\.\d+)?)\s*(ms|msec|milliseconds?|s|sec|secs|seconds?|m|min|minutes?|h|hours?)?\s*$/i.exec(s);
  if (!m) return fail("22007", `invalid input syntax for type interval: "${s}"`);
  const v = Number(m[1]);
  const u = (m[2] ?? "s").toLowerCase();
  if (u.startsWith("ms") || u.startsWith("milli")) return v;
  if (u.startsWith("h")) return v * 3_600_000;
  if (u === "m" || u.startsWith("min")) return v * 60_000;
  return v * 1000;
}

type Local =
  | { kind: "mz_version" }
  | { kind: "declare"; cursor: string; spec: SubscribeSpec }
  | { kind: "subscribe"; spec: SubscribeSpec }
  | { kind: "fetch"; cursor: string; count: number; timeoutMs: number | null }
  | { kind: "close"; cursor: string }
  | { kind: "show_columns"; relation: string }
  | { kind: "refused"; code: string; message: string; detail?: string }
  | { kind: "set_idle"; local: boolean; ms: number | null }
  | { kind: "show_idle" };

// ---------------------------------------------------------------------------------------------
// The backing PostgreSQL connection

interface PgMsg {
  type: string;
  body: Buffer;
}

class PgLink {
  private buf: Buffer = Buffer.alloc(0);
  private waiters: Array<(m: PgMsg) => void> = [];
  private queue: PgMsg[] = [];
  /** Relay mode: every message goes here. */
  relay: ((m: PgMsg) => void) | null = null;
  closed = false;

  constructor(readonly sock: Socket) {
    sock.on("data", (d: Buffer) => this.onData(d));
    sock.on("close", () => {
      this.closed = true;
    });
    sock.on("error", () => {});
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length === 0 ? d : Buffer.concat([this.buf, d]);
    let p = 0;
    while (this.buf.length - p >= 5) {
      const len = this.buf.readInt32BE(p + 1);
      if (this.buf.length - p < 1 + len) break;
      const m = {
        type: String.fromCharCode(this.buf[p]!),
        body: Buffer.from(this.buf.subarray(p + 5, p + 1 + len)),
      };
      p += 1 + len;
      if (this.relay) this.relay(m);
      else {
        const w = this.waiters.shift();
        if (w) w(m);
        else this.queue.push(m);
      }
    }
    this.buf = this.buf.subarray(p);
  }

  next(): Promise<PgMsg> {
    const m = this.queue.shift();
    if (m) return Promise.resolve(m);
    if (this.closed) return Promise.reject(new Error("PostgreSQL connection closed"));
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  send(b: Buffer): void {
    this.sock.write(b);
  }

  /** Sends `msgs` and collects the replies up to ReadyForQuery (internal use only). */
  async exchange(
    msgs: Buffer[],
  ): Promise<{ msgs: PgMsg[]; error: (ErrFields & Record<string, string>) | null; status: string }> {
    // The session is idle on the relay side (every forwarded reply is in): take the stream over.
    const relay = this.relay;
    this.relay = null;
    try {
      for (const m of msgs) this.send(m);
      const out: PgMsg[] = [];
      let error: (ErrFields & Record<string, string>) | null = null;
      for (;;) {
        const m = await this.next();
        if (m.type === "E") error ??= parseErr(m.body);
        else if (m.type === "Z") return { msgs: out, error, status: m.body.toString("latin1", 0, 1) };
        else if (m.type !== "N" && m.type !== "S") out.push(m);
      }
    } finally {
      this.relay = relay;
    }
  }

  async simple(sql: string): Promise<{
    fields: Field[];
    rows: Array<Array<string | null>>;
    error: (ErrFields & Record<string, string>) | null;
  }> {
    const r = await this.exchange([msg("Q", cstr(sql))]);
    let fields: Field[] = [];
    const rows: Array<Array<string | null>> = [];
    for (const m of r.msgs) {
      if (m.type === "T") fields = parseRowDescription(m.body);
      else if (m.type === "D")
        rows.push(splitRow(m.body).map((v) => (v === null ? null : v.toString("utf8"))));
    }
    return { fields, rows, error: r.error };
  }

  async must(sql: string): Promise<Array<Array<string | null>>> {
    const r = await this.simple(sql);
    if (r.error) throw new DoubleError(r.error);
    return r.rows;
  }
}

// ---------------------------------------------------------------------------------------------
// The double

export class MaterializeWireDouble {
  readonly knobs: DoubleKnobs = {};
  /** Statements the double answered itself or forwarded, in order (for assertions). */
  readonly events: string[] = [];
  /** The AS OF of the last SUBSCRIBE. */
  lastAsOf: string | undefined;
  /** FETCHes waiting for rows right now (test control). */
  fetchesWaiting = 0;
  private readonly wakers = new Set<() => void>();
  private readonly sessions = new Map<number, DoubleSession>();
  private nextPid = 4242;
  private clock = 0n;

  private constructor(
    private readonly server: Server,
    readonly pgPort: number,
    readonly pgHost: string,
    readonly historyMs: number,
    /** R16: the default idle_in_transaction_session_timeout of new sessions. */
    readonly idleInTransactionTimeoutMs: number,
  ) {}

  static async start(opts: {
    pgPort: number;
    pgHost?: string;
    historyMs?: number;
    idleInTransactionTimeoutMs?: number;
  }): Promise<MaterializeWireDouble> {
    await loadTranslator();
    const server = createServer({ noDelay: true });
    const d = new MaterializeWireDouble(
      server,
      opts.pgPort,
      opts.pgHost ?? "127.0.0.1",
      opts.historyMs ?? 60_000,
      opts.idleInTransactionTimeoutMs ?? 120_000,
    );
    server.on("connection", (sock) => d.accept(sock));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    return d;
  }

  get port(): number {
    const a = this.server.address();
    return typeof a === "object" && a !== null ? a.port : 0;
  }

  url(user = "postgres", database = "postgres"): string {
    return `postgres://${encodeURIComponent(user)}@127.0.0.1:${this.port}/${database}`;
  }

  resetKnobs(): void {
    for (const k of Object.keys(this.knobs)) delete (this.knobs as Record<string, unknown>)[k];
  }

  /** One more snapshot chunk is ready (knobs.snapshotChunksReleased); waiting FETCHes look again. */
  releaseSnapshotChunk(): void {
    this.knobs.snapshotChunksReleased = (this.knobs.snapshotChunksReleased ?? 0) + 1;
    for (const wake of [...this.wakers]) wake();
  }

  /** @internal A FETCH's wait for rows: `ms`, a cancel (rejects), or a released chunk. */
  waitForRows(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (signal.aborted) return reject(new Error("aborted"));
      let done = false;
      // Counted down as it wakes, not after: a test that just released a chunk must not see
      // this FETCH as still waiting for it.
      const settle = (err?: Error): void => {
        if (done) return;
        done = true;
        clearTimeout(t);
        signal.removeEventListener("abort", onAbort);
        this.wakers.delete(wake);
        this.fetchesWaiting--;
        if (err) reject(err);
        else resolve();
      };
      const wake = (): void => settle();
      const onAbort = (): void => settle(new Error("aborted"));
      // setTimeout takes at most 2^31-1 ms (longer fires at once).
      const t = setTimeout(wake, Math.min(ms, 2 ** 31 - 1));
      this.fetchesWaiting++;
      this.wakers.add(wake);
      signal.addEventListener("abort", onAbort, { once: true });
    });
  }

  /** Materialize timestamps: milliseconds since the Unix epoch, never going backwards. */
  now(): bigint {
    const t = BigInt(Date.now());
    this.clock = t > this.clock ? t : this.clock;
    return this.clock;
  }

  async stop(): Promise<void> {
    for (const s of this.sessions.values()) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(sock: Socket): void {
    sock.setNoDelay(true);
    let buf = Buffer.alloc(0);
    const onData = (d: Buffer): void => {
      buf = Buffer.concat([buf, d]);
      if (buf.length < 8) return;
      const len = buf.readInt32BE(0);
      if (buf.length < len) return;
      const code = buf.readInt32BE(4);
      const packet = buf.subarray(0, len);
      buf = buf.subarray(len);
      if (code === 80877103 || code === 80877104) {
        sock.write("N"); // SSLRequest / GSSENCRequest: no
        if (buf.length > 0) onData(Buffer.alloc(0));
        return;
      }
      sock.off("data", onData);
      if (code === 80877102) {
        // Closed once the cancel has reached PostgreSQL too: a client that waits for the close
        // before its next statement (as the proxy does) can then not have that statement cancelled.
        const session = this.sessions.get(packet.readInt32BE(8));
        void (session?.cancel(packet.readInt32BE(12)) ?? Promise.resolve()).then(() => sock.destroy());
        return;
      }
      const params = new Map<string, string>();
      const parts = packet.toString("utf8", 8).split("\0");
      for (let i = 0; i + 1 < parts.length; i += 2) if (parts[i]) params.set(parts[i]!, parts[i + 1]!);
      const pid = this.nextPid++;
      const s = new DoubleSession(this, sock, pid, params, buf);
      this.sessions.set(pid, s);
      sock.on("close", () => this.sessions.delete(pid));
      void s.run().catch(() => s.destroy());
    };
    sock.on("data", onData);
    sock.on("error", () => {});
  }

  /** The longest any session has now sat idle in a transaction (test control, R16). */
  longestIdleInTransactionMs(): number {
    let most = 0;
    for (const s of this.sessions.values()) most = Math.max(most, s.idleInTransactionMs());
    return most;
  }

  /** @internal */
  log(e: string): void {
    this.events.push(e);
    if (this.events.length > 10_000) this.events.splice(0, 5_000);
  }
}

interface SubscribeState {
  spec: SubscribeSpec;
  asOf: bigint;
  /** R4a: the SUBSCRIBE ends after its snapshot (no timestamp dependency, or closed inputs). */
  closed: boolean;
  /** Planned by its first FETCH (R14, R15). */
  planned: boolean;
  /** R14: what its first FETCH fails with. */
  refusal: ErrFields | null;
  pgCursor: string | null;
  pgExhausted: boolean;
  fields: Field[]; // output description (text formats)
  types: MzT[]; // data columns
  phase: "initial" | "snapshot" | "live" | "done";
  lastProgress: bigint;
  declaredAt: number;
  emittedSnapshotRows: number;
  buffered: Array<Array<Buffer | null>>; // snapshot rows already read from PostgreSQL, PG format
  bufferedFormats: number[];
}

type Exp =
  | { k: "query" }
  | { k: "parse"; name: string }
  | { k: "bind" }
  | { k: "describeS" }
  | { k: "describeP" }
  | { k: "execute" }
  | { k: "close" }
  | { k: "sync" }
  | { k: "flush" };

class DoubleSession {
  private readonly pg: PgLink;
  private txStatus = "I";
  private localFailed = false;
  private readonly subscribes = new Map<string, SubscribeState>();
  private readonly localStatements = new Map<string, { local: Local; formats?: number[] }>();
  private readonly localPortals = new Map<string, { local: Local; formats: number[]; done?: boolean }>();
  private pgPid = 0;
  private pgSecret = 0;
  private readonly secret = Math.floor(Math.random() * 0x7fffffff);
  private abort: AbortController | null = null;
  private exps: Exp[] = [];
  private drained: Array<() => void> = [];
  private skipping = false; // extended-protocol error: skip until Sync
  private segForwarded = false;
  private registry: Registry | null = null;
  private clientBuf: Buffer;
  private inbox: Array<{ type: string; body: Buffer }> = [];
  private wake: (() => void) | null = null;
  private closed = false;
  private seq = 0;
  /** R15: what the current transaction has read. */
  private txnOps: "none" | "peeks" | "subscribe" = "none";
  /** R16: the session's idle_in_transaction_session_timeout, and a SET LOCAL value over it. */
  private idleSessionMs: number;
  private idleLocalMs: number | null = null;
  private idleTimer: NodeJS.Timeout | null = null;
  private idleSince: number | null = null;
  private timedOut = false;

  constructor(
    private readonly double: MaterializeWireDouble,
    private readonly client: Socket,
    readonly pid: number,
    private readonly params: Map<string, string>,
    leftover: Buffer,
  ) {
    this.clientBuf = leftover;
    this.idleSessionMs = double.idleInTransactionTimeoutMs;
    this.pg = new PgLink(connect({ host: double.pgHost, port: double.pgPort, noDelay: true }));
    client.on("close", () => this.destroy());
    this.pg.sock.on("close", () => this.destroy());
  }

  destroy(): void {
    if (this.closed) return;
    this.closed = true;
    this.disarmIdle();
    this.abort?.abort();
    this.client.destroy();
    this.pg.sock.destroy();
    this.wake?.();
  }

  /**
   * A CancelRequest: resolves once PostgreSQL has taken its own (it closes the connection after
   * processing it: PostgreSQL docs, "Canceling Requests in Progress").
   */
  cancel(secret: number): Promise<void> {
    if (secret !== this.secret) return Promise.resolve();
    this.abort?.abort();
    // And whatever PostgreSQL is running for this session.
    const s = connect({ host: this.double.pgHost, port: this.double.pgPort });
    const delivered = new Promise<void>((resolve) => s.on("close", () => resolve()));
    s.on("error", () => {});
    s.on("connect", () => {
      const b = Buffer.alloc(16);
      b.writeInt32BE(16, 0);
      b.writeInt32BE(80877102, 4);
      b.writeInt32BE(this.pgPid, 8);
      b.writeInt32BE(this.pgSecret, 12);
      s.end(b);
    });
    return delivered;
  }

  private toClient(b: Buffer): void {
    if (!this.closed) this.client.write(b);
  }

  // ---- startup ---------------------------------------------------------------------------

  async run(): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.pg.sock.once("connect", resolve);
      this.pg.sock.once("error", reject);
    });
    const kv = [...this.params].filter(([k]) => k === "user" || k === "database" || k === "application_name");
    const body = Buffer.concat([
      i32(196608),
      ...kv.flatMap(([k, v]) => [cstr(k), cstr(v)]),
      Buffer.from([0]),
    ]);
    this.pg.send(Buffer.concat([i32(body.length + 4), body]));
    for (;;) {
      const m = await this.pg.next();
      if (m.type === "R") {
        if (m.body.readInt32BE(0) !== 0) {
          this.toClient(
            errorMsg({ severity: "FATAL", code: "28000", message: "MaterializeWireDouble: trust auth only" }),
          );
          return this.destroy();
        }
        this.toClient(m.body.length === 4 ? msg("R", i32(0)) : msg("R", m.body));
      } else if (m.type === "S") {
        const [k] = m.body.toString("utf8").split("\0");
        if (k === "server_version" || k === "server_version_num") continue;
        this.toClient(msg("S", m.body));
      } else if (m.type === "K") {
        this.pgPid = m.body.readInt32BE(0);
        this.pgSecret = m.body.readInt32BE(4);
      } else if (m.type === "E") {
        this.toClient(msg("E", m.body));
        return this.destroy();
      } else if (m.type === "Z") {
        break;
      }
    }
    // R1
    this.toClient(parameterStatus("server_version", "9.5.0"));
    this.toClient(parameterStatus("server_version_num", "90500"));
    this.toClient(parameterStatus("mz_version", MZ_VERSION));
    this.toClient(msg("K", i32(this.pid), i32(this.secret)));
    await this.loadRegistry();
    this.toClient(ready("I"));
    this.pg.relay = (m) => this.onPg(m);
    this.client.on("data", (d: Buffer) => this.onClientData(d));
    if (this.clientBuf.length > 0) this.onClientData(Buffer.alloc(0));
    await this.loop();
  }

  private onClientData(d: Buffer): void {
    this.clientBuf = this.clientBuf.length === 0 ? d : Buffer.concat([this.clientBuf, d]);
    let p = 0;
    while (this.clientBuf.length - p >= 5) {
      const len = this.clientBuf.readInt32BE(p + 1);
      if (this.clientBuf.length - p < 1 + len) break;
      const type = String.fromCharCode(this.clientBuf[p]!);
      const body = Buffer.from(this.clientBuf.subarray(p + 5, p + 1 + len));
      p += 1 + len;
      // COPY FROM STDIN data goes straight through.
      if (type === "d" || type === "c" || type === "f") {
        this.pg.send(msg(type, body));
        continue;
      }
      this.inbox.push({ type, body });
      this.disarmIdle(); // R16: a message arrived
    }
    this.clientBuf = this.clientBuf.subarray(p);
    this.wake?.();
  }

  private async loop(): Promise<void> {
    while (!this.closed) {
      const m = this.inbox.shift();
      if (!m) {
        await new Promise<void>((r) => {
          this.wake = r;
        });
        this.wake = null;
        continue;
      }
      if (this.timedOut) {
        // R16: the answer to the first message after the timeout, then the connection closes.
        this.toClient(
          errorMsg({
            severity: "FATAL",
            code: "25P03",
            message: "terminating connection due to idle-in-transaction timeout",
          }),
        );
        this.destroy();
        return;
      }
      try {
        await this.handle(m.type, m.body);
      } catch (e) {
        if (this.closed) return;
        throw e;
      }
      this.maybeArmIdle();
    }
  }

  // ---- R16 idle in transaction ---------------------------------------------------------------

  private get idleTimeoutMs(): number {
    return this.idleLocalMs ?? this.idleSessionMs;
  }

  /** Armed once the session has nothing left to do while a transaction is open. */
  private maybeArmIdle(): void {
    if (this.closed || this.inbox.length > 0 || this.exps.length > 0 || this.txStatus === "I") return;
    this.idleSince ??= Date.now();
    if (this.timedOut || this.idleTimer !== null) return;
    const ms = this.idleTimeoutMs;
    if (ms <= 0) return;
    this.idleTimer = setTimeout(() => {
      this.idleTimer = null;
      this.timedOut = true;
      this.double.log("idle-in-transaction timeout");
      // The session is terminated now: its transaction (and any SUBSCRIBE) is rolled back.
      this.subscribes.clear();
      void this.pg.simple("ROLLBACK").catch(() => {});
    }, ms);
  }

  private disarmIdle(): void {
    this.idleSince = null;
    if (this.idleTimer === null) return;
    clearTimeout(this.idleTimer);
    this.idleTimer = null;
  }

  /** How long this session has sat idle in a transaction (test control; 0 when it is not). */
  idleInTransactionMs(): number {
    return this.idleSince === null ? 0 : Date.now() - this.idleSince;
  }

  // ---- relay -------------------------------------------------------------------------------

  private forward(type: string, body: Buffer, e: Exp | null): void {
    if (e) this.exps.push(e);
    this.pg.send(msg(type, body));
  }

  private waitDrained(): Promise<void> {
    if (this.exps.length === 0) return Promise.resolve();
    return new Promise((r) => this.drained.push(r));
  }

  private onPg(m: PgMsg): void {
    const t = m.type;
    if (t === "N" || t === "A" || t === "S") {
      this.toClient(msg(t, m.body));
      return;
    }
    const head = this.exps[0];
    if (t === "E") {
      this.toClient(msg("E", m.body));
      if (head?.k === "query") return; // ends with Z
      // PostgreSQL skips to Sync.
      while (this.exps.length > 0 && this.exps[0]!.k !== "sync") this.exps.shift();
      this.skipping = true;
      this.maybeDrained();
      return;
    }
    if (t === "T") {
      const fields = parseRowDescription(m.body);
      // R10: pg_typeof's regtype becomes text. R8a: Materialize's typmods.
      if (fields.some((f) => f.oid === 2206)) {
        this.toClient(
          rowDescription(
            withMzTypmods(fields.map((f) => (f.oid === 2206 ? { ...f, oid: 25, size: -1 } : f))),
          ),
        );
        this.regtypeColumns = fields.map((f) => f.oid === 2206);
        this.regtypeFormats = fields.map((f) => f.format);
      } else {
        this.regtypeColumns = null;
        const mz = withMzTypmods(fields);
        const same = mz.every((f, i) => f.typmod === fields[i]!.typmod);
        this.toClient(same ? msg("T", m.body) : rowDescription(mz));
      }
    } else if (t === "D") {
      if (this.regtypeColumns !== null && this.registry !== null) {
        const vals = splitRow(m.body).map((v, i) => {
          if (v === null || !this.regtypeColumns![i] || this.regtypeFormats![i] !== 0) return v;
          return Buffer.from(this.registry!.humanizeRegtype(v.toString("utf8")));
        });
        this.toClient(dataRow(vals));
      } else this.toClient(msg("D", m.body));
    } else {
      this.toClient(msg(t, m.body));
    }
    if (!head) return;
    const done =
      (head.k === "query" && t === "Z") ||
      (head.k === "sync" && t === "Z") ||
      (head.k === "parse" && t === "1") ||
      (head.k === "bind" && t === "2") ||
      (head.k === "describeS" && (t === "T" || t === "n")) ||
      (head.k === "describeP" && (t === "T" || t === "n")) ||
      (head.k === "execute" && (t === "C" || t === "I" || t === "s")) ||
      (head.k === "close" && t === "3");
    if (t === "Z") {
      this.txStatus = m.body.toString("latin1", 0, 1);
      if (this.txStatus === "I") {
        this.localFailed = false;
        this.subscribes.clear();
        this.txnOps = "none"; // R15
        this.idleLocalMs = null; // R16: SET LOCAL ends with the transaction
      }
      this.regtypeColumns = null;
    }
    if (done) {
      this.exps.shift();
      this.maybeDrained();
    }
  }

  private regtypeColumns: boolean[] | null = null;
  private regtypeFormats: number[] | null = null;

  private maybeDrained(): void {
    if (this.exps.length > 0) return;
    const d = this.drained;
    this.drained = [];
    for (const f of d) f();
    this.maybeArmIdle();
  }

  // ---- client messages ---------------------------------------------------------------------

  private async handle(type: string, body: Buffer): Promise<void> {
    switch (type) {
      case "Q":
        return this.onQuery(translateMzSql(body.toString("utf8", 0, body.length - 1)));
      case "P": {
        const z = body.indexOf(0);
        const name = body.toString("utf8", 0, z);
        const z2 = body.indexOf(0, z + 1);
        const raw = body.toString("utf8", z + 1, z2);
        const sql = translateMzSql(raw);
        if (sql !== raw) body = Buffer.concat([body.subarray(0, z + 1), Buffer.from(sql), body.subarray(z2)]);
        if (this.skipping) return; // R12a: dropped until Sync
        if (!isTxnExit(stripStatement(sql)) && (await this.failedTransaction())) {
          this.localError(ABORTED); // R12a: 25P02, then everything up to Sync is dropped
          return;
        }
        this.localStatements.delete(name);
        let local: Local | null;
        try {
          local = this.recognize(sql);
        } catch (e) {
          await this.beforeLocal();
          if (!this.skipping) this.localError(e);
          return;
        }
        if (local === null) {
          this.segForwarded = true;
          this.forward("P", body, { k: "parse", name });
          return;
        }
        await this.beforeLocal();
        if (this.skipping) return;
        this.localStatements.set(name, { local });
        this.double.log(`parse ${describeLocal(local)}`);
        this.toClient(msg("1"));
        return;
      }
      case "B": {
        if (this.skipping) return; // R12a: dropped until Sync
        const z = body.indexOf(0);
        const portal = body.toString("utf8", 0, z);
        const z2 = body.indexOf(0, z + 1);
        const stmt = body.toString("utf8", z + 1, z2);
        this.localPortals.delete(portal);
        const ls = this.localStatements.get(stmt);
        if (!ls) {
          this.segForwarded = true;
          this.forward("B", body, { k: "bind" });
          return;
        }
        await this.beforeLocal();
        if (this.skipping) return;
        // Parameter formats and values (none expected), then result formats.
        let p = z2 + 1;
        const nfmt = body.readInt16BE(p);
        p += 2 + 2 * nfmt;
        const nparams = body.readInt16BE(p);
        p += 2;
        for (let i = 0; i < nparams; i++) {
          const l = body.readInt32BE(p);
          p += 4 + Math.max(0, l);
        }
        const nres = body.readInt16BE(p);
        p += 2;
        const formats: number[] = [];
        for (let i = 0; i < nres; i++) formats.push(body.readInt16BE(p + 2 * i));
        try {
          this.checkBindFormats(ls.local, formats);
        } catch (e) {
          return this.localError(e);
        }
        this.localPortals.set(portal, { local: ls.local, formats });
        this.toClient(msg("2"));
        return;
      }
      case "D": {
        if (this.skipping) return; // R12a: dropped until Sync
        const kind = String.fromCharCode(body[0]!);
        const name = body.toString("utf8", 1, body.length - 1);
        const local =
          kind === "S" ? this.localStatements.get(name)?.local : this.localPortals.get(name)?.local;
        if (!local) {
          this.segForwarded = true;
          this.forward("D", body, { k: kind === "S" ? "describeS" : "describeP" });
          return;
        }
        await this.beforeLocal();
        if (this.skipping) return;
        if (kind === "S") this.toClient(msg("t", i16(0)));
        const fields = this.describeLocal(local);
        if (fields === null) this.toClient(msg("n"));
        else {
          const fmts = kind === "P" ? this.localPortals.get(name)!.formats : [];
          this.toClient(rowDescription(fields.map((f, i) => ({ ...f, format: pick(fmts, i) }))));
        }
        return;
      }
      case "E": {
        if (this.skipping) return; // R12a: dropped until Sync
        const portal = body.toString("utf8", 0, body.indexOf(0));
        const lp = this.localPortals.get(portal);
        if (!lp) {
          this.segForwarded = true;
          this.forward("E", body, { k: "execute" });
          return;
        }
        await this.beforeLocal();
        if (this.skipping) return;
        try {
          await this.execLocal(lp.local, lp.formats, false);
        } catch (e) {
          return this.localError(e);
        }
        return;
      }
      case "C": {
        if (this.skipping) return; // R12a: dropped until Sync
        const kind = String.fromCharCode(body[0]!);
        const name = body.toString("utf8", 1, body.length - 1);
        const map = kind === "S" ? this.localStatements : this.localPortals;
        if (!map.has(name)) {
          this.segForwarded = true;
          this.forward("C", body, { k: "close" });
          return;
        }
        await this.beforeLocal();
        map.delete(name);
        if (!this.skipping) this.toClient(msg("3"));
        return;
      }
      case "H":
        if (this.segForwarded) this.forward("H", body, null);
        return;
      case "S":
        if (this.segForwarded) {
          this.segForwarded = false;
          this.skipping = false;
          this.forward("S", body, { k: "sync" });
          return;
        }
        await this.waitDrained();
        this.skipping = false;
        this.toClient(ready(this.status()));
        return;
      case "X":
        this.pg.send(msg("X"));
        this.destroy();
        return;
      default:
        this.forward(type, body, null);
    }
  }

  /** Before a local reply: the replies to what was forwarded earlier go out first. */
  private async beforeLocal(): Promise<void> {
    if (this.exps.length > 0) {
      this.pg.send(msg("H")); // make PostgreSQL send what it has
      await this.waitDrained();
    }
  }

  /**
   * R12a: whether the transaction has failed, once what was forwarded before has been answered (a
   * pipelined ROLLBACK may be on its way; a forwarded statement may have failed in PostgreSQL).
   */
  private async failedTransaction(): Promise<boolean> {
    if (this.exps.length > 0) await this.beforeLocal();
    return this.localFailed || this.txStatus === "E";
  }

  private status(): string {
    if (this.txStatus === "T" && this.localFailed) return "E";
    return this.txStatus;
  }

  private localError(e: unknown, simple = false): void {
    const f =
      e instanceof DoubleError ? e.fields : { code: "XX000", message: String((e as Error)?.message ?? e) };
    this.toClient(errorMsg(f));
    if (this.txStatus === "T") this.localFailed = true; // R12
    if (!simple) this.skipping = true;
  }

  private async onQuery(sql: string): Promise<void> {
    const stmt = stripStatement(sql);
    if (!isTxnExit(stmt) && (await this.failedTransaction())) {
      // R12, R12a
      this.toClient(errorMsg(ABORTED.fields));
      this.toClient(ready("E"));
      return;
    }
    let local: Local | null;
    try {
      local = this.recognize(sql);
    } catch (e) {
      await this.waitDrained();
      this.localError(e, true);
      this.toClient(ready(this.status()));
      return;
    }
    if (local === null) {
      if (/^(commit|end)\b/i.test(stmt) && this.localFailed) {
        // A failed transaction ends in a rollback, whatever the client asks.
        this.double.log("ROLLBACK");
        this.subscribes.clear();
        await this.waitDrained();
        await this.pg.must("ROLLBACK");
        this.localFailed = false;
        this.txStatus = "I";
        this.txnOps = "none";
        this.idleLocalMs = null;
        this.toClient(complete("ROLLBACK"));
        this.toClient(ready("I"));
        return;
      }
      if (/^(commit|end|rollback|abort)\b/i.test(stmt)) this.subscribes.clear();
      if (this.txStatus === "T" && this.txnOps === "none" && isRead(stmt)) this.txnOps = "peeks"; // R15
      this.double.log(stmt.split(/\s+/)[0]!.toUpperCase());
      this.forward("Q", Buffer.from(`${sql}\0`), { k: "query" });
      return;
    }
    await this.waitDrained();
    this.double.log(describeLocal(local));
    try {
      await this.execLocal(local, [], true);
    } catch (e) {
      this.localError(e, true);
    }
    this.toClient(ready(this.status()));
  }

  private recognize(sql: string): Local | null {
    const s = stripStatement(sql);
    const idle = recognizeIdleSetting(s);
    if (idle !== null) return idle;
    // R15: nothing else may read in a SUBSCRIBE's transaction.
    if (this.txnOps === "subscribe" && isRead(s) && !this.isSubscribeCursorStatement(s)) {
      return {
        kind: "refused",
        code: "25000",
        message: "SUBSCRIBE in transactions must be the only read statement",
      };
    }
    if (/^select\s+mz_version\s*\(\s*\)$/i.test(s)) return { kind: "mz_version" };
    let m = new RegExp(
      `^declare\\s+(${IDENT})\\s+cursor\\s+(?:without\\s+hold\\s+)?for\\s+subscribe\\s+([\\s\\S]+)$`,
      "i",
    ).exec(s);
    if (m) return { kind: "declare", cursor: unquote(m[1]!), spec: parseSubscribe(m[2]!) };
    m = /^subscribe\s+([\s\S]+)$/i.exec(s);
    if (m) return { kind: "subscribe", spec: parseSubscribe(m[1]!) };
    m = new RegExp(
      `^fetch\\s+(?:forward\\s+)?(?:(\\d+|all)\\s+)?(?:(?:from|in)\\s+)?(${IDENT})\\s*(?:with\\s*\\(\\s*timeout\\s*=?\\s*'([^']*)'\\s*\\))?$`,
      "i",
    ).exec(s);
    if (m && this.subscribes.has(unquote(m[2]!))) {
      const count =
        m[1] === undefined ? 1 : m[1].toLowerCase() === "all" ? Number.POSITIVE_INFINITY : Number(m[1]);
      return {
        kind: "fetch",
        cursor: unquote(m[2]!),
        count,
        timeoutMs: m[3] === undefined ? null : parseTimeout(m[3]),
      };
    }
    m = new RegExp(`^close\\s+(${IDENT})$`, "i").exec(s);
    if (m && this.subscribes.has(unquote(m[1]!))) return { kind: "close", cursor: unquote(m[1]!) };
    m = /^show\s+columns\s+(?:from|in)\s+(.+)$/i.exec(s);
    if (m) return { kind: "show_columns", relation: m[1]!.trim() };
    return null;
  }

  private checkBindFormats(local: Local, formats: number[]): void {
    const fields = this.describeLocal(local);
    if (fields === null) return;
    const st = local.kind === "fetch" ? this.subscribes.get(local.cursor) : undefined;
    if (!st) return;
    const fixed = st.fields.length - st.types.length;
    st.types.forEach((t, i) => {
      if ((t.k === "list" || t.k === "map") && pick(formats, fixed + i) === 1) {
        fail("08P01", `binary encoding of ${t.k} types is not implemented`); // R8
      }
    });
  }

  private describeLocal(local: Local): Field[] | null {
    switch (local.kind) {
      case "mz_version":
        return [{ name: "mz_version", oid: 25, typmod: -1, size: -1, format: 0 }];
      case "fetch":
        return this.subscribes.get(local.cursor)?.fields ?? null;
      case "show_idle":
        return [{ name: "idle_in_transaction_session_timeout", oid: 25, typmod: -1, size: -1, format: 0 }];
      case "show_columns":
        return [
          { name: "name", oid: 25, typmod: -1, size: -1, format: 0 },
          { name: "nullable", oid: 16, typmod: -1, size: 1, format: 0 },
          { name: "type", oid: 25, typmod: -1, size: -1, format: 0 },
        ];
      default:
        return null;
    }
  }

  private async loadRegistry(): Promise<Registry> {
    const all = await this.pg.must(Registry.QUERY);
    const rows = all.filter((r) => r[6] === "true");
    const domains: DomainRow[] = rows.map((r) => ({
      oid: Number(r[0]),
      name: r[1]!,
      baseOid: Number(r[2]),
      baseName: r[3]!,
      baseCategory: r[4]!,
      baseElem: Number(r[5]),
    }));
    const names = await this.pg.must(
      "SELECT oid::int8, format_type(oid, NULL) FROM pg_catalog.pg_type WHERE typcategory = 'A' OR typtype = 'c'",
    );
    const reg = new Registry(
      domains,
      [],
      names.map((r) => [Number(r[0]), r[1]!] as [number, string]),
    );
    const byOid = new Map(all.map((r) => [Number(r[0]), r]));
    for (const r of all) {
      if (r[6] === "true") continue;
      let base = Number(r[2]);
      let typmod = Number(r[7]);
      for (let hops = 0; byOid.has(base) && byOid.get(base)![6] !== "true" && hops < 16; hops++) {
        const b = byOid.get(base)!;
        if (typmod < 0) typmod = Number(b[7]);
        base = Number(b[2]);
      }
      reg.addBase(Number(r[0]), base, typmod);
    }
    this.registry = reg;
    return reg;
  }

  // ---- local statements ----------------------------------------------------------------------

  private async execLocal(local: Local, formats: number[], simple: boolean): Promise<void> {
    switch (local.kind) {
      case "mz_version": {
        if (simple) this.toClient(rowDescription(this.describeLocal(local)!));
        const v = Buffer.from(MZ_VERSION);
        this.toClient(dataRow([pick(formats, 0) === 1 ? v : v]));
        this.toClient(complete("SELECT 1"));
        return;
      }
      case "show_columns":
        return this.showColumns(local.relation, simple);
      case "declare":
        return this.declare(local.cursor, local.spec);
      case "fetch":
        return this.fetch(local.cursor, local.count, local.timeoutMs, formats, simple);
      case "close":
        return this.closeCursor(local.cursor);
      case "subscribe":
        return this.subscribeDirect(local.spec, simple, formats);
      case "refused":
        throw new DoubleError({ code: local.code, message: local.message });
      case "set_idle": {
        // R16. SET LOCAL outside a transaction block changes nothing (PostgreSQL warns).
        if (local.local) {
          if (this.txStatus !== "I") this.idleLocalMs = local.ms ?? this.double.idleInTransactionTimeoutMs;
        } else {
          this.idleSessionMs = local.ms ?? this.double.idleInTransactionTimeoutMs;
          this.idleLocalMs = null;
        }
        this.toClient(complete(local.ms === null && !local.local ? "RESET" : "SET"));
        return;
      }
      case "show_idle": {
        if (simple) this.toClient(rowDescription(this.describeLocal(local)!));
        this.toClient(dataRow([Buffer.from(formatDuration(this.idleTimeoutMs))]));
        this.toClient(complete("SHOW"));
        return;
      }
    }
  }

  private isSubscribeCursorStatement(s: string): boolean {
    const m = new RegExp(`^(?:fetch|close)\\b[\\s\\S]*?(${IDENT})\\s*(?:with\\s*\\(.*\\))?$`, "i").exec(s);
    return m !== null && this.subscribes.has(unquote(m[1]!));
  }

  private async showColumns(relation: string, simple: boolean): Promise<void> {
    const reg = await this.loadRegistry();
    const r = await this.pg.simple(
      `SELECT a.attname::text, (NOT a.attnotnull)::text, a.atttypid::int8 FROM pg_catalog.pg_attribute a
       WHERE a.attrelid = ${quoteLiteral(relation)}::regclass AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum`,
    );
    if (r.error) {
      if (r.error.code === "42P01") fail("42P01", `unknown catalog item '${relation}'`);
      throw new DoubleError(r.error);
    }
    if (simple) this.toClient(rowDescription(this.describeLocal({ kind: "show_columns", relation })!));
    for (const row of r.rows) {
      const t = reg.type(Number(row[2]));
      this.toClient(
        dataRow([
          Buffer.from(row[0]!),
          Buffer.from(row[1] === "true" ? "t" : "f"),
          Buffer.from(columnTypeName(t, reg)),
        ]),
      );
    }
    this.toClient(complete(`SELECT ${r.rows.length}`));
  }

  /** Starts a SUBSCRIBE on PostgreSQL: types from a temporary view, rows from a cursor (R3–R7). */
  private async openSubscribe(spec: SubscribeSpec): Promise<SubscribeState> {
    const reg = await this.loadRegistry();
    const n = ++this.seq;
    const view = `mz_double_q_${this.pid}_${n}`;
    const cursor = `mz_double_c_${this.pid}_${n}`;
    // R7
    const now = this.double.now();
    const since = now - BigInt(this.double.historyMs);
    let asOf = now;
    if (spec.asOf !== undefined) {
      asOf = spec.asOf.value;
      if (asOf < since && asOf !== U64_MAX) {
        if (spec.asOf.atLeast) asOf = since;
        else
          fail(
            "XX000",
            `Timestamp (${asOf}) is not valid for all inputs: [Antichain { elements: [${since}] }]`,
          );
      }
    }
    if (spec.upTo !== undefined && spec.upTo < asOf) {
      fail("XX000", `UP TO (${spec.upTo}) is earlier than AS OF (${asOf}): the SUBSCRIBE would never start`);
    }
    await this.pg.must("SAVEPOINT mz_double_sp");
    try {
      await this.pg.must("SAVEPOINT mz_double_sp_view");
      let atts: Array<Array<string | null>>;
      let timeless = false;
      const created = await this.pg.simple(`CREATE TEMPORARY VIEW ${view} AS ${spec.query}\n`);
      if (created.error === null) {
        atts = await this.pg.must(
          `SELECT attname::text, atttypid::int8, atttypmod FROM pg_catalog.pg_attribute
           WHERE attrelid = '${view}'::regclass AND attnum > 0 ORDER BY attnum`,
        );
        // R4a: does anything with a frontier (a table, a materialized view) lie below the query?
        const inputs = await this.pg.must(
          `WITH RECURSIVE below(oid) AS (
             SELECT '${view}'::regclass::oid
             UNION
             SELECT d.refobjid FROM below
               JOIN pg_catalog.pg_rewrite r ON r.ev_class = below.oid
               JOIN pg_catalog.pg_depend d ON d.classid = 'pg_catalog.pg_rewrite'::regclass AND d.objid = r.oid
                 AND d.refclassid = 'pg_catalog.pg_class'::regclass AND d.refobjid <> below.oid)
           SELECT count(*) FROM below JOIN pg_catalog.pg_class c ON c.oid = below.oid
           WHERE c.relkind IN ('r', 'p', 'm', 'f')`,
        );
        timeless = inputs[0]?.[0] === "0";
        await this.pg.must(`DROP VIEW ${view}`);
      } else {
        // A view cannot hold every query (a void column): the query's own description, which
        // reports domains as their base types.
        await this.pg.must("ROLLBACK TO SAVEPOINT mz_double_sp_view");
        const d = await this.pg.exchange([
          msg("P", cstr(""), cstr(spec.query), i16(0)),
          msg("D", Buffer.from("S"), cstr("")),
          msg("S"),
        ]);
        if (d.error) throw new DoubleError(d.error);
        const t = d.msgs.find((m) => m.type === "T");
        atts = (t ? parseRowDescription(t.body) : []).map((f) => [f.name, String(f.oid), String(f.typmod)]);
      }
      await this.pg.must("RELEASE SAVEPOINT mz_double_sp_view");
      for (const a of atts) {
        const b = reg.base(Number(a[1]));
        if (b !== undefined && Number(a[2]) < 0) a[2] = String(b.typmod);
      }
      const cols = atts.map((_, i) => `c${i + 1}`);
      const alias = cols.length > 0 ? `AS mz_double_t(${cols.join(", ")})` : "AS mz_double_t";
      const consolidated =
        cols.length > 0
          ? `SELECT count(*)::int8, ${cols.join(", ")} FROM (${spec.query}\n) ${alias} GROUP BY ${cols.join(", ")}`
          : `SELECT count(*)::int8 FROM (${spec.query}\n) ${alias} HAVING count(*) > 0`;
      await this.pg.must("SAVEPOINT mz_double_sp2");
      const r = await this.pg.simple(`DECLARE ${cursor} NO SCROLL CURSOR FOR ${consolidated}`);
      if (r.error) {
        await this.pg.must("ROLLBACK TO SAVEPOINT mz_double_sp2");
        // R5: no equality for some column type (json, void): one update per row.
        if (r.error.code !== "42883" && !/equality operator/.test(r.error.message))
          throw new DoubleError(r.error);
        await this.pg.must(
          `DECLARE ${cursor} NO SCROLL CURSOR FOR SELECT 1::int8, ${cols.join(", ") || "1"} FROM (${spec.query}\n) ${alias}`,
        );
      }
      await this.pg.must("RELEASE SAVEPOINT mz_double_sp");
      const types = atts.map((a) => reg.type(Number(a[1])));
      const fields: Field[] = [
        { name: "mz_timestamp", oid: 1700, typmod: (39 << 16) + 4, size: -1, format: 0 }, // R8a
        ...(spec.progress ? [{ name: "mz_progressed", oid: 16, typmod: -1, size: 1, format: 0 }] : []),
        { name: "mz_diff", oid: 20, typmod: -1, size: 8, format: 0 },
        ...atts.map((a, i) => ({
          name: a[0]!,
          oid: mzOid(types[i]!),
          typmod: special(types[i]!) ? -1 : mzTypmod(mzOid(types[i]!), Number(a[2])), // R8a
          size: mzSize(types[i]!),
          format: 0,
        })),
      ];
      const closed = timeless || this.double.knobs.closedInputs === true;
      if (closed && spec.asOf === undefined) asOf = U64_MAX;
      this.double.lastAsOf = String(asOf);
      return {
        spec,
        asOf,
        closed,
        planned: false,
        refusal: unmaterializableIn(spec.query),
        pgCursor: cursor,
        pgExhausted: !spec.snapshot,
        fields,
        types,
        phase: spec.upTo !== undefined && spec.upTo <= asOf ? "done" : "initial",
        lastProgress: asOf,
        declaredAt: Date.now(),
        emittedSnapshotRows: 0,
        buffered: [],
        bufferedFormats: [],
      };
    } catch (e) {
      await this.pg.simple("ROLLBACK TO SAVEPOINT mz_double_sp");
      await this.pg.simple("RELEASE SAVEPOINT mz_double_sp");
      throw e;
    }
  }

  private async declare(cursor: string, spec: SubscribeSpec): Promise<void> {
    if (this.txStatus !== "T") {
      fail("25P01", "DECLARE CURSOR can only be used in transaction blocks"); // R2
    }
    const st = await this.openSubscribe(spec);
    this.subscribes.set(cursor, st);
    this.toClient(complete("DECLARE CURSOR"));
  }

  private async closeCursor(cursor: string): Promise<void> {
    const st = this.subscribes.get(cursor);
    this.subscribes.delete(cursor);
    if (st?.pgCursor) await this.pg.simple(`CLOSE ${st.pgCursor}`);
    this.toClient(complete("CLOSE CURSOR"));
  }

  /** Rows ready now, in the client's formats (R4, R5, R7). */
  private async available(st: SubscribeState, max: number, formats: number[]): Promise<Buffer[]> {
    const out: Buffer[] = [];
    const fixed = st.fields.length - st.types.length;
    const ts = (t: bigint): Buffer =>
      pick(formats, 0) === 1 ? numericBinaryOfInteger(String(t)) : Buffer.from(String(t));
    const progressRow = (t: bigint): Buffer => {
      const vals: Array<Buffer | null> = [ts(t)];
      vals.push(pick(formats, 1) === 1 ? Buffer.from([1]) : Buffer.from("t"));
      for (let i = 2; i < st.fields.length; i++) vals.push(null);
      return dataRow(vals);
    };
    while (out.length < max) {
      if (st.phase === "initial") {
        if (Date.now() - st.declaredAt < (this.double.knobs.firstRowDelayMs ?? 0)) break;
        if (st.spec.progress) out.push(progressRow(st.asOf));
        st.phase = st.spec.snapshot ? "snapshot" : st.closed ? "done" : "live";
        continue;
      }
      if (st.phase === "snapshot") {
        const k = this.double.knobs;
        // The snapshot is complete once its data is out, whatever the chunks still allow.
        if (st.buffered.length === 0 && !st.pgExhausted) await this.readPg(st, formats, fixed);
        if (st.buffered.length === 0) {
          st.phase = st.closed ? "done" : "live"; // R4a: no upper after the data
          continue;
        }
        let ready = Number.POSITIVE_INFINITY;
        if (k.snapshotChunkRows !== undefined) {
          const chunks =
            k.snapshotChunksReleased ??
            Math.floor((Date.now() - st.declaredAt) / (k.snapshotChunkIntervalMs ?? 500)) + 1;
          ready = chunks * k.snapshotChunkRows;
        }
        if (st.emittedSnapshotRows >= ready) break;
        const row = st.buffered.shift()!;
        let diff = BigInt(row[0]!.toString("latin1"));
        if (k.retractRow === st.emittedSnapshotRows) diff = -diff;
        st.emittedSnapshotRows++;
        const vals: Array<Buffer | null> = [ts(st.asOf)];
        if (st.spec.progress) vals.push(pick(formats, 1) === 1 ? Buffer.from([0]) : Buffer.from("f"));
        const dfmt = pick(formats, fixed - 1);
        if (dfmt === 1) {
          const b = Buffer.alloc(8);
          b.writeBigInt64BE(diff);
          vals.push(b);
        } else vals.push(Buffer.from(String(diff)));
        st.types.forEach((t, i) => {
          const v = row[i + 1]!;
          if (v === null || !special(t)) vals.push(v);
          else {
            const text = pgTextToMzText(t, v.toString("utf8"));
            vals.push(pick(formats, fixed + i) === 1 ? mzBinary(t, text) : Buffer.from(text));
          }
        });
        out.push(dataRow(vals));
        continue;
      }
      if (st.phase === "live") {
        const now = this.double.now();
        const frontier = now > st.asOf ? now : st.asOf + 1n;
        if (st.spec.upTo !== undefined && frontier >= st.spec.upTo) {
          st.phase = "done";
          continue;
        }
        // The first advance right after the snapshot, then one per second.
        if (st.lastProgress === st.asOf || frontier >= st.lastProgress + 1000n) {
          st.lastProgress = frontier;
          if (st.spec.progress) out.push(progressRow(frontier));
          continue;
        }
        break;
      }
      break; // done
    }
    return out;
  }

  private async readPg(st: SubscribeState, formats: number[], fixed: number): Promise<void> {
    // Standard columns in the client's format; stand-ins in text, converted here.
    const pgFormats = [0, ...st.types.map((t, i) => (special(t) ? 0 : pick(formats, fixed + i)))];
    const r = await this.pg.exchange([
      msg("P", cstr(""), cstr(`FETCH FORWARD 10000 FROM ${st.pgCursor}`), i16(0)),
      msg("B", cstr(""), cstr(""), i16(0), i16(0), i16(pgFormats.length), ...pgFormats.map(i16)),
      msg("E", cstr(""), i32(0)),
      msg("S"),
    ]);
    if (r.error) {
      // R11: errors of a running SUBSCRIBE arrive as internal errors.
      const message = r.error.code.startsWith("22")
        ? `Evaluation error: ${r.error.message}`
        : r.error.message;
      const code = r.error.code === "57014" ? "57014" : r.error.code === "42501" ? "42501" : "XX000";
      throw new DoubleError({ code, message });
    }
    const rows = r.msgs.filter((m) => m.type === "D").map((m) => splitRow(m.body));
    if (rows.length < 10_000) st.pgExhausted = true;
    st.buffered.push(...rows);
  }

  private async fetch(
    cursor: string,
    count: number,
    timeoutMs: number | null,
    formats: number[],
    simple: boolean,
  ): Promise<void> {
    const st = this.subscribes.get(cursor);
    if (!st) return fail("34000", `cursor "${cursor}" does not exist`);
    this.plan(st);
    if (simple) this.toClient(rowDescription(st.fields));
    const ac = new AbortController();
    this.abort = ac;
    const deadline = timeoutMs === null ? null : Date.now() + timeoutMs;
    let sent = 0;
    try {
      for (;;) {
        const rows = await this.available(st, count - sent, formats);
        if (rows.length > 0) this.toClient(rows.length === 1 ? rows[0]! : Buffer.concat(rows));
        sent += rows.length;
        if (sent >= count || st.phase === "done") break;
        if (deadline === null && sent > 0) break; // R6: wait once
        const now = Date.now();
        if (deadline !== null && now >= deadline) break;
        const nextEvent = this.nextReadyAt(st);
        const until = Math.min(deadline ?? Number.POSITIVE_INFINITY, nextEvent);
        await this.double.waitForRows(Math.max(1, until - now), ac.signal);
      }
    } catch (e) {
      if (ac.signal.aborted) fail("57014", "canceling statement due to user request"); // R11
      throw e;
    } finally {
      this.abort = null;
    }
    this.toClient(complete(`FETCH ${sent}`));
  }

  /** The SUBSCRIBE's planning, at its first FETCH (R14, R15). */
  private plan(st: SubscribeState): void {
    if (st.planned) return;
    st.planned = true;
    if (st.refusal !== null) throw new DoubleError(st.refusal);
    if (this.txStatus === "T") {
      if (this.txnOps === "subscribe")
        fail("25000", "SUBSCRIBE in transactions must be the only read statement");
      if (this.txnOps === "peeks") {
        throw new DoubleError({
          code: "25006",
          message: "transaction in read-only mode",
          detail: "SELECT queries cannot be combined with other query types, including SUBSCRIBE.",
        });
      }
      this.txnOps = "subscribe";
    }
  }

  /** When the next row may become ready (wall-clock ms). */
  private nextReadyAt(st: SubscribeState): number {
    const k = this.double.knobs;
    if (st.phase === "initial") return st.declaredAt + (k.firstRowDelayMs ?? 0);
    if (st.phase === "snapshot" && k.snapshotChunkRows !== undefined) {
      if (k.snapshotChunksReleased !== undefined) return Number.POSITIVE_INFINITY; // releaseSnapshotChunk()
      const iv = k.snapshotChunkIntervalMs ?? 500;
      const chunks = Math.floor((Date.now() - st.declaredAt) / iv) + 1;
      return st.declaredAt + chunks * iv;
    }
    if (st.phase === "live") return Number(st.lastProgress) + 1000;
    return Date.now() + 50;
  }

  /** `SUBSCRIBE …` sent directly: rows stream until UP TO (or a cancel). */
  private async subscribeDirect(spec: SubscribeSpec, simple: boolean, formats: number[]): Promise<void> {
    const implicit = this.txStatus === "I";
    if (implicit) await this.pg.must("BEGIN");
    try {
      const st = await this.openSubscribe(spec);
      this.plan(st);
      // src/pgwire/src/protocol.rs: a SUBSCRIBE outside FETCH warns first.
      this.toClient(
        errorMsg(
          {
            code: "01000",
            message: "streaming SUBSCRIBE rows directly requires a client that does not buffer output",
          },
          "N",
        ),
      );
      if (simple) this.toClient(rowDescription(st.fields));
      const ac = new AbortController();
      this.abort = ac;
      try {
        while (st.phase !== "done") {
          const rows = await this.available(st, 10_000, formats);
          if (rows.length > 0) this.toClient(rows.length === 1 ? rows[0]! : Buffer.concat(rows));
          if ((st.phase as string) === "done") break;
          if (rows.length === 0) await sleep(Math.max(1, this.nextReadyAt(st) - Date.now()), ac.signal);
        }
      } catch (e) {
        if (ac.signal.aborted) fail("57014", "canceling statement due to user request");
        throw e;
      } finally {
        this.abort = null;
      }
      this.toClient(complete("SUBSCRIBE"));
    } finally {
      if (implicit) await this.pg.simple("ROLLBACK");
    }
  }
}

function pick(formats: readonly number[], i: number): number {
  if (formats.length === 0) return 0;
  if (formats.length === 1) return formats[0]!;
  return formats[i] ?? 0;
}

function quoteLiteral(s: string): string {
  return `'${s.replace(/'/g, "''")}'`;
}

function describeLocal(l: Local): string {
  switch (l.kind) {
    case "declare":
      return `DECLARE SUBSCRIBE${l.spec.progress ? " PROGRESS" : ""}`;
    case "fetch":
      return `FETCH ${l.count} timeout=${l.timeoutMs ?? "none"}`;
    case "set_idle":
      return `SET${l.local ? " LOCAL" : ""} idle_in_transaction_session_timeout ${l.ms ?? "DEFAULT"}`;
    default:
      return l.kind.toUpperCase();
  }
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(new Error("aborted"));
    const t = setTimeout(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = (): void => {
      clearTimeout(t);
      reject(new Error("aborted"));
    };
    signal.addEventListener("abort", onAbort, { once: true });
  });
}

/** R15: statements that read (a peek in Materialize's terms). */
function isRead(s: string): boolean {
  return (
    /^(select|with|values|table|show|fetch|subscribe)\b/i.test(s) && !/^show\s+idle_in_transaction/i.test(s)
  );
}

/** R14: the first function a maintained dataflow cannot evaluate, as Materialize names it. */
function unmaterializableIn(query: string): ErrFields | null {
  const code = query.replace(/'(?:[^']|'')*'/g, "''");
  const found: Array<[RegExp, string]> = [
    [/\bnow\s*\(\s*\)/i, "current_timestamp"],
    [/\bcurrent_timestamp\b/i, "current_timestamp"],
    [/\bcurrent_user\b/i, "current_user"],
    [/\bsession_user\b/i, "session_user"],
    [/\bcurrent_database\s*\(/i, "current_database"],
  ];
  for (const [re, name] of found) {
    if (!re.test(code)) continue;
    const e: ErrFields = { code: "0A000", message: `cannot materialize call to ${name}` };
    if (name === "current_timestamp")
      e.detail = "See: https://materialize.com/docs/sql/functions/now_and_mz_now/";
    return e;
  }
  return null;
}

/** R16: SET / RESET / SHOW idle_in_transaction_session_timeout. */
function recognizeIdleSetting(s: string): Local | null {
  if (/^show\s+idle_in_transaction_session_timeout$/i.test(s)) return { kind: "show_idle" };
  if (/^reset\s+idle_in_transaction_session_timeout$/i.test(s))
    return { kind: "set_idle", local: false, ms: null };
  const m = /^set\s+(?:(session|local)\s+)?idle_in_transaction_session_timeout\s*(?:=|\bto\b)\s*(.+)$/i.exec(
    s,
  );
  if (!m) return null;
  const local = m[1]?.toLowerCase() === "local";
  const raw = m[2]!.trim();
  if (/^default$/i.test(raw)) return { kind: "set_idle", local, ms: null };
  const v = /^'(.*)'$/s.exec(raw)?.[1] ?? raw;
  const d = /^\s*(\d+)\s*(us|ms|s|min|h|d)?\s*$/.exec(v);
  if (!d) {
    return fail("22023", 'parameter "idle_in_transaction_session_timeout" requires a "duration" value');
  }
  const unit = { us: 0.001, ms: 1, s: 1000, min: 60_000, h: 3_600_000, d: 86_400_000 }[d[2] ?? "ms"]!;
  return { kind: "set_idle", local, ms: Number(d[1]) * unit };
}

/** R16: Materialize's SHOW format for a duration (src/sql/src/session/vars/value.rs). */
function formatDuration(ms: number): string {
  if (ms % 1000 !== 0) return `${ms} ms`;
  const s = ms / 1000;
  if (s !== 0 && s % 86_400 === 0) return `${s / 86_400} d`;
  if (s !== 0 && s % 3600 === 0) return `${s / 3600} h`;
  if (s !== 0 && s % 60 === 0) return `${s / 60} min`;
  return `${s} s`;
}
