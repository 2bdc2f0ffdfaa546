// Gathers byte pieces of any size into buffers of one fixed size, each handed on once full (or
// when the owner flushes it): the one copy both encoder-thread sinks make, into buffers they choose
// (port-sink.ts: a ring of chunks that cross to the relay; file-writer-sink.ts: one buffer it
// writes from and reuses). The encoders hand over pieces of a few bytes to a few MiB, and a file
// is written or sent in fewer, larger calls.

export class ChunkGatherer {
  private cur: Uint8Array | null = null;
  private len = 0;

  /**
   * @param size bytes of every buffer `take` returns.
   * @param take the buffer to gather into next (called when a piece arrives and none is open).
   * @param full receives a buffer and how many of its bytes are gathered; the gatherer lets go of
   *   it first, so `full` may transfer it, or keep it and hand it out again from `take`.
   */
  constructor(
    private readonly size: number,
    private readonly take: () => Uint8Array,
    private readonly full: (buf: Uint8Array, len: number) => void,
  ) {}

  /** Bytes gathered and not yet handed on. */
  get gathered(): number {
    return this.len;
  }

  /** Copies `piece` in; hands on every buffer it fills. The caller may reuse `piece` at once. */
  add(piece: Uint8Array): void {
    const n = piece.byteLength;
    for (let off = 0; off < n; ) {
      this.cur ??= this.take();
      const k = Math.min(n - off, this.size - this.len);
      // A piece that fits whole is copied without a subarray view: most pieces are small.
      this.cur.set(k === n ? piece : piece.subarray(off, off + k), this.len);
      this.len += k;
      off += k;
      if (this.len === this.size) this.flush();
    }
  }

  /** Hands on the buffer being filled, if it holds anything. */
  flush(): void {
    if (this.len === 0) return;
    const buf = this.cur!;
    const len = this.len;
    this.cur = null;
    this.len = 0;
    this.full(buf, len);
  }

  /** Drops what is gathered (the file or export was abandoned), and the buffer with it. */
  clear(): void {
    this.cur = null;
    this.len = 0;
  }
}
