// Parquet encoder throughput and memory, beside baselines, as ratios (TESTING.md: the machine is
// shared and noisy, so modes alternate within one run and medians are compared).
//
//   npx tsx bench/parquet-encoder.bench.ts [--rows 1000000] [--reps 3] [--rss] [--pg]
//
// Rows are 8 mixed columns (int4, int8, float8, numeric(12,2), text, timestamptz, bool, date) in
// pgwire binary DataRow layout, cycled from a pool of 64k distinct rows, so the figures are the
// encoder's alone. Modes:
//   walk    – only step over the DataRow fields (the floor: what any consumer pays)
//   decode  – decode into the Arrow column buffers and serialize each batch to Arrow IPC, but
//             write no Parquet (all the encoder does on the caller's thread)
//   snappy / zstd – the full encoder (parquet-wasm writing on this thread, as in an export's
//             encoder thread) into a counting sink (256 MB files)
// --rss   runs 1M and 5M rows (or --rows and 5×) in fresh processes and compares peak RSS.
// --pg    (or --pg-only) end to end against a throwaway PostgreSQL: the server's own
//         `COPY (q) TO STDOUT (FORMAT binary)` drained to /dev/null (the read limit) vs a binary
//         extended-protocol read feeding the encoder (snappy).
// --thread-cpu  the encoder thread's path on bench/export.ts's table (bench/lib/bench-table.ts:
//         the same values PostgreSQL sends in binary, md5 labels included): whole DataRow
//         messages in 256 KiB batches through writeRows/flush/finish as an export's encoder
//         thread runs them, `--reps` exports of `--rows` rows in one process (the first one is
//         the process's first, as in a fresh proxy), CPU-s per 1M rows of this thread and of V8's
//         platform threads (GC, JIT) from /proc. Without a proxy or PostgreSQL: the figure that
//         code changes in src/encoders/parquet move. `--warm N` first runs an export of N rows
//         (a start-up warm-up); `--no-write` stops at the Arrow IPC (decode alone).
//         `--compare <src>` alternates each export with one by the encoder under another source
//         tree (inside this checkout, so its node_modules resolve: `git archive main src | tar -x -C .tmp/base`
//         → `--compare $PWD/.tmp/base/src`)
//         in the same process, and prints both medians: old and new code under the same load.
//         Each tree must load parquet-wasm's glue as a module instance of its own, or the second
//         tree's `initSync` returns the first one's (and its imports): give `import(esmUrl)` in
//         both trees' parquet/wasm-writer.ts a query suffix (`${esmUrl}?base`, `${esmUrl}?head`) —
//         a second instance in one process also runs faster than the first, so give both one.
import { execFileSync, spawnSync } from "node:child_process";
import { parquetWasm } from "../src/encoders/parquet/wasm-writer.js";
import { createParquetEncoder, type ParquetCompression } from "../src/encoders/parquet-encoder.js";
import type { ColumnInfo, FileSink } from "../src/encoders/types.js";
import { benchTableBatches, benchTableColumns } from "./lib/bench-table-rows.js";
import { cpuSeconds } from "./lib/proc.js";

const args = process.argv.slice(2);
const flag = (name: string): boolean => args.includes(`--${name}`);
const opt = (name: string, def: number): number => {
  const i = args.indexOf(`--${name}`);
  return i >= 0 ? Number(args[i + 1]) : def;
};
const ROWS = opt("rows", 1_000_000);
const REPS = opt("reps", 3);

const COLUMNS: ColumnInfo[] = [
  { name: "id", typeOid: 23, typeMod: -1 },
  { name: "big", typeOid: 20, typeMod: -1 },
  { name: "score", typeOid: 701, typeMod: -1 },
  { name: "amount", typeOid: 1700, typeMod: ((12 << 16) | 2) + 4 },
  { name: "label", typeOid: 25, typeMod: -1 },
  { name: "at", typeOid: 1184, typeMod: -1 },
  { name: "flag", typeOid: 16, typeMod: -1 },
  { name: "day", typeOid: 1082, typeMod: -1 },
];

