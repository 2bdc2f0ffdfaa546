// The encoder thread's FileSink for a file:// target: the thread writes the files itself
// (../../copy/storage/sync-file-upload.ts) as the encoder produces their bytes, and the relay is
// told only per file — which one is about to exist, how many bytes so far (progress), which one is
// complete — and on errors (docs/isolation.md, "Encoded output written by the encoder thread").
//
// A file is announced before its temp file is created: a cancel ends this thread at any moment,
// and the relay takes back every file it was told of (the temp by its id, the object by its key)
// once the thread has stopped, so nothing the thread made is unknown to it.
import { randomBytes } from "node:crypto";
import { withCleanupFailure } from "../../copy/storage/object-store.js";
import { SyncFileDirectory, SyncFileUpload, type SyncFs } from "../../copy/storage/sync-file-upload.js";
import type { PgError } from "../../errors.js";
import type { FileSink } from "../types.js";
import { ChunkGatherer } from "./chunk-gatherer.js";
import { type FileOutput, type FromEncoder, fileKey } from "./protocol.js";

/** Bytes gathered before one write: the encoders hand over pieces of a few KiB to a few MiB. */
export const WRITE_BYTES = 1 << 20;

export class FileWriterSink implements FileSink {
  /** write() has written (or gathered a copy of) the bytes when it returns. */
  readonly copies = true;
  private readonly dir: SyncFileDirectory;
  private upload: SyncFileUpload | null = null;
  private index = -1;
  /** The one buffer small pieces are gathered in: written out, then reused. */
  private buffer: Buffer | null = null;
  private readonly gather = new ChunkGatherer(
    WRITE_BYTES,
    () => (this.buffer ??= Buffer.allocUnsafeSlow(WRITE_BYTES)),
    (buf, n) => this.writeOut(buf, n),
  );
  /** Bytes of the current file written and not yet told (progress). */
  private untold = 0;

  constructor(
    private readonly output: FileOutput,
    private readonly tell: (m: FromEncoder) => void,
    fs?: SyncFs,
    /** Tests only: see ToEncoder `files`. */
    private readonly renamed?: Int32Array,
  ) {
    this.dir = new SyncFileDirectory(output, fs);
  }

  openFile(index: number): void {
    const uploadId = randomBytes(8).toString("hex");
    this.index = index;
    this.gather.clear();
    this.untold = 0;
    this.tell({ t: "file-open", index, uploadId });
    this.upload = new SyncFileUpload(this.dir, fileKey(this.output, index), uploadId);
  }

  write(chunk: Uint8Array, release?: () => void): void {
    const n = chunk.byteLength;
    // A large piece with nothing gathered before it is written as it is: no copy.
    if (this.gather.gathered === 0 && n >= WRITE_BYTES >>> 1) this.writeOut(chunk, n);
    else this.gather.add(chunk);
    release?.();
  }

  closeFile(rows: number): void {
    this.gather.flush();
    const up = this.upload!;
    const bytes = up.end();
    this.upload = null;
    if (this.renamed !== undefined) {
      Atomics.add(this.renamed, 1, 1);
      Atomics.wait(this.renamed, 0, 1);
    }
    this.tell({ t: "file-done", index: this.index, rows, bytes });
  }

  /**
   * The export failed or was dropped: the file being written goes (the relay would remove it
   * too; this thread knows it first). Returns `err` with what could not be removed, if anything.
   */
  abort(err: PgError): PgError {
    const up = this.upload;
    this.upload = null;
    this.gather.clear();
    if (up === null) return err;
    try {
      up.abort();
      return err;
    } catch (cleanup) {
      return withCleanupFailure(err, cleanup);
    }
  }

  private writeOut(buf: Uint8Array, n: number): void {
    this.upload!.write(buf, 0, n);
    this.untold += n;
    if (this.untold >= WRITE_BYTES) {
      this.tell({ t: "file-bytes", bytes: this.untold });
      this.untold = 0;
    }
  }
}
