// `node dist/metrics/healthcheck.js`: the Docker HEALTHCHECK (the slim image has no curl). Asks the
// admin listener's /healthz at C2S_ADMIN_LISTEN (a wildcard bind is asked on loopback); exit 0
// when it answers 200, else 1.
const listen = process.env.C2S_ADMIN_LISTEN ?? "127.0.0.1:6879";
const m = /^(?:\[([^\]]+)\]|([^:]*)):(\d+)$/.exec(listen.trim());
const given = m?.[1] ?? m?.[2] ?? "";
const host =
  given === "" || given === "0.0.0.0"
    ? "127.0.0.1"
    : given === "::"
      ? "[::1]"
      : given.includes(":")
        ? `[${given}]`
        : given;
const url = `http://${host}:${m?.[3] ?? "6879"}/healthz`;

fetch(url, { signal: AbortSignal.timeout(3000) }).then(
  (r) => process.exit(r.status === 200 ? 0 : 1),
  (e: unknown) => {
    process.stderr.write(`healthcheck: ${url}: ${(e as Error).message}\n`);
    process.exit(1);
  },
);
