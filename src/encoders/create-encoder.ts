// One export's encoder, from a description that can cross a thread boundary (plain data only): the
// driver describes the encoder on the relay's thread and the export's encoder thread builds it.
import type { CsvOptions } from "./csv-encoder.js";
import type { ParquetOptions } from "./parquet-encoder.js";
import type { FileSink, RowEncoder } from "./types.js";

export type EncoderSpec =
  | { format: "csv"; options: CsvOptions }
  | { format: "parquet"; options: ParquetOptions };

/** Loads only the format's own modules: a CSV export's thread starts without Arrow and WASM. */
export async function createEncoder(spec: EncoderSpec, sink: FileSink): Promise<RowEncoder> {
  if (spec.format === "csv") return (await import("./csv-encoder.js")).createCsvEncoder(spec.options, sink);
  return await (await import("./parquet-encoder.js")).createParquetEncoder(spec.options, sink);
}
