// CSV encoder: pgwire text-format values → the exact bytes PostgreSQL's
// `COPY (q) TO STDOUT (FORMAT csv, HEADER, DELIMITER, QUOTE, ESCAPE, NULL)` prints (the rules of
// CopyAttributeOutCSV in src/backend/commands/copyto.c), split into files of at most MAX FILE SIZE
// (./sized-files.ts counts them, and compresses them for gzip).
//
// The hot path never decodes values to JS strings: values are DataRow bytes copied into one
// reusable output buffer, which goes to the sink in large chunks. Values are read and written four
// bytes at a time (DataView int32s) and checked for the bytes that force quoting with SWAR
// arithmetic on the same word (a byte-at-a-time table lookup cost 2.5x the CPU); a column whose
// type can never print those bytes (./csv-plain-types.ts) is copied without the check. A word may
// run up to 3 bytes past its value on both sides: the bytes read past it are the next field's or
// message's, those written land where the next bytes of the line go anyway.
import { plainColumns } from "./csv-plain-types.js";
import { SizedFiles } from "./sized-files.js";
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
  /**
   * pg_type OID per column (RowDescription's), when known: columns of types whose text never needs
   * quoting are copied without a scan. Without it every value is scanned.
   */
  columnTypes?: readonly number[];
  /** zlib level for gzip (default 6, gzip's own default). */
  gzipLevel?: number;
}

/** Output buffer size; also the uncompressed block size for gzip. */
const OUT_SIZE = 1 << 20;
/** Fields at least this long are scanned with memchr (Buffer.indexOf) and moved with Buffer.copy. */
const LONG_FIELD = 512;
const NL = 0x0a;
const CR = 0x0d;
/** SWAR constants: a byte repeated in each of an int32's four bytes, and the high bits. */
const ONES = 0x01010101;
const HIGHS = 0x80808080 | 0;
/** Keeps the first n (0–3) little-endian bytes of a word. */
const LOW_BYTES = [0, 0xff, 0xffff, 0xffffff];
export function createCsvEncoder(opts: CsvOptions, sink: FileSink): RowEncoder {
  return new CsvEncoder(opts, sink);
}

/** Non-zero iff one of v's four bytes is zero (exact: no false positives as a whole). */
function hasZeroByte(v: number): number {
  return (v - ONES) & ~v & HIGHS;
}

function checkByte(name: string, v: number): void {
  if (!Number.isInteger(v) || v < 0 || v > 255) throw new RangeError(`CSV ${name} must be a single byte`);
}

class CsvEncoder implements RowEncoder {
  readonly extension: string;
  readonly resultFormats: readonly number[];

  /** Where the bytes go, and where a file must end. */
  private readonly files: SizedFiles;
  private readonly delimiter: number;
  private readonly quote: number;
  private readonly escape: number;
  /** 1 for bytes that force quoting: delimiter, quote, CR, LF. */
  private readonly quoteTable = new Uint8Array(256);
  /** The delimiter, quote, CR and LF each repeated in four bytes, for SWAR scans. */
  private readonly delimiterWord: number;
  private readonly quoteWord: number;
  /** 1 for columns copied without a scan (their type never prints delimiter, quote, CR, LF). */
  private plain: Uint8Array = new Uint8Array(0);
  /** 1 for bytes that get ESCAPE in front of them inside quotes: quote and escape. */
  private readonly escapeTable = new Uint8Array(256);
  /** Distinct members of quoteTable, for memchr scans of long fields. */
  private readonly quoteBytes: number[];
  private readonly nullBytes: Buffer;
  private readonly headerLine: Buffer | null = null;

  private out: Buffer = Buffer.allocUnsafeSlow(OUT_SIZE);
  /** A view of `out` for word writes; replaced with it (setOut). */
  private outView: DataView = new DataView(this.out.buffer, this.out.byteOffset, this.out.length);
  /** The last input buffer and a view of it for word reads (a batch's rows share one). */
  private inBuf: Buffer | null = null;
  private inView: DataView = new DataView(new ArrayBuffer(0));
  /** out[0..outPos) holds accepted rows of the current file not yet handed on (plus a row being placed). */
  private outPos = 0;
  private done = false;

