// CSV encoder: pgwire text-format values → the exact bytes PostgreSQL's
// `COPY (q) TO STDOUT (FORMAT csv, HEADER, DELIMITER, QUOTE, ESCAPE, NULL)` prints (the rules of
// CopyAttributeOutCSV in src/backend/commands/copyto.c), split into files of at most MAX FILE SIZE.
//
// The hot path never decodes values to JS strings: values are DataRow bytes, checked against a
// 256-entry lookup table and copied into one reusable output buffer, which goes to the sink in
// large chunks.
//
// gzip and MAX FILE SIZE. A file must not exceed the limit *compressed*, but the compressed size of
// a row is unknown until it is compressed. Each file is one gzip member (so every reader, not only
// those that handle concatenated members, sees the whole file) whose raw-deflate body we build
// from independent deflateRawSync() calls over blocks of rows, the way pigz does: every block ends
// with a Z_SYNC_FLUSH (byte-aligned, not final) and is compressed with the previous 32 KiB of the
// file as its preset dictionary, so back-references across blocks still work and the ratio is
// that of one continuous stream. After each block the exact compressed size is known. A row joins
// the pending block only while `compressed so far + bound(pending block)` stays within the limit,
// with a deliberately loose worst-case bound (≥ zlib's deflateBound for any memLevel, plus the
// flush marker); when it would not, the pending block is compressed first and the row re-checked
// against the real size. Near the limit blocks get geometrically smaller, so a file ends within
// about one row of the limit and never above it. Node's sync zlib calls are documented API (unlike
// driving a Gzip stream synchronously), and zlib.crc32 gives the trailer's checksum.
import { crc32, deflateRawSync, type ZlibOptions, constants as zc } from "node:zlib";
import type { FileSink, RowEncoder } from "./types.js";

export interface CsvOptions {
  /** Write the column-name line at the top of every file. */
  header: boolean;
  /** Single bytes; the options parser has rejected anything else. */
  delimiter: number;
  quote: number;
  escape: number;
  /** Text written for SQL NULL. */
  null: string;
  compression: "none" | "gzip";
  /** Upper bound of each file's size in bytes (compressed size for gzip). */
  maxFileSize: number;
  columnNames: readonly string[];
  /** zlib level for gzip (default 6, gzip's own default). */
  gzipLevel?: number;
}

/** Output buffer size; also the uncompressed block size for gzip. */
const OUT_SIZE = 1 << 20;
/** Fields at least this long are scanned with memchr (Buffer.indexOf) and moved with Buffer.copy. */
const LONG_FIELD = 512;
const NL = 0x0a;
const CR = 0x0d;
const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
/** Final empty fixed-Huffman deflate block (BFINAL=1, BTYPE=01, end-of-block code). */
const DEFLATE_END = Buffer.from([0x03, 0x00]);
/** Bytes every gzip file still needs after its last block: DEFLATE_END + CRC32 + ISIZE. */
const GZIP_TAIL = DEFLATE_END.length + 8;
const WINDOW = 32 * 1024;

/** Worst-case raw deflate size of `u` bytes compressed with a sync flush. */
function deflateBound(u: number): number {
  return u + Math.ceil(u / 7) + 64;
}

export function createCsvEncoder(opts: CsvOptions, sink: FileSink): RowEncoder {
  return new CsvEncoder(opts, sink);
}

function checkByte(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError(`CSV ${name} must be a single byte`);
}

class CsvEncoder implements RowEncoder {
  readonly extension: string;
  readonly resultFormats: readonly number[];

  private readonly sink: FileSink;
  private readonly maxFileSize: number;
  private readonly gzip: boolean;
  private readonly gzipLevel: number;
  private readonly delimiter: number;
  private readonly quote: number;
  private readonly escape: number;
  /** 1 for bytes that force quoting: delimiter, quote, CR, LF. */
  private readonly quoteTable = new Uint8Array(256);
  /** 1 for bytes that get ESCAPE in front of them inside quotes: quote and escape. */
  private readonly escapeTable = new Uint8Array(256);
  /** Distinct members of quoteTable, for memchr scans of long fields. */
  private readonly quoteBytes: number[];
  private readonly nullBytes: Buffer;
  private readonly headerLine: Buffer | null = null;

  private out: Buffer = Buffer.allocUnsafeSlow(OUT_SIZE);
  /** out[0..outPos) holds accepted rows of the current file not yet handed on (plus a row being placed). */
  private outPos = 0;
  private fileIndex = -1;
  private rowsInFile = 0;
  /** Uncompressed mode: bytes of the current file, handed over or pending. */
  private fileBytes = 0;
  // gzip state of the current file.
  private compressed = 0;
  private crc = 0;
  private isize = 0;
  private dict: Buffer | null = null;
  private gzipHeaderPending = false;
  private done = false;

