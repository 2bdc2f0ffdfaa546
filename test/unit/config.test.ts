import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, test } from "vitest";
import { ConfigError, HELP, loadConfig } from "../../src/config.js";

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
    [["--upstream", "h:70000"], /upstream: expected HOST:PORT/],
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

  test("--help lists every flag", () => {
    expect(loadConfig(["--help"], {}).command).toBe("help");
    for (const flag of [
      "--listen",
      "--upstream",
      "--upstream-tls",
      "--upstream-ca",
      "--tls-cert",
      "--tls-key",
      "--log-level",
      "--file-root",
      "--drain-timeout",
      "--max-exports",
      "--config",
    ]) {
      expect(HELP).toContain(flag);
    }
  });

  test("cleanup subcommand takes its positionals and flags", () => {
    const r = loadConfig(["cleanup", "s3://b/p", "--yes", "--connection", "prod"], {});
    expect(r.command).toBe("cleanup");
    expect(r.positionals).toEqual(["s3://b/p"]);
    expect(r.flags).toEqual({ yes: true, connection: "prod" });
  });
});
