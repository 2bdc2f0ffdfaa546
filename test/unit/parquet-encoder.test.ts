// The encoder as the export driver sees it: rows in, files out, with synthetic DataRows (no
// server). Files are read back with DuckDB.
import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { DuckDBInstance } from "@duckdb/node-api";
import { afterAll, describe, expect, it } from "vitest";
import { createParquetEncoder, type ParquetEncoder } from "../../src/encoders/parquet-encoder.js";
import type { ColumnInfo, FileSink } from "../../src/encoders/types.js";

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
