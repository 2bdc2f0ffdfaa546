// The AWS SDK prints a nine-line NodeVersionSupportWarning on every start under Node < 22 (its
// releases after January 2027 need Node 22). We say it once, in one log line, and switch the
// SDK's own text off the way the SDK documents: AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED
// (read by @aws-sdk/core's emitWarningIfUnsupportedVersion). A value the user set is kept.
export const OLDEST_CURRENT_NODE = 22;

/** Returns the one-line notice to log, or undefined on a current Node. */
export function quietAwsNodeWarning(
  env: NodeJS.ProcessEnv = process.env,
  version: string = process.version,
): string | undefined {
  env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  const major = Number(/^v(\d+)/.exec(version)?.[1]);
  if (!(major < OLDEST_CURRENT_NODE)) return undefined;
  return `Node ${version} is past its end of life and the AWS SDK supports it only until January 2027: run copy-to-s3-proxy on Node 22 or 24`;
}
