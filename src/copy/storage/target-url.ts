// COPY TO targets (SPEC §1). Error texts follow Materialize; the SQLSTATEs follow SPEC §1's classes
// (Materialize itself reports these as XX000). The target string is never echoed in an error: a
// user may have pasted credentials into it ("s3://KEY:SECRET@bucket/…").
import { isAbsolute, join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { PgError, SqlState } from "../../errors.js";

export type TargetUrl =
  | { scheme: "s3"; bucket: string; prefix: string }
  | { scheme: "file"; dir: string; prefix: string };

const UNSUPPORTED = "only 's3://...' urls are supported as COPY TO target";
// Virtual-host and path-style compatible bucket names, plus the legacy upper case and '_' that
// S3-compatible servers (Ceph, MinIO) still accept. Anything else (':' '@' '?' …) is a typo or a
// credential in the wrong place.
const BUCKET = /^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$/;

export function parseTargetUrl(target: string): TargetUrl {
  const scheme = /^([A-Za-z][A-Za-z0-9+.-]*):/.exec(target)?.[1]?.toLowerCase();
  if (scheme === "s3") return parseS3(target.slice(3));
  if (scheme === "file") return parseFile(target);
  throw new PgError(SqlState.featureNotSupported, UNSUPPORTED, {
    hint: "Use 's3://bucket/prefix', or 'file:///absolute/directory' for a local directory.",
  });
}

function parseS3(rest: string): TargetUrl {
  if (!rest.startsWith("//")) {
    throw new PgError(SqlState.invalidParameterValue, "missing bucket name from 's3://...' url");
  }
  const body = rest.slice(2);
  const slash = body.indexOf("/");
  const bucket = slash < 0 ? body : body.slice(0, slash);
  const path = slash < 0 ? "" : body.slice(slash);
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
  // Literal on AWS, but S3-compatible servers normalise them: the export would land elsewhere.
  if (prefix.split("/").some((seg) => seg === "." || seg === "..")) {
    throw new PgError(
      SqlState.invalidParameterValue,
      "COPY TO target path must not contain '.' or '..' segments",
    );
  }
  return prefix;
}

/** The canonical spelling of a target, for messages and the manifest. */
export function formatTargetUrl(t: TargetUrl): string {
  if (t.scheme === "s3") return `s3://${t.bucket}${t.prefix === "" ? "" : `/${t.prefix}`}`;
  return pathToFileURL(join(t.dir, t.prefix)).href;
}
