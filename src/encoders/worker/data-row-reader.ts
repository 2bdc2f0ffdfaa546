// Frames a row stream's DataRows out of the bytes of an upstream connection, chunk by chunk, for a
// reader that is not the relay's MessageStream: the encoder host reading a lent socket
// (./row-loan.ts) and the encoder thread reading the relay's row ring (./ring-reader.ts). The
// checks are the relay's (its MessageStream with an export's policy): each message must be a
// DataRow whose length word is sane and whose size is at most exports.maxRowBytes. At the first
// message that is not (CommandComplete, an ErrorResponse, a NoticeResponse, PortalSuspended, an
// oversized or malformed row…) the reader stops and says where that message begins, so the relay
// reads on from exactly there and judges it as it always did. A row's fields are the encoder's to
// check (08P01), as they are with the relay framing the rows.
import { MAX_MESSAGE_LENGTH } from "../../wire/message-stream.js";
import { BATCH_BYTES } from "./row-batcher.js";

const DATA_ROW = 0x44;

export interface DataRowOut {
  /**
   * `count` whole DataRows in `buf[start..end)`. `own`: `buf` is the row's own buffer (a row
   * larger than a batch, assembled across chunks), which the callee may keep; otherwise the bytes
   * are valid only during the call.
   */
  rows(buf: Buffer, start: number, end: number, count: number, own: boolean): void;
}

/** Where the first message not taken begins: `head` (its bytes from earlier chunks), then `chunk[at..]`. */
export interface NotTaken {
  head: Buffer;
  at: number;
}

export class DataRowReader {
  /** A message that began in an earlier chunk: its bytes so far. */
  private carry: Buffer | null = null;
  private carryLen = 0;

  constructor(
    private readonly maxRowBytes: number,
    private readonly out: DataRowOut,
  ) {}

  /** Bytes of a message begun in earlier chunks and not yet whole (0: at a message boundary). */
  get carried(): number {
    return this.carry === null ? 0 : this.carryLen;
  }

  /** The whole size of that message, once its header is in (0 before). */
  get carriedTotal(): number {
    return this.carry === null || this.carryLen < 5 ? 0 : 1 + this.carry.readInt32BE(1);
  }

  /**
   * The next bytes of the stream. Returns null when every byte was taken (whole rows, or the
   * start of one kept here), else where the first message not taken begins; nothing after it was
   * looked at. Nothing keeps a view of `chunk` (it may be a reused read buffer, or shared memory).
   */
  feed(chunk: Buffer): NotTaken | null {
    let pos = 0;
    const len = chunk.length;
    if (this.carry !== null) {
      const c = this.carry;
      if (this.carryLen < 5) {
        const n = Math.min(5 - this.carryLen, len);
        chunk.copy(c, this.carryLen, 0, n);
        this.carryLen += n;
        pos = n;
        if (this.carryLen < 5) return null;
        const total = this.sizeOf(c, 0);
        if (total < 0) {
          this.carry = null;
          return { head: c.subarray(0, 5), at: pos };
        }
        if (total > c.length) {
          this.carry = Buffer.allocUnsafeSlow(total);
          c.copy(this.carry, 0, 0, 5);
        }
      }
      const whole = this.carry!;
      const total = 1 + whole.readInt32BE(1);
      const n = Math.min(total - this.carryLen, len - pos);
      chunk.copy(whole, this.carryLen, pos, pos + n);
      this.carryLen += n;
      pos += n;
      if (this.carryLen < total) return null;
      this.carry = null;
      this.out.rows(whole, 0, total, 1, total > BATCH_BYTES);
    }
    const start = pos;
    let count = 0;
    // Length words through a DataView: one load and a byte swap, where Buffer's readInt32BE reads
    // four bytes and checks each (this loop frames every row of an export).
    const dv = new DataView(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    while (len - pos >= 5) {
      const total = this.sizeAt(dv, chunk, pos);
      if (total < 0) {
        if (count > 0) this.out.rows(chunk, start, pos, count, false);
        return { head: EMPTY, at: pos };
      }
      if (len - pos < total) break;
      pos += total;
      count++;
    }
    if (count > 0) this.out.rows(chunk, start, pos, count, false);
    if (pos < len) {
      // The next message's first bytes: kept (a copy: the chunk is not ours to keep).
      const rest = len - pos;
      if (rest >= 5) {
        const total = this.sizeOf(chunk, pos);
        if (total < 0) return { head: EMPTY, at: pos };
        this.carry = Buffer.allocUnsafeSlow(total);
      } else this.carry = Buffer.allocUnsafeSlow(5);
      chunk.copy(this.carry, 0, pos, len);
      this.carryLen = rest;
    }
    return null;
  }

  /** Forgets a message begun (the stream is no longer read here). */
  reset(): void {
    this.carry = null;
    this.carryLen = 0;
  }

  /** The whole size of the DataRow at `buf[pos..]` (header complete), or -1 if it is not taken here. */
  private sizeOf(buf: Buffer, pos: number): number {
    return this.sizeAt(new DataView(buf.buffer, buf.byteOffset, buf.byteLength), buf, pos);
  }

  /** sizeOf with `dv` a view of `buf`. */
  private sizeAt(dv: DataView, buf: Buffer, pos: number): number {
    if (buf[pos] !== DATA_ROW) return -1;
    const l = dv.getInt32(pos + 1);
    // The relay's stream (message-stream.ts) fails on these lengths, and drops a row larger than
    // exports.maxRowBytes with 54000: it judges them as it always did.
    if (l < 4 || l > MAX_MESSAGE_LENGTH || 1 + l > this.maxRowBytes) return -1;
    return 1 + l;
  }
}

const EMPTY = Buffer.alloc(0);
