// Starts a throwaway single-node Ceph cluster with a RadosGW S3 endpoint on 127.0.0.1 — the
// production S3 server, from Debian's packages (radosgw ceph-mon ceph-osd). One ceph-mon, one
// ceph-osd on memstore (objects live in the OSD's memory), one radosgw (beast), no cephx, pools of
// size 1. Everything lives in a temp dir and on free ports, so several clusters can run side by
// side. Seen here: ~1.5 s to a listening RadosGW, plus ~1–3 s of warm-up (RGW creates its bucket
// index/data pools on first use; we do that here so tests don't pay for it with their timeouts).
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateBucketCommand,
  CreateMultipartUploadCommand,
  DeleteBucketCommand,
  DeleteObjectsCommand,
  ListBucketsCommand,
  ListMultipartUploadsCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from "@aws-sdk/client-s3";
import type { S3Server } from "./moto.js";
import { freePort } from "./ports.js";

export interface CephServer extends S3Server {
  dir: string;
  /** Milliseconds from the call to a warmed-up endpoint (for the record). */
  startMs: number;
}

const BINARIES = ["ceph-mon", "ceph-osd", "radosgw", "radosgw-admin", "monmaptool", "ceph"] as const;

/** Names of the Ceph programs that are missing from PATH (empty: Ceph can be started). */
export function missingCephBinaries(): string[] {
  const path = (process.env.PATH ?? "").split(":").concat(["/usr/bin", "/usr/sbin"]);
  return BINARIES.filter((b) => !path.some((d) => d && existsSync(join(d, b))));
}

const ACCESS_KEY = "c2sceph";
const SECRET_KEY = "c2sceph-secret";

function run(cmd: string, args: string[], timeoutMs = 60_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: timeoutMs, encoding: "utf8" }, (err, stdout, stderr) => {
      if (err) reject(new Error(`${cmd} ${args.join(" ")} failed: ${err.message}\n${stderr}${stdout}`));
      else resolve(stdout);
    });
  });
}

function tail(file: string, n = 30): string {
  try {
    return readFileSync(file, "utf8").split("\n").slice(-n).join("\n");
  } catch {
    return "";
  }
}

/** Every daemon of every cluster this process started, so a crashed run doesn't leave them behind. */
const liveDaemons = new Set<ChildProcess>();
let exitHookInstalled = false;
function track(p: ChildProcess): void {
  liveDaemons.add(p);
  p.once("exit", () => liveDaemons.delete(p));
  if (!exitHookInstalled) {
    exitHookInstalled = true;
    process.once("exit", () => {
      for (const d of liveDaemons) d.kill("SIGKILL");
    });
  }
}

