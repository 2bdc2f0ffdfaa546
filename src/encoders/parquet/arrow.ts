// The parts of Apache Arrow the Parquet encoder uses, imported from the package's own modules
// (apache-arrow/<module>) rather than its index: every new encoder thread imports these before its
// first row, and the index loads the whole package (~150 modules: builders, IPC readers and
// writers, tables, JSON and DOM streams) where the encoder needs 81 of them
// (docs/benchmarks.md, "Importing only the Arrow modules used", h-arrow, session 13).
// Modules of the thread import Arrow through here only; test/unit/parquet-modules.test.ts checks it.
export { Data, makeData } from "apache-arrow/data";
export { Field, Schema } from "apache-arrow/schema";
export {
  Bool,
  DataType,
  DateDay,
  Decimal,
  FixedSizeBinary,
  Float32,
  Float64,
  Int16,
  Int32,
  Int64,
  LargeBinary,
  LargeUtf8,
  List,
  Map_,
  Struct,
  TimeMicrosecond,
  TimestampMicrosecond,
  Uint8,
  Uint16,
  Uint32,
  Uint64,
  Utf8,
} from "apache-arrow/type";