  constructor(opts: CsvOptions, sink: FileSink) {
    checkByte("delimiter", opts.delimiter);
    checkByte("quote", opts.quote);
    checkByte("escape", opts.escape);
    if (!(opts.maxFileSize > 0)) throw new RangeError("maxFileSize must be positive");
    this.sink = sink;
    this.maxFileSize = opts.maxFileSize;
    this.gzip = opts.compression === "gzip";
    this.gzipLevel = opts.gzipLevel ?? 6;
    this.extension = this.gzip ? "csv.gz" : "csv";
    this.resultFormats = opts.columnNames.map(() => 0);
    this.delimiter = opts.delimiter;
    this.quote = opts.quote;
    this.escape = opts.escape;
    for (const b of [opts.delimiter, opts.quote, CR, NL]) this.quoteTable[b] = 1;
    this.quoteBytes = [...new Set([opts.delimiter, opts.quote, CR, NL])];
    this.escapeTable[opts.quote] = 1;
    this.escapeTable[opts.escape] = 1;
    this.nullBytes = Buffer.from(opts.null, "utf8");
    if (opts.header) {
      // The header goes through the row encoder itself, so column names are quoted by exactly
      // the rules values are (PostgreSQL does the same: a name equal to the NULL string, or `\.`
      // as the only column, is quoted too).
      const names = opts.columnNames.map((n) => Buffer.from(n, "utf8"));
      const row = Buffer.allocUnsafe(names.reduce((s, n) => s + 4 + n.length, 0));
      let p = 0;
      for (const n of names) {
        p = row.writeInt32BE(n.length, p);
        p += n.copy(row, p);
      }
      this.encodeRow(row, 0, names.length);
      this.headerLine = Buffer.from(this.out.subarray(0, this.outPos));
      this.outPos = 0;
    }
  }

  get wantsFlush(): boolean {
    return this.outPos >= OUT_SIZE >>> 1;
  }

  writeRow(buf: Buffer, pos: number, nFields: number): void {
    if (this.done) throw new Error("CSV encoder: writeRow after finish/dispose");
    if (this.fileIndex < 0) this.openFile();
    let rowStart = this.encodeRow(buf, pos, nFields);
    const rowLen = this.outPos - rowStart;
    if (!this.gzip) {
      if (this.fileBytes + rowLen > this.maxFileSize && this.rowsInFile > 0) this.nextFileWithRow(rowStart);
      this.fileBytes += rowLen;
    } else if (!this.gzipFits(this.outPos)) {
      // Compress what is already accepted, then judge the row by the real compressed size.
      this.consumePrefix(rowStart);
      rowStart = 0;
      if (!this.gzipFits(rowLen) && this.rowsInFile > 0) this.nextFileWithRow(0);
    }
    this.rowsInFile++;
  }

  writeRows(buf: Buffer, start: number, end: number): void {
    // Walked inline rather than with forEachDataRow: no closure call per row on the hot path.
    for (let p = start; p < end; ) {
      // Message header: 'D', int32 length (from here), int16 field count.
      const next = p + 1 + ((buf[p + 1]! << 24) | (buf[p + 2]! << 16) | (buf[p + 3]! << 8) | buf[p + 4]!);
      this.writeRow(buf, p + 7, (((buf[p + 5]! << 8) | buf[p + 6]!) << 16) >> 16);
      p = next;
    }
  }

  flush(): Promise<void> {
    if (this.fileIndex >= 0 && !this.done) this.consumePrefix(this.outPos);
    return Promise.resolve();
  }

  finish(): Promise<void> {
    if (this.done) return Promise.reject(new Error("CSV encoder: finish after finish/dispose"));
    if (this.fileIndex < 0) this.openFile();
    this.closeFile();
    this.done = true;
    this.release();
    return Promise.resolve();
  }

  dispose(): void {
    this.done = true;
    this.release();
  }

  private release(): void {
    this.out = Buffer.alloc(0);
    this.outPos = 0;
    this.dict = null;
  }

