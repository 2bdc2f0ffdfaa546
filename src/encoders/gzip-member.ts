// One gzip member (RFC 1952) built from independently compressed blocks, so that a caller can
// learn the exact compressed size after each block and end the member before a size limit: every
// block is raw deflate ending with a Z_SYNC_FLUSH (byte-aligned, not final) and compressed with the
// previous 32 KiB of the member as its preset dictionary, the way pigz does, so back-references
// across blocks still work and the ratio is that of one continuous stream. The member ends with an
// empty final block, the CRC32 and the length. Node's sync zlib calls are documented API (unlike
// driving a Gzip stream synchronously), and zlib.crc32 gives the trailer's checksum.
import { crc32, deflateRawSync, type ZlibOptions, constants as zc } from "node:zlib";

/** The fixed 10-byte header: deflate, no name, no mtime, OS "Unix". A constant: a sink may keep it. */
export const GZIP_HEADER = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
/** Final empty fixed-Huffman deflate block (BFINAL=1, BTYPE=01, end-of-block code). */
const DEFLATE_END = Buffer.from([0x03, 0x00]);
/** Bytes every member still needs after its last block: DEFLATE_END + CRC32 + ISIZE. */
export const GZIP_TAIL = DEFLATE_END.length + 8;
const WINDOW = 32 * 1024;

/**
 * Worst-case raw deflate size of `u` bytes compressed with a sync flush: deliberately loose (≥
 * zlib's deflateBound for any memLevel, plus the flush marker).
 */
export function deflateBound(u: number): number {
  return u + Math.ceil(u / 7) + 64;
}

export class GzipMember {
  /** Bytes of the member so far, its header included (once begun). */
  compressed = 0;
  private crc = 0;
  private isize = 0;
  private dict: Buffer | null = null;
  /** The header is not handed out yet: it goes before the first block, or with the tail. */
  private headerPending = false;

  constructor(private readonly level: number) {}

  /** Starts a new member. */
  begin(): void {
    this.compressed = GZIP_HEADER.length;
    this.crc = 0;
    this.isize = 0;
    this.dict = null;
    this.headerPending = true;
  }

  /** Whether `pendingBytes` more uncompressed bytes surely fit, with the tail, within `maxSize`. */
  fits(pendingBytes: number, maxSize: number): boolean {
    return this.compressed + deflateBound(pendingBytes) + GZIP_TAIL <= maxSize;
  }

  /** The header, the first time it is asked for in a member (before its first block); else null. */
  takeHeader(): Buffer | null {
    if (!this.headerPending) return null;
    this.headerPending = false;
    return GZIP_HEADER;
  }

  /** Compresses one block; the result may be a view of a larger zlib output chunk. */
  deflate(data: Buffer): Buffer {
    this.crc = crc32(data, this.crc);
    this.isize = (this.isize + data.length) >>> 0;
    const zopts: ZlibOptions = {
      level: this.level,
      finishFlush: zc.Z_SYNC_FLUSH,
      chunkSize: 64 * 1024,
    };
    if (this.dict !== null) zopts.dictionary = this.dict;
    const z = deflateRawSync(data, zopts);
    // The next block may refer back up to one window into this member's uncompressed stream.
    if (data.length >= WINDOW) {
      this.dict = Buffer.from(data.subarray(data.length - WINDOW));
    } else {
      const prev = this.dict ?? Buffer.alloc(0);
      const joined = Buffer.concat([prev, data]);
      this.dict = joined.length > WINDOW ? joined.subarray(joined.length - WINDOW) : joined;
    }
    return z;
  }

  /** Counts `n` compressed bytes handed on. */
  add(n: number): void {
    this.compressed += n;
  }

  /** The member's last bytes (with the header first if no block was written); the member ends. */
  tail(): Buffer {
    const head = this.headerPending ? GZIP_HEADER.length : 0;
    const tail = Buffer.allocUnsafeSlow(head + GZIP_TAIL);
    if (head > 0) GZIP_HEADER.copy(tail, 0);
    DEFLATE_END.copy(tail, head);
    tail.writeUInt32LE(this.crc >>> 0, head + 2);
    tail.writeUInt32LE(this.isize, head + 6);
    this.headerPending = false;
    return tail;
  }

  /** Drops the dictionary (the encoder is done). */
  release(): void {
    this.dict = null;
  }
}
