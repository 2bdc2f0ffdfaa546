// Starts a real moto S3 server (python3 -m moto.server) on a free loopback port; optionally one
// whose CompleteMultipartUpload is slow (moto-slow-complete.py, a launcher that wraps moto's backend).
import { spawn } from "node:child_process";
import { fileURLToPath } from "node:url";
import { freePort } from "./ports.js";
import { waitForStart } from "./process-start.js";

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
  const up = async (): Promise<boolean> => {
    try {
      const r = await fetch(`${endpoint}/moto-api/`);
      return r.ok || r.status < 500;
    } catch {
      return false; // not up yet
    }
  };
  try {
    // ~0.8 CPU-s on an idle machine.
    await waitForStart(proc, up, { what: "moto", cpuSeconds: 20, output: () => stderr });
  } catch (e) {
    proc.kill("SIGKILL");
    throw e;
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
