// The scheduler on a clock the test moves by hand: when runs start, that one job never overlaps
// itself, retries wait their backoff, N failed runs suspend a job until RESUME, and "run now".
import { describe, expect, test } from "vitest";
import { ConfigError } from "../../src/config.js";
import { initParser } from "../../src/copy/sql-tokens.js";
import { createLogger } from "../../src/log.js";
import { ManualClock } from "../../src/schedule/clock.js";
import { parseConsole } from "../../src/schedule/console.js";
import { copyStatement, type JobSpec, parseJobs } from "../../src/schedule/jobs.js";
import { nextOccurrence, snapshotName } from "../../src/schedule/next-run.js";
import type {
  OccurrenceLeases,
  SnapshotPublisher,
  SnapshotRunner,
} from "../../src/schedule/occurrence-run.js";
import { type SnapshotDir, snapshotsToPrune } from "../../src/schedule/publisher.js";
import { CappedRunSlots } from "../../src/schedule/run-slots.js";
import { Scheduler } from "../../src/schedule/scheduler.js";

const T0 = Date.parse("2026-12-02T09:59:30Z");
const log = createLogger("silent");
/** Lets promise callbacks run (no time passes on any clock). */
const settle = async (): Promise<void> => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

function job(over: Partial<JobSpec> = {}): JobSpec {
  return {
    name: "orders",
    source: "orders_mv",
    target: "s3://b/exports/orders",
    options: "FORMAT 'parquet'",
    awsConnection: undefined,
    user: "exporter",
    operators: [],
    password: undefined,
    database: "materialize",
    schedule: { kind: "every", ms: 60_000 },
    retries: 0,
    backoffMs: 10_000,
    suspendAfter: 3,
    keep: undefined,
    maxAgeMs: undefined,
    ...over,
  };
}

class FakeRunner implements SnapshotRunner {
  calls: Array<{ prefix: string; at: number }> = [];
  pending: Array<{ resolve: (r: { rows: number }) => void; reject: (e: Error) => void }> = [];
  constructor(private readonly clock: ManualClock) {}
  run(_job: JobSpec, prefix: string, signal?: AbortSignal): Promise<{ rows: number }> {
    this.calls.push({ prefix, at: this.clock.now() });
    return new Promise((resolve, reject) => {
      const p = { resolve, reject };
      this.pending.push(p);
      signal?.addEventListener("abort", () => {
        this.pending.splice(this.pending.indexOf(p), 1);
        reject(signal.reason);
      });
    });
  }
  succeed(rows = 7): void {
    this.pending.shift()!.resolve({ rows });
  }
  fail(message = "S3 error"): void {
    this.pending.shift()!.reject(new Error(message));
  }
}

const publisher = (): SnapshotPublisher & { published: string[] } => {
  const published: string[] = [];
  return {
    published,
    publish: async (_j, s) => {
      published.push(s);
    },
    prune: async () => [],
  };
};

function setup(spec: JobSpec) {
  const clock = new ManualClock(T0);
  const runner = new FakeRunner(clock);
  const pub = publisher();
  const s = new Scheduler([spec], { clock, runner, publisher: pub, log });
  s.start();
  return { clock, runner, pub, s };
}

