// The words of the NOTICEs a client sees while its export runs and when it ends. Progress names
// the phase, because what moves differs: rows while reading, completed files while the last
// uploads finish (rows/s would only decay there and look like a stall), nothing while the
// manifest is written. An export that ends before the first interval gets no progress NOTICE,
// only the final one, which says where everything went.

/** What the client is told the export is doing. */
export type ProgressPhase = "preparing" | "reading" | "uploading" | "committing";

export interface ProgressState {
  phase: ProgressPhase;
  rows: number;
  /** Bytes handed to uploads so far. */
  bytes: number;
  /** Files started, and of those, completed. */
  files: number;
  filesDone: number;
  /** Milliseconds since the read began (rows/s while reading). */
  readingMs: number;
}

/**
 * "1,234,567": a whole number grouped as en-US does, without ICU. Number#toLocaleString's first
 * call in a process loads ICU's number formatting: ~24 ms of the relay's CPU (34-50 ms of wall
 * time, +8 MB RSS) at the proxy's first export's first NOTICE, a stall of every session.
 */
export function count(n: number): string {
  if (!Number.isSafeInteger(n)) return n.toLocaleString("en-US");
  const digits = String(Math.abs(n));
  let out = digits.slice(0, ((digits.length - 1) % 3) + 1);
  for (let i = out.length; i < digits.length; i += 3) out += `,${digits.slice(i, i + 3)}`;
  return n < 0 ? `-${out}` : out;
}

/** "1 row", "2 rows", "1,000 rows". */
export function plural(n: number, one: string, many = `${one}s`): string {
  return `${count(n)} ${n === 1 ? one : many}`;
}

/** Bytes in the units of MAX FILE SIZE (powers of 1024): "512 B", "12.3 kB", "1.2 MB", "3.40 GB". */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 ** 2) return `${(n / 1024).toFixed(1)} kB`;
  if (n < 1024 ** 3) return `${(n / 1024 ** 2).toFixed(1)} MB`;
  return `${(n / 1024 ** 3).toFixed(2)} GB`;
}

export function progressMessage(s: ProgressState): string {
  switch (s.phase) {
    case "preparing":
      return "COPY TO progress: preparing (opening the snapshot, checking that the target is empty)";
    case "reading": {
      const perSec = Math.round(s.rows / Math.max(s.readingMs / 1000, 0.001));
      return `COPY TO progress: reading: ${plural(s.rows, "row")} (${count(perSec)} rows/s), ${formatBytes(s.bytes)}, ${plural(s.files, "file")} (${count(s.filesDone)} complete)`;
    }
    case "uploading":
      return `COPY TO progress: uploading: ${count(s.filesDone)} of ${plural(s.files, "file")} complete (${formatBytes(s.bytes)}); all ${plural(s.rows, "row")} read`;
    case "committing":
      return `COPY TO progress: committing: ${plural(s.files, "file")} uploaded, writing the manifest`;
  }
}

/** The last NOTICE of a successful export, right before its CommandComplete. */
export function finalMessage(t: {
  rows: number;
  files: number;
  bytes: number;
  target: string;
  manifest: string;
}): string {
  return `exported ${plural(t.rows, "row")} in ${plural(t.files, "file")} (${formatBytes(t.bytes)}) to ${t.target}; manifest: ${t.manifest}`;
}
