// The encoder thread's FileSink: the encoder's file bytes are copied into a small ring of chunk
// buffers that cross to the relay's thread (transferred, never copied again) and come back once the
// relay's store no longer reads them, so steady state allocates nothing on either side.
//
// Why a ring (docs/decisions.md, "Encoded chunks circulate in a ring of buffers"): handing the
// relay a fresh buffer per chunk made every chunk external memory of the relay's isolate, which V8
// answers with garbage collections (105 full collections per 10M-row CSV export against 2, and
// 0.24 CPU-s more per 1M rows); and the encoder paid for new memory (page faults) per chunk.
import type { FileSink } from "../types.js";
import { ChunkGatherer } from "./chunk-gatherer.js";
import type { FromEncoder } from "./protocol.js";

/** Bytes of one chunk message: the relay writes each chunk to its file or part in one call. */
export const CHUNK_BYTES = 1 << 20;
/**
 * Chunk buffers kept for reuse. In steady state about five circulate: the one being filled, the
 * ones the relay's store is writing, and the returned ones riding on row batches not yet handled
 * here. More are allocated when the store is slower (the relay's backpressure bounds those, as it
 * bounds every byte in flight) and dropped when they come back to a full ring.
 */
export const RING_BUFFERS = 8;

type Post = (m: FromEncoder, transfer: ArrayBuffer[]) => void;

export class PortSink implements FileSink {
  /** write() copies: the encoder may reuse its bytes as soon as the call returns. */
  readonly copies = true;
  /** Chunk buffers allocated since the export began (tests: the ring bounds it). */
  allocated = 0;
  private readonly free: ArrayBuffer[] = [];
  private readonly gather = new ChunkGatherer(
    CHUNK_BYTES,
    () => new Uint8Array(this.free.pop() ?? this.allocate()),
    (buf, len) => this.send(buf, len),
  );

  constructor(private readonly post: Post) {}

  openFile(index: number): void {
    this.post({ t: "open", index }, []);
  }

  write(chunk: Uint8Array, release?: () => void): void {
    this.gather.add(chunk);
    release?.();
  }

  closeFile(rows: number): void {
    this.gather.flush();
    this.post({ t: "close", rows }, []);
  }

  /** Buffers the relay is done with: reused for the next chunks (beyond the ring, dropped). */
  reclaim(buffers: readonly ArrayBuffer[]): void {
    for (const b of buffers) {
      if (b.byteLength === CHUNK_BYTES && this.free.length < RING_BUFFERS) this.free.push(b);
    }
  }

  /** The export ended: its buffers go, so a kept thread holds none while idle. */
  reset(): void {
    this.gather.clear();
    this.free.length = 0;
    this.allocated = 0;
  }

  private allocate(): ArrayBuffer {
    this.allocated++;
    return new ArrayBuffer(CHUNK_BYTES);
  }

  /** Sends a gathered chunk; its memory is the relay's until it returns. */
  private send(chunk: Uint8Array, len: number): void {
    const buf = chunk.buffer as ArrayBuffer;
    this.post({ t: "chunk", buf, len }, [buf]);
  }
}