describe("scheduler", () => {
  test("a run starts at its occurrence, into its own snapshot= prefix, and latest moves after it completes", async () => {
    const { clock, runner, pub, s } = setup(job());
    expect(s.status()[0]!.nextRun).toBe(Date.parse("2026-12-02T10:00:00Z"));
    clock.advance(29_999);
    expect(runner.calls).toHaveLength(0);
    clock.advance(1);
    expect(runner.calls).toEqual([
      {
        prefix: "s3://b/exports/orders/snapshot=2026-12-02T10:00:00Z",
        at: Date.parse("2026-12-02T10:00:00Z"),
      },
    ]);
    await settle();
    expect(pub.published).toEqual([]);
    runner.succeed(42);
    await settle();
    expect(pub.published).toEqual(["snapshot=2026-12-02T10:00:00Z"]);
    expect(s.history()[0]).toMatchObject({ state: "succeeded", rows: 42, attempts: 1, trigger: "schedule" });
  });

  test("one job never overlaps itself: an occurrence due while the last run is still going is skipped", async () => {
    const { clock, runner, s } = setup(job());
    clock.advance(30_000 + 60_000 * 2);
    expect(runner.calls).toHaveLength(1);
    const states = s.history().map((r) => [r.snapshot, r.state]);
    expect(states).toContainEqual(["snapshot=2026-12-02T10:01:00Z", "skipped"]);
    expect(states).toContainEqual(["snapshot=2026-12-02T10:02:00Z", "skipped"]);
    runner.succeed();
    await settle();
    clock.advance(60_000);
    expect(runner.calls.map((c) => c.prefix.split("/").at(-1))).toEqual([
      "snapshot=2026-12-02T10:00:00Z",
      "snapshot=2026-12-02T10:03:00Z",
    ]);
  });

  test("retries wait backoff × 2^(n-1) and reuse the occurrence's prefix", async () => {
    const { clock, runner, pub, s } = setup(
      job({ retries: 2, backoffMs: 10_000, schedule: { kind: "every", ms: 3_600_000 } }),
    );
    clock.advance(Date.parse("2026-12-02T10:00:00Z") - T0);
    runner.fail();
    await settle();
    expect(s.history()[0]!.state).toBe("retrying");
    clock.advance(9_999);
    await settle();
    expect(runner.calls).toHaveLength(1);
    clock.advance(1);
    await settle();
    expect(runner.calls).toHaveLength(2);
    runner.fail();
    await settle();
    clock.advance(19_999);
    await settle();
    expect(runner.calls).toHaveLength(2);
    clock.advance(1);
    await settle();
    expect(runner.calls).toHaveLength(3);
    expect(new Set(runner.calls.map((c) => c.prefix)).size).toBe(1);
    runner.succeed();
    await settle();
    expect(s.history()[0]).toMatchObject({ state: "succeeded", attempts: 3 });
    expect(pub.published).toHaveLength(1);
  });

  test("N failed runs in a row suspend the job (no timer left), RESUME starts it again from now", async () => {
    const { clock, runner, pub, s } = setup(job({ suspendAfter: 2 }));
    clock.advance(30_000);
    runner.fail("boom 1");
    await settle();
    expect(s.status()[0]).toMatchObject({ suspended: false, consecutiveFailures: 1, lastError: "boom 1" });
    clock.advance(60_000);
    runner.fail("boom 2");
    await settle();
    expect(s.status()[0]).toMatchObject({ suspended: true, consecutiveFailures: 2, nextRun: undefined });
    expect(clock.pending).toBe(0);
    clock.advance(10 * 60_000);
    expect(runner.calls).toHaveLength(2);
    expect(pub.published).toEqual([]);
    s.resume("orders");
    expect(s.status()[0]).toMatchObject({ suspended: false, consecutiveFailures: 0 });
    clock.advance(60_000);
    expect(runner.calls).toHaveLength(3);
    runner.succeed();
    await settle();
    expect(s.status()[0]!.lastError).toBeUndefined();
  });

  test("run now starts at once, outside the schedule, and is refused while a run is going", async () => {
    const { clock, runner, s } = setup(job({ schedule: { kind: "every", ms: 86_400_000 } }));
    clock.advance(1_500);
    const r = s.runNow("orders");
    expect(r).toMatchObject({ trigger: "manual", snapshot: "snapshot=2026-12-02T09:59:31Z" });
    expect(runner.calls).toHaveLength(1);
    expect(() => s.runNow("orders")).toThrow(expect.objectContaining({ code: "55006" }));
    expect(() => s.runNow("nope")).toThrow(expect.objectContaining({ code: "42704" }));
    runner.succeed();
    await settle();
    expect(s.history()[0]!.state).toBe("succeeded");
  });

  test("stop cancels a running export and waits for it", async () => {
    const clock = new ManualClock(T0);
    let seen: AbortSignal | undefined;
    const runner: SnapshotRunner = {
      run: (_j, _p, signal) =>
        new Promise((_res, rej) => {
          seen = signal;
          signal.addEventListener("abort", () => rej(signal.reason));
        }),
    };
    const s = new Scheduler([job()], { clock, runner, publisher: publisher(), log });
    s.start();
    clock.advance(30_000);
    await s.stop();
    expect(seen?.aborted).toBe(true);
    expect(s.history()[0]).toMatchObject({ state: "failed" });
    expect(clock.pending).toBe(0);
  });

  test("a reload: added jobs are scheduled from now, a removed job's running run finishes and nothing new starts, a changed schedule applies next, an unchanged job keeps its suspension", async () => {
    const clock = new ManualClock(T0);
    const runner = new FakeRunner(clock);
    const pub = publisher();
    const kept = job({ name: "kept", target: "s3://b/exports/kept" });
    const s = new Scheduler([job(), kept], { clock, runner, publisher: pub, log });
    s.start();
    s.suspend("kept");
    clock.advance(30_000); // 10:00:00: "orders" runs
    expect(runner.calls.map((c) => c.prefix)).toEqual([
      "s3://b/exports/orders/snapshot=2026-12-02T10:00:00Z",
    ]);

    const added = job({
      name: "hourly",
      target: "s3://b/exports/hourly",
      schedule: { kind: "every", ms: 3_600_000 },
    });
    expect(s.reconfigure([kept, added])).toEqual({ added: ["hourly"], changed: [], removed: ["orders"] });
    expect(s.status().map((j) => [j.name, j.suspended, j.nextRun])).toEqual([
      ["kept", true, undefined],
      ["hourly", false, Date.parse("2026-12-02T11:00:00Z")],
    ]);
    expect(() => s.runNow("orders")).toThrow(expect.objectContaining({ code: "42704" }));
    // The removed job's run completes (latest.json moves), and it never runs again.
    runner.succeed();
    await settle();
    expect(pub.published).toEqual(["snapshot=2026-12-02T10:00:00Z"]);
    clock.advance(60 * 60_000);
    expect(runner.calls.map((c) => c.prefix.split("/")[4])).toEqual(["orders", "hourly"]);
    runner.succeed();
    await settle();

    // A changed schedule applies from the next occurrence; a changed job's suspension is lifted.
    const changes = s.reconfigure([
      { ...kept, schedule: { kind: "every", ms: 600_000 } },
      { ...added, schedule: { kind: "every", ms: 86_400_000 } },
    ]);
    expect(changes).toEqual({ added: [], changed: ["kept", "hourly"], removed: [] });
    expect(s.status().map((j) => [j.name, j.suspended, new Date(j.nextRun!).toISOString()])).toEqual([
      ["kept", false, "2026-12-02T11:10:00.000Z"],
      ["hourly", false, "2026-12-03T00:00:00.000Z"],
    ]);
    // The same jobs again: nothing changes, history stays.
    s.suspend("kept");
    expect(
      s.reconfigure([
        { ...kept, schedule: { kind: "every", ms: 600_000 } },
        { ...added, schedule: { kind: "every", ms: 86_400_000 } },
      ]),
    ).toEqual({ added: [], changed: [], removed: [] });
    expect(s.status()[0]).toMatchObject({ name: "kept", suspended: true });
    expect(s.history("hourly")).toHaveLength(1);
    await s.stop();
  });
});

