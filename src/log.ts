// Structured JSON logs. Nothing secret is ever passed in: callers log ids, users and counts,
// never passwords, keys or (at info level) query text.
import { type DestinationStream, type Logger, pino } from "pino";
import type { LogLevel } from "./config.js";

export type { Logger };

export function createLogger(level: LogLevel, destination?: DestinationStream): Logger {
  const options = {
    level,
    base: { svc: "copy-to-s3-proxy" },
    // Belt and braces: if a secret-looking field ever reaches a log call, it is masked.
    redact: {
      paths: [
        "password",
        "*.password",
        "secretAccessKey",
        "*.secretAccessKey",
        "sessionToken",
        "*.sessionToken",
      ],
      censor: "[redacted]",
    },
  };
  return destination === undefined ? pino(options) : pino(options, destination);
}
