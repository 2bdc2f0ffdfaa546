// The export driver (SPEC §2): plan → preflight → snapshot read → encode → upload → commit, and on
// any failure or cancel, take back everything this export wrote (SPEC §2.2).
import { randomUUID } from "node:crypto";
import type { Config } from "../config.js";
import type { EncoderSpec } from "../encoders/create-encoder.js";
import type { ColumnInfo } from "../encoders/types.js";
import { EncoderThread } from "../encoders/worker/encoder-thread.js";
import { PgError } from "../errors.js";
import type { ExportContext } from "../proxy/copy-hook.js";
import type { AwsConnection } from "./aws-connection.js";
import { explainAwsSetup } from "./aws-setup-errors.js";
import { checkTransactionAllowed, failClientTransaction } from "./client-transaction.js";
import { authorizeConnection } from "./connection-authorization.js";
import type { ConnectionRegistry } from "./connections.js";
import { createStore } from "./create-store.js";
import { describeError, takeBackExport, withLeftBehind } from "./export-cleanup.js";
import { encoderSpec } from "./export-encoder-spec.js";
import { notEmpty, rowTooBig } from "./export-errors.js";
import type { ExportLimiter } from "./export-limiter.js";
import { ExportLog } from "./export-log.js";
import { planExport } from "./export-plan.js";
import { ProgressNotices } from "./export-progress.js";
import { resolveTarget } from "./export-target.js";
import { buildManifest, buildRedshiftManifest, metadataKeys } from "./manifest.js";
import { OutputBatches } from "./output-batches.js";
import { finalMessage } from "./progress-notice.js";
import { RowRelay } from "./row-relay.js";
import { Sentinel } from "./sentinel.js";
import { snapshotFor } from "./snapshot/choose-snapshot.js";
import { resolveAwsConnection } from "./snapshot/materialize-connections.js";
import type { OpenedSnapshot, SnapshotInfo, SnapshotSource } from "./snapshot/snapshot-source.js";
import type { CopyToStatement } from "./statement.js";
import { abortUploadsOf, type ObjectStore } from "./storage/object-store.js";
import { formatTargetUrl, type TargetUrl } from "./storage/target-url.js";
import type { WrittenFile } from "./upload-sink.js";
import { UpstreamClient } from "./upstream-client.js";
import { upstreamKindOf } from "./upstream-kind.js";

export interface ExportDeps {
  config: Config;
  connections: ConnectionRegistry;
  limiter: ExportLimiter;
}

const pad4 = (n: number): string => String(n).padStart(4, "0");

export async function runCopyExport(
  stmt: CopyToStatement,
  ctx: ExportContext,
  deps: ExportDeps,
): Promise<{ rows: number }> {
  if (ctx.inTransaction) checkTransactionAllowed(deps.config.upstreamKind, ctx.upstream.parameters);
  const client = new UpstreamClient(ctx.upstream, ctx.inTransaction ? "T" : "I");
  try {
    const release = await deps.limiter.acquire(ctx.signal, ctx.user);
    try {
      return await new Export(stmt, ctx, deps, client).run();
    } finally {
      release();
    }
  } catch (e) {
    // Like any statement failing in a transaction block (client-transaction.ts).
    if (ctx.inTransaction) await failClientTransaction(client);
    throw e;
  }
}

class Export {
  private readonly id = randomUUID();
  private readonly ac = new AbortController();
  private readonly signal: AbortSignal;
  private store: ObjectStore | null = null;
  /** Where the rows go: one upload sink per encoder thread (exports.encoderThreads). */
  private output: OutputBatches | null = null;
  /**
   * The export's encoder threads: batch 0's started before the preflight so it is up when rows
   * come, the others once the threads before them are congested (output-batches.ts).
   */
  private readonly encoders: EncoderThread[] = [];
  private encoderSpecOf: EncoderSpec | null = null;
  private readonly snapshot: SnapshotSource;
  private sentinel: Sentinel | null = null;
  private committed = false;
  private manifestWritten = false;
  /** Moves the snapshot's rows to the encoders, and counts them. */
  private relay: RowRelay | null = null;
  private readonly report: ExportLog;