describe("taking over from a dead proxy", () => {
  test("a taken-over occurrence whose snapshot is already complete is published and marked done, not run again", async () => {
    const clock = new ManualClock(T0);
    const runner = new FakeRunner(clock);
    const pub = publisher();
    const finished: string[] = [];
    const leases: OccurrenceLeases = {
      acquire: async () => ({
        lost: new AbortController().signal,
        complete: true,
        finish: async (outcome) => void finished.push(outcome),
      }),
    };
    const s = new Scheduler([job()], { clock, runner, publisher: pub, leases, log });
    s.start();
    clock.advance(30_000);
    await settle();
    expect(runner.calls).toEqual([]);
    expect(pub.published).toEqual(["snapshot=2026-12-02T10:00:00Z"]);
    expect(finished).toEqual(["succeeded"]);
    expect(s.history()[0]).toMatchObject({ state: "succeeded", attempts: 0 });
    await s.stop();
  });
});

describe("runs under the export caps", () => {
  test("jobs of one user firing together queue for the per-user cap instead of being refused; other users and a cancelled wait go on", async () => {
    const clock = new ManualClock(T0);
    const runner = new FakeRunner(clock);
    const specs = ["a", "b", "c"].map((n) => job({ name: n, target: `s3://b/${n}` }));
    specs.push(job({ name: "d", target: "s3://b/d", user: "other" }));
    const s = new Scheduler(specs, {
      clock,
      runner,
      publisher: publisher(),
      slots: new CappedRunSlots(4, 2),
      log,
    });
    s.start();
    clock.advance(30_000);
    await settle();
    const jobsRun = () => runner.calls.map((c) => c.prefix.split("/")[3]);
    expect(jobsRun()).toEqual(["a", "b", "d"]);
    expect(s.history("c")[0]).toMatchObject({ state: "queued", attempts: 0 });
    runner.succeed(); // a
    await settle();
    expect(jobsRun()).toEqual(["a", "b", "d", "c"]);
    expect(s.history("c")[0]).toMatchObject({ state: "running", attempts: 1 });
    for (let i = 0; i < 3; i++) runner.succeed();
    await settle();
    expect(
      s
        .history()
        .map((r) => [r.job, r.state, r.attempts])
        .sort(),
    ).toEqual([
      ["a", "succeeded", 1],
      ["b", "succeeded", 1],
      ["c", "succeeded", 1],
      ["d", "succeeded", 1],
    ]);
    // A queued run that is cancelled (shutdown) leaves the queue and frees nothing it did not take.
    clock.advance(60_000);
    await settle();
    expect(s.history("c")[0]).toMatchObject({ state: "queued" });
    await s.stop();
    expect(s.history("c")[0]).toMatchObject({ state: "failed", attempts: 0 });
  });

  test("the slots: first come first served among those that fit, the total cap too", async () => {
    const slots = new CappedRunSlots(2, 1);
    const never = new AbortController().signal;
    const order: string[] = [];
    const relA = await slots.acquire("u", never);
    const waitU = slots.acquire("u", never).then((r) => {
      order.push("u2");
      return r;
    });
    const relV = await slots.acquire("v", never);
    const waitW = slots.acquire("w", never).then((r) => {
      order.push("w");
      return r;
    });
    await settle();
    expect(order).toEqual([]);
    relV();
    await settle();
    expect(order).toEqual(["w"]);
    relA();
    relA(); // twice: counted once
    await settle();
    expect(order).toEqual(["w", "u2"]);
    (await waitU)();
    (await waitW)();
  });
});