  constructor(opts: CsvOptions, sink: FileSink) {
    checkByte("delimiter", opts.delimiter);
    checkByte("quote", opts.quote);
    checkByte("escape", opts.escape);
    if (!(opts.maxFileSize > 0)) throw new RangeError("maxFileSize must be positive");
    this.files = new SizedFiles(sink, opts.maxFileSize, opts.compression, opts.gzipLevel ?? 6);
    this.extension = this.files.gzip ? "csv.gz" : "csv";
    this.resultFormats = opts.columnNames.map(() => 0);
    this.delimiter = opts.delimiter;
    this.quote = opts.quote;
    this.escape = opts.escape;
    for (const b of [opts.delimiter, opts.quote, CR, NL]) this.quoteTable[b] = 1;
    this.delimiterWord = Math.imul(opts.delimiter, ONES);
    this.quoteWord = Math.imul(opts.quote, ONES);
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
    // After the header: column names are text whatever the column's type.
    if (opts.columnTypes !== undefined)
      this.plain = plainColumns(opts.columnTypes, opts.delimiter, opts.quote);
  }

  get wantsFlush(): boolean {
    return this.outPos >= OUT_SIZE >>> 1;
  }

  writeRow(buf: Buffer, pos: number, nFields: number): void {
    if (this.done) throw new Error("CSV encoder: writeRow after finish/dispose");
    const files = this.files;
    if (files.index < 0) this.openFile();
    let rowStart = this.encodeRow(buf, pos, nFields);
    const rowLen = this.outPos - rowStart;
    if (!files.gzip) {
      if (!files.fitsPlain(rowLen) && files.rows > 0) this.nextFileWithRow(rowStart);
      files.addPlain(rowLen);
    } else if (!files.fitsCompressed(this.outPos)) {
      // Compress what is already accepted, then judge the row by the real compressed size.
      this.consumePrefix(rowStart);
      rowStart = 0;
      if (!files.fitsCompressed(rowLen) && files.rows > 0) this.nextFileWithRow(0);
    }
    files.rows++;
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
    if (this.files.index >= 0 && !this.done) this.consumePrefix(this.outPos);
    return Promise.resolve();
  }

  finish(): Promise<void> {
    if (this.done) return Promise.reject(new Error("CSV encoder: finish after finish/dispose"));
    if (this.files.index < 0) this.openFile();
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
    this.setOut(Buffer.alloc(0));
    this.outPos = 0;
    this.files.release();
    this.inBuf = null;
    this.inView = new DataView(new ArrayBuffer(0));
  }

  private setOut(b: Buffer): void {
    this.out = b;
    this.outView = new DataView(b.buffer, b.byteOffset, b.length);
  }

