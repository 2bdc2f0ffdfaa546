// Where a text encoder's bytes go: files on the sink, none larger than MAX FILE SIZE, each either
// plain or one gzip member (so every reader, not only those that handle concatenated members, sees
// the whole file). The encoder (./csv-encoder.ts) decides where a file ends, between rows; this
// counts what the current file holds and says whether more surely fits.
//
// gzip. A file must not exceed the limit *compressed*, but the compressed size of a row is unknown
// until it is compressed. The member is built from blocks of rows whose exact compressed size is
// known after each (./gzip-member.ts). A row joins the encoder's pending block only while
// `compressed so far + bound(pending block)` stays within the limit, with a deliberately loose
// worst-case bound; when it would not, the pending block is compressed first and the row
// re-checked against the real size. Near the limit blocks get geometrically smaller, so a file ends
// within about one row of the limit and never above it.
import { GzipMember } from "./gzip-member.js";
import type { FileSink } from "./types.js";

export class SizedFiles {
  readonly gzip: boolean;
  /** The current file's index; -1 before the first is opened. */
  index = -1;
  /** Rows in the current file. */
  rows = 0;
  /** Uncompressed mode: bytes of the current file, handed over or pending. */
  private bytes = 0;
  /** gzip: the current file's member. */
  private readonly member: GzipMember;

  constructor(
    private readonly sink: FileSink,
    private readonly maxFileSize: number,
    compression: "none" | "gzip",
    gzipLevel: number,
  ) {
    this.gzip = compression === "gzip";
    this.member = new GzipMember(gzipLevel);
  }

  /** Opens the next file, whose first `headerBytes` (its header line) are already pending. */
  open(headerBytes: number): void {
    this.index++;
    this.sink.openFile(this.index);
    this.rows = 0;
    this.bytes = headerBytes;
    if (this.gzip) this.member.begin();
  }

  /** Uncompressed mode: whether `n` more bytes fit the current file. */
  fitsPlain(n: number): boolean {
    return this.bytes + n <= this.maxFileSize;
  }

  /** Uncompressed mode: `n` more bytes belong to the current file. */
  addPlain(n: number): void {
    this.bytes += n;
  }

  /** gzip: whether `pendingBytes` more uncompressed bytes surely fit, with the member's tail. */
  fitsCompressed(pendingBytes: number): boolean {
    return this.member.fits(pendingBytes, this.maxFileSize);
  }

  /**
   * Hands `data` (bytes of the current file) on. `mayGive`: the caller would rather give its
   * buffer away than have it copied. True when the sink keeps `data` itself: the caller must not
   * write into that buffer again.
   */
  write(data: Buffer, mayGive: boolean): boolean {
    if (this.gzip) {
      this.deflateBlock(data);
      return false;
    }
    if (this.sink.copies === true) {
      // The encoder thread's sink: the buffer is ours again when write() returns.
      this.sink.write(data);
      return false;
    }
    if (mayGive) {
      this.sink.write(data);
      return true;
    }
    const chunk = Buffer.allocUnsafeSlow(data.length);
    data.copy(chunk);
    this.sink.write(chunk);
    return false;
  }

  /** Ends the current file (everything written so far is in it). */
  close(): void {
    if (this.gzip) this.sink.write(this.member.tail());
    this.sink.closeFile(this.rows);
  }

  /** The encoder is done: drops the compressor's dictionary. */
  release(): void {
    this.member.release();
  }

  private deflateBlock(data: Buffer): void {
    let z = this.member.deflate(data);
    const header = this.member.takeHeader();
    // A constant, never changed: a sink may keep it.
    if (header !== null) this.sink.write(header);
    if (this.sink.copies !== true && z.buffer.byteLength > 2 * z.length) {
      // A small result is a view of zlib's output chunk; a sink that keeps what it gets must not
      // pin the whole chunk.
      const exact = Buffer.allocUnsafeSlow(z.length);
      z.copy(exact);
      z = exact;
    }
    this.member.add(z.length);
    this.sink.write(z);
  }
}