const WORDS =
  "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa".split(
    " ",
  );

/** A pool of distinct DataRows (fields only, as the driver hands them over). */
function makePool(n: number): Buffer[] {
  let seed = 42;
  const rand = (m: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % m;
  };
  const pool: Buffer[] = [];
  for (let i = 0; i < n; i++) {
    const parts: Buffer[] = [];
    const field = (b: Buffer | null) => {
      const l = Buffer.alloc(4);
      l.writeInt32BE(b === null ? -1 : b.length);
      parts.push(l);
      if (b) parts.push(b);
    };
    const i4 = Buffer.alloc(4);
    i4.writeInt32BE(i);
    field(i4);
    const i8 = Buffer.alloc(8);
    i8.writeBigInt64BE(BigInt(i) * 7919n - 1000000n);
    field(i8);
    const f8 = Buffer.alloc(8);
    f8.writeDoubleBE(rand(1_000_000) / 997);
    field(rand(20) === 0 ? null : f8);
    // numeric(12,2): up to 10 integer digits, 2 decimals → base-10000 digits.
    const cents = rand(100_000_000);
    const int = Math.floor(cents / 100);
    const frac = cents % 100;
    const digits = int >= 10000 ? [Math.floor(int / 10000), int % 10000, frac * 100] : [int, frac * 100];
    const num = Buffer.alloc(8 + 2 * digits.length);
    num.writeInt16BE(digits.length, 0);
    num.writeInt16BE(digits.length - 2, 2);
    num.writeUInt16BE(rand(10) === 0 ? 0x4000 : 0, 4);
    num.writeInt16BE(2, 6);
    digits.forEach((d, k) => {
      num.writeInt16BE(d, 8 + 2 * k);
    });
    field(num);
    field(Buffer.from(`${WORDS[rand(16)]} ${WORDS[rand(16)]} ${i.toString(36)} ${WORDS[rand(16)]}`));
    const ts = Buffer.alloc(8);
    ts.writeBigInt64BE(BigInt(700_000_000 + i * 37) * 1_000_000n + BigInt(rand(1_000_000)));
    field(ts);
    field(Buffer.from([rand(2)]));
    const d = Buffer.alloc(4);
    d.writeInt32BE(8000 + rand(3000));
    field(d);
    pool.push(Buffer.concat(parts));
  }
  return pool;
}

const countingSink = (): FileSink & { bytes: number; files: number } => ({
  bytes: 0,
  files: 0,
  openFile() {
    this.files++;
  },
  // Read, then handed back at once, as an export's PortSink does after copying (FileSink's
  // contract): without `release` the writer would allocate every row group's output afresh.
  write(chunk, release) {
    this.bytes += chunk.byteLength;
    release?.();
  },
  closeFile() {},
});

type Mode = "walk" | "decode" | "snappy" | "zstd";

async function run(mode: Mode, pool: Buffer[], rows: number): Promise<{ secs: number; bytes: number }> {
  const n = COLUMNS.length;
  const t0 = performance.now();
  if (mode === "walk") {
    let acc = 0;
    for (let r = 0; r < rows; r++) {
      const buf = pool[r % pool.length]!;
      let p = 0;
      for (let i = 0; i < n; i++) {
        const len = buf.readInt32BE(p);
        p += 4;
        if (len > 0) {
          acc += buf[p]!;
          p += len;
        }
      }
    }
    if (acc === -1) console.log(acc);
    return { secs: (performance.now() - t0) / 1000, bytes: 0 };
  }
  const sink = countingSink();
  const compression: ParquetCompression = mode === "decode" ? "snappy" : mode;
  const enc = await createParquetEncoder({ compression, maxFileSize: 256 << 20, columns: COLUMNS }, sink);
  // "decode" stops short of the Parquet writer: same batches, serialized to IPC, dropped.
  const takeBatch = (enc as unknown as { takeBatch(): Uint8Array }).takeBatch.bind(enc);
  try {
    for (let r = 0; r < rows; r++) {
      const buf = pool[r % pool.length]!;
      enc.writeRow(buf, 0, n);
      if (enc.wantsFlush) {
        if (mode === "decode") takeBatch();
        else await enc.flush();
      }
    }
    if (mode === "decode") takeBatch();
    else await enc.finish();
  } finally {
    enc.dispose();
  }
  return { secs: (performance.now() - t0) / 1000, bytes: sink.bytes };
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
};
const fmt = (rps: number): string => `${(rps / 1e6).toFixed(3)} M rows/s`;

