// The cheap byte test that keeps SQL parsing off the hot path: does this statement text start
// with the keyword COPY (after whitespace and comments)? Only then is the real parser consulted.

enum C {
  Space = 0x20,
  Tab = 0x09,
  Lf = 0x0a,
  Cr = 0x0d,
  Ff = 0x0c,
  Minus = 0x2d,
  Slash = 0x2f,
  Star = 0x2a,
}

/**
 * Returns "yes" when the text at buf[from..to) starts with COPY, "no" when it certainly does not,
 * and "unknown" when the window ended inside leading comments (the caller then looks at all of it).
 */
export function sniffCopy(buf: Buffer, from: number, to: number): "yes" | "no" | "unknown" {
  let i = from;
  for (;;) {
    if (i >= to) return "unknown";
    const c = buf[i]!;
    if (c === C.Space || c === C.Tab || c === C.Lf || c === C.Cr || c === C.Ff) {
      i++;
      continue;
    }
    if (c === C.Minus && buf[i + 1] === C.Minus && i + 1 < to) {
      const nl = buf.indexOf(C.Lf, i + 2);
      if (nl < 0 || nl >= to) return "unknown";
      i = nl + 1;
      continue;
    }
    if (c === C.Slash && buf[i + 1] === C.Star && i + 1 < to) {
      // Block comments nest in PostgreSQL.
      let depth = 1;
      let j = i + 2;
      while (depth > 0) {
        if (j + 1 >= to) return "unknown";
        if (buf[j] === C.Slash && buf[j + 1] === C.Star) {
          depth++;
          j += 2;
        } else if (buf[j] === C.Star && buf[j + 1] === C.Slash) {
          depth--;
          j += 2;
        } else j++;
      }
      i = j;
      continue;
    }
    if (to - i < 5) {
      // Too little text to see "COPY" and the character after it.
      if (to - i >= 4 && !matchCopy(buf, i)) return "no";
      return "unknown";
    }
    if (!matchCopy(buf, i)) return "no";
    const after = buf[i + 4]!;
    // COPY must be a whole word: COPYX is an identifier, COPY( or COPY/* are fine.
    const isIdentChar =
      (after >= 0x30 && after <= 0x39) ||
      ((after | 0x20) >= 0x61 && (after | 0x20) <= 0x7a) ||
      after === 0x5f ||
      after === 0x24 ||
      after >= 0x80;
    return isIdentChar ? "no" : "yes";
  }
}

function matchCopy(buf: Buffer, i: number): boolean {
  return (
    (buf[i]! | 0x20) === 0x63 &&
    (buf[i + 1]! | 0x20) === 0x6f &&
    (buf[i + 2]! | 0x20) === 0x70 &&
    (buf[i + 3]! | 0x20) === 0x79
  );
}

/**
 * Whether buf[from..to) holds "://", a URL's mark: the hint that a COPY TO S3 may hide behind
 * other statements. A plain loop, not Buffer.includes: every Query the relay forwards passes
 * here, and a string search is a call into C++ that costs more than the few dozen bytes of an
 * ordinary statement's head.
 */
export function hasUrlMark(buf: Buffer, from = 0, to = buf.length): boolean {
  for (let i = from; i + 2 < to; i++) {
    if (buf[i] === 0x3a && buf[i + 1] === 0x2f && buf[i + 2] === 0x2f) return true;
  }
  return false;
}
