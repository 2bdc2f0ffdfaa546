// The AWS SDK's words for a connection that lacks a setting ("Region is missing",
// "CredentialsProviderError … Could not load credentials from any providers") say nothing about
// which connection or where to set it. These are turned into an error that names the connection
// and the setting as a flag, variable or config key, at the first S3 request (the preflight).
import { PgError, SqlState } from "../errors.js";
import type { AwsConnection } from "./aws-connection.js";

const AMBIENT = "(default credentials)";

export function explainAwsSetup(
  err: unknown,
  conn: AwsConnection | undefined,
  /** How the user left the connection unnamed (the statement's option, or cleanup's flag). */
  unnamed = "no AWS CONNECTION was named",
): unknown {
  if (!(err instanceof PgError) || conn === undefined) return err;
  const text = `${err.message}\n${err.detail ?? ""}`;
  const ambient = conn.name === AMBIENT;
  const which = ambient
    ? `${unnamed} and no connection "default" is configured, so the AWS SDK's default chain was used`
    : `AWS connection "${conn.name}"`;
  const env = `C2S_CONNECTION_${conn.name.toUpperCase().replace(/[^A-Z0-9]/g, "_")}`;
  if (/Region is missing/i.test(text)) {
    return new PgError(
      SqlState.invalidParameterValue,
      `${ambient ? "the AWS SDK's default chain" : which} has no region`,
      {
        detail: ambient ? `${which}, and it found no region.` : undefined,
        hint: ambient
          ? 'Set AWS_REGION, or configure a connection "default" with "region" (config file: "connections": { "default": { "region": "eu-west-1" } }, or C2S_CONNECTION_DEFAULT_REGION).'
          : `Set "region" for it: config file "connections": { "${conn.name}": { "region": "…" } }, or ${env}_REGION.`,
        cause: err,
      },
    );
  }
  if (/CredentialsProviderError|Could not load credentials/i.test(text)) {
    return new PgError(
      SqlState.invalidAuthorizationSpecification,
      `${ambient ? "the AWS SDK's default chain" : which} found no credentials`,
      {
        detail: ambient
          ? `${which}, and none of its providers (environment, profile, web identity, instance metadata) had credentials.`
          : undefined,
        hint: ambient
          ? 'Set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), or configure a connection "default" with "accessKeyId"/"secretAccessKey" or "assumeRoleArn" (C2S_CONNECTION_DEFAULT_ACCESS_KEY_ID, …).'
          : `Set "accessKeyId" and "secretAccessKey" (or "assumeRoleArn") for it in the config file's "connections", or ${env}_ACCESS_KEY_ID and ${env}_SECRET_ACCESS_KEY.`,
        cause: err,
      },
    );
  }
  return err;
}
