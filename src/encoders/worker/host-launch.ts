// Starting the encoder host's process (./encoder-host-main.ts): what it inherits of the proxy's
// environment and Node settings, and how it is detached from the proxy's terminal. ./encoder-host.ts
// talks to it once started.
import { type ChildProcess, fork } from "node:child_process";
import type { HostArgs } from "./host-protocol.js";
import { hostEntry, profilerArgs } from "./worker-entry.js";

/**
 * The only variables of the proxy's environment the host gets (as PgBouncer or systemd would give
 * a helper): it talks to nothing but the proxy, so it needs no credentials — none of AWS_*, PG*,
 * the config's `{ env: … }` secrets — and a compromised or dumped encoder holds none of them.
 * PATH: `chrt` (exports.workerPolicy "idle"). NODE_OPTIONS: the operator's Node settings (memory
 * limits) for every Node process of the proxy. TZ, LANG, LC_ALL: as the proxy formats. TMPDIR: as
 * the proxy. NODE_V8_COVERAGE: a coverage run covers the host too. C2S_DEBUG_ENCODER_HOST: its
 * own debug log (encoder-host-main.ts). MALLOC_ARENA_MAX: the operator's, else HOST_MALLOC_ARENAS.
 */
export const HOST_ENV = [
  "PATH",
  "NODE_OPTIONS",
  "TZ",
  "LANG",
  "LC_ALL",
  "TMPDIR",
  "NODE_V8_COVERAGE",
  "C2S_DEBUG_ENCODER_HOST",
  "MALLOC_ARENA_MAX",
] as const;

/**
 * glibc's malloc arenas in the host, unless the operator's MALLOC_ARENA_MAX says otherwise. glibc
 * gives every thread that allocates an arena of its own (up to 8 per core: the encoder thread,
 * V8's platform threads compiling parquet-wasm and collecting, libuv's pool), and each keeps what
 * its thread freed resident; two arenas share that memory (docs/decisions.md, "Peak RSS: malloc
 * arenas and young generations").
 */
export const HOST_MALLOC_ARENAS = "2";

/**
 * The host's own isolate (the frames, the loans, the budgets: little garbage) gets a young
 * generation of 1 MB semi-spaces instead of V8's 16; the encoder threads it starts keep V8's
 * default (ENCODER_YOUNG_GENERATION_MB), the flag being process-wide.
 */
export const HOST_NODE_ARGS = ["--max-semi-space-size=1"] as const;

function hostEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const k of HOST_ENV) if (process.env[k] !== undefined) env[k] = process.env[k];
  env.MALLOC_ARENA_MAX ??= HOST_MALLOC_ARENAS;
  return env;
}

/**
 * Starts a host process with `args`. It has an IPC channel (fd 3, "advanced" serialization) and a
 * socket pair for the data channel (fd 4, HOST_DATA_FD: ./host-frames.ts).
 */
export function launchHost(args: HostArgs): ChildProcess {
  // detached: setsid, so the host is a session, hence an autogroup, of its own, and a terminal's
  // Ctrl-C (sent to the proxy's process group) does not reach it: the proxy ends it, and it ends
  // itself when its IPC channel closes (the proxy exited, however).
  return fork(hostEntry(), [JSON.stringify(args)], {
    detached: true,
    serialization: "advanced",
    stdio: ["ignore", "inherit", "inherit", "ipc", "pipe"],
    execArgv: [...profilerArgs(), ...HOST_NODE_ARGS],
    env: hostEnv(),
  });
}
