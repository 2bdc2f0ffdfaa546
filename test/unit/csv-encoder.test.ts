import { randomBytes } from "node:crypto";
import { gunzipSync } from "node:zlib";
import { describe, expect, test } from "vitest";
import { type CsvOptions, createCsvEncoder } from "../../src/encoders/csv-encoder.js";
import { plainColumns } from "../../src/encoders/csv-plain-types.js";
import type { FileSink } from "../../src/encoders/types.js";

type Value = string | Buffer | null;

/** DataRow layout (without the int16 count): int32 length or -1, then the bytes. */
function dataRow(values: readonly Value[], prefix = 0): Buffer {
  const parts: Buffer[] = [Buffer.alloc(prefix, 0xee)];
  for (const v of values) {
    const len = Buffer.alloc(4);
    if (v === null) {
      len.writeInt32BE(-1);
      parts.push(len);
    } else {
      const b = typeof v === "string" ? Buffer.from(v, "utf8") : v;
      len.writeInt32BE(b.length);
      parts.push(len, b);
    }
  }
  // Trailing garbage: the encoder must stop at its fields.
  parts.push(Buffer.from([0xde, 0xad]));
  return Buffer.concat(parts);
}

/** A whole DataRow message: 'D', int32 length, int16 field count, fields. */
function message(r: readonly Value[]): Buffer {
  const body = dataRow(r).subarray(0, -2); // without the trailing garbage
  const m = Buffer.alloc(7 + body.length);
  m[0] = 0x44;
  m.writeInt32BE(6 + body.length, 1);
  m.writeInt16BE(r.length, 5);
  body.copy(m, 7);
  return m;
}

/** All rows as DataRow messages in one buffer through writeRows (the encoder thread's path). */
async function encodeRuns(o: CsvOptions, rows: readonly (readonly Value[])[]): Promise<Buffer> {
  const sink = new MemorySink();
  const enc = createCsvEncoder(o, sink);
  const buf = Buffer.concat(rows.map(message));
  enc.writeRows(buf, 0, buf.length);
  await enc.finish();
  expect(sink.files).toHaveLength(1);
  return sink.bytes(0);
}

interface File {
  index: number;
  chunks: Buffer[];
  rows: number;
  closed: boolean;
}

/** Records files and checks the FileSink call protocol. */
class MemorySink implements FileSink {
  files: File[] = [];
  openFile(index: number): void {
    const prev = this.files.at(-1);
    expect(prev === undefined || prev.closed).toBe(true);
    expect(index).toBe(this.files.length);
    this.files.push({ index, chunks: [], rows: 0, closed: false });
  }
  write(chunk: Uint8Array): void {
    const f = this.files.at(-1);
    expect(f && !f.closed).toBe(true);
    expect(chunk.length).toBeGreaterThan(0);
    f!.chunks.push(Buffer.from(chunk.buffer, chunk.byteOffset, chunk.length));
  }
  closeFile(rows: number): void {
    const f = this.files.at(-1)!;
    expect(f.closed).toBe(false);
    f.closed = true;
    f.rows = rows;
  }
  bytes(i: number): Buffer {
    return Buffer.concat(this.files[i]!.chunks);
  }
  text(i: number): string {
    return this.bytes(i).toString("utf8");
  }
}

const defaults: CsvOptions = {
  header: false,
  delimiter: 0x2c,
  quote: 0x22,
  escape: 0x22,
  null: "",
  compression: "none",
  maxFileSize: 256 << 20,
  columnNames: ["a", "b", "c"],
};

function opts(o: Partial<CsvOptions> & { d?: string; q?: string; e?: string } = {}): CsvOptions {
  const { d, q, e, ...rest } = o;
  const quote = q === undefined ? defaults.quote : q.charCodeAt(0);
  return {
    ...defaults,
    ...(d === undefined ? {} : { delimiter: d.charCodeAt(0) }),
    quote,
    escape: e === undefined ? quote : e.charCodeAt(0),
    ...rest,
  };
}

