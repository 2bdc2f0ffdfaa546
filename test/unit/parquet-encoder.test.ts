// The encoder as the export driver sees it: rows in, files out, with synthetic DataRows (no
// server). Files are read back with DuckDB.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, describe, expect, it } from "vitest";
import { outputPooled } from "../../src/encoders/parquet/wasm-writer.js";
import { createParquetEncoder, type ParquetEncoder } from "../../src/encoders/parquet-encoder.js";
import type { ColumnInfo, FileSink } from "../../src/encoders/types.js";
import { PgError } from "../../src/errors.js";

const tmp = mkdtempSync(join(tmpdir(), "parquet-enc-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

const COLUMNS: ColumnInfo[] = [
  { name: "id", typeOid: 23, typeMod: -1 },
  { name: "payload", typeOid: 17, typeMod: -1 },
];

/** A DataRow body (fields only): int4 id, bytea payload. */
function row(id: number, payload: Buffer): Buffer {
  const b = Buffer.alloc(16 + payload.length);
  b.writeInt32BE(4, 0);
  b.writeInt32BE(id, 4);
  b.writeInt32BE(payload.length, 8);
  payload.copy(b, 12);
  return b.subarray(0, 12 + payload.length);
}

class MemorySink implements FileSink {
  files: Array<{ index: number; chunks: Uint8Array[]; rows: number; closed: boolean }> = [];
  openFile(index: number): void {
    this.files.push({ index, chunks: [], rows: 0, closed: false });
  }
  write(chunk: Uint8Array): void {
    const f = this.files.at(-1)!;
    if (f.closed) throw new Error("write after close");
    f.chunks.push(chunk);
  }
  closeFile(rows: number): void {
    const f = this.files.at(-1)!;
    f.rows = rows;
    f.closed = true;
  }
  sizes(): number[] {
    return this.files.map((f) => f.chunks.reduce((n, c) => n + c.byteLength, 0));
  }
  save(prefix: string): string[] {
    return this.files.map((f) => {
      const p = join(tmp, `${prefix}-${f.index}.parquet`);
      writeFileSync(p, Buffer.concat(f.chunks));
      return p;
    });
  }
}

async function feed(enc: ParquetEncoder, rows: Iterable<Buffer>): Promise<void> {
  for (const r of rows) {
    enc.writeRow(r, 0, 2);
    if (enc.wantsFlush) await enc.flush();
  }
  await enc.finish();
}

async function duckCount(files: string[]): Promise<number[]> {
  const con = await (await DuckDBInstance.create(":memory:")).connect();
  const out: number[] = [];
  for (const f of files) {
    const r = await con.runAndReadAll(`SELECT count(*) FROM read_parquet('${f}')`);
    out.push(Number(r.getRows()[0]![0]));
  }
  return out;
}

describe("file size control", () => {
  it("keeps incompressible files within MAX FILE SIZE + 5% and fills them", async () => {
    const limit = 1 << 20;
    const sink = new MemorySink();
    const enc = await createParquetEncoder(
      { compression: "snappy", maxFileSize: limit, columns: COLUMNS },
      sink,
    );
    let seed = 7;
    const size = () => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return 50 + (seed % 2000);
    };
    const N = 6000;
    try {
      await feed(
        enc,
        (function* () {
          for (let i = 0; i < N; i++) yield row(i, randomBytes(size()));
        })(),
      );
    } finally {
      enc.dispose();
    }
    const sizes = sink.sizes();
    expect(sizes.length).toBeGreaterThanOrEqual(4);
    for (const s of sizes) expect(s).toBeLessThanOrEqual(limit * 1.05);
    for (const s of sizes.slice(0, -1)) expect(s).toBeGreaterThan(limit * 0.8);
    expect(enc.files.map((f) => f.bytes)).toEqual(sizes);
    const counts = await duckCount(sink.save("incompressible"));
    expect(counts).toEqual(sink.files.map((f) => f.rows));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(N);
    for (const f of enc.files) expect(f.rowGroups).toBeGreaterThan(1);
  });

  it("a row larger than the limit overshoots by its one row group only, in a new file", async () => {
    const limit = 1 << 20;
    const sink = new MemorySink();
    const enc = await createParquetEncoder(
      { compression: "none", maxFileSize: limit, columns: COLUMNS },
      sink,
    );
    const rows = [
      row(1, randomBytes(1000)),
      row(2, randomBytes(1000)),
      row(3, randomBytes(3 << 20)),
      row(4, randomBytes(10)),
    ];
    try {
      await feed(enc, rows);
    } finally {
      enc.dispose();
    }
    const counts = await duckCount(sink.save("huge"));
    expect(counts.reduce((a, b) => a + b, 0)).toBe(4);
    const sizes = sink.sizes();
    const big = sizes.findIndex((s) => s > limit);
    expect(big).toBeGreaterThanOrEqual(0);
    // The rows buffered with it share its row group; the file holds that row group alone.
    expect(enc.files[big]!.rowGroups).toBe(1);
    expect(sizes.filter((s) => s > limit * 1.05)).toHaveLength(1);
  });
});

describe("failures", () => {
  it("a sink that throws fails the export instead of hanging", async () => {
    const sink = new MemorySink();
    sink.write = () => {
      throw new Error("disk full");
    };
    const enc = await createParquetEncoder(
      { compression: "snappy", maxFileSize: 16 << 20, columns: COLUMNS },
      sink,
    );
    try {
      await expect(
        feed(
          enc,
          (function* () {
            for (let i = 0; i < 200_000; i++) yield row(i, Buffer.from("abcdefgh"));
          })(),
        ),
      ).rejects.toThrow(/disk full/);
    } finally {
      enc.dispose();
    }
  });

  it("dispose while a row group is being written ends the thread quietly", async () => {
    const sink = new MemorySink();
    const enc = await createParquetEncoder(
      { compression: "zstd", maxFileSize: 16 << 20, columns: COLUMNS },
      sink,
    );
    for (let i = 0; i < 50_000; i++) enc.writeRow(row(i, randomBytes(64)), 0, 2);
    const pending = enc.flush();
    for (let i = 0; i < 50_000; i++) enc.writeRow(row(i, randomBytes(64)), 0, 2);
    const second = enc.flush(); // waits for the first row group only
    enc.dispose();
    await Promise.allSettled([pending, second]);
    await expect(enc.finish()).resolves.toBeUndefined(); // a disposed encoder does nothing more
  });

  it("writeRows (whole DataRow messages, as the export reads them) writes what writeRow does", async () => {
    const bodies = Array.from({ length: 3000 }, (_, i) => row(i, randomBytes(i % 40)));
    const message = (body: Buffer, n = 2): Buffer => {
      const m = Buffer.alloc(7 + body.length);
      m[0] = 0x44;
      m.writeInt32BE(6 + body.length, 1);
      m.writeInt16BE(n, 5);
      body.copy(m, 7);
      return m;
    };
    const one = new MemorySink();
    const a = await createParquetEncoder(
      { compression: "snappy", maxFileSize: 16 << 20, columns: COLUMNS },
      one,
    );
    await feed(a, bodies);
    a.dispose();
    const runs = new MemorySink();
    const b = await createParquetEncoder(
      { compression: "snappy", maxFileSize: 16 << 20, columns: COLUMNS },
      runs,
    );
    // Runs of 1, 2, 3 … messages, each at an offset inside a bigger buffer.
    for (let i = 0, k = 1; i < bodies.length; i += k, k++) {
      const buf = Buffer.concat([Buffer.alloc(5, 0xee), ...bodies.slice(i, i + k).map((x) => message(x))]);
      b.writeRows(buf, 5, buf.length);
      if (b.wantsFlush) await b.flush();
    }
    await b.finish();
    try {
      expect(runs.files.map((f) => f.rows)).toEqual(one.files.map((f) => f.rows));
      expect(Buffer.concat(runs.files[0]!.chunks).equals(Buffer.concat(one.files[0]!.chunks))).toBe(true);
      const bad = Buffer.concat([message(bodies[0]!), message(bodies[1]!, 3)]);
      expect(() => b.writeRows(bad, 0, bad.length)).toThrow(/DataRow has 3 fields, expected 2/);
      // A length word that disagrees with the fields it frames.
      const long = message(Buffer.concat([bodies[2]!, Buffer.alloc(2)]));
      expect(() => b.writeRows(long, 0, long.length)).toThrow(/DataRow length does not match its fields/);
      // A field length running past the end of the batch: the same protocol error, not a RangeError
      // from reading the next length word beyond the buffer.
      const past = message(bodies[3]!);
      past.writeInt32BE(1 << 20, 7);
      let err: unknown;
      try {
        b.writeRows(past, 0, past.length);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(PgError);
      expect((err as PgError).code).toBe("08P01");
    } finally {
      b.dispose();
    }
  });

  it("reuses its IPC buffers: the writer hands each row group's buffer back once parquet-wasm has copied it", async () => {
    const sink = new MemorySink();
    const enc = await createParquetEncoder(
      { compression: "snappy", maxFileSize: 64 << 20, rowGroupSize: 500, columns: COLUMNS },
      sink,
    );
    const inside = enc as unknown as { pool: ArrayBuffer[]; ipcBuffer(size: number): ArrayBuffer };
    const take = inside.ipcBuffer.bind(enc);
    let fresh = 0;
    inside.ipcBuffer = (size) => {
      if (!inside.pool.some((b) => b.byteLength >= size)) fresh++;
      return take(size);
    };
    try {
      for (let i = 0; i < 5000; i++) {
        enc.writeRow(row(i, Buffer.from(`value ${i}`)), 0, 2);
        if (enc.wantsFlush) await enc.flush();
      }
      await enc.finish();
    } finally {
      enc.dispose();
    }
    // Ten row groups went through the pool's few buffers.
    expect(enc.files[0]!.rowGroups).toBe(10);
    expect(fresh).toBeLessThanOrEqual(3);
    expect(await duckCount(sink.save("recycled"))).toEqual([5000]);
  });

  it("a DataRow with the wrong field count is a protocol violation", async () => {
    const enc = await createParquetEncoder(
      { compression: "snappy", maxFileSize: 16 << 20, columns: COLUMNS },
      new MemorySink(),
    );
    try {
      expect(() => enc.writeRow(row(1, Buffer.alloc(1)), 0, 3)).toThrow(/DataRow has 3 fields, expected 2/);
    } finally {
      enc.dispose();
    }
  });
});

describe("parquet-wasm output buffers", () => {
  it("writes parquet-wasm's output into pooled buffers that return only through the sink's release", async () => {
    // Three sinks see the same rows: one that copies and releases at once (as the export's
    // PortSink does), one that keeps the views it was given and releases them only at the end,
    // and one given no release (it keeps the chunks). Their bytes must be equal; the first must
    // have seen the row groups' output in a few reused buffers.
    const payloads = Array.from({ length: 4000 }, () => randomBytes(600)); // ~300 KB a row group
    const run = async (sink: FileSink): Promise<void> => {
      const enc = await createParquetEncoder(
        { compression: "snappy", maxFileSize: 64 << 20, rowGroupSize: 500, columns: COLUMNS },
        sink,
      );
      try {
        await feed(
          enc,
          payloads.map((p, i) => row(i, p)),
        );
      } finally {
        enc.dispose();
      }
    };
    const copies: Buffer[] = [];
    const seen = new Set<ArrayBufferLike>();
    let large = 0;
    await run({
      copies: true,
      openFile() {},
      write(chunk, release) {
        copies.push(Buffer.from(chunk));
        if (chunk.byteLength >= 64 << 10) {
          large++;
          seen.add(chunk.buffer);
        }
        release?.();
      },
      closeFile() {},
    });
    const held: Uint8Array[] = [];
    const releases: Array<() => void> = [];
    await run({
      openFile() {},
      write(chunk, release) {
        held.push(chunk);
        if (release) releases.push(release);
      },
      closeFile() {},
    });
    const kept = new MemorySink();
    await run(kept);
    const expected = Buffer.concat(kept.files[0]!.chunks);
    expect(Buffer.concat(held).equals(expected)).toBe(true);
    for (const r of releases) r();
    expect(Buffer.concat(copies).equals(expected)).toBe(true);
    expect(outputPooled()).toBe(true);
    expect(large).toBeGreaterThanOrEqual(8);
    expect(seen.size).toBeLessThanOrEqual(2);
    expect(await duckCount(kept.save("pooled"))).toEqual([4000]);
  });
});

describe("dictionary encoding per column", () => {
  // int8 unique, int4 of ten values, text unique (a dotted name: the writer's column path), text
  // of three values. 20k rows: the unique columns' distinct values (160 KB, 700 KB) outgrow the
  // 64 KiB dictionary page, the others fit.
  const DICT_COLUMNS: ColumnInfo[] = [
    { name: "uniq", typeOid: 20, typeMod: -1 },
    { name: "low", typeOid: 23, typeMod: -1 },
    { name: "a.b", typeOid: 25, typeMod: -1 },
    { name: "cat", typeOid: 25, typeMod: -1 },
  ];
  const CATS = ["red", "green", "blue"];
  function dictRow(i: number): Buffer {
    const txt = Buffer.from(`${i.toString(16).padStart(8, "0")}-${"x".repeat(24)}`);
    const cat = Buffer.from(CATS[i % 3]!);
    const b = Buffer.alloc(4 * 4 + 8 + 4 + txt.length + cat.length);
    let p = b.writeInt32BE(8, 0);
    p = b.writeBigInt64BE(BigInt(i) * 1000003n, p);
    p = b.writeInt32BE(4, p);
    p = b.writeInt32BE(i % 10, p);
    p = b.writeInt32BE(txt.length, p);
    p += txt.copy(b, p);
    p = b.writeInt32BE(cat.length, p);
    cat.copy(b, p);
    return b;
  }

  it("writes dictionaries only for columns whose distinct values fit the dictionary page", async () => {
    const sink = new MemorySink();
    const enc = await createParquetEncoder(
      { compression: "snappy", maxFileSize: 64 << 20, columns: DICT_COLUMNS },
      sink,
    );
    const n = 20000;
    try {
      for (let i = 0; i < n; i++) {
        enc.writeRow(dictRow(i), 0, 4);
        if (enc.wantsFlush) await enc.flush();
      }
      await enc.finish();
    } finally {
      enc.dispose();
    }
    const [file] = sink.save("dictionary");
    const con = await (await DuckDBInstance.create(":memory:")).connect();
    const meta = await con.runAndReadAll(
      `SELECT path_in_schema, list(DISTINCT encodings) FROM parquet_metadata('${file}') GROUP BY 1 ORDER BY 1`,
    );
    const dictionary = Object.fromEntries(
      meta.getRows().map(([path, enc]) => [String(path), /DICTIONARY/.test(String(enc))]),
    );
    expect(dictionary).toEqual({ uniq: false, low: true, "a.b": false, cat: true });
    // Every value reads back.
    const r = await con.runAndReadAll(
      `SELECT count(*), sum(uniq)::VARCHAR, sum(low)::VARCHAR, count(DISTINCT "a.b"), string_agg(DISTINCT cat, ',' ORDER BY cat)
       FROM read_parquet('${file}')`,
    );
    const want = (BigInt(n) * BigInt(n - 1)) / 2n;
    expect(r.getRows()[0]!.map(String)).toEqual([
      String(n),
      String(want * 1000003n),
      String((n / 10) * 45),
      String(n),
      "blue,green,red",
    ]);
  });
});

describe("column buffers reused from one row group to the next", () => {
  // One column per builder on the hot path. Nulls come and go by row group: a column with nulls
  // in row group k has none in k+1 (and the reverse), so a validity bitmap, a length or a value
  // kept from the previous row group shows up as a wrong NULL or a wrong value in DuckDB.
  const REUSE_COLUMNS: ColumnInfo[] = [
    { name: "id", typeOid: 23, typeMod: -1 },
    { name: "i8", typeOid: 20, typeMod: -1 },
    { name: "f8", typeOid: 701, typeMod: -1 },
    { name: "txt", typeOid: 25, typeMod: -1 },
    { name: "b", typeOid: 16, typeMod: -1 },
    { name: "d", typeOid: 1082, typeMod: -1 },
    { name: "ts", typeOid: 1184, typeMod: -1 },
  ];
  const GROUP = 700;
  /** Column c of row i is NULL in odd row groups (c odd) or even ones (c even), at every 3rd row. */
  const isNull = (i: number, c: number): boolean =>
    c > 0 && Math.floor(i / GROUP) % 2 === c % 2 && (i + c) % 3 === 0;
  /** Text lengths 0..45 (the copy runs 4 bytes at a time, then the tail), a row group's own prefix. */
  const text = (i: number): string =>
    `g${Math.floor(i / GROUP)}-${i}-${"abcdefghij".repeat(4)}`.slice(0, i % 46);

  /** Row i as the DuckDB queries below read it back (bigints as strings, the date as days since 2000). */
  const expectedRow = (i: number): Array<number | string | boolean | null> =>
    [
      i,
      String(BigInt(i) * -7919n),
      i / 8,
      text(i),
      i % 2 === 1,
      i % 1000,
      String(BigInt(i) * 1_000_000n + 946684800000000n),
    ].map((v, c) => (isNull(i, c) ? null : v));

  function message(i: number): Buffer {
    const fields: Array<Buffer | null> = [];
    const put = (c: number, make: () => Buffer): void => {
      fields.push(isNull(i, c) ? null : make());
    };
    put(0, () => Buffer.from([i >>> 24, (i >>> 16) & 255, (i >>> 8) & 255, i & 255]));
    put(1, () => {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(BigInt(i) * -7919n);
      return b;
    });
    put(2, () => {
      const b = Buffer.alloc(8);
      b.writeDoubleBE(i / 8);
      return b;
    });
    put(3, () => Buffer.from(text(i)));
    put(4, () => Buffer.from([i % 2]));
    put(5, () => {
      const b = Buffer.alloc(4);
      b.writeInt32BE(i % 1000);
      return b;
    });
    put(6, () => {
      const b = Buffer.alloc(8);
      b.writeBigInt64BE(BigInt(i) * 1_000_000n);
      return b;
    });
    const body = fields.reduce((n, f) => n + 4 + (f?.length ?? 0), 2);
    const m = Buffer.alloc(5 + body);
    m[0] = 0x44;
    m.writeInt32BE(4 + body, 1);
    m.writeInt16BE(fields.length, 5);
    let p = 7;
    for (const f of fields) {
      p = m.writeInt32BE(f === null ? -1 : f.length, p);
      if (f !== null) p += f.copy(m, p);
    }
    return m;
  }

  /** The rows `from..from+n` through `enc` in runs of 50 messages; finished unless `cancel`. */
  async function writeRange(enc: ParquetEncoder, from: number, n: number, cancel = false): Promise<void> {
    for (let i = from; i < from + n; i += 50) {
      const run = Buffer.concat(Array.from({ length: Math.min(50, from + n - i) }, (_, k) => message(i + k)));
      enc.writeRows(run, 0, run.length);
      if (enc.wantsFlush) await enc.flush();
    }
    if (!cancel) await enc.finish();
  }

  /** Mismatches between the file's rows and rows `from..from+n` (`columns` in REUSE_COLUMNS' order). */
  async function mismatchesOf(file: string, from: number, n: number): Promise<string[]> {
    const con = await (await DuckDBInstance.create(":memory:")).connect();
    const r = await con.runAndReadAll(
      `SELECT id, i8::VARCHAR, f8, txt, b, (d - DATE '2000-01-01')::INT, epoch_us(ts)::VARCHAR
       FROM read_parquet('${file}') ORDER BY id`,
    );
    const rows = r.getRows();
    const out: string[] = rows.length === n ? [] : [`${rows.length} rows, not ${n}`];
    for (let k = 0; k < Math.min(n, rows.length); k++) {
      const i = from + k;
      const want = expectedRow(i);
      const got = rows[k]!.map((v) => (v === null ? null : typeof v === "bigint" ? Number(v) : v));
      if (JSON.stringify(got) !== JSON.stringify(want))
        out.push(`${JSON.stringify(got)} ≠ ${JSON.stringify(want)}`);
    }
    return out.slice(0, 5);
  }

  // A thread keeps an export's builders for its next export of the same columns (kept.ts).
  it("an export cancelled mid row group leaves none of its rows to the next export of the same columns", async () => {
    const opts = {
      compression: "snappy" as const,
      maxFileSize: 64 << 20,
      rowGroupSize: GROUP,
      columns: REUSE_COLUMNS,
    };
    const first = await createParquetEncoder(opts, new MemorySink());
    await writeRange(first, 0, GROUP + 321, true); // 321 rows left in the builders
    first.dispose();
    expect(() => first.writeRows(message(1), 0, message(1).length)).toThrow(/after dispose/);
    const sink = new MemorySink();
    const next = await createParquetEncoder(opts, sink);
    try {
      await writeRange(next, 5000, GROUP * 2 + 77);
    } finally {
      next.dispose();
    }
    expect(await mismatchesOf(sink.save("kept-after-cancel")[0]!, 5000, GROUP * 2 + 77)).toEqual([]);
  });

  it("two exports of the same columns at once in one thread, after a third ended: each has builders of its own", async () => {
    const opts = {
      compression: "snappy" as const,
      maxFileSize: 64 << 20,
      rowGroupSize: GROUP,
      columns: REUSE_COLUMNS,
    };
    const ended = await createParquetEncoder(opts, new MemorySink());
    await writeRange(ended, 0, 100);
    ended.dispose();
    const sinks = [new MemorySink(), new MemorySink()];
    const encs = [await createParquetEncoder(opts, sinks[0]!), await createParquetEncoder(opts, sinks[1]!)];
    const from = [10_000, 20_000];
    try {
      // Interleaved runs: rows of one in the other's builders would show in its file.
      for (let i = 0; i < GROUP * 2 + 99; i += 50) {
        for (const [e, enc] of encs.entries()) {
          const run = Buffer.concat(
            Array.from({ length: Math.min(50, GROUP * 2 + 99 - i) }, (_, k) => message(from[e]! + i + k)),
          );
          enc.writeRows(run, 0, run.length);
          if (enc.wantsFlush) await enc.flush();
        }
      }
      for (const enc of encs) await enc.finish();
    } finally {
      for (const enc of encs) enc.dispose();
    }
    for (const e of [0, 1])
      expect(await mismatchesOf(sinks[e]!.save(`kept-twice-${e}`)[0]!, from[e]!, GROUP * 2 + 99)).toEqual([]);
  });

  it("an export of other columns after one ended does not get its builders", async () => {
    const opts = {
      compression: "snappy" as const,
      maxFileSize: 64 << 20,
      rowGroupSize: GROUP,
      columns: REUSE_COLUMNS,
    };
    const ended = await createParquetEncoder(opts, new MemorySink());
    await writeRange(ended, 0, 100);
    ended.dispose();
    // Same types, the text column's name differs: a builder names its column in errors.
    const renamed = REUSE_COLUMNS.map((c) => (c.name === "txt" ? { ...c, name: "txt2" } : c));
    const sink = new MemorySink();
    const enc = await createParquetEncoder({ ...opts, columns: renamed }, sink);
    try {
      await writeRange(enc, 300, 500);
    } finally {
      enc.dispose();
    }
    const [file] = sink.save("kept-other-columns");
    const con = await (await DuckDBInstance.create(":memory:")).connect();
    const cols = (await con.runAndReadAll(`DESCRIBE SELECT * FROM read_parquet('${file}')`))
      .getRows()
      .map((r) => r[0]);
    expect(cols).toEqual(renamed.map((c) => c.name));
    // And a type the kept builders do not have: int4 where they had text.
    const retyped = REUSE_COLUMNS.map((c) => (c.name === "txt" ? { ...c, typeOid: 23 } : c));
    const again = await createParquetEncoder({ ...opts, columns: REUSE_COLUMNS }, new MemorySink());
    await writeRange(again, 0, 10);
    again.dispose();
    const other = await createParquetEncoder({ ...opts, columns: retyped }, new MemorySink());
    try {
      const m = message(3); // its text field is 3 bytes: not an int4
      expect(() => other.writeRows(m, 0, m.length)).toThrow(/4 bytes|int|length/i);
    } finally {
      other.dispose();
    }
  });

  it("no NULL, length or value of row group k reaches row group k+1 (writeRows, DuckDB reads every value back)", async () => {
    const sink = new MemorySink();
    const enc = await createParquetEncoder(
      { compression: "snappy", maxFileSize: 64 << 20, rowGroupSize: GROUP, columns: REUSE_COLUMNS },
      sink,
    );
    const n = GROUP * 6 + 123;
    try {
      // Runs of 50 messages: row groups end inside runs too.
      for (let i = 0; i < n; i += 50) {
        const run = Buffer.concat(Array.from({ length: Math.min(50, n - i) }, (_, k) => message(i + k)));
        enc.writeRows(run, 0, run.length);
        if (enc.wantsFlush) await enc.flush();
      }
      await enc.finish();
    } finally {
      enc.dispose();
    }
    expect(enc.files[0]!.rowGroups).toBe(7);
    const [file] = sink.save("reuse");
    const con = await (await DuckDBInstance.create(":memory:")).connect();
    const r = await con.runAndReadAll(
      `SELECT id, i8::VARCHAR, f8, txt, b, (d - DATE '2000-01-01')::INT, epoch_us(ts)::VARCHAR
       FROM read_parquet('${file}') ORDER BY id`,
    );
    const rows = r.getRows();
    expect(rows.length).toBe(n);
    const mismatches: string[] = [];
    for (let i = 0; i < n; i++) {
      const want = expectedRow(i);
      const got = rows[i]!.map((v) => (v === null ? null : typeof v === "bigint" ? Number(v) : v));
      if (JSON.stringify(got) !== JSON.stringify(want))
        mismatches.push(`${JSON.stringify(got)} ≠ ${JSON.stringify(want)}`);
    }
    expect(mismatches.slice(0, 5)).toEqual([]);
  });
});
