// Public entry of the Parquet encoder (SPEC §4); the implementation lives in ./parquet/.
export {
  createParquetEncoder,
  DEFAULT_ROW_GROUP_ROWS,
  type ParquetEncoder,
  type ParquetFileStats,
  type ParquetOptions,
  planParquet,
  RAW_BATCH_CAP,
} from "./parquet/encoder.js";
export type { Compression as ParquetCompression } from "./parquet/wasm-writer.js";