async function encode(o: CsvOptions, rows: readonly (readonly Value[])[]): Promise<MemorySink> {
  const sink = new MemorySink();
  const enc = createCsvEncoder(o, sink);
  for (const r of rows) {
    const prefix = r.length % 3; // rows do not always start at offset 0 of their buffer
    enc.writeRow(dataRow(r, prefix), prefix, r.length);
    if (enc.wantsFlush) await enc.flush();
  }
  await enc.finish();
  enc.dispose();
  for (const f of sink.files) expect(f.closed).toBe(true);
  return sink;
}

async function csv(o: CsvOptions, rows: readonly (readonly Value[])[]): Promise<string> {
  const sink = await encode(o, rows);
  expect(sink.files).toHaveLength(1);
  return sink.text(0);
}

/**
 * PostgreSQL's CopyAttributeOutCSV rules written as plainly as possible, as a second opinion for
 * randomized inputs (the real PostgreSQL is the oracle in test/integration/csv-oracle.test.ts).
 */
function model(o: CsvOptions, rows: readonly (readonly Value[])[]): Buffer {
  const out: number[] = [];
  const nul = Buffer.from(o.null);
  const field = (b: Buffer, single: boolean): void => {
    const quote =
      b.equals(nul) ||
      (single && b.toString("latin1") === "\\.") ||
      b.some((c) => c === o.delimiter || c === o.quote || c === 10 || c === 13);
    if (!quote) return void out.push(...b);
    out.push(o.quote);
    for (const c of b) {
      if (c === o.quote || c === o.escape) out.push(o.escape);
      out.push(c);
    }
    out.push(o.quote);
  };
  const line = (vals: readonly Value[]): void => {
    vals.forEach((v, i) => {
      if (i > 0) out.push(o.delimiter);
      if (v === null) out.push(...nul);
      else field(typeof v === "string" ? Buffer.from(v) : v, vals.length === 1);
    });
    out.push(10);
  };
  if (o.header) line(o.columnNames);
  for (const r of rows) line(r);
  return Buffer.from(out);
}

describe("writeRows", () => {
  test("whole DataRow messages in runs, at any offset, write what the model writes", async () => {
    const values: Value[] = [
      "",
      null,
      "plain",
      'say "hi"',
      "a,b",
      "line\nbreak",
      "cr\r",
      "héllo 世界 👍",
      "\\.",
    ];
    const rows = Array.from({ length: 400 }, (_, i) =>
      [0, 1, 2].map((k) => values[(i * 7 + k * 3) % values.length]!),
    );
    for (const o of [opts(), opts({ header: true, null: "NULL", d: ";", q: "'", e: "\\" })]) {
      const sink = new MemorySink();
      const enc = createCsvEncoder(o, sink);
      for (let i = 0, k = 1; i < rows.length; i += k, k++) {
        const buf = Buffer.concat([Buffer.alloc(k % 5, 0xee), ...rows.slice(i, i + k).map(message)]);
        enc.writeRows(buf, k % 5, buf.length);
        if (enc.wantsFlush) await enc.flush();
      }
      await enc.finish();
      expect(sink.bytes(0)).toEqual(model(o, rows));
      expect(sink.files[0]!.rows).toBe(rows.length);
    }
  });

  test("word-at-a-time scan: a byte that forces quoting at any position of a short value", async () => {
    // Every length 0–13 with each special byte at each position, next to values whose length
    // prefixes hold those bytes (10 = LF, 13 = CR, 34 = '"', 44 = ','): bytes after a value's end
    // must not count as its own. After a row's last value comes the next message's 'D', which is
    // special only with DELIMITER 'D'.
    const rows: Value[][] = [];
    for (let len = 0; len <= 13; len++) {
      for (const special of [",", '"', "\n", "\r", "|", "'"]) {
        for (let at = -1; at < len; at++) {
          const v = Array.from({ length: len }, (_, i) =>
            i === at ? special : String.fromCharCode(97 + i),
          ).join("");
          rows.push([v, "x".repeat(10), v, "y".repeat(44), v, "z".repeat(34), "w".repeat(13), v]);
        }
      }
    }
    const names = ["a", "b", "c", "d", "e", "f", "g", "h"];
    for (const o of [
      opts({ columnNames: names }),
      opts({ columnNames: names, d: "|", q: "'", null: "NULL" }),
      opts({ columnNames: names, d: "D" }),
    ]) {
      expect((await encodeRuns(o, rows)).equals(model(o, rows))).toBe(true);
    }
  });

  test("a zero-column result still writes one empty line per row", async () => {
    const sink = new MemorySink();
    const enc = createCsvEncoder(opts({ columnNames: [] }), sink);
    const m = Buffer.from([0x44, 0, 0, 0, 6, 0, 0]);
    const buf = Buffer.concat([m, m, m]);
    enc.writeRows(buf, 0, buf.length);
    await enc.finish();
    expect(sink.text(0)).toBe("\n\n\n");
  });
});

