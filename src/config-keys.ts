// Unknown keys in the config file are refused: a typo ("upstreem", "exports.partsize") would
// otherwise leave a setting at its default without a word. Which keys are known is learnt from
// what loadConfig reads, so a new setting is known the moment it is read and no list can drift.

/** A view of one config object that remembers every key read through it. */
export function trackReads(obj: Record<string, unknown>, seen: Set<string>): Record<string, unknown> {
  return new Proxy(obj, {
    get(target, key, receiver) {
      if (typeof key === "string") seen.add(key);
      return Reflect.get(target, key, receiver);
    },
  });
}

/**
 * The first key of `obj` that was never read, with the closest known key when one is near
 * enough to be a typo; undefined when every key is known.
 */
export function firstUnknownKey(
  obj: Record<string, unknown>,
  seen: ReadonlySet<string>,
): { key: string; suggestion: string | undefined } | undefined {
  for (const key of Object.keys(obj)) {
    if (seen.has(key)) continue;
    return { key, suggestion: closest(key, [...seen]) };
  }
  return undefined;
}

function closest(key: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Number.POSITIVE_INFINITY;
  for (const k of known) {
    const d = editDistance(key.toLowerCase(), k.toLowerCase());
    if (d < bestDistance) {
      best = k;
      bestDistance = d;
    }
  }
  // Further than a third of the word is a different word, not a typo.
  return bestDistance <= Math.max(2, Math.floor(key.length / 3)) ? best : undefined;
}

/** Levenshtein distance (insert, delete, substitute), two rows at a time. */
function editDistance(a: string, b: string): number {
  let prev = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      row[j] = Math.min(prev[j]! + 1, row[j - 1]! + 1, prev[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    prev = row;
  }
  return prev[b.length]!;
}