async function throughput(): Promise<void> {
  const pool = makePool(65536);
  const modes: Mode[] = ["walk", "decode", "snappy", "zstd"];
  const times: Record<Mode, number[]> = { walk: [], decode: [], snappy: [], zstd: [] };
  const bytes: Partial<Record<Mode, number>> = {};
  await run("snappy", pool, Math.min(ROWS, 200_000)); // warm up JIT and WASM
  for (let rep = 0; rep < REPS; rep++) {
    for (const m of rep % 2 === 0 ? modes : [...modes].reverse()) {
      const r = await run(m, pool, ROWS);
      times[m].push(r.secs);
      bytes[m] = r.bytes;
    }
  }
  const rps = (m: Mode) => ROWS / median(times[m]);
  console.log(`\n${ROWS} rows × ${COLUMNS.length} columns, ${REPS} alternating reps, medians`);
  for (const m of modes) {
    const extra = bytes[m] ? `  ${(bytes[m]! / 1048576).toFixed(1)} MiB out` : "";
    console.log(
      `  ${m.padEnd(7)} ${fmt(rps(m)).padStart(18)}   runs ${times[m].map((t) => t.toFixed(2)).join("/")} s${extra}`,
    );
  }
  console.log(
    `  ratio snappy/decode ${(rps("snappy") / rps("decode")).toFixed(2)}   zstd/decode ${(rps("zstd") / rps("decode")).toFixed(2)}`,
  );
  console.log(
    `  ratio decode/walk   ${(rps("decode") / rps("walk")).toFixed(2)}   snappy/walk ${(rps("snappy") / rps("walk")).toFixed(2)}`,
  );
}

async function child(mode: Mode, rows: number): Promise<void> {
  const pool = makePool(65536);
  const samples: string[] = [];
  const timer = flag("trace-memory")
    ? setInterval(() => {
        const m = process.memoryUsage();
        const mib = (x: number) => (x / 1048576).toFixed(0);
        samples.push(
          `rss ${mib(m.rss)} heap ${mib(m.heapUsed)}/${mib(m.heapTotal)} ab ${mib(m.arrayBuffers)} ext ${mib(m.external)}`,
        );
      }, 500)
    : null;
  const r = await run(mode, pool, rows);
  if (timer) {
    clearInterval(timer);
    console.error(samples.join("\n"));
  }
  console.log(
    JSON.stringify({
      rows,
      secs: r.secs,
      bytes: r.bytes,
      maxRssMiB: process.resourceUsage().maxRSS / 1024,
    }),
  );
}

function rss(): void {
  const sizes = [ROWS, ROWS * 5];
  console.log(
    `\npeak RSS, fresh process per run (pool of 64k rows ≈ ${((65536 * 90) / 1048576) | 0} MiB included)`,
  );
  for (const mode of ["walk", "decode", "snappy", "zstd"] as const) {
    const res = sizes.map((rows) => {
      const out = spawnSync(
        process.execPath,
        [...process.execArgv, process.argv[1]!, "--child", mode, String(rows)],
        {
          encoding: "utf8",
        },
      );
      if (out.status !== 0) throw new Error(out.stderr);
      return JSON.parse(out.stdout.trim().split("\n").pop()!) as { maxRssMiB: number; secs: number };
    });
    const [a, b] = res as [(typeof res)[0], (typeof res)[0]];
    console.log(
      `  ${mode.padEnd(7)} ${sizes[0]} rows: ${a.maxRssMiB.toFixed(0)} MiB   ` +
        `${sizes[1]} rows: ${b.maxRssMiB.toFixed(0)} MiB   ratio ${(b.maxRssMiB / a.maxRssMiB).toFixed(2)}`,
    );
  }
}

