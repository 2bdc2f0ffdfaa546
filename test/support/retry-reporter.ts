// A vitest reporter that makes flakes visible: under CI (vitest.config.ts) a failing test is run
// once more, and vitest's default reporter shows a test that then passed only when it happens to
// be slow or its file failed. This one ends the run with every test that passed only on a retry,
// with what its failed attempt said, and writes the same list to .tmp/vitest-retried.json for
// .ci/run's closing lines. A retried test does not fail the run (docs/decisions.md, "Flakes,
// session 10"): it is a flake to fix, seen, not hidden.
import { mkdirSync, writeFileSync } from "node:fs";
import { join, relative } from "node:path";
import type { Reporter, TestModule, Vitest } from "vitest/node";

export interface RetriedTest {
  file: string;
  name: string;
  /** Failed attempts before the one that passed. */
  retries: number;
  /** The first line of each failed attempt's error. */
  errors: string[];
}

/** Tests that passed after at least one failed attempt (vitest's own `diagnostic().flaky`). */
export function retriedTests(modules: ReadonlyArray<TestModule>, root: string): RetriedTest[] {
  const out: RetriedTest[] = [];
  for (const m of modules) {
    for (const t of m.children.allTests()) {
      const d = t.diagnostic();
      if (d === undefined || !d.flaky) continue;
      out.push({
        file: relative(root, m.moduleId),
        name: t.fullName,
        retries: d.retryCount,
        errors: (t.result().errors ?? []).map((e) => (e.message ?? String(e)).split("\n")[0]!),
      });
    }
  }
  return out;
}

export default class RetryReporter implements Reporter {
  private ctx!: Vitest;

  onInit(ctx: Vitest): void {
    this.ctx = ctx;
  }

  onTestRunEnd(modules: ReadonlyArray<TestModule>): void {
    const root = this.ctx.config.root;
    const retried = retriedTests(modules, root);
    const dir = join(root, ".tmp");
    mkdirSync(dir, { recursive: true });
    writeFileSync(join(dir, "vitest-retried.json"), `${JSON.stringify(retried, null, 2)}\n`);
    if (retried.length === 0) return;
    const log = (s: string): void => this.ctx.logger.log(s);
    log("");
    log(`Passed only on a retry (${retried.length}): flakes, each to be fixed`);
    for (const r of retried) {
      log(`  ${r.file} > ${r.name} (retry x${r.retries})`);
      for (const e of r.errors) log(`      first attempt: ${e}`);
    }
  }
}