describe("quoting", () => {
  test("PostgreSQL's default CSV rules", async () => {
    const rows: Value[][] = [
      ["plain", "", null],
      ["a,b", 'say "hi"', "x"],
      ["line\nbreak", "carriage\rreturn", "crlf\r\n"],
      ["tab\there", "back\\slash", "\\."],
      ["  spaces  ", "'single'", "héllo 😀"],
      [null, null, null],
    ];
    expect(await csv(opts(), rows)).toBe(
      [
        'plain,"",',
        '"a,b","say ""hi""",x',
        '"line\nbreak","carriage\rreturn","crlf\r\n"',
        "tab\there,back\\slash,\\.",
        "  spaces  ,'single',héllo 😀",
        ",,",
        "",
      ].join("\n"),
    );
  });

  test("`\\.` is quoted only as the single column of a result", async () => {
    const one = opts({ columnNames: ["x"] });
    expect(await csv(one, [["\\."], ["\\.x"], ["\\"], ["."]])).toBe('"\\."\n\\.x\n\\\n.\n');
    expect(await csv(opts({ columnNames: ["x", "y"] }), [["\\.", "\\."]])).toBe("\\.,\\.\n");
  });

  test("NULL string variants", async () => {
    const row: Value[] = [null, "NULL", "", "\\N", "nullish"];
    const names = ["a", "b", "c", "d", "e"];
    expect(await csv(opts({ columnNames: names }), [row])).toBe(',NULL,"",\\N,nullish\n');
    expect(await csv(opts({ columnNames: names, null: "NULL" }), [row])).toBe('NULL,"NULL",,\\N,nullish\n');
    expect(await csv(opts({ columnNames: names, null: "\\N" }), [row])).toBe('\\N,NULL,,"\\N",nullish\n');
    expect(await csv(opts({ columnNames: names, null: "∅" }), [[null, "∅", "∅∅", "", "x"]])).toBe(
      '∅,"∅",∅∅,,x\n',
    );
  });

  test("ESCAPE different from QUOTE escapes both, and only inside quotes", async () => {
    const o = opts({ columnNames: ["a", "b", "c"], e: "\\" });
    expect(await csv(o, [['a"b\\c', "back\\slash", 'only"quote']])).toBe(
      '"a\\"b\\\\c",back\\slash,"only\\"quote"\n',
    );
  });

  test("other delimiter and quote bytes", async () => {
    const o = opts({ d: "|", q: "'", columnNames: ["a", "b", "c"] });
    expect(
      await csv(o, [
        ["it's", "a,b", "x|y"],
        ['"', "", null],
      ]),
    ).toBe("'it''s'|a,b|'x|y'\n\"|''|\n");
    const tab = opts({ d: "\t", q: "%", e: "!", null: "\\N", columnNames: ["a", "b", "c"] });
    expect(
      await csv(tab, [
        ["a\tb", "50%!", "!"],
        [null, "\\N", "t"],
      ]),
    ).toBe("%a\tb%\t%50!%!!%\t!\n\\N\t%\\N%\tt\n");
  });

  test("long fields take the memchr path with the same rules", async () => {
    const big = "x".repeat(5000);
    const rows: Value[][] = [
      [big, `${big},`, `${big}"${big}`],
      [`\n${big}`, `${big}\r`, big.replace(/x/g, "é")],
      ["NULL".repeat(200), `${"a".repeat(700)}\\`, null],
    ];
    const o = opts({ e: "\\" });
    expect(await csv(o, rows)).toBe(model(o, rows).toString());
  });

  test("randomized values agree with the plain model", async () => {
    const alphabet = ["a", "b", ",", '"', "'", "\\", "\n", "\r", "\t", "|", ".", "N", "é", "😀", " "];
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) % 2147483648;
      return seed % n;
    };
    const value = (): Value => {
      if (rnd(8) === 0) return null;
      const len = rnd(5) === 0 ? rnd(1200) : rnd(6);
      let s = "";
      for (let i = 0; i < len; i++) s += alphabet[rnd(alphabet.length)];
      return rnd(20) === 0 ? "\\." : s;
    };
    const variants: CsvOptions[] = [
      opts(),
      opts({ e: "\\", null: "N" }),
      opts({ d: "|", q: "'", null: "\\N" }),
      opts({ d: "\t", q: "\\", e: "'", null: "NULL" }),
    ];
    for (const o of variants) {
      for (const width of [1, 2, 7]) {
        const names = Array.from({ length: width }, (_, i) => (i === 0 ? String(o.null || "\\.") : `c${i}`));
        const oo = { ...o, header: true, columnNames: names };
        const rows = Array.from({ length: 300 }, () => Array.from({ length: width }, value));
        expect((await encode(oo, rows)).bytes(0).equals(model(oo, rows))).toBe(true);
      }
    }
  });

  test("raw bytes pass through untouched (no decoding)", async () => {
    const bin = Buffer.from([0xff, 0xfe, 0x00, 0x80, 0x2c, 0xc3]);
    const sink = await encode(opts({ columnNames: ["a"] }), [[bin]]);
    expect(sink.bytes(0).equals(Buffer.from([0x22, 0xff, 0xfe, 0x00, 0x80, 0x2c, 0xc3, 0x22, 0x0a]))).toBe(
      true,
    );
  });

  test("zero-column rows are empty lines, as in PostgreSQL", async () => {
    expect(await csv(opts({ header: true, columnNames: [] }), [[], []])).toBe("\n\n\n");
  });

  test("a DataRow that ends early is an error, not garbage", () => {
    const enc = createCsvEncoder(opts(), new MemorySink());
    const row = dataRow(["abc", "def"]);
    expect(() => enc.writeRow(row.subarray(0, 10), 0, 2)).toThrow(/past the end/);
    expect(() => enc.writeRow(row, 0, 5)).toThrow(/past the end/);
  });
});