async function endToEnd(): Promise<void> {
  const { startPostgres } = await import("../test/support/postgres.js");
  const { RawPg } = await import("../test/support/raw-pg-binary.js");
  const server = await startPostgres();
  try {
    const pg = await RawPg.connect({ port: server.port });
    await pg.query(
      `CREATE TABLE b AS SELECT g AS id, g::int8 * 7919 AS big, random() * 1000 AS score,
         round((random() * 1e8)::numeric / 100, 2)::numeric(12,2) AS amount,
         md5(g::text) AS label, now() - g * interval '1 second' AS at, g % 2 = 0 AS flag,
         current_date - (g % 3000) AS day FROM generate_series(1, ${ROWS}) g`,
    );
    await pg.query("VACUUM ANALYZE b");
    const q = "SELECT * FROM b";
    const cols = await pg.describe(q);
    const columns: ColumnInfo[] = cols.map((c) => ({ name: c.name, typeOid: c.typeOid, typeMod: c.typeMod }));
    const copyBinary = (): number => {
      const t0 = performance.now();
      execFileSync("sh", [
        "-c",
        `psql -h 127.0.0.1 -p ${server.port} -U postgres -qc "COPY (${q}) TO STDOUT (FORMAT binary)" > /dev/null`,
      ]);
      return (performance.now() - t0) / 1000;
    };
    const exportRun = async (): Promise<number> => {
      const t0 = performance.now();
      const sink = countingSink();
      const enc = await createParquetEncoder(
        { compression: "snappy", maxFileSize: 256 << 20, columns },
        sink,
      );
      await pg.executeAsync(q, enc.resultFormats, (buf, pos, n) => {
        enc.writeRow(buf, pos, n);
        if (enc.wantsFlush) return enc.flush();
      });
      await enc.finish();
      enc.dispose();
      return (performance.now() - t0) / 1000;
    };
    const readOnly = async (): Promise<number> => {
      const t0 = performance.now();
      await pg.execute(
        q,
        columns.map(() => 1),
        () => {},
      );
      return (performance.now() - t0) / 1000;
    };
    const a: number[] = [];
    const b: number[] = [];
    const c: number[] = [];
    for (let rep = 0; rep < REPS; rep++) {
      a.push(copyBinary());
      c.push(await readOnly());
      b.push(await exportRun());
    }
    console.log(
      `\nend to end, ${ROWS} rows from PostgreSQL (test client test/support/raw-pg-binary.ts), medians`,
    );
    console.log(
      `  COPY … (FORMAT binary) > /dev/null  ${fmt(ROWS / median(a))}   runs ${a.map((t) => t.toFixed(2)).join("/")} s`,
    );
    console.log(
      `  binary read, rows dropped           ${fmt(ROWS / median(c))}   runs ${c.map((t) => t.toFixed(2)).join("/")} s`,
    );
    console.log(
      `  binary read → parquet snappy        ${fmt(ROWS / median(b))}   runs ${b.map((t) => t.toFixed(2)).join("/")} s`,
    );
    console.log(
      `  ratio export/COPY binary ${(median(a) / median(b)).toFixed(2)}   export/read-only ${(median(c) / median(b)).toFixed(2)}`,
    );
    await pg.end();
  } finally {
    await server.stop();
  }
}

/** CPU seconds of this process's threads: this (main) thread and the rest (V8 platform, libuv). */
function cpuNow(): { main: number; other: number } {
  const main = cpuSeconds(process.pid, false, true);
  return { main, other: cpuSeconds(process.pid, false) - main };
}

