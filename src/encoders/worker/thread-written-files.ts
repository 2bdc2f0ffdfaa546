// The files an export's encoder thread writes itself (a file:// target, ./file-writer-sink.ts),
// as its handle (./encoder-thread.ts) passes them on: the driver (../../copy/thread-files.ts) is
// told of each file in the order things happened there — even after the export failed — and
// learns when the thread no longer touches any of them (stopped()), which is when it can take
// them all back after a cancel or a failure (SPEC §2.2).
import type { FileOutput, FromEncoder, ToEncoder } from "./protocol.js";

/** Where an export's files go when its encoder thread writes them itself: told per file. */
export interface ThreadWrittenFiles {
  readonly output: FileOutput;
  /** File `index` is about to be created as temp file `uploadId`. */
  opened(index: number, uploadId: string): void;
  /** Bytes of the current file written since the last word. */
  wrote(bytes: number): void;
  /** File `index` is complete and in place. */
  done(index: number, rows: number, bytes: number): void;
}

export class ThreadFileWords {
  /** The export's files, when the thread writes them (attach()). */
  private files: ThreadWrittenFiles | null = null;
  /** Resolves once the thread touches none of this export's files any more. */
  private readonly stoppedP: Promise<void>;
  private onStopped: () => void = () => {};

  constructor() {
    this.stoppedP = new Promise<void>((resolve) => {
      this.onStopped = resolve;
    });
  }

  /** The thread is to write the export's files to `files`: returns the message that tells it. */
  attach(files: ThreadWrittenFiles, renamed: Int32Array | undefined): Extract<ToEncoder, { t: "files" }> {
    this.files = files;
    const m: Extract<ToEncoder, { t: "files" }> = { t: "files", output: files.output };
    if (renamed !== undefined) m.renamed = renamed;
    return m;
  }

  /** Passes on the thread's word about a file; false if `m` is not one. */
  receive(m: FromEncoder): boolean {
    if (m.t !== "file-open" && m.t !== "file-bytes" && m.t !== "file-done") return false;
    const files = this.files;
    if (files === null) return true;
    if (m.t === "file-open") files.opened(m.index, m.uploadId);
    else if (m.t === "file-bytes") files.wrote(m.bytes);
    else files.done(m.index, m.rows, m.bytes);
    return true;
  }

  /** The thread has finished (or dropped) the export, or exited: every file word has come. */
  stop(): void {
    this.onStopped();
  }

  stopped(): Promise<void> {
    return this.stoppedP;
  }
}