  constructor(
    private readonly stmt: CopyToStatement,
    private readonly ctx: ExportContext,
    private readonly deps: ExportDeps,
    private readonly client: UpstreamClient,
  ) {
    // PostgreSQL or Materialize, by what the session learned at connect time (or the override).
    this.snapshot = snapshotFor(
      client,
      stmt.source,
      deps.config.upstreamKind,
      ctx.upstream.parameters,
      {},
      ctx.inTransaction,
    );
    // One signal for the whole pipeline: the session's (cancel, disconnect, shutdown) or our own
    // (an upload failing while rows are still being read).
    const onAbort = (): void => this.ac.abort(ctx.signal.reason);
    if (ctx.signal.aborted) onAbort();
    else ctx.signal.addEventListener("abort", onAbort, { once: true });
    this.signal = this.ac.signal;
    const { format, compression } = stmt.options;
    this.report = new ExportLog(ctx.log, {
      exportId: this.id,
      user: ctx.user,
      database: ctx.database,
      format,
      compression,
    });
  }

  private get rows(): number {
    return this.relay?.rows ?? 0;
  }

  private checkAborted(): void {
    if (this.signal.aborted) throw PgError.from(this.signal.reason);
  }

  async run(): Promise<{ rows: number }> {
    this.report.start();
    const maxRow = this.deps.config.exports.maxRowBytes;
    this.ctx.upstream.refuseLarger(maxRow, (_type, bytes) => this.ac.abort(rowTooBig(bytes, maxRow)));
    const progress = new ProgressNotices(
      this.deps.config.exports.progressIntervalMs,
      (message) => this.ctx.notice(message),
      () => ({
        rows: this.rows,
        bytes: this.output?.bytes ?? 0,
        files: this.output?.filesStarted ?? 0,
        filesDone: this.output?.filesDone ?? 0,
      }),
    );
    try {
      const target = await this.resolveTarget();
      this.report.setTarget(formatTargetUrl(target));
      const conn = await this.resolveConnection(target);
      const { columns, typeNames, snapshot } = await this.plan();
      this.store = this.openStore(target, conn);
      // Its start-up overlaps the preflight's round trips instead of following them.
      this.encoderSpecOf = encoderSpec(this.stmt.options, columns);
      this.startEncoder();
      this.report.phase("preflight");
      await this.preflight().catch((e: unknown) => {
        throw explainAwsSetup(e, conn);
      });
      this.sentinel!.startHeartbeat(this.deps.config.exports.sentinelRefreshMs, this.signal, this.id);
      this.report.phase("read");
      progress.enter("reading");
      await this.read();
      this.report.phase("upload");
      progress.enter("uploading");
      const files = await this.output!.finish();
      this.report.phase("commit");
      progress.enter("committing");
      await this.commit(target, files, columns, typeNames, snapshot);
      await this.endSnapshot();
      progress.stop();
      const where = formatTargetUrl(target);
      this.ctx.notice(
        finalMessage({
          rows: this.rows,
          files: files.length,
          bytes: files.reduce((n, f) => n + f.bytes, 0),
          target: where.endsWith("/") ? where : `${where}/`,
          manifest: this.store!.url(metadataKeys(this.id).manifest),
        }),
      );
      this.report.complete(this.totals());
      return { rows: this.rows };
    } catch (e) {
      // The reason the export stopped wins over whatever that stop caused upstream (57014 etc.),
      // unless it came after the commit point.
      const err = this.signal.aborted && !this.committed ? PgError.from(this.signal.reason) : PgError.from(e);
      this.ac.abort(err);
      let final = err;
      try {
        final = await this.cleanup(err);
      } catch (cleanupError) {
        // The client still gets its export's own error: the cleanup's is logged, and what it may
        // have left is said in the DETAIL (SPEC §2.2).
        final = this.cleanupThrew(err, cleanupError);
      } finally {
        // Also when the cleanup itself throws: the export has ended either way (exports_running).
        this.report.failed(final, this.totals());
      }
      throw final;
    } finally {
      progress.stop();
      void this.sentinel?.stopHeartbeat();
      for (const e of this.encoders) e.dispose();
    }
  }

