// At start, one TCP connect to the configured upstream: a proxy in front of a database that is
// not there says so at once, instead of leaving it to the first client's FATAL.
import type { Config } from "../config.js";
import type { Logger } from "../log.js";
import { connectUpstream, upstreamAddressText } from "./upstream-connect.js";

/** Resolves once the probe is done; never rejects (the proxy runs either way). */
export async function warnIfUpstreamUnreachable(config: Config, log: Logger): Promise<boolean> {
  try {
    // TCP only: the TLS leg and authentication are each client's.
    const { socket } = await connectUpstream({ ...config, upstreamTls: "disable" });
    socket.destroy();
    return true;
  } catch (e) {
    log.warn(
      { upstream: upstreamAddressText(config), error: (e as Error).message },
      `the upstream database at ${upstreamAddressText(config)} is unreachable: clients get "could not connect" until it is up (check --upstream)`,
    );
    return false;
  }
}
