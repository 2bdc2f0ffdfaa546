// What a thread keeps from one Parquet export for the next one it runs: the column builders (with
// their grown buffers) when the next export has the same columns, the Arrow IPC buffers and the
// output buffers. A thread's first touch of fresh memory is a page fault per 4 KiB (12 µs here,
// more on a busy host): an export that starts with new buffers paid ~25–30 ms of the encoder
// thread's ~0.6 CPU-s per 1M rows growing and touching them (docs/benchmarks.md, session 13).
// Nothing here is more than one export held at its largest, so an export's peak memory is not
// raised; an idle thread lets go of all of it after KEPT_IDLE_MS without a new export.
//
// Every holder registers how to let go (`onIdleDrop`); an export's encoder says when it begins
// (`exportBegins`) and ends (`exportEnds`): the drop is armed while no export of this thread runs.
// The encoder's own things (builders, IPC buffers) are kept here too (`takeBuilders`,
// `takeIpcBuffer`, `keepForNext`): taken whole or not at all, so two encoders of one thread
// (tests) never share one.
import type { ColumnBuilder } from "./columns/builder.js";

/** How long an idle thread keeps what its last export left (its buffers become garbage then). */
export const KEPT_IDLE_MS = 30_000;

const drops: Array<() => void> = [];
let running = 0;
let timer: ReturnType<typeof setTimeout> | null = null;

/** `drop` lets go of what a holder keeps; called once the thread has been idle KEPT_IDLE_MS. */
export function onIdleDrop(drop: () => void): void {
  drops.push(drop);
}

export function exportBegins(): void {
  running++;
  if (timer !== null) {
    clearTimeout(timer);
    timer = null;
  }
}

export function exportEnds(): void {
  running = Math.max(0, running - 1);
  if (running > 0 || timer !== null) return;
  timer = setTimeout(dropKept, KEPT_IDLE_MS);
  // A kept buffer is no reason to keep a thread (or a test's process) alive.
  timer.unref();
}

/** Lets go of everything kept now (the idle timer's work; tests). */
export function dropKept(): void {
  if (timer !== null) clearTimeout(timer);
  timer = null;
  for (const d of drops) d();
}

let keptBuilders: { key: string; builders: ColumnBuilder[] } | null = null;
const keptIpc: ArrayBuffer[] = [];
/** IPC buffers kept at most: an encoder's pool (one being filled, two in flight). */
const KEPT_IPC = 3;
onIdleDrop(() => {
  keptBuilders = null;
  keptIpc.length = 0;
});

/** The last export's column builders, reset, if its columns were `key` (then no one else gets them). */
export function takeBuilders(key: string): ColumnBuilder[] | null {
  const kept = keptBuilders;
  if (kept === null || kept.key !== key) return null;
  keptBuilders = null;
  return kept.builders;
}

/** A kept IPC buffer of at least `size` bytes, if there is one. */
export function takeIpcBuffer(size: number): ArrayBuffer | undefined {
  for (let i = 0; i < keptIpc.length; i++) {
    if (keptIpc[i]!.byteLength >= size) return keptIpc.splice(i, 1)[0]!;
  }
  return undefined;
}

/** An ending export's builders (reset) and IPC buffers, for the thread's next export. */
export function keepForNext(key: string, builders: ColumnBuilder[], ipc: readonly ArrayBuffer[]): void {
  keptBuilders = { key, builders };
  for (const b of ipc) if (keptIpc.length < KEPT_IPC) keptIpc.push(b);
}