describe("typed columns", () => {
  test("a type is copied unscanned only while neither delimiter nor quote is in its alphabet", () => {
    // int4, text, float8, bool, date, timestamptz, uuid, a user type
    const oids = [23, 25, 701, 16, 1082, 1184, 2950, 16500];
    const c = (s: string): number => s.charCodeAt(0);
    expect([...plainColumns(oids, c(","), c('"'))]).toEqual([1, 0, 1, 1, 1, 0, 1, 0]);
    expect([...plainColumns(oids, c("-"), c('"'))]).toEqual([0, 0, 0, 1, 0, 0, 0, 0]);
    expect([...plainColumns(oids, c("|"), c("e"))]).toEqual([1, 0, 0, 1, 0, 0, 0, 0]);
    expect([...plainColumns(oids, c("\t"), c("t"))]).toEqual([1, 0, 0, 0, 0, 0, 1, 0]);
  });

  test("column names are text whatever the column's type; NULL strings still quoted", async () => {
    const o = opts({ header: true, columnNames: ["a,b", 'q"', "0"], columnTypes: [23, 20, 21], null: "0" });
    const rows: Value[][] = [
      ["1", "-2", "0"],
      [null, "0", "32767"],
    ];
    expect((await encodeRuns(o, rows)).toString()).toBe('"a,b","q""","0"\n1,-2,"0"\n0,"0",32767\n');
  });
});

