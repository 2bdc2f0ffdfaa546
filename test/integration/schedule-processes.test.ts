// Scheduled snapshots in real proxy processes (the CLI, test/support/proxy-process.ts), for what
// only processes can show (docs/schedules.md):
// - many proxies, one run: two processes with the same job and the same S3 run each occurrence
//   exactly once, and when the lease holder is killed with SIGKILL mid-export the other takes the
//   occurrence over once the lease term ran out, removes what the dead run left (its multipart
//   upload, its sentinel) and runs it; latest.json never names an unfinished snapshot;
// - SIGHUP reloads `jobs`: added jobs run, removed ones stop, changed schedules apply to the next
//   occurrence, an unchanged job keeps its suspension, invalid jobs leave the running ones as they were.
// Everything in S3 is checked with an independent client (moto; Ceph RadosGW with C2S_CEPH=1).
// Real processes run on the real clock: the jobs get short lease terms and instants a few
// seconds ahead, and the test polls (waitUntil) instead of sleeping.
import pg from "pg";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { snapshotName } from "../../src/schedule/next-run.js";
import { motoAccess, type S3Access, S3Check } from "../support/copy-proxy.js";
import { C2S_WAIT_FUNCTION, waitUntil } from "../support/export-checks.js";
import { type ProxyProcess, reloadConfig, spawnCopyProxy } from "../support/proxy-process.js";
import { RawPg } from "../support/raw-pg.js";

const DB = "schedule_processes";
const pgPort = inject("pgPort");
let oracle: RawPg;

const servers: Array<[string, S3Access | undefined]> = [
  ["moto", motoAccess()],
  [
    "Ceph RadosGW",
    inject("cephEndpoint")
      ? {
          endpoint: inject("cephEndpoint")!,
          region: inject("cephRegion") ?? "us-east-1",
          accessKeyId: inject("cephAccessKeyId") ?? "",
          secretAccessKey: inject("cephSecretAccessKey") ?? "",
        }
      : undefined,
  ],
];

beforeAll(async () => {
  oracle = await RawPg.freshDatabase(pgPort, DB);
  await oracle.query(C2S_WAIT_FUNCTION);
}, 60_000);
afterAll(async () => {
  await oracle?.query(`ALTER DATABASE ${DB} RESET c2s.wait`).catch(() => {});
  await oracle?.close();
});

const started: ProxyProcess[] = [];
afterAll(async () => {
  for (const p of started) await p.stop();
});

async function start(s3: S3Access): Promise<ProxyProcess> {
  const p = await spawnCopyProxy({
    upstreamPort: pgPort,
    s3,
    args: ["--drain-timeout", "300"],
    config: { exports: { partSize: 5 * 1024 * 1024 } },
  });
  started.push(p);
  return p;
}

/** Rewrites the process's config file with these jobs and sends SIGHUP; resolves once applied. */
const setJobs = (p: ProxyProcess, jobs: unknown[]): Promise<void> =>
  reloadConfig(p, (cfg) => ({ ...cfg, jobs }));

async function consoleQuery<R>(p: ProxyProcess, sql: string): Promise<R[]> {
  const c = new pg.Client({ connectionString: p.url("postgres", DB) });
  c.on("error", () => {});
  await c.connect();
  try {
    return (await c.query(sql)).rows as R[];
  } finally {
    await c.end().catch(() => {});
  }
}

type Run = { job: string; snapshot: string; state: string; error: string | null };
const runs = (p: ProxyProcess, job: string) => consoleQuery<Run>(p, `SHOW COPY_TO_S3 RUNS ${job}`);

/** Log lines (JSON) of a process with this message. */
function logged(p: ProxyProcess, msg: string): Array<Record<string, unknown>> {
  return p
    .output()
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as Record<string, unknown>)
    .filter((l) => l.msg === msg);
}

/** A cron pattern (with seconds) that fires at instant `at` only. */
function cronAt(at: number): string {
  const d = new Date(at);
  return `${d.getUTCSeconds()} ${d.getUTCMinutes()} ${d.getUTCHours()} ${d.getUTCDate()} ${d.getUTCMonth() + 1} *`;
}

