import { mkdtempSync, writeFileSync } from "node:fs";
import { availableParallelism, tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { CLI_OPTIONS, ConfigError, HELP, loadConfig, SETTINGS, settingsRead } from "../../src/config.js";

function file(obj: unknown): string {
  const p = join(mkdtempSync(join(tmpdir(), "c2s-cfg-")), "c.json");
  writeFileSync(p, JSON.stringify(obj));
  return p;
}

describe("configuration", () => {
  test("defaults: listen 127.0.0.1:6877, upstream 127.0.0.1:6875 (Materialize), upstream TLS prefer", () => {
    const { config, command } = loadConfig([], {});
    expect(command).toBe("serve");
    expect(config.listen).toEqual({ host: "127.0.0.1", port: 6877 });
    expect(config.upstream).toEqual({ host: "127.0.0.1", port: 6875 });
    expect(config.upstreamTls).toBe("prefer");
    expect(config.tlsCertFile).toBeUndefined();
    expect(config.fileRoot).toBeUndefined();
  });

  test("flags win over env, env over the config file", () => {
    const cfg = file({
      listen: "127.0.0.1:1111",
      upstream: "127.0.0.1:2222",
      logLevel: "debug",
      drainTimeoutMs: 5,
    });
    const env = { C2S_CONFIG: cfg, C2S_UPSTREAM: "127.0.0.1:3333", C2S_LOG_LEVEL: "warn" };
    const { config } = loadConfig(["--log-level", "error"], env);
    expect(config.listen.port).toBe(1111);
    expect(config.upstream.port).toBe(3333);
    expect(config.logLevel).toBe("error");
    expect(config.drainTimeoutMs).toBe(5);
  });

  test("IPv6 and host names", () => {
    expect(loadConfig(["--upstream", "[::1]:5432"], {}).config.upstream).toEqual({ host: "::1", port: 5432 });
    expect(loadConfig(["--upstream", "db.internal:6875"], {}).config.upstream).toEqual({
      host: "db.internal",
      port: 6875,
    });
  });

  test.each([
    [["--listen", "nope"], /listen: expected HOST:PORT/],
    [["--upstream", "h:70000"], /upstream: port out of range in "h:70000"/],
    [
      ["--upstream-tls", "maybe"],
      /upstream-tls: expected one of disable, prefer, require, verify-ca, verify-full/,
    ],
    [["--tls-cert", "/x.crt"], /tls-cert and tls-key must be given together/],
    [["--max-exports", "0"], /max-exports: expected an integer ≥ 1/],
    [["--bogus"], /Unknown option '--bogus'/],
    [["frobnicate"], /unknown command "frobnicate"/],
  ])("%j is refused with a clear message", (argv, msg) => {
    expect(() => loadConfig(argv, {})).toThrow(ConfigError);
    expect(() => loadConfig(argv, {})).toThrow(msg);
  });

  test("a broken config file names itself", () => {
    const p = join(mkdtempSync(join(tmpdir(), "c2s-cfg-")), "bad.json");
    writeFileSync(p, "{ nope");
    expect(() => loadConfig(["--config", p], {})).toThrow(new RegExp(`config file ${p}`));
  });

  test("--help lists every flag, environment variable and config key, each with an example", () => {
    expect(loadConfig(["--help"], {}).command).toBe("help");
    for (const flag of Object.keys(CLI_OPTIONS)) expect(HELP).toContain(`--${flag}`);
    const read = settingsRead();
    for (const env of read.env) expect(HELP).toContain(env);
    for (const key of read.top)
      if (key !== "exports") expect(HELP).toMatch(new RegExp(`key (exports\\.)?${key}\\b`));
    for (const key of read.exports) expect(HELP).toContain(`key exports.${key}`);
    for (const s of SETTINGS) expect(s.example).not.toBe("");
  });

  test("--version and -V", () => {
    expect(loadConfig(["--version"], {}).command).toBe("version");
    expect(loadConfig(["-V"], {}).command).toBe("version");
  });

  test.each([
    [{ upstreem: "db:5432" }, /unknown key "upstreem" \(did you mean "upstream"\?\)/],
    [
      { exports: { partsize: 6291456 } },
      /unknown key "exports.partsize" \(did you mean "exports.partSize"\?\)/,
    ],
    [{ listen: "127.0.0.1:1", frobnicate: 1 }, /unknown key "frobnicate"; copy-to-s3-proxy --help/],
  ])("config file %j is refused with a suggestion", (obj, msg) => {
    expect(() => loadConfig(["--config", file(obj)], {})).toThrow(msg);
  });

  test("exports.workerPolicy: nice by default, idle on request, anything else refused", () => {
    expect(loadConfig([], {}).config.exports.workerPolicy).toBe("nice");
    const idle = file({ exports: { workerPolicy: "idle" } });
    expect(loadConfig(["--config", idle], {}).config.exports.workerPolicy).toBe("idle");
    const bad = file({ exports: { workerPolicy: "batch" } });
    expect(() => loadConfig(["--config", bad], {})).toThrow(
      'exports.workerPolicy: expected one of idle, nice, got "batch"',
    );
  });

  test("exports.maxEncodingThreads: the cores less one (at least 1) by default and as auto, 0 = no limit", () => {
    const auto = Math.max(1, availableParallelism() - 1);
    expect(loadConfig([], {}).config.exports.maxEncodingThreads).toBe(auto);
    const set = (v: unknown): number =>
      loadConfig(["--config", file({ exports: { maxEncodingThreads: v } })], {}).config.exports
        .maxEncodingThreads;
    expect(set("auto")).toBe(auto);
    expect(set(0)).toBe(0);
    expect(set(3)).toBe(3);
    expect(() => set(-1)).toThrow(
      'exports.maxEncodingThreads (or "auto"): expected an integer from 0 to 1024, got "-1"',
    );
  });

  test("a key set by a flag as well is still known in the file (no false unknown)", () => {
    const p = file({ upstream: "db:1", maxConcurrentExports: 2, exports: { maxConcurrentExports: 3 } });
    expect(
      loadConfig(["--config", p, "--upstream", "x:2", "--max-exports", "5"], {}).config.upstream.port,
    ).toBe(2);
  });

  test.each([
    ["db.internal", { host: "db.internal", port: 5432 }, "prefer"],
    ["[::1]", { host: "::1", port: 5432 }, "prefer"],
    ["postgres://mz.internal:6875", { host: "mz.internal", port: 6875 }, "prefer"],
    ["postgresql://mz.internal?sslmode=verify-full", { host: "mz.internal", port: 5432 }, "verify-full"],
    ["postgres://[::1]:6875/?sslmode=disable", { host: "::1", port: 6875 }, "disable"],
  ])("--upstream %s", (arg, upstream, tls) => {
    const { config, demo } = loadConfig(["--upstream", arg], {});
    expect(config.upstream).toEqual(upstream);
    expect(config.upstreamTls).toBe(tls);
    expect(demo).toBe(false);
  });

  test("--upstream URL's sslrootcert becomes the CA file", () => {
    expect(
      loadConfig(["--upstream", "postgres://h:1?sslmode=verify-ca&sslrootcert=/ca.pem"], {}).config
        .upstreamCaFile,
    ).toBe("/ca.pem");
  });

  test.each([
    [
      "postgres://alice:s3cret@db:5432",
      /names a user and password; the proxy connects as each client's own user/,
    ],
    ["postgres://alice@db:5432", /names a user;/],
    ["postgres://db:5432/app", /names the database "app"; each client chooses its own database/],
    ["postgres://db?sslmode=allow", /sslmode=allow is not supported/],
    ["postgres://db?application_name=x", /URL parameter "application_name" is not used/],
    ["mysql://db", /expected postgres:\/\/HOST\[:PORT\], HOST:PORT or HOST/],
  ])("--upstream %s is refused with words that say what to do", (arg, msg) => {
    expect(() => loadConfig(["--upstream", arg], {})).toThrow(msg);
    try {
      loadConfig(["--upstream", arg], {});
    } catch (e) {
      expect((e as Error).message).not.toContain("s3cret");
    }
  });

  test("upstream-tls that contradicts the URL's sslmode is refused", () => {
    expect(() =>
      loadConfig(["--upstream", "postgres://db?sslmode=require", "--upstream-tls", "disable"], {}),
    ).toThrow(/upstream-tls is "disable" but the upstream URL says sslmode=require/);
  });

  test("no upstream anywhere means the embedded demo; one in the environment or the file does not", () => {
    expect(loadConfig([], {}).demo).toBe(true);
    expect(loadConfig([], { C2S_UPSTREAM: "db:1" }).demo).toBe(false);
    expect(loadConfig(["--config", file({ upstream: "db:1" })], {}).demo).toBe(false);
    expect(loadConfig(["cleanup", "s3://b/p"], {}).demo).toBe(false);
  });

  test("cleanup subcommand takes its positionals and flags", () => {
    const r = loadConfig(["cleanup", "s3://b/p", "--yes", "--connection", "prod"], {});
    expect(r.command).toBe("cleanup");
    expect(r.positionals).toEqual(["s3://b/p"]);
    expect(r.flags).toEqual({ yes: true, connection: "prod" });
  });
});