async function threadPath(): Promise<void> {
  const batches = benchTableBatches(Math.min(ROWS, 1_000_000), 256 << 10);
  const columns = benchTableColumns();
  const compression = (["snappy", "zstd", "gzip", "none"].find((c) => flag(c)) ??
    "snappy") as ParquetCompression;
  console.log(`\n${ROWS} rows of the bench table, ${compression}, ${REPS} exports in one process`);
  // parquet-wasm's compile is once per process (the relay does it before an export's first rows).
  const w0 = cpuNow();
  await parquetWasm();
  await new Promise((resolve) => setTimeout(resolve, 200)); // V8 compiles on its platform threads
  const w1 = cpuNow();
  console.log(
    `  parquet-wasm compile (once per process): CPU-s this thread ${(w1.main - w0.main).toFixed(2)}, other threads ${(w1.other - w0.other).toFixed(2)}`,
  );
  // --no-write: decode and Arrow IPC only, no Parquet (the decode path's own CPU).
  const noWrite = flag("no-write");
  // The IPC buffer goes back to the encoder's pool, as the writer hands it back once parquet-wasm
  // has copied it (else every row group would allocate and first-touch a new one).
  const takeBatch = (enc: unknown): void => {
    const e = enc as { takeBatch(): Uint8Array; pool: ArrayBuffer[] };
    e.pool.push(e.takeBatch().buffer as ArrayBuffer);
  };
  // --compare <src>: the same exports alternately by another source tree's encoder.
  const ci = args.indexOf("--compare");
  type Create = typeof createParquetEncoder;
  const variants: Array<{ name: string; create: Create; perM: number[] }> = [
    { name: "this checkout", create: createParquetEncoder, perM: [] },
  ];
  if (ci >= 0) {
    const other = (await import(`${args[ci + 1]}/encoders/parquet-encoder.js`)) as {
      createParquetEncoder: Create;
    };
    variants.unshift({ name: args[ci + 1]!, create: other.createParquetEncoder, perM: [] });
  }
  // --warm N: a first export of N rows (a warm-up such as a proxy could run at start-up).
  const sizes = [...(opt("warm", 0) > 0 ? [opt("warm", 0)] : []), ...Array<number>(REPS).fill(ROWS)];
  const runs = sizes.flatMap((size, rep) =>
    (rep % 2 === 0 ? variants : [...variants].reverse()).map((v) => ({ size, v })),
  );
  for (let rep = 0; rep < runs.length; rep++) {
    const { size, v } = runs[rep]!;
    const c0 = cpuNow();
    const t0 = performance.now();
    const sink = countingSink();
    const enc = await v.create({ compression, maxFileSize: 256 << 20, columns }, sink);
    let rows = 0;
    for (let k = 0; rows < size; k++) {
      const b = batches[k % batches.length]!;
      enc.writeRows(b.buf, 0, b.buf.length);
      rows += b.rows;
      if (enc.wantsFlush) {
        if (noWrite) takeBatch(enc);
        else await enc.flush();
      }
    }
    if (noWrite) takeBatch(enc);
    else await enc.finish();
    enc.dispose();
    const secs = (performance.now() - t0) / 1000;
    const c1 = cpuNow();
    const per = (x: number) => ((x * 1e6) / rows).toFixed(3);
    // Medians leave out each variant's first export (the process's JIT warm-up).
    if (rep >= variants.length) v.perM.push(((c1.main - c0.main) * 1e6) / rows);
    console.log(
      `  export ${rep + 1} (${rows} rows${variants.length > 1 ? `, ${v.name}` : ""}): ${secs.toFixed(2)} s, ${(sink.bytes / 1048576).toFixed(1)} MiB, CPU-s per 1M rows ` +
        `total ${per(c1.main - c0.main + c1.other - c0.other)}  this thread ${per(c1.main - c0.main)}  ` +
        `other threads ${per(c1.other - c0.other)}`,
    );
  }
  if (variants.length > 1) {
    for (const v of variants) {
      console.log(`  median CPU-s per 1M rows on this thread, ${v.name}: ${median(v.perM).toFixed(3)}`);
    }
  }
}

if (args[0] === "--child") {
  await child(args[1] as Mode, Number(args[2]));
} else if (flag("thread-cpu")) {
  await threadPath();
} else {
  if (!flag("pg-only")) await throughput();
  if (flag("rss")) rss();
  if (flag("pg") || flag("pg-only")) await endToEnd();
}
