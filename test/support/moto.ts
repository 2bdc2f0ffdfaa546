// Starts a real moto S3 server (python3 -m moto.server) on a free loopback port; optionally one
// whose CompleteMultipartUpload is slow (moto-slow-complete.py, a launcher that wraps moto's backend).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "./ports.js";

export interface S3Server {
  endpoint: string;
  region: string;
  accessKeyId: string;
  secretAccessKey: string;
  /** Drops every bucket and object (moto's reset API). */
  reset(): Promise<void>;
  stop(): Promise<void>;
  [Symbol.asyncDispose](): Promise<void>;
}

export interface MotoOptions {
  /** Seconds a CompleteMultipartUpload spends between consuming the upload and storing the object. */
  completeDelayS?: number;
}

export async function startMoto(o: MotoOptions = {}): Promise<S3Server> {
  const port = await freePort();
  const launcher =
    o.completeDelayS === undefined
      ? ["-m", "moto.server"]
      : [fileURLToPath(new URL("./moto-slow-complete.py", import.meta.url))];
  const proc = spawn("python3", [...launcher, "-H", "127.0.0.1", "-p", String(port)], {
    stdio: ["ignore", "ignore", "pipe"],
    env: {
      ...process.env,
      AWS_ACCESS_KEY_ID: "test",
      AWS_SECRET_ACCESS_KEY: "test",
      C2S_MOTO_COMPLETE_DELAY_S: String(o.completeDelayS ?? 0),
    },
  });
  let stderr = "";
  proc.stderr.on("data", (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  const endpoint = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`moto exited: ${stderr}`);
    try {
      const r = await fetch(`${endpoint}/moto-api/`);
      if (r.ok || r.status < 500) break;
    } catch {
      /* not up yet */
    }
    if (Date.now() > deadline) {
      proc.kill("SIGKILL");
      throw new Error(`moto did not start: ${stderr}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  const stop = async (): Promise<void> => {
    if (proc.exitCode !== null) return;
    const exited = new Promise((r) => proc.once("exit", r));
    proc.kill("SIGTERM");
    await Promise.race([exited, new Promise((r) => setTimeout(r, 3000))]);
    if (proc.exitCode === null) proc.kill("SIGKILL");
  };
  return {
    endpoint,
    region: "us-east-1",
    accessKeyId: "test",
    secretAccessKey: "test",
    reset: async () => {
      await fetch(`${endpoint}/moto-api/reset`, { method: "POST" });
    },
    stop,
    [Symbol.asyncDispose]: stop,
  };
}
