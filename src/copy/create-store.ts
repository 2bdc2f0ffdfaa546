// The object store of a COPY target: a directory for file://, S3 through the export's AWS
// connection for s3://.

import { join } from "node:path";
import { PgError, SqlState } from "../errors.js";
import type { AwsConnection } from "./aws-connection.js";
import { FileStore } from "./storage/file-store.js";
import { type ObjectStore, resolveStoreOptions, type StoreOptions } from "./storage/object-store.js";
import { S3Store } from "./storage/s3-store.js";
import type { TargetUrl } from "./storage/target-url.js";

/**
 * The object store for a COPY target. `conn` is ignored for file:// targets. Keys given to the
 * store are relative to the target directory.
 */
export function createStore(
  conn: AwsConnection | undefined,
  target: TargetUrl,
  options?: StoreOptions,
  /** file:// only: every path must resolve below this directory (--file-root). */
  fileRoot?: string,
): ObjectStore {
  const o = resolveStoreOptions(options);
  if (target.scheme === "file") {
    return new FileStore({ dir: join(target.dir, target.prefix), bufferBytes: o.partSize, root: fileRoot });
  }
  if (conn === undefined)
    throw new PgError(SqlState.internalError, "an s3:// target needs an AWS connection");
  return new S3Store({
    client: conn.s3Client(o),
    bucket: target.bucket,
    prefix: target.prefix,
    partSize: o.partSize,
    partsInFlight: o.partsInFlight,
    uploadNice: o.uploadNice,
  });
}