describe.each(servers)("two proxy processes with the same job on %s", (name, s3) => {
  const skip = s3 === undefined;
  let check: S3Check;
  let bucket: string;
  beforeAll(async () => {
    if (skip) return;
    check = new S3Check(s3);
    bucket = await check.bucket(`procs-${name === "moto" ? "moto" : "ceph"}-${Date.now() % 100000}`);
  });

  const readJson = async (key: string): Promise<Record<string, unknown> | null> => {
    try {
      return JSON.parse((await check.get(bucket, key)).toString()) as Record<string, unknown>;
    } catch {
      return null;
    }
  };

  test.skipIf(skip)(
    "the lease holder killed with SIGKILL mid-export: the other takes the occurrence over after the lease term, clears the dead run's upload and runs it once",
    async () => {
      const [a, b] = await Promise.all([start(s3!), start(s3!)]);
      // The first run is slow (12 MB in ~15 s: a multipart upload is open long before it ends);
      // sessions opened after the kill are fast, so the takeover's run is quick.
      await oracle.query(`ALTER DATABASE ${DB} SET c2s.wait = '0.005'`);
      // Far enough ahead for two reloads on a busy machine (each takes well under a second idle).
      const at = Math.ceil(Date.now() / 1000) * 1000 + 6000;
      const snap = snapshotName(at);
      const job = {
        name: "big",
        query: "SELECT c2s_wait(g) AS g, repeat('x', 4000) AS pad FROM generate_series(1, 3000) g",
        target: `s3://${bucket}/big`,
        options: { format: "csv" },
        user: "postgres",
        database: DB,
        cron: cronAt(at),
        // Renewed every third of it: at a load of 20 a renewal through moto took over 3 s and the
        // other proxy took a live holder's occurrence over (the premise of the test, not its subject).
        leaseTerm: "10s",
        retries: 0,
      };
      await Promise.all([a, b].map((p) => setJobs(p, [job])));
      // Both proxies had the job before its instant: each has it due then, or has a run of it
      // (a proxy that got it late would have its next occurrence a year on, and no run).
      const due = new Date(at).toISOString();
      for (const p of [a, b]) {
        const [jobRow] = await consoleQuery<{ next_run: string | null }>(p, "SHOW COPY_TO_S3 JOBS");
        const ran = (await runs(p, "big")).some((r) => r.snapshot === snap);
        expect(jobRow?.next_run === due || ran, `proxy ${p.proc.pid} had the job before ${due}`).toBe(true);
      }

      const leases = `big/_leases/${snap}`;
      const first = await waitUntil(
        "a proxy to take the occurrence's lease",
        () => readJson(`${leases}/term-000000.json`),
        30_000,
      );
      const holderPid = Number(String(first.owner).split(":")[1]);
      const [holder, other] = a.proc.pid === holderPid ? [a, b] : [b, a];
      expect(holder.proc.pid).toBe(holderPid);
      await waitUntil(
        "the holder's export to open a multipart upload",
        async () => ((await check.uploads(bucket, `big/${snap}/`)).length > 0 ? true : null),
        30_000,
      );
      const killedUploads = await check.uploads(bucket, `big/${snap}/`);
      // The other proxy's run waits on the holder's lease; under load its first lease attempt may
      // still be under way (the run's record starts as "running") when the holder's upload opens:
      // polled, not read once. Whether it ever ran is the run-once checks' below.
      await waitUntil(
        "the other proxy's run waiting on the holder's lease",
        async () => {
          const r = (await runs(other, "big"))[0];
          if (r !== undefined && ["succeeded", "failed", "skipped"].includes(r.state))
            throw new Error(`the other proxy's run ended before the holder: ${JSON.stringify(r)}`);
          return r?.snapshot === snap && r.state === "waiting" ? r : null;
        },
        30_000,
      );

      // Whatever latest.json says at any moment names a complete snapshot.
      const seen: string[] = [];
      const look = async (): Promise<void> => {
        const latest = await readJson("big/latest.json");
        if (latest !== null) {
          const keys = await check.keys(bucket, `big/${String(latest.snapshot)}/`);
          const complete =
            keys.some((k) => k.endsWith("-manifest.json")) && !keys.some((k) => k.endsWith("-INCOMPLETE"));
          seen.push(`${String(latest.snapshot)} ${complete ? "complete" : "INCOMPLETE"}`);
        }
      };
      let watching = true;
      const watcher = (async () => {
        while (watching) {
          await look();
          await new Promise((r) => setTimeout(r, 50));
        }
      })();

      await oracle.query(`ALTER DATABASE ${DB} SET c2s.wait = '0'`);
      holder.proc.kill("SIGKILL");
      expect(await holder.exited).toEqual({ code: null, signal: "SIGKILL" });

      await waitUntil(
        "the survivor to run the occurrence",
        async () => {
          const r = (await runs(other, "big"))[0];
          if (r?.state === "failed") throw new Error(`the takeover failed: ${r.error}\n${other.output()}`);
          return r?.state === "succeeded" ? r : null;
        },
        60_000,
      );
      watching = false;
      await watcher;
      // One look after the run: under load one look takes seconds (the AWS CLI), and the survivor
      // can publish and report success between two of them, so the loop alone may see nothing.
      await look();

      expect(other.output()).toContain("taking over an occurrence whose proxy stopped renewing its lease");
      // No orphan: the killed run's upload was aborted, nothing is pending under the target.
      expect(killedUploads.length).toBeGreaterThan(0);
      expect(await check.uploads(bucket, "big/")).toEqual([]);
      // One complete snapshot, all of it the survivor's export (one export id), every row once.
      const keys = await check.keys(bucket, `big/${snap}/`);
      expect(keys.filter((k) => k.endsWith("-INCOMPLETE"))).toEqual([]);
      const ids = new Set(keys.map((k) => /\/mz-([^-]+)-/.exec(k)?.[1]));
      expect(ids.size).toBe(1);
      const manifestKey = keys.find((k) => k.endsWith("-manifest.json"))!;
      expect((await readJson(manifestKey))!.rows).toBe(3000);
      const dirs = new Set((await check.keys(bucket, "big/")).map((k) => k.split("/")[1]));
      expect([...dirs].sort()).toEqual(["_leases", "latest.json", snap]);
      const latest = (await readJson("big/latest.json"))!;
      expect(latest.snapshot).toBe(snap);
      expect(String(latest.manifest)).toBe(`s3://${bucket}/${manifestKey}`);
      expect(seen.length).toBeGreaterThan(0);
      expect(seen.filter((s) => !s.endsWith(" complete"))).toEqual([]);

      // The lease: the dead holder's term 0, then the survivor's terms; done by the survivor.
      const terms = (await check.keys(bucket, `${leases}/`)).filter((k) => k.includes("term-"));
      expect(terms.length).toBeGreaterThanOrEqual(2);
      const lastTerm = (await readJson(terms.at(-1)!))!;
      expect(Number(String(lastTerm.owner).split(":")[1])).toBe(other.proc.pid);
      const done = (await readJson(`${leases}/done.json`))!;
      expect(done).toMatchObject({ outcome: "succeeded" });
      expect(Number(String(done.owner).split(":")[1])).toBe(other.proc.pid);
      // Exactly once: the dead run never completed; the survivor completed it once.
      const complete = (p: ProxyProcess) =>
        logged(p, "scheduled snapshot complete").filter((l) => l.snapshot === snap).length;
      expect([complete(holder), complete(other)]).toEqual([0, 1]);
      await setJobs(other, []);
      await other.stop();
    },
    120_000,
  );

  test.skipIf(skip)(
    "an interval job on both: every occurrence that ran, ran once (one manifest, one done.json, one completion logged)",
    async () => {
      const [a, b] = await Promise.all([start(s3!), start(s3!)]);
      const job = {
        name: "small",
        query: "SELECT g, 'row ' || g AS label FROM generate_series(1, 200) g",
        target: `s3://${bucket}/small`,
        options: { format: "csv" },
        user: "postgres",
        database: DB,
        // The lease term as in the test above, and for the same reason: a run that outlasts a third of
        // the term is renewed, and a renewal through moto that outlasts the other two thirds lets the
        // other proxy take a live holder's occurrence over (both may then complete it). At 3 s that
        // took a first run over 1 s (0.9 s at load 10) and a renewal over 2 s (over 3 s at load 20).
        // The proxy that lost an occurrence waits out the holder's term and skips the job's
        // occurrences meanwhile (no overlapping runs of a job): 6 s apart, every other occurrence
        // is still contested, as 2 s apart with a 3 s term were.
        every: "6s",
        leaseTerm: "10s",
        retries: 0,
      };
      await Promise.all([a, b].map((p) => setJobs(p, [job])));
      const doneKeys = async () =>
        (await check.keys(bucket, "small/_leases/")).filter((k) => k.endsWith("/done.json"));
      await waitUntil(
        "four occurrences done",
        async () => ((await doneKeys()).length >= 4 ? true : null),
        60_000,
      );
      // The lease was contested: a proxy waited on the other's, then left it the occurrence.
      const contested = (await Promise.all([a, b].map((p) => runs(p, "small"))))
        .flat()
        .filter((r) => r.state === "waiting" || r.error === "another proxy ran this occurrence");
      expect(contested.length).toBeGreaterThan(0);
      // Removing the job (a reload) stops it; a run going on finishes first.
      await Promise.all([a, b].map((p) => setJobs(p, [])));
      // done.json is written just before the run logs its end: wait for both.
      const ended = (snap: string) =>
        [a, b].some((p) =>
          ["scheduled snapshot complete", "scheduled snapshot failed"].some((m) =>
            logged(p, m).some((l) => l.snapshot === snap),
          ),
        );
      await waitUntil("every snapshot begun to be done", async () => {
        const k = await check.keys(bucket, "small/");
        const begun = new Set(k.map((x) => x.split("/")[1]!).filter((d) => d.startsWith("snapshot=")));
        return [...begun].every((d) => k.includes(`small/_leases/${d}/done.json`) && ended(d)) ? true : null;
      });
      const keys = await check.keys(bucket, "small/");
      expect(await check.uploads(bucket, "small/")).toEqual([]);
      const snaps = [...new Set(keys.map((k) => k.split("/")[1]!).filter((d) => d.startsWith("snapshot=")))];
      expect(snaps.length).toBeGreaterThanOrEqual(4);
      const completions = [
        ...logged(a, "scheduled snapshot complete"),
        ...logged(b, "scheduled snapshot complete"),
      ];
      for (const s of snaps) {
        const inSnap = keys.filter((k) => k.startsWith(`small/${s}/`));
        expect(
          inSnap.filter((k) => k.endsWith("-manifest.json")),
          s,
        ).toHaveLength(1);
        expect(
          inSnap.filter((k) => k.endsWith("-INCOMPLETE")),
          s,
        ).toEqual([]);
        expect(keys, s).toContain(`small/_leases/${s}/done.json`);
        expect(
          completions.filter((l) => l.snapshot === s),
          s,
        ).toHaveLength(1);
      }
      // Both proxies ran some or waited for the other's: neither ran one the other had run.
      expect(completions).toHaveLength(snaps.length);
      const latest = (await readJson("small/latest.json"))!;
      expect(snaps).toContain(latest.snapshot);
      await a.stop();
      await b.stop();
    },
    120_000,
  );
});