  /**
   * Past the commit point: the export is done whatever happens here. Ending the snapshot's hold
   * (the savepoint in a client's transaction) can only fail with the upstream gone, and the
   * session ends then anyway.
   */
  private async endSnapshot(): Promise<void> {
    try {
      await this.snapshot.end?.();
    } catch (e) {
      this.ctx.log.warn(
        { exportId: this.id, err: PgError.from(e).message },
        "could not release the export's savepoint",
      );
    }
  }

  private totals(): { rows: number; bytes: number; files: number } {
    return { rows: this.rows, bytes: this.output?.bytes ?? 0, files: this.output?.filesDone ?? 0 };
  }

  private resolveTarget(): Promise<TargetUrl> {
    return resolveTarget(
      this.stmt.target,
      { client: this.client, params: this.ctx.params, signal: this.signal },
      this.id,
      this.deps.config.fileRoot,
    );
  }

  private plan(): Promise<OpenedSnapshot> {
    return planExport(this.stmt.options, {
      snapshot: this.snapshot,
      notice: (message, detail) => this.ctx.notice(message, detail),
      stallTimeoutMs: this.deps.config.exports.stallTimeoutMs,
      abort: (err) => this.ac.abort(err),
      signal: this.signal,
    });
  }

  /**
   * SPEC §6: a connection configured in the proxy, else (Materialize) a `CREATE CONNECTION … TO
   * AWS` object of that name; looked up before the snapshot's transaction starts.
   */
  private async resolveConnection(target: TargetUrl): Promise<AwsConnection | undefined> {
    if (target.scheme !== "s3") return undefined;
    const conn = await resolveAwsConnection(this.deps.connections, this.stmt.options.awsConnection, {
      materialize:
        upstreamKindOf(this.deps.config.upstreamKind, this.ctx.upstream.parameters) === "materialize",
      client: this.client,
      signal: this.signal,
    });
    await authorizeConnection(conn, this.client, this.signal);
    return conn;
  }

  private openStore(target: TargetUrl, conn: AwsConnection | undefined): ObjectStore {
    const e = this.deps.config.exports;
    return createStore(
      conn,
      target,
      {
        partSize: e.partSize,
        partsInFlight: e.partsInFlight,
        maxAttempts: e.s3MaxAttempts,
        retryMode: e.s3RetryMode,
        requestTimeoutMs: e.s3RequestTimeoutMs,
        // The part uploads are the export's work too: they yield to the relay as its encoders do.
        uploadNice: e.workerNice,
      },
      this.deps.config.fileRoot,
    );
  }

  private async preflight(): Promise<void> {
    const store = this.store!;
    // The whole prefix is listed anyway (for the count): look at a page of keys for a sentinel.
    // The delete probe (of a key of this export's own, which nobody else writes) goes out beside
    // the listing, one round trip instead of two; the listing's answer is still judged first, so a
    // prefix in use is refused as such whatever the probe says.
    const [listing, probe] = await Promise.allSettled([
      store.list("", this.signal, 1000),
      store.probeDelete(`mz-${this.id}-delete-probe`, this.signal),
    ]);
    if (listing.status === "rejected") throw listing.reason;
    if (listing.value.count > 0) throw notEmpty(store, listing.value, this.stmt.options.awsConnection);
    if (probe.status === "rejected") throw probe.reason;
    this.sentinel = new Sentinel(store, this.id, this.ctx.log);
    await this.sentinel.write(this.signal);
  }

  private startEncoder(): EncoderThread {
    const { workerNice, workerPolicy, maxEncodingThreads, encoderHost } = this.deps.config.exports;
    const t = new EncoderThread(this.encoderSpecOf!, {
      nice: workerNice,
      idle: workerPolicy === "idle",
      maxEncoding: maxEncodingThreads,
      host: encoderHost,
    });
    this.encoders.push(t);
    return t;
  }

