// COPY TO targets (SPEC §1). Error texts follow Materialize; the SQLSTATEs follow SPEC §1's classes
// (Materialize itself reports these as XX000). The target string is never echoed in an error: a
// user may have pasted credentials into it ("s3://KEY:SECRET@bucket/…").
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PgError, SqlState } from "../../errors.js";

export type TargetUrl =
  /**
   * `alias: "gs"`: written `gs://`, Google Cloud Storage's name for the same bucket/prefix, reached
   * through GCS's S3-compatible API at the connection's endpoint, as Materialize does (Materialize
   * `test/aws-localstack/copy-to-s3/copy-to-s3.td`, doc/user/content/serve-results/sink/s3_compatible.md).
   */
  | { scheme: "s3"; bucket: string; prefix: string; alias?: "gs" }
  | { scheme: "file"; dir: string; prefix: string };

/** Materialize's text since it accepts gs:// (Materialize `test/aws-localstack/copy-to-s3/copy-to-s3.td`). */
export const UNSUPPORTED_TARGET = "only 's3://...' and 'gs://...' urls are supported as COPY TO target";
// Virtual-host and path-style compatible bucket names, plus the legacy upper case and '_' that
// S3-compatible servers (Ceph, MinIO) still accept. Anything else (':' '@' '?' …) is a typo or a
// credential in the wrong place.
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

export function parseTargetUrl(target: string): TargetUrl {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(target)?.[1]?.toLowerCase();
  if (scheme === "s3") return parseS3(target.slice(3));
  if (scheme === "gs") return { ...parseS3(target.slice(3)), alias: "gs" };
  if (scheme === "file") return parseFile(target);
  throw new PgError(SqlState.featureNotSupported, UNSUPPORTED_TARGET, {
    hint: "Use 's3://bucket/prefix', or 'file:///absolute/directory' for a local directory.",
  });
}

function parseS3(rest: string): Extract<TargetUrl, { scheme: "s3" }> {
  if (!rest.startsWith("//")) {
    throw new PgError(SqlState.invalidParameterValue, "missing bucket name from 's3://...' url");
  }
  const body = rest.slice(2);
  const slash = body.indexOf("/");
  const bucket = slash < 0 ? body : body.slice(0, slash);
  const path = slash < 0 ? "" : body.slice(slash);
  // A pasted presigned URL (`?X-Amz-Credential=…&X-Amz-Signature=…`) or a fragment: S3 would take
  // them as part of the key and every message would show them. Materialize drops them (it keeps
  // only the URL's path); refusing tells the user their signature went nowhere useful.
  if (path.includes("?") || path.includes("#")) {
    throw new PgError(
      SqlState.invalidParameterValue,
      "COPY TO target url must not have a query string or fragment",
      { hint: "Credentials belong in an AWS CONNECTION; percent-encode '?' and '#' meant as part of a key." },
    );
  }
  if (bucket === "") {
    throw new PgError(SqlState.invalidParameterValue, "missing bucket name from 's3://...' url");
  }
  if (!BUCKET.test(bucket)) {
    throw new PgError(SqlState.invalidParameterValue, "invalid bucket name in 's3://...' url", {
      hint: "A bucket name has only letters, digits, '.', '-' and '_'; credentials belong in an AWS CONNECTION.",
    });
  }
  return { scheme: "s3", bucket, prefix: trimPrefix(path) };
}

function parseFile(target: string): TargetUrl {
  let dir: string;
  try {
    const url = new URL(target);
    if (url.search !== "" || url.hash !== "") throw new Error("'?' and '#' must be percent-encoded");
    dir = fileURLToPath(url);
    // A NUL (`%00`) ends a path at the system call; Node refuses it only when the file is opened.
    if (dir.includes("\0")) throw new Error("the path must not contain a NUL character");
  } catch (err) {
    throw new PgError(SqlState.invalidParameterValue, "could not parse COPY TO target url", {
      detail: err instanceof Error ? err.message : undefined,
      hint: "A local target is 'file:///absolute/directory'.",
    });
  }
  if (!isAbsolute(dir)) {
    throw new PgError(SqlState.invalidParameterValue, "a 'file://' COPY TO target must be an absolute path");
  }
  dir = resolve(dir);
  if (dir === "/") {
    throw new PgError(
      SqlState.invalidParameterValue,
      "a 'file://' COPY TO target must name a directory below /",
    );
  }
  return { scheme: "file", dir, prefix: "" };
}

function trimPrefix(path: string): string {
  const prefix = path.replace(/^\/+|\/+$/g, "");
  const segments = prefix.split("/");
  // Literal on AWS, but S3-compatible servers normalise them: the export would land elsewhere.
  if (segments.some((seg) => seg === "." || seg === "..")) {
    throw new PgError(
      SqlState.invalidParameterValue,
      "COPY TO target path must not contain '.' or '..' segments",
    );
  }
  // Refused rather than collapsed: AWS keeps `a//b` as written while stores that normalise paths
  // write to `a/b`, so the empty-prefix check and the files could name different places; and
  // collapsing would put the files somewhere other than the key the user typed on AWS.
  if (prefix !== "" && segments.includes("")) {
    throw new PgError(SqlState.invalidParameterValue, "COPY TO target path must not contain empty segments", {
      hint: "Write each '/' once: 's3://bucket/a/b', not 's3://bucket/a//b'.",
    });
  }
  return prefix;
}

/** The canonical spelling of a target, for messages and the manifest. */
export function formatTargetUrl(t: TargetUrl): string {
  if (t.scheme === "s3") return `${t.alias ?? "s3"}://${t.bucket}${t.prefix === "" ? "" : `/${t.prefix}`}`;
  return pathToFileURL(join(t.dir, t.prefix)).href;
}

/**
 * Checks an evaluated (or literal) target the way Materialize does after evaluating it: NULL and
 * anything but `s3://`, `gs://` (and our `file://`) are refused. Returns the URL.
 */
export function assertTargetUrl(value: string | null, position?: number): string {
  if (value === null) {
    throw new PgError(SqlState.nullValueNotAllowed, "COPY TO target value can not be null", { position });
  }
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):\/\//.exec(value)?.[1]?.toLowerCase();
  if (scheme !== "s3" && scheme !== "gs" && scheme !== "file") {
    throw new PgError(SqlState.featureNotSupported, UNSUPPORTED_TARGET, {
      position,
      hint: scheme === undefined ? undefined : "file:///absolute/dir is also accepted, for local exports.",
    });
  }
  return value;
}
