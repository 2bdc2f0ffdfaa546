// The Content-Type an object gets, by its key's extension (docs/loading.md).
//
// A `.csv.gz` file is stored as what it is, a gzip file (`application/gzip`, RFC 6713), with no
// Content-Encoding: with `Content-Encoding: gzip` GCS serves the object decompressed to clients
// that do not ask for gzip ("decompressive transcoding") and HTTP clients unzip it on the fly,
// while every loader (Snowflake's COMPRESSION = AUTO, Redshift's GZIP, BigQuery, DuckDB) wants the
// gzip bytes and recognises them by the `.gz` extension or the magic bytes.
const BY_EXTENSION: ReadonlyArray<[suffix: string, type: string]> = [
  [".csv.gz", "application/gzip"],
  [".csv", "text/csv"],
  // Registered with IANA in 2024.
  [".parquet", "application/vnd.apache.parquet"],
  [".json", "application/json"],
  // Redshift manifests are JSON documents.
  [".manifest", "application/json"],
];

/** undefined: let the store pick its default (binary/octet-stream on S3). */
export function contentTypeOf(key: string): string | undefined {
  for (const [suffix, type] of BY_EXTENSION) if (key.endsWith(suffix)) return type;
  return undefined;
}
