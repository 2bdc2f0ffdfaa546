// Which columns get Parquet dictionary encoding. arrow-rs builds a dictionary for every column
// and falls back to PLAIN once the dictionary page outgrows its limit (WRITER_SETTINGS), so a
// column of unique values (ids, md5 text, timestamps) pays for hashing every value into a
// dictionary that is thrown away after the first ~64 KiB, and its file carries that partial
// dictionary page and the RLE indices for it. Measured on the bench table (parquet-wasm alone):
// 0.47 → 0.33 CPU-s per 1M rows with dictionaries only where they fit, and files 2% smaller.
//
// The choice is made from a row group the encoder has already built: a column whose distinct
// values in it would fill more than the dictionary page limit would fall back in that row group
// anyway. Hashes are 32-bit, so a collision only ever undercounts (keeps the dictionary, as before).

/** A builder's current values as Parquet would put them in a PLAIN dictionary page. */
export type PlainValues =
  /** `n` values of `width` bytes each in `bytes`; each costs `cost` bytes in the dictionary. */
  | { kind: "fixed"; bytes: Uint8Array; width: number; cost: number; n: number }
  /** Value k is `data[offsets[k·stride] .. offsets[(k+1)·stride])`; each costs 4 + its length. */
  | { kind: "var"; data: Uint8Array; offsets: Int32Array; stride: 1 | 2; n: number };

const TABLE_BITS = 16;

/** Reused hash table: 0 is "empty" (a value hashing to 0 is stored as 1). */
const table = new Int32Array(1 << TABLE_BITS);

function fnv(bytes: Uint8Array, from: number, to: number): number {
  let h = 0x811c9dc5;
  for (let i = from; i < to; i++) h = Math.imul(h ^ bytes[i]!, 0x01000193);
  return h === 0 ? 1 : h;
}

/**
 * True when the distinct values of `v` would make a dictionary page larger than `limit` bytes:
 * arrow-rs would fall back to PLAIN for this column in a row group like this one.
 */
export function dictionaryOverflows(v: PlainValues, limit: number): boolean {
  const slots = table.length;
  // Past half full the table says "overflows" too: that many distinct values outgrow any
  // dictionary page limit of ours (≥ 32k entries of ≥ 4 bytes each).
  const maxEntries = slots >>> 1;
  const mask = slots - 1;
  table.fill(0);
  let entries = 0;
  let bytes = 0;
  for (let k = 0; k < v.n; k++) {
    let h: number;
    let cost: number;
    if (v.kind === "fixed") {
      h = fnv(v.bytes, k * v.width, (k + 1) * v.width);
      cost = v.cost;
    } else {
      const s = v.offsets[k * v.stride]!;
      const e = v.offsets[(k + 1) * v.stride]!;
      h = fnv(v.data, s, e);
      cost = 4 + (e - s);
    }
    let i = h & mask;
    for (;;) {
      const t = table[i]!;
      if (t === h) break;
      if (t === 0) {
        table[i] = h;
        bytes += cost;
        if (bytes > limit || ++entries > maxEntries) return true;
        break;
      }
      i = (i + 1) & mask;
    }
  }
  return false;
}
