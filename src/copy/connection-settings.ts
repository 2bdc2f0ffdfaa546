// The settings of a named AWS connection (SPEC §6) and their spellings: Materialize's `CREATE
// CONNECTION … TO AWS` options (ENDPOINT, REGION, ACCESS KEY ID, SECRET ACCESS KEY, SESSION TOKEN,
// ASSUME ROLE ARN, ASSUME ROLE SESSION NAME), camelCase in the config file ("accessKeyId"; "ACCESS
// KEY ID" and "access_key_id" are accepted too) and C2S_CONNECTION_<NAME>_ACCESS_KEY_ID in the
// environment.

/** Configuration errors are found at start, before the proxy listens. */
export class ConnectionConfigError extends Error {
  override name = "ConnectionConfigError";
}

export type SecretSource = string | { env: string } | { file: string };

export interface AwsConnectionSettings {
  endpoint?: string;
  region?: string;
  accessKeyId?: SecretSource;
  secretAccessKey?: SecretSource;
  sessionToken?: SecretSource;
  assumeRoleArn?: string;
  assumeRoleSessionName?: string;
  /** Not a Materialize option (Materialize derives it): the ExternalId the role's trust policy asks for. */
  externalId?: string;
  /**
   * Not an AWS setting: an upstream role a user must be a member of to export with this
   * connection, checked in the user's own session (connection-authorization.ts).
   */
  requireRole?: string;
}

export type Setting = keyof AwsConnectionSettings;
export const SECRET_SETTINGS = ["accessKeyId", "secretAccessKey", "sessionToken"] as const;
export type SecretSetting = (typeof SECRET_SETTINGS)[number];
export const TEXT_SETTINGS = [
  "endpoint",
  "region",
  "assumeRoleArn",
  "assumeRoleSessionName",
  "externalId",
  "requireRole",
] as const;
export const ALL_SETTINGS: readonly Setting[] = [...TEXT_SETTINGS, ...SECRET_SETTINGS];
/** "ACCESS KEY ID", "access_key_id", "accessKeyId" → "accesskeyid". */
export const normal = (s: string) => s.toLowerCase().replace(/[^a-z0-9]/g, "");
export const BY_NORMAL = new Map(ALL_SETTINGS.map((s) => [normal(s), s]));
export const ENV_PREFIX = "C2S_CONNECTION_";
/** C2S_CONNECTION_<NAME>_<SUFFIX>; longest first so "_SESSION_TOKEN" never eats a name. */
export const ENV_SUFFIXES: Array<[suffix: string, setting: Setting, file: boolean]> = ALL_SETTINGS.flatMap(
  (s): Array<[string, Setting, boolean]> => {
    const snake = s.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
    const forms: Array<[string, Setting, boolean]> = [[`_${snake}`, s, false]];
    if ((SECRET_SETTINGS as readonly string[]).includes(s)) forms.push([`_${snake}_FILE`, s, true]);
    return forms;
  },
).sort((a, b) => b[0].length - a[0].length);

export function isSecretSetting(s: Setting): s is SecretSetting {
  return (SECRET_SETTINGS as readonly string[]).includes(s);
}

/** STS's ExternalId characters and length (AWS STS API Reference, AssumeRole: ExternalId). */
export const EXTERNAL_ID = /^[\w+=,.@:/-]{2,1224}$/;
