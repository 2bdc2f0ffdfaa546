// Runs a step written once as a generator, with synchronous calls or with calls that return
// promises: the step yields each call it makes as data (`{ c, args }`), and is handed the call's
// result back, or has its error thrown at the yield. ./file-steps.ts writes FileStore's steps this
// way so that its two writers, one synchronous and one with promises, make the same calls in the
// same order. Our own rather than Babel's gensync: docs/decisions.md, "Hygiene (h-hyg, session 13)".

export type Args<M> = M extends (...args: infer A) => unknown ? A : never;
export type Result<M> = M extends (...args: never[]) => infer R ? R : never;
/** One call a step makes: `c` with `args`. */
export type Call<C> = { [K in keyof C]: { readonly c: K; readonly args: Args<C[K]> } }[keyof C];
/** A step: the calls it makes (of `C`), returning T. */
export type Steps<T, C> = Generator<Call<C>, T, unknown>;
/** `C` as an async writer makes them. */
export type Promised<C> = { [K in keyof C]: (...args: Args<C[K]>) => Result<C[K]> | Promise<Result<C[K]>> };

/** Tests only: each call a writer makes through the steps, as it makes it. */
export const stepRunnerTestHooks: { call?: (c: string, args: readonly unknown[]) => void } = {};

function invoke<C>(calls: C | Promised<C>, step: Call<C>): unknown {
  stepRunnerTestHooks.call?.(String(step.c), step.args);
  const f = calls[step.c] as (...args: readonly unknown[]) => unknown;
  return f.apply(calls, step.args);
}

/** Runs `steps` with synchronous calls. */
export function runSync<T, C>(steps: Steps<T, C>, calls: C): T {
  let r = steps.next();
  while (!r.done) {
    let out: unknown;
    try {
      out = invoke(calls, r.value);
    } catch (err) {
      r = steps.throw(err);
      continue;
    }
    r = steps.next(out);
  }
  return r.value;
}

/** Runs `steps` with calls that may return promises. */
export async function runAsync<T, C>(steps: Steps<T, C>, calls: Promised<C>): Promise<T> {
  let r = steps.next();
  while (!r.done) {
    let out: unknown;
    try {
      out = await invoke(calls, r.value);
    } catch (err) {
      r = steps.throw(err);
      continue;
    }
    r = steps.next(out);
  }
  return r.value;
}
