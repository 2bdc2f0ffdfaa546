// The part buffers of one store's multipart uploads, reused from part to part.
//
// A fresh part-sized Buffer is fresh memory from the kernel: every page of it faults on the first
// write, and it is unmapped again when the GC frees it. Filling 8 MiB parts that way cost the
// relay's thread 1–2.5 ms of CPU per MiB (page faults, zeroing, munmap) against 0.03 ms to copy
// into a reused buffer — about a quarter of the relay's CPU in an S3 export (docs/decisions.md,
// "Part buffers are reused"). A buffer comes back once no request can read it any more: its
// UploadPart/PutObject has settled (the SDK's retries resend the same buffer within one send()).
// A part sent by the upload thread lends it its ArrayBuffer (transferred, not copied) and gets it
// back with the answer; one lost with a thread that died is simply not given back.
//
// Memory stays within what the uploads hold at their peak: a buffer is allocated only when none is
// free, so live + free never exceeds the largest number ever live at once, which the uploads'
// backpressure bounds (partSize × (partsInFlight + 1) per file).
//
// The free buffers are the process's, by size, not the store's (one store per export): the next
// export takes the last one's. When they went with the store, an export's buffers were garbage
// the moment it ended but stayed allocated until the relay's next full collection, which its
// steady state rarely needs (nothing else it allocates is large), so the next export's new
// buffers came on top of them: up to 2 × partSize × (partsInFlight + 1) of an S3 export's peak
// RSS in its second and later exports (docs/decisions.md, "Peak RSS: the launcher and the part
// buffers"). The cost: those kept free stay allocated while the proxy idles.
const freeBySize = new Map<number, Buffer[]>();

export class PartBuffers {
  readonly #size: number;
  readonly #free: Buffer[];
  readonly #max: number;

  /** At most `max` free buffers of this size are kept; one given back beyond that is left to the GC. */
  constructor(size: number, max: number) {
    this.#size = size;
    this.#max = max;
    const free = freeBySize.get(size) ?? [];
    freeBySize.set(size, free);
    this.#free = free;
  }

  /** Buffers this one allocated (the rest of its takes were reuses, its own or earlier stores'). */
  allocated = 0;

  take(): Buffer {
    const b = this.#free.pop();
    if (b !== undefined) return b;
    this.allocated++;
    return Buffer.allocUnsafe(this.#size);
  }

  /** `buf` must be one take() returned (or a view of one), and nothing may read it any more. */
  give(buf: Buffer): void {
    if (this.#free.length >= this.#max || buf.buffer.byteLength !== this.#size) return;
    this.#free.push(
      buf.byteOffset === 0 && buf.length === this.#size ? buf : Buffer.from(buf.buffer, 0, this.#size),
    );
  }
}
