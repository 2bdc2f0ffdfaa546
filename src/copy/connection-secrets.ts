// A connection's secrets are kept as *where to read them* ({"env": "VAR"}, {"file": "/path"}, or
// inline for development) and read when the SDK asks for credentials, so a rotated secret file is
// picked up without a restart, and describing a connection names only where its secrets come from.

import { readFileSync } from "node:fs";
import { ConnectionConfigError } from "./connection-settings.js";

export type Secret =
  | { kind: "inline"; value: string }
  | { kind: "env"; name: string; value: string }
  | { kind: "file"; path: string };

export function readSecret(s: Secret): string {
  if (s.kind === "file") {
    let v: string;
    try {
      v = readFileSync(s.path, "utf8").trim();
    } catch (err) {
      throw new ConnectionConfigError(
        `could not read secret file ${s.path}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
    if (v === "") throw new ConnectionConfigError(`secret file ${s.path} is empty`);
    return v;
  }
  return s.value;
}

export function describeSecret(s: Secret | undefined): unknown {
  if (s === undefined) return undefined;
  if (s.kind === "env") return { env: s.name };
  if (s.kind === "file") return { file: s.path };
  return "[redacted]";
}

export function fileSecret(v: unknown, where: string, env: NodeJS.ProcessEnv): Secret {
  if (typeof v === "string") {
    if (v === "") throw new ConnectionConfigError(`${where} must not be empty`);
    return { kind: "inline", value: v };
  }
  if (typeof v === "object" && v !== null && !Array.isArray(v)) {
    const o = v as Record<string, unknown>;
    const keys = Object.keys(o);
    if (keys.length === 1 && typeof o.env === "string" && o.env !== "") {
      const value = env[o.env];
      if (value === undefined || value === "") {
        throw new ConnectionConfigError(`${where}: environment variable ${o.env} is not set`);
      }
      return { kind: "env", name: o.env, value };
    }
    if (keys.length === 1 && typeof o.file === "string" && o.file !== "") {
      const s: Secret = { kind: "file", path: o.file };
      readSecret(s); // fail at start, not on the first export
      return s;
    }
  }
  throw new ConnectionConfigError(`${where} must be {"env": "VAR"}, {"file": "/path"} or a string`);
}