describe("occurrences", () => {
  test("cron in a time zone follows its daylight saving time; intervals are anchored at the epoch", () => {
    const berlin9 = { kind: "cron" as const, pattern: "0 9 * * *", timezone: "Europe/Berlin" };
    expect(new Date(nextOccurrence(berlin9, Date.parse("2026-12-02T12:00:00Z"))!).toISOString()).toBe(
      "2026-12-03T08:00:00.000Z",
    );
    expect(new Date(nextOccurrence(berlin9, Date.parse("2026-07-02T12:00:00Z"))!).toISOString()).toBe(
      "2026-07-03T07:00:00.000Z",
    );
    // Two replicas started at different moments agree on the instants.
    const every15 = { kind: "every" as const, ms: 15 * 60_000 };
    expect(nextOccurrence(every15, Date.parse("2026-12-02T10:07:11Z"))).toBe(
      Date.parse("2026-12-02T10:15:00Z"),
    );
    expect(nextOccurrence(every15, Date.parse("2026-12-02T10:14:59Z"))).toBe(
      Date.parse("2026-12-02T10:15:00Z"),
    );
    expect(snapshotName(Date.parse("2026-12-02T10:15:00Z"))).toBe("snapshot=2026-12-02T10:15:00Z");
  });
});

describe("retention", () => {
  const dir = (iso: string, complete = true): SnapshotDir => ({
    name: `snapshot=${iso}`,
    at: Date.parse(iso),
    complete,
    dataKeys: [],
    metaKeys: [],
    manifest: undefined,
    redshift: undefined,
  });
  const dirs = [
    dir("2026-12-01T00:00:00Z"),
    dir("2026-12-02T00:00:00Z"),
    dir("2026-12-03T00:00:00Z", false), // unfinished: running, or a crash's leftovers
    dir("2026-12-04T00:00:00Z"),
    dir("2026-12-05T00:00:00Z"),
  ];
  const names = (ds: SnapshotDir[]) => ds.map((d) => d.name.slice(9, 19));
  const now = Date.parse("2026-12-05T12:00:00Z");

  test("keep N newest complete ones; never an unfinished one; nothing without a rule", () => {
    expect(names(snapshotsToPrune(dirs, { keep: 2, maxAgeMs: undefined }, [], now))).toEqual([
      "2026-12-01",
      "2026-12-02",
    ]);
    expect(snapshotsToPrune(dirs, { keep: undefined, maxAgeMs: undefined }, [], now)).toEqual([]);
  });

  test("younger than a duration; the newest (latest's) and a protected one always stay", () => {
    expect(names(snapshotsToPrune(dirs, { keep: undefined, maxAgeMs: 2 * 86_400_000 }, [], now))).toEqual([
      "2026-12-01",
      "2026-12-02",
    ]);
    expect(
      names(snapshotsToPrune(dirs, { keep: undefined, maxAgeMs: 1 }, ["snapshot=2026-12-02T00:00:00Z"], now)),
    ).toEqual(["2026-12-01", "2026-12-04"]);
  });
});

