// The NOTICEs a driver receives during and at the end of an export (node-postgres 'notice'
// events): each progress NOTICE names its phase, so a long upload or commit does not look like a
// stalled read; the last NOTICE, before CommandComplete, says how many rows, files and bytes went
// where, and the manifest's URL. Each phase is pinned by holding an S3 request (the fault proxy).
import pg from "pg";
import { afterAll, beforeAll, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import { waitUntil } from "../support/export-checks.js";
import type { TestProxy } from "../support/proxy.js";
import { S3FaultProxy } from "../support/s3-fault-proxy.js";

const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let faults: S3FaultProxy;
let proxy: TestProxy;
let bucket: string;

beforeAll(async () => {
  faults = await S3FaultProxy.start(s3.endpoint);
  proxy = await startCopyProxy({
    upstreamPort: pgPort,
    s3: { ...s3, endpoint: faults.endpoint },
    config: { exports: { progressIntervalMs: 100 } },
  });
  bucket = await check.bucket("notices");
}, 60_000);

afterAll(async () => {
  await proxy?.shutdown(0);
  await faults?.close();
});

async function withNotices<T>(f: (c: pg.Client, notices: string[]) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: proxy.url() });
  const notices: string[] = [];
  c.on("notice", (n) => notices.push(n.message ?? ""));
  await c.connect();
  try {
    return await f(c, notices);
  } finally {
    // A failed step must not leave a request held: the export would hold its slot for the
    // retry and the next test.
    faults.clear();
    await c.end();
  }
}

const FINAL = /^exported (.+) to (s3:\/\/\S+\/); manifest: (s3:\/\/\S+)$/;

test("every progress NOTICE names its phase, in order; the last NOTICE names rows, files, bytes and the manifest", async () => {
  await withNotices(async (c, notices) => {
    const prefix = "phases";
    const seen = (re: RegExp) => () => notices.some((n) => re.test(n));
    // preparing: the sentinel's PutObject is held.
    faults.setRules({ op: "PutObject", key: /INCOMPLETE$/, fault: "hold" });
    const q = c.query(
      `COPY (SELECT g, pg_sleep(0.2) FROM generate_series(1, 2) g) TO 's3://${bucket}/${prefix}' WITH (FORMAT = 'csv')`,
    );
    await waitUntil("a preparing NOTICE", seen(/^COPY TO progress: preparing /));
    // reading: the rows come slowly; uploading: the file's upload is held. Smaller than a part, it
    // is one PutObject; the Complete is held too, for a store that would use a multipart upload.
    faults.clear();
    faults.setRules(
      { op: "PutObject", key: /\.csv$/, fault: "hold" },
      { op: "CompleteMultipartUpload", fault: "hold" },
    );
    await waitUntil("a reading NOTICE", seen(/^COPY TO progress: reading: \d+ rows? \([\d,]+ rows\/s\), /));
    await waitUntil(
      "an uploading NOTICE",
      seen(/^COPY TO progress: uploading: 0 of 1 file complete \([\d.]+ k?B\); all 2 rows read$/),
    );
    // committing: the manifest's PutObject is held.
    faults.clear();
    faults.setRules({ op: "PutObject", key: /manifest\.json$/, fault: "hold" });
    await waitUntil(
      "a committing NOTICE",
      seen(/^COPY TO progress: committing: 1 file uploaded, writing the manifest$/),
    );
    faults.clear();
    expect((await q).rowCount).toBe(2);

    const phases = notices
      .map((n) => /^COPY TO progress: (\w+)/.exec(n)?.[1])
      .filter((p) => p !== undefined)
      .filter((p, i, a) => p !== a[i - 1]);
    expect(phases).toEqual(["preparing", "reading", "uploading", "committing"]);
    const last = notices.at(-1)!;
    const m = FINAL.exec(last);
    expect(m, last).not.toBeNull();
    const data = (await check.keys(bucket, `${prefix}/`)).filter((k) => k.endsWith(".csv"));
    const bytes = (await check.get(bucket, data[0]!)).length;
    expect(m![1]).toBe(`2 rows in 1 file (${bytes} B)`);
    expect(m![2]).toBe(`s3://${bucket}/${prefix}/`);
    // The manifest is where the NOTICE says, and lists what landed.
    const manifestKey = m![3]!.slice(`s3://${bucket}/`.length);
    const manifest = JSON.parse((await check.get(bucket, manifestKey)).toString("utf8"));
    expect(manifest.rows).toBe(2);
    expect(manifest.files.map((f: { url: string }) => f.url)).toEqual(data.map((k) => `s3://${bucket}/${k}`));
  });
});

test("a quick export: no progress NOTICE needed, but always the final one, singular where it is one", async () => {
  await withNotices(async (c, notices) => {
    const r = await c.query(`COPY (SELECT 1) TO 's3://${bucket}/quick' WITH (FORMAT = 'csv')`);
    expect(r.rowCount).toBe(1);
    expect(notices.filter((n) => !n.startsWith("COPY TO progress: "))).toEqual([
      expect.stringMatching(
        new RegExp(
          `^exported 1 row in 1 file \\(2 B\\) to s3://${bucket}/quick/; manifest: s3://${bucket}/quick/_meta/mz-[0-9a-f-]+-manifest\\.json$`,
        ),
      ),
    ]);
    expect(notices.at(-1)).toMatch(/^exported /);
  });
});
