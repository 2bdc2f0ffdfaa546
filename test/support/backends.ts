// What the suite's PostgreSQL backends are doing, seen from a direct connection in pg_stat_activity.
// Tests that cancel or interrupt a running statement wait here for it to run first: PostgreSQL
// drops a cancel that arrives while the backend still reads its query (src/backend/tcop/postgres.c,
// ProcessInterrupts: "If we are reading a command from the client, just ignore the cancel
// request"), and a fixed sleep before the cancel is too short on a loaded machine. Every test file
// shares the one server, so a statement is found by a marker in its text unique to the test.
import type pg from "pg";
import { waitUntil } from "./export-checks.js";

/** How many backends (other than `direct`'s) wait in `waitEvent` running a statement that contains `marker`. */
export async function backendsWaiting(
  direct: pg.Client,
  marker: string,
  waitEvent = "PgSleep",
): Promise<number> {
  const r = await direct.query(
    "select count(*)::int as n from pg_stat_activity where wait_event = $1 and position($2 in query) > 0 and pid <> pg_backend_pid()",
    [waitEvent, marker],
  );
  return r.rows[0].n as number;
}

/** Waits until `n` backends are inside pg_sleep (or `waitEvent`) for a statement containing `marker`. */
export async function untilWaiting(
  direct: pg.Client,
  marker: string,
  n = 1,
  waitEvent = "PgSleep",
): Promise<void> {
  await waitUntil(
    `${n} backend${n === 1 ? "" : "s"} in ${waitEvent} running "${marker}"`,
    async () => (await backendsWaiting(direct, marker, waitEvent)) === n,
  );
}
