// The cheap byte tests on every forwarded Query (src/proxy/copy-sniff.ts), against the plain
// string searches they stand in for, at every position and at the window's edges.
import { describe, expect, test } from "vitest";
import { hasUrlMark, sniffCopy } from "../../src/proxy/copy-sniff.js";

describe("hasUrlMark", () => {
  test("agrees with Buffer.includes('://') wherever the mark or a part of it sits", () => {
    const pieces = ["://", ":/", ":", "//", "/", ":/ /", "::/", "s3://b/k", ":/:/"];
    for (const piece of pieces) {
      for (let at = 0; at <= 8; at++) {
        const text = Buffer.from(`${"x".repeat(at)}${piece}${"y".repeat(8 - at)}`);
        expect(hasUrlMark(text), `${JSON.stringify(text.toString())}`).toBe(text.includes("://"));
        // Windows that cut the text at every start and end.
        for (let from = 0; from <= text.length; from++) {
          for (let to = from; to <= text.length; to++) {
            const want = text.subarray(from, to).includes("://");
            expect(hasUrlMark(text, from, to), `${text.toString()}[${from}, ${to})`).toBe(want);
          }
        }
      }
    }
  });
});

describe("sniffCopy", () => {
  test("COPY after blanks and comments; other statements are not", () => {
    const of = (s: string): string => sniffCopy(Buffer.from(s), 0, Buffer.byteLength(s));
    expect(of("COPY t TO 's3://b/k'")).toBe("yes");
    expect(of(" \n-- c\n/* a /* nested */ b */copy(select 1) TO 's3://b/k'")).toBe("yes");
    expect(of("SELECT abalance FROM pgbench_accounts WHERE aid = 1;")).toBe("no");
    expect(of("COPYX")).toBe("no");
    expect(of("/* unfinished")).toBe("unknown");
  });
});