describe("header", () => {
  test("column names are quoted by the value rules", async () => {
    const o = opts({
      header: true,
      columnNames: ["id", "a,b", 'say "x"', "NULL", "", "línea\n2"],
      null: "NULL",
    });
    expect(await csv(o, [[1, 2, 3, 4, 5, 6].map(String)])).toBe(
      'id,"a,b","say ""x""","NULL",,"línea\n2"\n1,2,3,4,5,6\n',
    );
    // With the default NULL string '' an empty name is quoted; so is `\.` as the only column.
    expect(await csv(opts({ header: true, columnNames: ["", "b"] }), [])).toBe('"",b\n');
    expect(await csv(opts({ header: true, columnNames: ["\\."] }), [["v"]])).toBe('"\\."\nv\n');
  });

  test("empty result: exactly one file, header only if HEADER", async () => {
    const withHeader = await encode(opts({ header: true }), []);
    expect(withHeader.files.map((f) => [withHeader.text(f.index), f.rows])).toEqual([["a,b,c\n", 0]]);
    const without = await encode(opts(), []);
    expect(without.files).toHaveLength(1);
    expect(without.files[0]!.rows).toBe(0);
    expect(without.bytes(0).length).toBe(0);
  });
});

describe("file splitting", () => {
  function rowsOfSizes(n: number): Value[][] {
    return Array.from({ length: n }, (_, i) => [
      String(i),
      "v".repeat((i * 37) % 150),
      i % 5 === 0 ? null : "a,b",
    ]);
  }

  for (const header of [false, true]) {
    test(`no file over the limit, rows intact, header=${header}`, async () => {
      const o = opts({ header, maxFileSize: 1000 });
      const rows = rowsOfSizes(400);
      const sink = await encode(o, rows);
      const headerLine = header ? "a,b,c\n" : "";
      expect(sink.files.length).toBeGreaterThan(20);
      let body = "";
      let total = 0;
      for (const f of sink.files) {
        const t = sink.text(f.index);
        expect(Buffer.byteLength(t)).toBeLessThanOrEqual(1000);
        expect(t.startsWith(headerLine)).toBe(true);
        expect(t.endsWith("\n")).toBe(true);
        expect(f.rows).toBeGreaterThan(0);
        // Each file holds whole rows: the next row would not have fitted.
        const rest = t.slice(headerLine.length);
        expect(rest.split("\n").length - 1).toBe(f.rows);
        body += rest;
        total += f.rows;
      }
      expect(total).toBe(rows.length);
      expect(body).toBe(model(opts(), rows).toString());
      // Files are filled: no file could have taken the first row of the next one.
      for (let i = 0; i + 1 < sink.files.length; i++) {
        const next = sink.text(i + 1).slice(headerLine.length);
        const firstRow = next.slice(0, next.indexOf("\n") + 1);
        expect(sink.bytes(i).length + Buffer.byteLength(firstRow)).toBeGreaterThan(1000);
      }
    });
  }

  test("a row larger than the limit gets a file of its own", async () => {
    const o = opts({ header: true, maxFileSize: 100, columnNames: ["k", "v"] });
    const rows: Value[][] = [
      ["1", "small"],
      ["2", "x".repeat(500)],
      ["3", "small"],
      ["4", "y".repeat(3 << 20)],
    ];
    const sink = await encode(o, rows);
    expect(sink.files.map((f) => f.rows)).toEqual([1, 1, 1, 1]);
    expect(sink.text(0)).toBe("k,v\n1,small\n");
    expect(sink.text(1)).toBe(`k,v\n2,${"x".repeat(500)}\n`);
    expect(sink.text(2)).toBe("k,v\n3,small\n");
    expect(sink.text(3)).toBe(`k,v\n4,${"y".repeat(3 << 20)}\n`);
  });

  test("a file exactly at the limit is allowed", async () => {
    // "1,x\n" is 4 bytes: 3 rows fit a 12-byte file exactly.
    const sink = await encode(opts({ maxFileSize: 12, columnNames: ["a", "b"] }), [
      ["1", "x"],
      ["2", "x"],
      ["3", "x"],
      ["4", "x"],
    ]);
    expect(sink.files.map((f) => [sink.text(f.index), f.rows])).toEqual([
      ["1,x\n2,x\n3,x\n", 3],
      ["4,x\n", 1],
    ]);
  });

  test("output larger than the buffer: sink chunks are never reused", async () => {
    const rows = Array.from({ length: 60_000 }, (_, i) => [
      String(i),
      `value ${i}, "quoted"`,
      "x".repeat(i % 40),
    ]);
    const sink = await encode(opts({ maxFileSize: 1_500_000 }), rows);
    expect(sink.files.length).toBe(3);
    for (const f of sink.files) expect(sink.bytes(f.index).length).toBeLessThanOrEqual(1_500_000);
    const all = Buffer.concat(sink.files.map((f) => sink.bytes(f.index)));
    expect(all.equals(model(opts(), rows))).toBe(true);
  });

  test("a sink that copies (the encoder thread's) gets every chunk from one reused buffer, and the same bytes", async () => {
    const rows = Array.from({ length: 60_000 }, (_, i) => [String(i), `value ${i}, "q"`, "x".repeat(i % 40)]);
    for (const gzip of [false, true]) {
      const o = opts({ maxFileSize: 1_500_000, compression: gzip ? "gzip" : "none" });
      const keeping = await encode(o, rows);
      /** Copies what it gets, as PortSink does; notes each chunk's memory. */
      class CopyingSink extends MemorySink {
        readonly copies = true;
        memory = new Set<ArrayBufferLike>();
        override write(chunk: Uint8Array): void {
          this.memory.add(chunk.buffer);
          super.write(Buffer.from(chunk));
        }
      }
      const copying = new CopyingSink();
      const enc = createCsvEncoder(o, copying);
      for (const r of rows) {
        enc.writeRow(dataRow(r), 0, r.length);
        if (enc.wantsFlush) await enc.flush();
      }
      await enc.finish();
      expect(copying.files.length).toBe(keeping.files.length);
      for (const f of keeping.files) expect(copying.bytes(f.index).equals(keeping.bytes(f.index))).toBe(true);
      // Uncompressed: the output buffer itself, never a fresh one (gzip hands on zlib's results).
      if (!gzip) expect(copying.memory.size).toBe(1);
    }
  });

  test("wantsFlush / flush hand buffered bytes over", async () => {
    const sink = new MemorySink();
    const enc = createCsvEncoder(opts({ columnNames: ["a"] }), sink);
    const row = dataRow(["z".repeat(1000)]);
    let n = 0;
    while (!enc.wantsFlush) {
      enc.writeRow(row, 0, 1);
      n++;
    }
    expect(n).toBeGreaterThan(100);
    expect(sink.files[0]!.chunks).toHaveLength(0);
    await enc.flush();
    expect(enc.wantsFlush).toBe(false);
    expect(sink.bytes(0).length).toBe(n * 1001);
    await enc.finish();
    expect(sink.files[0]!.rows).toBe(n);
    expect(() => enc.writeRow(row, 0, 1)).toThrow();
  });
});