  private async read(): Promise<void> {
    const opts = this.stmt.options;
    const ext = opts.format === "csv" ? (opts.compression === "gzip" ? "csv.gz" : "csv") : "parquet";
    // Rows are encoded in the export's own threads: this one only copies each read's rows there.
    const output = new OutputBatches(
      {
        first: this.encoders[0]!,
        more: () => this.startEncoder(),
        max: this.deps.config.exports.encoderThreads,
      },
      this.store!,
      { prefix: (batch) => `mz-${this.id}-batch-${pad4(batch)}-`, suffix: `.${ext}` },
      this.signal,
      this.deps.config.exports.filesCompleting,
      (err) => this.ac.abort(err),
    );
    this.output = output;
    this.relay = new RowRelay({
      snapshot: this.snapshot,
      output,
      channel: this.ctx.upstream,
      resultFormats: this.encoders[0]!.resultFormats,
      stallTimeoutMs: this.deps.config.exports.stallTimeoutMs,
      encodingTurns: this.deps.config.exports.maxEncodingThreads,
      abort: (err) => this.ac.abort(err),
      signal: this.signal,
      maxRowBytes: this.deps.config.exports.maxRowBytes,
    });
    await this.relay.run();
    this.report.mark("firstRow", this.relay.firstRowAt);
    this.report.mark("lastRow", this.relay.lastRowAt);
    this.checkAborted();
    await output.finishEncoding();
    this.checkAborted();
  }

  private async commit(
    target: TargetUrl,
    files: WrittenFile[],
    columns: ColumnInfo[],
    typeNames: string[],
    snapshot: SnapshotInfo,
  ): Promise<void> {
    const store = this.store!;
    const opts = this.stmt.options;
    const urls = files.map((f) => ({ ...f, url: store.url(f.key) }));
    const meta = metadataKeys(this.id);
    const manifest = buildManifest({
      exportId: this.id,
      target: formatTargetUrl(target),
      format: opts.format,
      compression: opts.compression,
      csv:
        opts.format === "csv"
          ? { ...opts, encoding: this.ctx.upstream.parameters.get("client_encoding") }
          : undefined,
      snapshot,
      columns: columns.map((c, i) => ({ name: c.name, type: typeNames[i] ?? "unknown" })),
      files: urls,
      rows: this.rows,
    });
    this.checkAborted();
    this.manifestWritten = true; // may exist from here on, even if the PutObject fails
    // A successful export leaves no upload behind either: one whose CreateMultipartUpload the
    // server executed while its answer was lost is found only by listing.
    const steps = await Promise.allSettled([
      store.put(meta.redshift, buildRedshiftManifest(urls), this.signal),
      store.put(meta.manifest, manifest, this.signal),
      abortUploadsOf(store, `mz-${this.id}-`),
    ]);
    for (const r of steps) if (r.status === "rejected") throw r.reason;
    // The PutObjects ran their attempts out (an aborted request is not one that did not happen): a
    // cancel that came meanwhile still wins, before the commit point.
    this.checkAborted();
    // The commit point: with every file and the manifest in place the export is done, and a
    // cancel from now on changes nothing (removing the sentinel is the "finished" event).
    this.committed = true;
    await this.sentinel!.remove();
  }

  /** A cleanup that threw instead of reporting what it left: everything of this export may remain. */
  private cleanupThrew(err: PgError, cleanupError: unknown): PgError {
    this.ctx.log.error({ exportId: this.id, err: describeError(cleanupError) }, "cleanup failed");
    if (this.store === null || !(this.sentinel?.mayExist ?? false)) return err;
    const store = this.store;
    return withLeftBehind(
      err,
      store,
      [`objects of ${store.url(`mz-${this.id}-`)}*`, store.url(this.sentinel!.key)],
      [describeError(cleanupError)],
    );
  }

  /** SPEC §2.2: leave the prefix as it was found; if that fails, keep the sentinel and say what is left. */
  private async cleanup(err: PgError): Promise<PgError> {
    await this.sentinel?.stopHeartbeat();
    // The upstream session and the prefix are put back at the same time: the client's answer
    // waits for both, and neither needs the other.
    const abandoned = this.snapshot.abandon();
    if (this.store === null || this.sentinel === null) {
      await abandoned;
      return err;
    }
    const taken = takeBackExport(
      {
        store: this.store,
        sink: this.output,
        sentinel: this.sentinel,
        extra: this.manifestWritten ? Object.values(metadataKeys(this.id)) : [],
        keyPrefix: `mz-${this.id}-`,
        log: this.ctx.log,
        exportId: this.id,
      },
      err,
    );
    // Both end before the client's answer, also when the take-back throws: the session's next
    // statement must not meet the snapshot's ROLLBACK still on its way.
    const [, result] = await Promise.allSettled([abandoned, taken]);
    if (result.status === "rejected") throw result.reason;
    return result.value;
  }
}
