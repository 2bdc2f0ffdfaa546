// Public entry of the Parquet encoder (SPEC §4); the implementation lives in ./parquet/.
export {
  createParquetEncoder,
  DEFAULT_ROW_GROUP_ROWS,
  discardParquetWriter,
  type ParquetEncoder,
  type ParquetFileStats,
  type ParquetOptions,
  planParquet,
  RAW_BATCH_CAP,
  startParquetWriter,
} from "./parquet/encoder.js";
export type {
  Compression as ParquetCompression,
  ParquetWorker as ParquetWriterThread,
} from "./parquet/wasm-writer.js";