  /**
   * Appends one CSV line for the DataRow fields at buf[pos..] to out[outPos..]. Returns where the
   * line starts, which is earlier than the old outPos only if accepted rows had to be handed on
   * to make room (then it is 0).
   */
  private encodeRow(buf: Buffer, pos: number, nFields: number): number {
    let out = this.out;
    let o = this.outPos;
    let rowStart = o;
    const qt = this.quoteTable;
    const nullBytes = this.nullBytes;
    const nullLen = nullBytes.length;
    const delimiter = this.delimiter;
    const end = buf.length;
    const last = nFields - 1;
    let p = pos;
    if (nFields === 0) {
      // A zero-column result still has one (empty) line per row.
      if (o + 1 > out.length) {
        o = this.makeRoom(rowStart, o, 1);
        rowStart = 0;
        out = this.out;
      }
      out[o++] = NL;
    }
    for (let f = 0; f < nFields; f++) {
      if (p + 4 > end) return this.malformed(rowStart);
      const len = (buf[p]! << 24) | (buf[p + 1]! << 16) | (buf[p + 2]! << 8) | buf[p + 3]!;
      p += 4;
      // Room for the worst case: every byte escaped, two quotes, and the delimiter/newline.
      const need = len < 0 ? nullLen + 1 : 2 * len + 3;
      if (o + need > out.length) {
        o = this.makeRoom(rowStart, o, need);
        rowStart = 0;
        out = this.out;
      }
      if (len < 0) {
        for (let i = 0; i < nullLen; i++) out[o + i] = nullBytes[i]!;
        o += nullLen;
      } else {
        if (p + len > end) return this.malformed(rowStart);
        let quote =
          (len === nullLen && this.isNullString(buf, p)) ||
          // `\.` alone on a line would read back as PostgreSQL's end-of-data marker.
          (len === 2 && nFields === 1 && buf[p] === 0x5c && buf[p + 1] === 0x2e);
        if (!quote) {
          if (len < LONG_FIELD) {
            // Scan and copy in one pass: short fields are the common case and a Buffer.copy
            // call costs more than copying a few bytes by hand.
            let i = 0;
            for (; i < len; i++) {
              const c = buf[p + i]!;
              if (qt[c] !== 0) break;
              out[o + i] = c;
            }
            if (i === len) o += len;
            else quote = true;
          } else if (this.needsQuoteLong(buf, p, len)) {
            quote = true;
          } else {
            buf.copy(out, o, p, p + len);
            o += len;
          }
        }
        if (quote) o = this.writeQuoted(buf, p, len, o);
        p += len;
      }
      out[o++] = f === last ? NL : delimiter;
    }
    this.outPos = o;
    return rowStart;
  }

  private malformed(rowStart: number): never {
    this.outPos = rowStart;
    throw new RangeError("CSV encoder: DataRow field runs past the end of the message");
  }

  private isNullString(buf: Buffer, p: number): boolean {
    const nb = this.nullBytes;
    for (let i = 0; i < nb.length; i++) if (buf[p + i] !== nb[i]) return false;
    return true;
  }

  private needsQuoteLong(buf: Buffer, p: number, len: number): boolean {
    const field = buf.subarray(p, p + len);
    for (const b of this.quoteBytes) if (field.indexOf(b) >= 0) return true;
    return false;
  }

  private writeQuoted(buf: Buffer, p: number, len: number, o: number): number {
    const out = this.out;
    const et = this.escapeTable;
    const esc = this.escape;
    out[o++] = this.quote;
    for (let i = p, e = p + len; i < e; i++) {
      const c = buf[i]!;
      if (et[c] !== 0) out[o++] = esc;
      out[o++] = c;
    }
    out[o++] = this.quote;
    return o;
  }

  /**
   * Makes room for `need` more bytes after out[rowStart..o), the row being encoded: hands the
   * accepted rows before it on to the current file and moves it to the front, growing the buffer
   * for rows larger than it. Returns the new write position (the row now starts at 0).
   */
  private makeRoom(rowStart: number, o: number, need: number): number {
    this.outPos = o;
    this.consumePrefix(rowStart);
    const used = this.outPos;
    if (used + need > this.out.length) {
      let size = this.out.length || OUT_SIZE;
      while (size < used + need) size *= 2;
      const bigger = Buffer.allocUnsafeSlow(size);
      this.out.copy(bigger, 0, 0, used);
      this.out = bigger;
    }
    return used;
  }

