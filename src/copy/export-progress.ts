// The progress NOTICEs of a running export: one every exports.progressIntervalMs from the start
// (opening a snapshot can wait on the upstream, a preflight on S3), naming the phase the export
// is in; the words are progress-notice.ts's.
import { type ProgressPhase, progressMessage } from "./progress-notice.js";

export interface ProgressCounts {
  rows: number;
  bytes: number;
  files: number;
  filesDone: number;
}

export class ProgressNotices {
  private phase: ProgressPhase = "preparing";
  private readStarted = 0;
  private readonly timer: NodeJS.Timeout;

  constructor(
    intervalMs: number,
    private readonly notice: (message: string) => void,
    private readonly counts: () => ProgressCounts,
  ) {
    this.timer = setInterval(() => this.send(), intervalMs);
    this.timer.unref();
  }

  /** What the NOTICEs say from now on; reading also starts the rows/s clock. */
  enter(phase: ProgressPhase): void {
    this.phase = phase;
    if (phase === "reading") this.readStarted = Date.now();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private send(): void {
    this.notice(
      progressMessage({ phase: this.phase, ...this.counts(), readingMs: Date.now() - this.readStarted }),
    );
  }
}