export async function startCeph(): Promise<CephServer> {
  const missing = missingCephBinaries();
  if (missing.length > 0) {
    throw new Error(
      `Ceph not installed (missing ${missing.join(", ")}): apt-get install -y --no-install-recommends radosgw ceph-mon ceph-osd`,
    );
  }
  const t0 = Date.now();
  const dir = mkdtempSync(join(tmpdir(), "c2s-ceph-"));
  const daemons: { name: string; proc: ChildProcess; log: string }[] = [];
  let stopped = false;
  const stop = async (): Promise<void> => {
    if (stopped) return;
    stopped = true;
    // Throwaway state: no need for a graceful shutdown (a memstore OSD would even dump every
    // object to disk on SIGTERM). SIGKILL, wait for the exits, remove the directory.
    await Promise.all(
      daemons.map(
        ({ proc }) =>
          new Promise<void>((resolve) => {
            if (proc.exitCode !== null || proc.signalCode !== null) return resolve();
            proc.once("exit", () => resolve());
            proc.kill("SIGKILL");
          }),
      ),
    );
    rmSync(dir, { recursive: true, force: true });
  };

  try {
    const [monPort, rgwPort] = await distinctFreePorts(2);
    const fsid = randomUUID();
    const conf = join(dir, "ceph.conf");
    for (const d of ["mon", "osd/ceph-0", "rgw", "run"]) mkdirSync(join(dir, d), { recursive: true });
    writeFileSync(
      conf,
      `[global]
fsid = ${fsid}
mon_host = v2:127.0.0.1:${monPort}
public_addr = 127.0.0.1
ms_bind_msgr1 = false
# No cephx. Without all six crc modes radosgw loops on "get_initial_auth_request returned -13".
auth_cluster_required = none
auth_service_required = none
auth_client_required = none
ms_cluster_mode = crc
ms_service_mode = crc
ms_client_mode = crc
ms_mon_cluster_mode = crc
ms_mon_service_mode = crc
ms_mon_client_mode = crc
# Everything under our own directory, nothing under /var or /etc.
run_dir = ${dir}/run
admin_socket = ${dir}/run/$cluster-$name.asok
log_file = ${dir}/$cluster-$name.log
mon_data = ${dir}/mon/$cluster-$id
osd_data = ${dir}/osd/$cluster-$id
keyring = ${dir}/keyring
# Refuse nothing because the shared disk is nearly full.
mon_data_avail_warn = 0
mon_data_avail_crit = 0
# One OSD, objects in memory; pools of size 1 with few PGs (RGW makes ~8 pools).
osd_objectstore = memstore
memstore_device_bytes = 8589934592
osd_pool_default_size = 1
osd_pool_default_min_size = 1
mon_allow_pool_size_one = true
mon_warn_on_pool_no_redundancy = false
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_pool_default_pg_autoscale_mode = off
mon_max_pg_per_osd = 1000
osd_crush_chooseleaf_type = 0
mon_allow_pool_delete = true
# Faster map updates (pool creation, OSD boot).
paxos_propose_interval = 0.05
mon_osd_report_timeout = 3600
[client.rgw.a]
rgw_frontends = beast endpoint=127.0.0.1:${rgwPort}
rgw_data = ${dir}/rgw
rgw_thread_pool_size = 64
# Reclaim deleted/aborted data soon (it is held in memory), not after the default 2 h.
rgw_gc_obj_min_wait = 10
rgw_gc_processor_period = 30
rgw_gc_processor_max_time = 30
`,
    );
    const c = ["-c", conf];
    const daemon = (name: string, cmd: string, args: string[], log: string): ChildProcess => {
      const proc = spawn(cmd, [...c, ...args, "-f"], { stdio: ["ignore", "ignore", "pipe"] });
      let stderr = "";
      proc.stderr?.on("data", (d: Buffer) => {
        stderr = (stderr + d.toString()).slice(-4000);
      });
      proc.once("exit", (code, signal) => {
        if (!stopped) {
          process.stderr.write(
            `[ceph] ${name} exited (${code ?? signal}) unexpectedly:\n${stderr}\n${tail(join(dir, log))}\n`,
          );
        }
      });
      track(proc);
      daemons.push({ name, proc, log });
      return proc;
    };
    const alive = (): void => {
      for (const d of daemons) {
        if (d.proc.exitCode !== null || d.proc.signalCode !== null) {
          throw new Error(`ceph: ${d.name} exited during start:\n${tail(join(dir, d.log))}`);
        }
      }
    };

    await run("monmaptool", [
      "--create",
      "--fsid",
      fsid,
      "--addv",
      "a",
      `[v2:127.0.0.1:${monPort}]`,
      join(dir, "monmap"),
    ]);
    await run("ceph-mon", [...c, "-i", "a", "--mkfs", "--monmap", join(dir, "monmap")]);
    daemon("ceph-mon", "ceph-mon", ["-i", "a"], "ceph-mon.a.log");
    // `ceph` waits for the monitor to answer; this also allocates OSD id 0. It and the OSD's mkfs
    // (which needs no monitor with memstore) run at the same time.
    const [osdId] = await Promise.all([
      run("ceph", [...c, "--connect-timeout", "60", "osd", "create"]),
      run("ceph-osd", [...c, "-i", "0", "--mkfs"]),
    ]);
    if (osdId.trim() !== "0") throw new Error(`ceph osd create gave id ${osdId.trim()}, expected 0`);
    alive();
    daemon("ceph-osd", "ceph-osd", ["-i", "0"], "ceph-osd.0.log");
    daemon("radosgw", "radosgw", ["-n", "client.rgw.a"], "ceph-client.rgw.a.log");
    const endpoint = `http://127.0.0.1:${rgwPort}`;
    const deadline = Date.now() + 90_000;
    for (;;) {
      alive();
      try {
        const r = await fetch(`${endpoint}/`, { signal: AbortSignal.timeout(2000) });
        await r.arrayBuffer();
        if (r.status < 500) break;
      } catch {
        /* not up yet */
      }
      if (Date.now() > deadline) {
        throw new Error(`radosgw did not answer within 90 s:\n${tail(join(dir, "ceph-client.rgw.a.log"))}`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    await run("radosgw-admin", [
      ...c,
      "-n",
      "client.rgw.a",
      "user",
      "create",
      "--uid",
      "c2s",
      "--display-name",
      "copy-to-s3 tests",
      "--access-key",
      ACCESS_KEY,
      "--secret",
      SECRET_KEY,
    ]);
    const s3 = client(endpoint);
    await warmUp(s3);
    const server: CephServer = {
      endpoint,
      region: "us-east-1",
      accessKeyId: ACCESS_KEY,
      secretAccessKey: SECRET_KEY,
      dir,
      startMs: Date.now() - t0,
      reset: () => deleteAllBuckets(s3),
      stop: async () => {
        s3.destroy();
        await stop();
      },
      [Symbol.asyncDispose]: () => server.stop(),
    };
    return server;
  } catch (e) {
    await stop();
    throw e;
  }
}

function client(endpoint: string): S3Client {
  return new S3Client({
    endpoint,
    region: "us-east-1",
    forcePathStyle: true,
    credentials: { accessKeyId: ACCESS_KEY, secretAccessKey: SECRET_KEY },
  });
}

/**
 * RGW creates the pools for bucket indexes, data and multipart metadata on first use, which takes
 * a few seconds each time: do one bucket, one object and one multipart upload now.
 */
async function warmUp(s3: S3Client): Promise<void> {
  const Bucket = "c2s-warmup";
  await retry(() => s3.send(new CreateBucketCommand({ Bucket })));
  await s3.send(new PutObjectCommand({ Bucket, Key: "small", Body: "hello" }));
  const { UploadId } = await s3.send(new CreateMultipartUploadCommand({ Bucket, Key: "multi" }));
  const part = await s3.send(
    new UploadPartCommand({ Bucket, Key: "multi", UploadId, PartNumber: 1, Body: Buffer.alloc(1024, 1) }),
  );
  await s3.send(
    new CompleteMultipartUploadCommand({
      Bucket,
      Key: "multi",
      UploadId,
      MultipartUpload: { Parts: [{ PartNumber: 1, ETag: part.ETag }] },
    }),
  );
  await deleteAllBuckets(s3);
}

/** The first request can meet RGW still creating its pools (503/500); try again for a while. */
async function retry<T>(f: () => Promise<T>, ms = 60_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      return await f();
    } catch (e) {
      if (Date.now() > deadline) throw e;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Aborts every multipart upload, deletes every object and every bucket (S3 API only). */
export async function deleteAllBuckets(s3: S3Client): Promise<void> {
  const { Buckets = [] } = await s3.send(new ListBucketsCommand({}));
  for (const { Name: Bucket } of Buckets) {
    if (!Bucket) continue;
    for (;;) {
      const ups = await s3.send(new ListMultipartUploadsCommand({ Bucket }));
      for (const u of ups.Uploads ?? []) {
        await s3.send(new AbortMultipartUploadCommand({ Bucket, Key: u.Key, UploadId: u.UploadId }));
      }
      if (!ups.IsTruncated) break;
    }
    for (;;) {
      const objs = await s3.send(new ListObjectsV2Command({ Bucket }));
      const keys = (objs.Contents ?? []).map((o) => ({ Key: o.Key }));
      if (keys.length > 0)
        await s3.send(new DeleteObjectsCommand({ Bucket, Delete: { Objects: keys, Quiet: true } }));
      if (!objs.IsTruncated) break;
    }
    await s3.send(new DeleteBucketCommand({ Bucket }));
  }
}

async function distinctFreePorts(n: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < n) ports.add(await freePort());
  return [...ports];
}