test("SIGHUP reloads jobs: added ones run, removed ones go, a changed schedule applies next, an unchanged job stays suspended, invalid jobs change nothing", async () => {
  const s3 = motoAccess();
  const check = new S3Check(s3);
  const bucket = await check.bucket("procs-reload");
  const p = await start(s3);
  const job = (name: string, over: Record<string, unknown> = {}) => ({
    name,
    query: "SELECT 1 AS one",
    target: `s3://${bucket}/${name}`,
    options: { format: "csv" },
    user: "postgres",
    database: DB,
    every: "1h",
    ...over,
  });
  type JobRow = { job: string; schedule: string; next_run: string | null; suspended: string };
  const jobs = async () =>
    (await consoleQuery<JobRow>(p, "SHOW COPY_TO_S3 JOBS")).sort((x, y) => (x.job < y.job ? -1 : 1));
  const nextHour = () => new Date(Math.ceil((Date.now() + 1) / 3_600_000) * 3_600_000).toISOString();

  // Started without jobs: a reload adds them.
  expect(await jobs()).toEqual([]);
  await setJobs(p, [job("kept"), job("gone")]);
  expect((await jobs()).map((j) => j.job)).toEqual(["gone", "kept"]);
  await consoleQuery(p, "SUSPEND COPY_TO_S3 JOB kept");

  await setJobs(p, [job("kept"), job("fresh", { every: "1s" })]);
  const fresh = await waitUntil(
    "the added job to run",
    async () => (await runs(p, "fresh")).find((r) => r.state === "succeeded"),
    30_000,
  );
  expect((await check.keys(bucket, `fresh/${fresh.snapshot}/`)).some((k) => k.endsWith(".csv"))).toBe(true);
  let now = await jobs();
  expect(now.map((j) => [j.job, j.suspended])).toEqual([
    ["fresh", "false"],
    ["kept", "true"],
  ]);
  await expect(consoleQuery(p, "RUN COPY_TO_S3 JOB gone")).rejects.toMatchObject({ code: "42704" });

  // A changed schedule: the next occurrence is the new schedule's.
  await setJobs(p, [job("kept"), job("fresh", { every: "1h" })]);
  now = await jobs();
  expect(now.find((j) => j.job === "fresh")).toMatchObject({ schedule: "every 3600s", next_run: nextHour() });
  expect(now.find((j) => j.job === "kept")).toMatchObject({ suspended: "true" });

  // Invalid jobs: an error logged, the running jobs untouched.
  await setJobs(p, [job("kept", { cron: "not a cron", every: undefined })]);
  expect(p.output()).toContain("the new jobs are invalid; the running jobs are kept");
  expect((await jobs()).map((j) => [j.job, j.schedule, j.suspended])).toEqual([
    ["fresh", "every 3600s", "false"],
    ["kept", "every 3600s", "true"],
  ]);
  // A changed job starts again: its suspension is lifted.
  await setJobs(p, [job("kept", { every: "2h" }), job("fresh", { every: "1h" })]);
  expect((await jobs()).find((j) => j.job === "kept")).toMatchObject({ suspended: "false" });
  await p.stop();
}, 120_000);
