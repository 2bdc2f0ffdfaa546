// A process-wide budget of encoding: at most K encoder threads encode at the same time (issue 13,
// four exports at once; docs/isolation.md). Every export has its own encoder thread, and on a
// small machine four of them, plus the four exports' PostgreSQL backends they keep reading, take
// the cores the relay needs for everyone's queries. With the budget a thread takes a slot for
// each batch of rows (and for the export's last encoding, `finish`) and gives it back after; a
// thread without a slot blocks, so it stops acknowledging batches, its queue fills and the relay
// pauses that export's upstream exactly as for a slow upload: backpressure, not buffering.
//
// The slots live in a SharedArrayBuffer: each slot holds the id of the thread in it (0 = free),
// so the relay can free the slot of a thread it terminated in the middle of a batch (a cancel).
// Waiters sleep on a generation counter (Atomics.wait), bumped at every release. A thread that
// gives back its slot while others wait lets one of them take it before it asks again; without
// that the thread that just released, already on a CPU with its next batch queued, would win the
// slot back before the woken waiter is even scheduled, and one export would keep the budget.

/** Layout of the shared Int32Array: counters, then one cell per slot (the owner's threadId). */
const GEN = 0; // bumped on every release: waiters sleep on it
const TAKEN = 1; // bumped on every acquisition: a polite releaser sleeps on it
const WAITING = 2; // threads waiting for a slot now
const ENCODING = 3; // threads holding a slot now (the same as the non-zero slots; for metrics and tests)
const SLOTS = 4;

/** How long a releaser lets a waiter go first, at most (a waiter that was terminated never takes it). */
const YIELD_MS = 50;

/** The shared cells of a budget of `slots` encoder threads. */
export type EncoderBudget = Int32Array;

const budgets = new Map<number, EncoderBudget>();

/** The process's budget of `slots` concurrent encoder threads (one per size: a reload that
 * changes the size starts a new one; exports already running keep theirs). */
export function encoderBudget(slots: number): EncoderBudget {
  if (!Number.isInteger(slots) || slots < 1) throw new RangeError(`encoder budget of ${slots} slots`);
  let b = budgets.get(slots);
  if (b === undefined) {
    b = new Int32Array(new SharedArrayBuffer((SLOTS + slots) * 4));
    budgets.set(slots, b);
  }
  return b;
}

/** Threads encoding now and threads waiting for a slot now. */
export function budgetUse(b: EncoderBudget): { encoding: number; waiting: number } {
  return { encoding: Atomics.load(b, ENCODING), waiting: Atomics.load(b, WAITING) };
}

/** The threads holding a slot now (their threadIds; tests). */
export function budgetHolders(b: EncoderBudget): number[] {
  const out: number[] = [];
  for (let i = SLOTS; i < b.length; i++) {
    const id = Atomics.load(b, i);
    if (id !== 0) out.push(id);
  }
  return out;
}

/**
 * Takes a slot for thread `id` (> 0), blocking the calling thread until one is free; returns the
 * slot's index for release(). `yielded`: this thread has just released a slot, so if others wait
 * it lets one of them go first.
 */
export function acquireSlot(b: EncoderBudget, id: number, yielded = false): number {
  if (yielded && Atomics.load(b, WAITING) > 0) {
    const taken = Atomics.load(b, TAKEN);
    Atomics.wait(b, TAKEN, taken, YIELD_MS);
  }
  for (;;) {
    // The generation is read before the slots are tried: a release between the two changes it,
    // so the wait below returns at once instead of missing the wake-up.
    const gen = Atomics.load(b, GEN);
    for (let i = SLOTS; i < b.length; i++) {
      if (Atomics.compareExchange(b, i, 0, id) === 0) {
        Atomics.add(b, ENCODING, 1);
        Atomics.add(b, TAKEN, 1);
        Atomics.notify(b, TAKEN);
        return i;
      }
    }
    Atomics.add(b, WAITING, 1);
    Atomics.wait(b, GEN, gen);
    Atomics.sub(b, WAITING, 1);
  }
}

/** Gives back slot `slot` if thread `id` holds it; wakes a waiter. */
export function releaseSlot(b: EncoderBudget, slot: number, id: number): void {
  if (Atomics.compareExchange(b, slot, id, 0) !== id) return;
  Atomics.sub(b, ENCODING, 1);
  Atomics.add(b, GEN, 1);
  Atomics.notify(b, GEN, 1);
}

/** Frees whatever slot thread `id` holds: the relay calls it once that thread has ended. */
export function releaseSlotsOf(b: EncoderBudget, id: number): void {
  for (let i = SLOTS; i < b.length; i++) releaseSlot(b, i, id);
}
