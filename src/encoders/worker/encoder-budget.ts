// A process-wide budget of encoding: at most K encoder threads encode at the same time (issue 13,
// four exports at once; docs/isolation.md). Every export has its own encoder thread, and on a
// small machine four of them, plus the four exports' PostgreSQL backends they keep reading, take
// the cores the relay needs for everyone's queries. With the budget a thread takes a slot to
// encode and gives it back after; a thread without a slot blocks, so it stops acknowledging
// batches, its queue fills and the relay pauses that export's upstream exactly as for a slow
// upload: backpressure, not buffering.
//
// Turns are time slices, not batches: a thread keeps its slot while it has batches queued, for a
// slice (SLICE_MS) once others wait, then hands it on. Handing it on at every 256 KiB batch (the
// first version) kept all four exports' backends and threads running in turn, each refilling
// its window at a quarter of the pace, so the cores were shared by every export's parties at
// once; with slices one export's parties run and the others' are parked on full sockets
// (docs/isolation.md, "Time slices").
//
// The slots live in a SharedArrayBuffer: each slot holds the id of the thread in it (0 = free),
// so the relay can free the slot of a thread it terminated in the middle of a batch (a cancel).
// Waiters sleep on a generation counter (Atomics.wait), bumped at every release. A thread that
// asks for a slot while others wait lets one of them take it first; without that a thread that
// has just released, already on a CPU with its next batch queued, would win the slot back before
// the woken waiter is even scheduled, and one export would keep the budget.

/** Layout of the shared Int32Array: counters, the waiters' cells, then one cell per slot (the
 * owner's threadId). */
const GEN = 0; // bumped on every release: waiters sleep on it
const TAKEN = 1; // bumped on every acquisition: a polite taker sleeps on it
const WAITING = 2; // threads waiting for a slot now
const ENCODING = 3; // threads holding a slot now (the same as the non-zero slots; for metrics and tests)
const SLICE = 4; // a turn's length, ms, once others wait (SLICE_MS; tests change it)
/**
 * Cells where waiting threads put their threadId: a thread terminated while it waits (a cancel)
 * never decrements WAITING itself (termination skips even `finally`), so the relay does it when
 * the thread's `exit` comes (releaseSlotsOf). A phantom waiter would make every holder hand its
 * slot on after each turn and every taker wait YIELD_MS for nobody. Beyond this many waiters at
 * once the others count without a cell (they are not corrected if terminated).
 */
const WAITERS = 5;
const WAITER_CELLS = 64;
const SLOTS = WAITERS + WAITER_CELLS;

/** How long a taker lets a waiter go first, at most (a waiter that was terminated never takes it). */
const YIELD_MS = 50;

/**
 * A turn's length once others wait: long enough that a turn covers many batches (a 256 KiB
 * batch is a few ms of encoding), short enough that a waiting export's upstream is not paused
 * long (its stall watchdog, `exports.stallTimeoutMs`, counts a paused upstream as no progress).
 */
export const SLICE_MS = 1000;
/**
 * With more than this many waiters the slice shrinks (SLICE_MS × ROUND_SLICES / waiters), so a
 * waiter's turn comes within about ROUND_SLICES × SLICE_MS however many exports wait.
 */
const ROUND_SLICES = 4;
/** The longest slice a test can ask for: a thread then keeps its slot while it has batches. */
export const ENDLESS_SLICE = 0x7fffffff;

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
    b[SLICE] = SLICE_MS;
    budgets.set(slots, b);
  }
  return b;
}

/** The process's budgets, by their number of slots (the encoder host's report). */
export function encoderBudgets(): ReadonlyMap<number, EncoderBudget> {
  return budgets;
}

/** Threads encoding now and threads waiting for a slot now. */
export function budgetUse(b: EncoderBudget): { encoding: number; waiting: number } {
  return { encoding: Atomics.load(b, ENCODING), waiting: Atomics.load(b, WAITING) };
}

/** How many times a slot was taken since the budget began (tests: turns, not batches). */
export function budgetAcquisitions(b: EncoderBudget): number {
  return Atomics.load(b, TAKEN);
}

/** Tests: the length of a turn once others wait (ENDLESS_SLICE: while the holder has batches). */
export function setBudgetSlice(b: EncoderBudget, ms: number): void {
  Atomics.store(b, SLICE, Math.min(Math.max(0, Math.round(ms)), ENDLESS_SLICE));
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
 * slot's index for release(). If others wait, one of them goes first: a free slot may be theirs,
 * woken and not yet scheduled (and otherwise this thread would wait anyway).
 */
export function acquireSlot(b: EncoderBudget, id: number): number {
  if (Atomics.load(b, WAITING) > 0) {
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
    let cell = -1;
    for (let i = WAITERS; i < SLOTS && cell < 0; i++)
      if (Atomics.compareExchange(b, i, 0, id) === 0) cell = i;
    Atomics.add(b, WAITING, 1);
    Atomics.wait(b, GEN, gen);
    // A cell the relay cleared meanwhile (it saw this thread end) was counted off by it.
    if (cell < 0 || Atomics.compareExchange(b, cell, id, 0) === id) Atomics.sub(b, WAITING, 1);
  }
}

/** Gives back slot `slot` if thread `id` holds it; wakes a waiter. */
export function releaseSlot(b: EncoderBudget, slot: number, id: number): void {
  if (Atomics.compareExchange(b, slot, id, 0) !== id) return;
  Atomics.sub(b, ENCODING, 1);
  Atomics.add(b, GEN, 1);
  Atomics.notify(b, GEN, 1);
}

/** Frees whatever slot thread `id` holds, and counts it off the waiters if it was waiting: the
 * relay calls it once that thread has ended. */
export function releaseSlotsOf(b: EncoderBudget, id: number): void {
  for (let i = WAITERS; i < SLOTS; i++)
    if (Atomics.compareExchange(b, i, id, 0) === id) Atomics.sub(b, WAITING, 1);
  for (let i = SLOTS; i < b.length; i++) releaseSlot(b, i, id);
}

/**
 * One encoder thread's turns: it takes a slot before encoding (take), and after each batch keeps
 * it while it has another batch queued and its turn lasts (next), so a turn is a time slice of
 * many batches, not one batch. With nothing queued the slot goes back at once: a thread waiting
 * for rows must not hold up the others.
 */
export class BudgetTurns {
  private slot = -1;
  private since = 0;

  constructor(
    private readonly b: EncoderBudget,
    private readonly id: number,
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Before encoding: the slot this thread holds, or a new one (blocking until one is free). */
  take(): void {
    if (this.slot >= 0) return;
    this.slot = acquireSlot(this.b, this.id);
    this.since = this.now();
  }

  /**
   * After encoding a batch. `queued`: another batch (or the finish) is ready for this thread.
   * The slot is kept while there is and either nobody waits or the turn has time left.
   */
  next(queued: boolean): void {
    if (this.slot < 0) return;
    if (queued) {
      const waiting = Atomics.load(this.b, WAITING);
      if (waiting === 0) return;
      const slice = Atomics.load(this.b, SLICE) * Math.min(1, ROUND_SLICES / waiting);
      if (this.now() - this.since < slice) return;
    }
    this.release();
  }

  /** Gives the slot back (before the thread posts its `finished`, or after a failure). */
  release(): void {
    if (this.slot >= 0) releaseSlot(this.b, this.slot, this.id);
    this.slot = -1;
  }
}