describe("gzip", () => {
  test("round trip, extension and one member per file", async () => {
    const rows = Array.from({ length: 5000 }, (_, i) => [
      String(i),
      `name ${i % 17}`,
      i % 9 === 0 ? null : "a,b",
    ]);
    const o = opts({ header: true, compression: "gzip" });
    const sink = new MemorySink();
    const enc = createCsvEncoder(o, sink);
    expect(enc.extension).toBe("csv.gz");
    expect(createCsvEncoder(opts(), new MemorySink()).extension).toBe("csv");
    for (const r of rows) enc.writeRow(dataRow(r), 0, 3);
    await enc.finish();
    expect(sink.files).toHaveLength(1);
    const gz = sink.bytes(0);
    expect(gunzipSync(gz).equals(model(o, rows))).toBe(true);
    // A single gzip member: readers that stop after the first member still see everything.
    expect(gz.indexOf(Buffer.from([0x1f, 0x8b, 8]), 1)).toBe(-1);
  });

  test("empty result is a valid gzip file", async () => {
    const a = await encode(opts({ compression: "gzip" }), []);
    expect(a.files).toHaveLength(1);
    expect(gunzipSync(a.bytes(0)).length).toBe(0);
    const b = await encode(opts({ compression: "gzip", header: true }), []);
    expect(gunzipSync(b.bytes(0)).toString()).toBe("a,b,c\n");
  });

  test("multi-block files (several MiB) decompress to the same bytes", async () => {
    const rows = Array.from({ length: 120_000 }, (_, i) => [String(i * 7919), `row ${i} "text", more`, null]);
    const o = opts({ compression: "gzip" });
    const sink = await encode(o, rows);
    expect(sink.files).toHaveLength(1);
    expect(gunzipSync(sink.bytes(0)).equals(model(o, rows))).toBe(true);
  });

  for (const kind of ["compressible", "incompressible"] as const) {
    test(`MAX FILE SIZE bounds the compressed size (${kind} data)`, async () => {
      const limit = 64 * 1024;
      const rows: Value[][] = [];
      for (let i = 0; i < 12_000; i++) {
        const v =
          kind === "compressible"
            ? `value ${i * 7919} ${"abc".repeat(i % 10)} ${randomBytes(2).toString("hex")}`
            : randomBytes(24).toString("base64");
        rows.push([String(i), v, i % 4 === 0 ? null : "x,y"]);
      }
      const o = opts({ header: true, compression: "gzip", maxFileSize: limit });
      const sink = await encode(o, rows);
      expect(sink.files.length).toBeGreaterThan(2);
      const headerLine = "a,b,c\n";
      let body = "";
      let total = 0;
      for (const f of sink.files) {
        const gz = sink.bytes(f.index);
        expect(gz.length).toBeLessThanOrEqual(limit);
        const t = gunzipSync(gz).toString();
        expect(t.startsWith(headerLine)).toBe(true);
        expect(t.split("\n").length - 2).toBe(f.rows);
        body += t.slice(headerLine.length);
        total += f.rows;
      }
      expect(total).toBe(rows.length);
      expect(body).toBe(model(opts(), rows).toString());
      // Files end close to the limit, not at a pessimistic fraction of it.
      for (const f of sink.files.slice(0, -1))
        expect(sink.bytes(f.index).length).toBeGreaterThan(limit * 0.97);
    });
  }

  test("an oversized row still gets its own valid file", async () => {
    const o = opts({ compression: "gzip", maxFileSize: 200, columnNames: ["v"] });
    const big = randomBytes(3000).toString("hex");
    const sink = await encode(o, [["a"], [big], ["b"]]);
    expect(sink.files.map((f) => gunzipSync(sink.bytes(f.index)).toString())).toEqual([
      "a\n",
      `${big}\n`,
      "b\n",
    ]);
  });
});
