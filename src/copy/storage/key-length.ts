// S3 refuses an object key longer than 1024 bytes of UTF-8 (AWS, "Naming Amazon S3 objects"),
// but only when the object is written, which is after the sentinel and maybe a few files. The
// export knows every key it may write before it starts, so a prefix too long for them is
// refused in the plan, when nothing has been written.
import { PgError, SqlState } from "../../errors.js";
import type { TargetUrl } from "./target-url.js";

export const MAX_S3_KEY_BYTES = 1024;

/** Throws 22023 when `prefix/<key>` exceeds S3's limit for any of `keys` (relative to the prefix). */
export function checkKeyLengths(target: TargetUrl, keys: readonly string[]): void {
  if (target.scheme !== "s3") return;
  const base = target.prefix === "" ? 0 : Buffer.byteLength(target.prefix, "utf8") + 1;
  const longest = Math.max(...keys.map((k) => Buffer.byteLength(k, "utf8")));
  if (base + longest <= MAX_S3_KEY_BYTES) return;
  throw new PgError(
    SqlState.invalidParameterValue,
    `COPY TO target prefix is too long: this export's object keys would be up to ${base + longest} bytes, S3 allows ${MAX_S3_KEY_BYTES}`,
    { hint: `Use a prefix of at most ${MAX_S3_KEY_BYTES - longest - 1} bytes.` },
  );
}