describe("jobs config and console statements", () => {
  const base = {
    name: "orders",
    view: "orders_mv",
    target: "s3://b/exports/orders/",
    options: { format: "csv", header: true, "max file size": "64MB" },
    user: "exporter",
    every: "15m",
  };

  test("a job becomes an ordinary COPY statement the proxy's parser accepts", async () => {
    await initParser();
    const [j] = parseJobs([{ ...base, awsConnection: "prod", password: { env: "EXPORTER_PASSWORD" } }]);
    expect(copyStatement(j!, "s3://b/exports/orders/snapshot=2026-12-02T10:00:00Z")).toBe(
      `COPY orders_mv TO 's3://b/exports/orders/snapshot=2026-12-02T10:00:00Z' WITH (FORMAT 'csv', HEADER true, MAX FILE SIZE '64MB', AWS CONNECTION = "prod")`,
    );
    expect(j!.schedule).toEqual({ kind: "every", ms: 900_000 });
  });

  test("bad jobs fail at start with the reason", async () => {
    await initParser();
    const bad = (over: Record<string, unknown>, msg: RegExp) =>
      expect(() => parseJobs([{ ...base, ...over }])).toThrow(
        expect.objectContaining({ message: expect.stringMatching(msg) }),
      );
    bad({ query: "SELECT 1" }, /exactly one of "view" or "query"/);
    bad({ password: "hunter2" }, /never the password itself/);
    bad({ every: undefined, cron: "61 * * * *" }, /cron/);
    bad({ every: undefined, cron: "0 9 * * *", timezone: "Mars/Olympus" }, /unknown time zone/);
    bad({ options: { format: "xml" } }, /unknown FORMAT/);
    expect(() => parseJobs([base, base])).toThrow(ConfigError);
  });

  test("console statements", () => {
    expect(parseConsole("show copy_to_s3 jobs;")).toEqual({ console: "jobs" });
    expect(parseConsole("SHOW COPY_TO_S3 RUNS orders")).toEqual({ console: "runs", job: "orders" });
    expect(parseConsole(' RUN COPY_TO_S3 JOB "orders"')).toEqual({ console: "run", job: "orders" });
    expect(parseConsole("SHOW search_path")).toBeNull();
    expect(() => parseConsole("SHOW COPY_TO_S3 everything")).toThrow(
      expect.objectContaining({ code: "42601" }),
    );
  });
});
