// The export's `mz-<id>-INCOMPLETE` object (SPEC §2): written before the first file, removed as the
// "export finished" event, and kept whenever anything else of a failed export is left.
import type { Logger } from "../log.js";
import type { ObjectStore } from "./storage/object-store.js";

export class Sentinel {
  readonly key: string;
  /** Set before the first PutObject: one still running when a cancel comes may yet land. */
  #mayExist = false;
  #heartbeat: NodeJS.Timeout | undefined;
  #touching: Promise<void> | null = null;

  constructor(
    private readonly store: ObjectStore,
    exportId: string,
    private readonly log: Logger,
  ) {
    this.key = `mz-${exportId}-INCOMPLETE`;
  }

  get mayExist(): boolean {
    return this.#mayExist;
  }

  async write(signal: AbortSignal): Promise<void> {
    this.#mayExist = true;
    await this.store.put(this.key, "", signal);
  }

  /**
   * Re-writes the sentinel now and then, so its age tells a running export from one whose proxy
   * died: `cleanup` leaves sentinels younger than --older-than alone. A refresh is a PutObject sent
   * whole (see S3Store.put), so stop() awaiting it means no refresh can land after the delete.
   */
  startHeartbeat(everyMs: number, signal: AbortSignal, exportId: string): void {
    this.#heartbeat = setInterval(() => {
      if (this.#touching !== null || !this.#mayExist || signal.aborted) return;
      this.#touching = this.store
        .put(this.key, "", signal)
        .catch((e: unknown) => {
          if (!signal.aborted)
            this.log.warn({ exportId, err: (e as Error).message }, "could not refresh the sentinel");
        })
        .finally(() => {
          this.#touching = null;
        });
    }, everyMs);
    this.#heartbeat.unref();
  }

  async stopHeartbeat(): Promise<void> {
    clearInterval(this.#heartbeat);
    this.#heartbeat = undefined;
    await this.#touching;
  }

  /** Deletes the sentinel; no refresh may land after it. No signal: it must outlive a cancel. */
  async remove(): Promise<void> {
    await this.stopHeartbeat();
    if (!this.#mayExist) return;
    await this.store.delete([this.key]);
    this.#mayExist = false;
  }
}
