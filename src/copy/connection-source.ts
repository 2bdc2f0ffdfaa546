// The proxy's AWS connections as configured now. The exports and the scheduled jobs read one
// registry, loaded once per configuration: a reload (SIGHUP) loads the new file's connections
// once, and both the copy hook and the scheduler take that same result (or the same error).
import type { Config } from "../config.js";
import type { ConnectionRegistry } from "./connections.js";

export class ConnectionSource {
  #current: ConnectionRegistry;
  #loaded: { config: Config; registry: ConnectionRegistry } | { config: Config; error: unknown } | null =
    null;

  constructor(
    config: Config,
    private readonly loadFrom: (c: Config) => ConnectionRegistry,
  ) {
    this.#current = loadFrom(config);
  }

  /** The registry exports and jobs use now. */
  get current(): ConnectionRegistry {
    return this.#current;
  }

  /**
   * `next`'s connections, loaded by the first call for that configuration; later calls get the
   * same registry, or the same error if they are invalid. They do not become current here.
   */
  load(next: Config): ConnectionRegistry {
    if (this.#loaded?.config !== next) {
      try {
        this.#loaded = { config: next, registry: this.loadFrom(next) };
      } catch (error) {
        this.#loaded = { config: next, error };
      }
    }
    if ("error" in this.#loaded) throw this.#loaded.error;
    return this.#loaded.registry;
  }

  /** Makes `next`'s connections current; throws, changing nothing, if they are invalid. */
  use(next: Config): ConnectionRegistry {
    this.#current = this.load(next);
    return this.#current;
  }
}
