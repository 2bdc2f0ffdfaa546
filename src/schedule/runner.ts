// A scheduled run is an ordinary COPY TO sent through this proxy's own listener, as the job's
// user: the upstream authenticates and authorises it like any client (any auth method pg speaks,
// TLS to the upstream as configured), and the export, its progress, cleanup and logging are the
// ones every COPY gets. Measured against driving the export driver on a hand-made upstream
// session: that needs its own startup and SCRAM/MD5 authentication code for the same result.
import pg from "pg";
import type { HostPort } from "../config.js";
import { PgError, SqlState } from "../errors.js";
import { copyStatement, type JobSpec, readSecret } from "./jobs.js";
import type { SnapshotRunner } from "./occurrence-run.js";

export class LoopbackRunner implements SnapshotRunner {
  constructor(
    /** Where this proxy listens (known once it does). */
    private readonly address: () => HostPort,
    private readonly env: NodeJS.ProcessEnv = process.env,
  ) {}

  async run(job: JobSpec, prefixUrl: string, signal: AbortSignal): Promise<{ rows: number }> {
    if (signal.aborted) throw PgError.from(signal.reason);
    const { host, port } = this.address();
    const client = new pg.Client({
      host: host === "0.0.0.0" || host === "" ? "127.0.0.1" : host === "::" ? "::1" : host,
      port,
      user: job.user,
      password: readSecret(job.password, this.env),
      database: job.database,
      application_name: `copy-to-s3-proxy job ${job.name}`,
    });
    // A cancelled run closes its connection: the proxy aborts an export whose client leaves and
    // takes back everything it wrote (SPEC §2.2).
    const onAbort = (): void => void client.end().catch(() => {});
    client.on("error", () => {}); // surfaced through the query's rejection
    try {
      await client.connect();
      signal.addEventListener("abort", onAbort, { once: true });
      const r = await client.query(copyStatement(job, prefixUrl));
      return { rows: r.rowCount ?? 0 };
    } catch (e) {
      if (signal.aborted) throw PgError.from(signal.reason);
      const d = e as { code?: string; message?: string; detail?: string; hint?: string };
      throw new PgError(
        typeof d.code === "string" && d.code.length === 5 ? d.code : SqlState.connectionFailure,
        d.message ?? String(e),
        {
          detail: d.detail,
          hint: d.hint,
        },
      );
    } finally {
      signal.removeEventListener("abort", onAbort);
      await client.end().catch(() => {});
    }
  }
}
