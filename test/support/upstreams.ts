// The upstreams an end-to-end suite runs through: PostgreSQL itself, and the MaterializeWireDouble
// (a test double of Materialize in front of the same PostgreSQL; test/support/mz-double.ts). The
// suites describe.each over UPSTREAMS and ask the profile where the two legitimately differ: row
// order (Materialize's is arbitrary) and how an error raised while reading arrives (Materialize:
// XX000 "Evaluation error: …").
import { expect } from "vitest";
import { MaterializeWireDouble } from "./mz-double.js";

export interface UpstreamProfile {
  name: "PostgreSQL" | "Materialize wire double";
  /** Starts what the proxy connects to; `port` is where. */
  start(pgPort: number): Promise<{ port: number; stop(): Promise<void> }>;
  /** PostgreSQL exports rows in the query's order; Materialize in no particular order. */
  ordered: boolean;
  /** The error a client sees for an error PostgreSQL raises while the rows are read. */
  readError(code: string, message: string): { code: string; message: string };
}

export const UPSTREAMS: UpstreamProfile[] = [
  {
    name: "PostgreSQL",
    start: async (pgPort) => ({ port: pgPort, stop: async () => {} }),
    ordered: true,
    readError: (code, message) => ({ code, message }),
  },
  {
    name: "Materialize wire double",
    start: async (pgPort) => {
      const d = await MaterializeWireDouble.start({ pgPort });
      return { port: d.port, stop: () => d.stop() };
    },
    ordered: false,
    // src/pgwire/src/protocol.rs send_rows: FetchResult::Error → INTERNAL_ERROR.
    readError: (code, message) =>
      code.startsWith("22") ? { code: "XX000", message: `Evaluation error: ${message}` } : { code, message },
  },
];

/**
 * CSV records as they are written (quoted newlines kept inside their record), for comparing
 * exports whose row order is arbitrary. `esc` (the escape character) defaults to `quote`.
 */
export function csvRecords(data: Buffer | string, quote = '"', esc = quote): string[] {
  const s = typeof data === "string" ? data : data.toString("utf8");
  const out: string[] = [];
  let start = 0;
  let inQuote = false;
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    if (inQuote) {
      if (c === esc && esc !== quote) i++;
      else if (c === quote) {
        if (esc === quote && s[i + 1] === quote) i++;
        else inQuote = false;
      }
    } else if (c === quote) inQuote = true;
    else if (c === "\n") {
      out.push(s.slice(start, i + 1));
      start = i + 1;
    }
  }
  if (start < s.length) out.push(s.slice(start));
  return out;
}

/**
 * The export equals the oracle: byte for byte when the upstream keeps the query's order, else
 * as the same multiset of records (a header line, if any, still first).
 */
export function expectSameCsv(
  got: Buffer,
  want: Buffer,
  up: UpstreamProfile,
  opts: { quote?: string; escape?: string; header?: boolean } = {},
): void {
  if (up.ordered) {
    expect(got.equals(want)).toBe(true);
    return;
  }
  const g = csvRecords(got, opts.quote, opts.escape);
  const w = csvRecords(want, opts.quote, opts.escape);
  if (opts.header) {
    expect(g[0]).toBe(w[0]);
    g.shift();
    w.shift();
  }
  expect(g.length).toBe(w.length);
  expect(g.sort()).toEqual(w.sort());
}
