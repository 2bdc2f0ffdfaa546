// A session's two cancel keys: the upstream's own (its BackendKeyData), with which a cancel is
// forwarded to the upstream, and the proxy-minted one the client is shown in its place
// (cancel-registry.ts), so that clients never learn the upstream's pid space.
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import { upstreamCancelSent } from "../metrics/metrics.js";
import { backendKeyData } from "../wire/backend.js";
import type { Cancellable, CancelRegistry } from "./cancel-registry.js";
import { sendUpstreamCancel } from "./upstream-connect.js";

export class SessionCancelKeys {
  private realPid = 0;
  private realSecret: Buffer = Buffer.alloc(0);
  private minted: { pid: number; secret: Buffer } | null = null;

  constructor(
    private readonly registry: CancelRegistry,
    /** What a CancelRequest with the minted key reaches. */
    private readonly target: Cancellable,
    private readonly config: Config,
    private readonly upstreamTls: boolean,
    private readonly log: Logger,
  ) {}

  /**
   * The upstream's BackendKeyData (body `buf[start..end)`, a view: copied) is kept; returns the
   * BackendKeyData the client gets instead (the same minted key every time).
   */
  replace(buf: Buffer, start: number, end: number): Buffer {
    this.realPid = buf.readInt32BE(start);
    this.realSecret = Buffer.from(buf.subarray(start + 4, end));
    this.minted ??= this.registry.register(this.target);
    return backendKeyData(this.minted.pid, this.minted.secret.readInt32BE(0));
  }

  /** Forwards a cancel to the upstream with its own key (none before the upstream gave one). */
  async cancelUpstream(): Promise<void> {
    if (this.realSecret.length === 0) return;
    upstreamCancelSent(); // before the first await: a cancel being sent is already counted
    try {
      await sendUpstreamCancel(this.config, this.realPid, this.realSecret, this.upstreamTls);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, "could not forward cancel request");
    }
  }

  /** The session is over: its minted key cancels nothing any more. */
  unregister(): void {
    if (this.minted !== null) this.registry.unregister(this.minted.pid);
  }
}
