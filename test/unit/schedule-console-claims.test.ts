// The schedule console's `claims` runs on every Query the relay forwards that does not start with
// COPY: it must say yes exactly where parseConsole would take the statement (return it or refuse
// it), and no to everything else, the ordinary SELECTs and SETs first of all.
import { describe, expect, test } from "vitest";
import type { CopyHook } from "../../src/proxy/copy-hook.js";
import { parseConsole, withScheduleConsole } from "../../src/schedule/console.js";

const hook = withScheduleConsole({ recognize: () => null } as unknown as CopyHook, null, () => []);

function parsed(sql: string): boolean {
  try {
    return parseConsole(sql) !== null;
  } catch {
    return true; // refused with a syntax error: still the console's statement
  }
}

describe("schedule console claims", () => {
  const statements = [
    "SELECT abalance FROM pgbench_accounts WHERE aid = 1;",
    "select 1",
    "SET search_path TO x",
    "show copy_to_s3 jobs",
    "  SHOW COPY_TO_S3 RUNS nightly;",
    "\n\tShow copy_to_s3 whatever",
    "show search_path",
    "RUN COPY_TO_S3 JOB nightly",
    "run copy_to_s3",
    "RESUME copy_to_s3 job x",
    "resume other",
    "SUSPEND COPY_TO_S3 JOB x",
    "suspendcopy_to_s3",
    "ROLLBACK",
    "RESET ALL",
    "SAVEPOINT a",
    "s",
    "r",
    "",
  ];
  for (const sql of statements) {
    test(JSON.stringify(sql), () => {
      expect(hook.claims!(Buffer.from(sql))).toBe(parsed(sql));
    });
  }
});
