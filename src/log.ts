// Structured JSON logs. Nothing secret is ever passed in: callers log ids, users and counts,
// never passwords, keys or (at info level) query text.
import { type DestinationStream, type Logger, pino } from "pino";
// A CommonJS module: its class is a property of the default export at run time and in its types.
import sonicBoom from "sonic-boom";
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

/** Log lines held for a slow reader before new ones are dropped. */
const MAX_BUFFERED = 4 << 20;

export interface LogOutput extends DestinationStream {
  /** Log lines dropped because the reader fell behind by more than the buffer. */
  readonly dropped: number;
  /** Set once a write failed: nothing is written any more. */
  readonly broken: Error | null;
  /**
   * Writes out what is buffered and closes the output, waiting at most `timeoutMs` (never blocking
   * the event loop); later lines are dropped. For the moment before the process exits.
   */
  close(timeoutMs: number): Promise<void>;
}

/**
 * The process's log output on a file descriptor (stdout), written asynchronously so that a reader
 * that stops reading (`| jq` suspended, a full pipe) costs dropped lines, never a blocked event
 * loop, and a reader that goes away (`| head -2`, a closed terminal: EPIPE, EIO) is reported once
 * to `onBroken` instead of being retried. Not pino's default destination: that one flushes
 * synchronously when the process exits and retries a failed write every 100 ms, forever.
 */
export function logOutput(fd: number, onBroken: (err: Error) => void): LogOutput {
  let dropped = 0;
  let broken: Error | null = null;
  let closing = false;
  const boom = new sonicBoom.SonicBoom({ fd, sync: false, maxLength: MAX_BUFFERED });
  boom.on("drop", () => {
    dropped++;
  });
  boom.on("error", (err: Error) => {
    if (broken !== null) return;
    broken = err;
    onBroken(err);
  });
  return {
    write(line: string): boolean {
      if (broken !== null || closing) return true;
      return boom.write(line);
    },
    get dropped() {
      return dropped;
    },
    get broken() {
      return broken;
    },
    close(timeoutMs: number): Promise<void> {
      if (broken !== null || closing) return Promise.resolve();
      closing = true;
      return new Promise((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        timer.unref();
        const done = (): void => {
          clearTimeout(timer);
          resolve();
        };
        boom.once("close", done);
        boom.once("error", done);
        boom.end();
      });
    },
  };
}
