// Picks the snapshot source by upstream kind (SPEC §5): PostgreSQL's REPEATABLE READ transaction
// or Materialize's SUBSCRIBE. The kind comes from the session's `mz_version` ParameterStatus, the
// `--upstream-kind` override, or (when those leave it open) one `SELECT mz_version()`.
import type { UpstreamKind } from "../../config.js";
import type { CopySource } from "../statement.js";
import type { UpstreamClient } from "../upstream-client.js";
import { resolveUpstreamKind } from "../upstream-kind.js";
import { MaterializeSnapshot, type MaterializeSnapshotOptions } from "./materialize-snapshot.js";
import { PostgresSnapshot } from "./postgres-snapshot.js";
import type { OpenedSnapshot, RowSink, SnapshotSource } from "./snapshot-source.js";

export function snapshotFor(
  client: UpstreamClient,
  source: CopySource,
  override: UpstreamKind,
  parameters: ReadonlyMap<string, string>,
  materialize: MaterializeSnapshotOptions = {},
  clientTransaction = false,
): SnapshotSource {
  return new KindSnapshot(client, source, override, parameters, materialize, clientTransaction);
}

class KindSnapshot implements SnapshotSource {
  private inner: SnapshotSource | null = null;

  constructor(
    private readonly client: UpstreamClient,
    private readonly source: CopySource,
    private readonly override: UpstreamKind,
    private readonly parameters: ReadonlyMap<string, string>,
    private readonly materialize: MaterializeSnapshotOptions,
    /** Only ever true on PostgreSQL (client-transaction.ts refuses the rest). */
    private readonly clientTransaction: boolean,
  ) {}

  async open(opts: { typeInfo: boolean }, signal: AbortSignal): Promise<OpenedSnapshot> {
    const kind = await resolveUpstreamKind(this.override, this.parameters, async () => {
      const r = await this.client.query("SELECT mz_version()", signal);
      return typeof r.rows[0]?.[0] === "string";
    });
    this.inner =
      kind === "materialize"
        ? new MaterializeSnapshot(this.client, this.source, this.materialize)
        : new PostgresSnapshot(this.client, this.source, this.clientTransaction);
    return this.inner.open(opts, signal);
  }

  get rowsAsSent(): boolean {
    return this.inner?.rowsAsSent === true;
  }

  read(resultFormats: readonly number[], sink: RowSink, signal: AbortSignal): Promise<void> {
    if (this.inner === null) throw new Error("snapshot read before open");
    return this.inner.read(resultFormats, sink, signal);
  }

  async end(): Promise<void> {
    await this.inner?.end?.();
  }

  async abandon(): Promise<void> {
    await this.inner?.abandon();
  }
}
