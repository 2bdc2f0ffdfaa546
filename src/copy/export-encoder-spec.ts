// An export's encoder as plain data (the COPY options it needs), for its encoder threads to build.

import type { EncoderSpec } from "../encoders/create-encoder.js";
import type { ColumnInfo } from "../encoders/types.js";
import type { CopyOptions } from "./options.js";

export function encoderSpec(opts: CopyOptions, columns: ColumnInfo[]): EncoderSpec {
  return opts.format === "csv"
    ? {
        format: "csv",
        options: {
          header: opts.header,
          delimiter: opts.delimiter.charCodeAt(0),
          quote: opts.quote.charCodeAt(0),
          escape: opts.escape.charCodeAt(0),
          null: opts.null,
          compression: opts.compression === "gzip" ? "gzip" : "none",
          maxFileSize: opts.maxFileSize,
          columnNames: columns.map((c) => c.name),
          columnTypes: columns.map((c) => c.typeOid),
        },
      }
    : {
        format: "parquet",
        options: {
          compression:
            opts.compression === "none" || opts.compression === "gzip" || opts.compression === "zstd"
              ? opts.compression
              : "snappy",
          maxFileSize: opts.maxFileSize,
          rowGroupSize: opts.rowGroupSize,
          columns,
        },
      };
}