  /**
   * Appends one CSV line for the DataRow fields at buf[pos..] to out[outPos..]. Returns where the
   * line starts, which is earlier than the old outPos only if accepted rows had to be handed on
   * to make room (then it is 0).
   */
  private encodeRow(buf: Buffer, pos: number, nFields: number): number {
    let out = this.out;
    let ov = this.outView;
    let o = this.outPos;
    let rowStart = o;
    if (buf !== this.inBuf) {
      this.inBuf = buf;
      this.inView = new DataView(buf.buffer, buf.byteOffset, buf.length);
    }
    const iv = this.inView;
    const nullLen = this.nullBytes.length;
    const delimiter = this.delimiter;
    const dw = this.delimiterWord;
    const qw = this.quoteWord;
    const plain = this.plain;
    const end = buf.length;
    const last = nFields - 1;
    let p = pos;
    if (nFields === 0) {
      // A zero-column result still has one (empty) line per row.
      if (o + 1 > out.length) {
        o = this.makeRoom(rowStart, o, 1);
        rowStart = 0;
        out = this.out;
        ov = this.outView;
      }
      out[o++] = NL;
    }
    for (let f = 0; f < nFields; f++) {
      if (p + 4 > end) return this.malformed(rowStart);
      const len = iv.getInt32(p);
      p += 4;
      // Room for the worst case: every byte escaped, two quotes, and the delimiter/newline (which
      // also covers a last word written up to 3 bytes past the value).
      const need = len < 0 ? nullLen + 1 : 2 * len + 3;
      if (o + need > out.length) {
        o = this.makeRoom(rowStart, o, need);
        rowStart = 0;
        out = this.out;
        ov = this.outView;
      }
      if (len < 0) {
        const nb = this.nullBytes;
        for (let i = 0; i < nullLen; i++) out[o + i] = nb[i]!;
        o += nullLen;
      } else {
        const fieldEnd = p + len;
        if (fieldEnd > end) return this.malformed(rowStart);
        if (
          (len === nullLen && this.isNullString(buf, p)) ||
          // `\.` alone on a line would read back as PostgreSQL's end-of-data marker.
          (len === 2 && nFields === 1 && buf[p] === 0x5c && buf[p + 1] === 0x2e)
        ) {
          o = this.writeQuoted(buf, p, len, o);
        } else if (fieldEnd + 3 > end) {
          // The last value of the buffer: no word may be read past it.
          o = this.writeBytewise(buf, p, len, o);
        } else if (plain[f] === 1) {
          for (let i = 0; i < len; i += 4) ov.setInt32(o + i, iv.getInt32(p + i, true), true);
          o += len;
        } else if (len >= LONG_FIELD) {
          if (this.needsQuoteLong(buf, p, len)) o = this.writeQuoted(buf, p, len, o);
          else {
            buf.copy(out, o, p, fieldEnd);
            o += len;
          }
        } else {
          // Scan and copy in one pass, a word at a time; the last word's bytes past the value are
          // masked to zero, which is none of the bytes looked for (NUL cannot be a COPY option).
          let hit = 0;
          for (let i = 0; i < len; i += 4) {
            let v = iv.getInt32(p + i, true);
            if (len - i < 4) v &= LOW_BYTES[len - i]!;
            const x = v ^ dw;
            const y = v ^ qw;
            hit = hasZeroByte(x) | hasZeroByte(y) | hasZeroByte(v ^ 0x0a0a0a0a) | hasZeroByte(v ^ 0x0d0d0d0d);
            if (hit !== 0) break;
            ov.setInt32(o + i, v, true);
          }
          if (hit === 0) o += len;
          else o = this.writeQuoted(buf, p, len, o);
        }
        p = fieldEnd;
      }
      out[o++] = f === last ? NL : delimiter;
    }
    this.outPos = o;
    return rowStart;
  }

  /** One value byte by byte (a value ending within 3 bytes of its buffer's end). */
  private writeBytewise(buf: Buffer, p: number, len: number, o: number): number {
    const out = this.out;
    const qt = this.quoteTable;
    for (let i = 0; i < len; i++) {
      const c = buf[p + i]!;
      if (qt[c] !== 0) return this.writeQuoted(buf, p, len, o);
      out[o + i] = c;
    }
    return o + len;
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
      this.setOut(bigger);
    }
    return used;
  }

  /** Hands out[0..n) on to the current file and moves out[n..outPos) to the front. */
  private consumePrefix(n: number): void {
    if (n === 0) return;
    const old = this.out;
    const tail = this.outPos - n;
    // Mostly full: rather give the buffer itself away than copy it.
    const handedOver = this.files.write(old.subarray(0, n), n >= old.length >>> 1);
    if (handedOver || (old.length > OUT_SIZE && tail <= OUT_SIZE >>> 1)) {
      // Continue in a fresh buffer; this also drops one grown for an oversized row.
      const fresh = Buffer.allocUnsafeSlow(Math.max(OUT_SIZE, tail));
      old.copy(fresh, 0, n, n + tail);
      this.setOut(fresh);
    } else if (tail > 0) {
      old.copyWithin(0, n, n + tail);
    }
    this.outPos = tail;
  }

  private openFile(): void {
    const h = this.headerLine;
    this.files.open(h === null ? 0 : h.length);
    if (h !== null) {
      // Called with an empty buffer or with the first row of the file at out[0..outPos).
      const rowLen = this.outPos;
      if (h.length + rowLen > this.out.length) {
        const bigger = Buffer.allocUnsafeSlow(Math.max(OUT_SIZE, h.length + rowLen));
        this.out.copy(bigger, 0, 0, rowLen);
        this.setOut(bigger);
      }
      this.out.copyWithin(h.length, 0, rowLen);
      h.copy(this.out, 0);
      this.outPos = h.length + rowLen;
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
    this.files.close();
  }
}