  /** Hands out[0..n) on to the current file and moves out[n..outPos) to the front. */
  private consumePrefix(n: number): void {
    if (n === 0) return;
    const old = this.out;
    const tail = this.outPos - n;
    let handedOver = false;
    if (this.gzip) {
      this.deflateBlock(old.subarray(0, n));
    } else if (this.sink.copies === true) {
      // The encoder thread's sink: the buffer is ours again when write() returns.
      this.sink.write(old.subarray(0, n));
    } else if (n >= old.length >>> 1) {
      // Mostly full: give the buffer itself away rather than copy it.
      this.sink.write(old.subarray(0, n));
      handedOver = true;
    } else {
      const chunk = Buffer.allocUnsafeSlow(n);
      old.copy(chunk, 0, 0, n);
      this.sink.write(chunk);
    }
    if (handedOver || (old.length > OUT_SIZE && tail <= OUT_SIZE >>> 1)) {
      // Continue in a fresh buffer; this also drops one grown for an oversized row.
      const fresh = Buffer.allocUnsafeSlow(Math.max(OUT_SIZE, tail));
      old.copy(fresh, 0, n, n + tail);
      this.out = fresh;
    } else if (tail > 0) {
      old.copyWithin(0, n, n + tail);
    }
    this.outPos = tail;
  }

  private gzipFits(pendingBytes: number): boolean {
    return this.compressed + deflateBound(pendingBytes) + GZIP_TAIL <= this.maxFileSize;
  }

  private deflateBlock(data: Buffer): void {
    this.crc = crc32(data, this.crc);
    this.isize = (this.isize + data.length) >>> 0;
    const zopts: ZlibOptions = {
      level: this.gzipLevel,
      finishFlush: zc.Z_SYNC_FLUSH,
      chunkSize: 64 * 1024,
    };
    if (this.dict !== null) zopts.dictionary = this.dict;
    let z = deflateRawSync(data, zopts);
    // The next block may refer back up to one window into this file's uncompressed stream.
    if (data.length >= WINDOW) {
      this.dict = Buffer.from(data.subarray(data.length - WINDOW));
    } else {
      const prev = this.dict ?? Buffer.alloc(0);
      const joined = Buffer.concat([prev, data]);
      this.dict = joined.length > WINDOW ? joined.subarray(joined.length - WINDOW) : joined;
    }
    if (this.gzipHeaderPending) {
      // A constant, never changed: a sink may keep it.
      this.sink.write(GZIP_HEADER);
      this.gzipHeaderPending = false;
    }
    if (this.sink.copies !== true && z.buffer.byteLength > 2 * z.length) {
      // A small result is a view of zlib's output chunk; a sink that keeps what it gets must not
      // pin the whole chunk.
      const exact = Buffer.allocUnsafeSlow(z.length);
      z.copy(exact);
      z = exact;
    }
    this.compressed += z.length;
    this.sink.write(z);
  }

  private openFile(): void {
    this.fileIndex++;
    this.sink.openFile(this.fileIndex);
    this.rowsInFile = 0;
    this.fileBytes = 0;
    if (this.gzip) {
      this.compressed = GZIP_HEADER.length;
      this.crc = 0;
      this.isize = 0;
      this.dict = null;
      this.gzipHeaderPending = true;
    }
    const h = this.headerLine;
    if (h !== null) {
      // Called with an empty buffer or with the first row of the file at out[0..outPos).
      const rowLen = this.outPos;
      if (h.length + rowLen > this.out.length) {
        const bigger = Buffer.allocUnsafeSlow(Math.max(OUT_SIZE, h.length + rowLen));
        this.out.copy(bigger, 0, 0, rowLen);
        this.out = bigger;
      }
      this.out.copyWithin(h.length, 0, rowLen);
      h.copy(this.out, 0);
      this.outPos = h.length + rowLen;
      this.fileBytes = h.length;
    }
  }

  private closeFile(): void {
    this.consumePrefix(this.outPos);
    this.finalizeFile();
  }

  /** Closes the current file with everything before out[rowStart] and starts the next with the row. */
  private nextFileWithRow(rowStart: number): void {
    this.consumePrefix(rowStart);
    this.finalizeFile();
    this.openFile();
  }

  /** Ends the current file; whatever is still in `out` belongs to the next one. */
  private finalizeFile(): void {
    if (this.gzip) {
      const head = this.gzipHeaderPending ? GZIP_HEADER.length : 0;
      const tail = Buffer.allocUnsafeSlow(head + GZIP_TAIL);
      if (head > 0) GZIP_HEADER.copy(tail, 0);
      DEFLATE_END.copy(tail, head);
      tail.writeUInt32LE(this.crc >>> 0, head + 2);
      tail.writeUInt32LE(this.isize, head + 6);
      this.sink.write(tail);
      this.gzipHeaderPending = false;
    }
    this.sink.closeFile(this.rowsInFile);
  }
}
