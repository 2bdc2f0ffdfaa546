// One PostgreSQL and one moto for the whole run; test files make their own databases/buckets.
// With C2S_CEPH=1 (CI sets it) also a single-node Ceph RadosGW, the production S3 server.
import type { TestProject } from "vitest/node";
import { missingCephBinaries, startCeph } from "./ceph.js";
import { startMoto } from "./moto.js";
import { startPostgres } from "./postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    pgPort: number;
    pgDir: string;
    pgCertFile: string;
    pgKeyFile: string;
    s3Endpoint: string;
    /** RadosGW endpoint; provided only when C2S_CEPH=1, else undefined (see cephSkipReason). */
    cephEndpoint?: string;
    cephRegion?: string;
    cephAccessKeyId?: string;
    cephSecretAccessKey?: string;
    /** Why there is no cephEndpoint, for describe.skipIf messages. */
    cephSkipReason?: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const wantCeph = process.env.C2S_CEPH === "1";
  const started = await Promise.allSettled([
    startPostgres(),
    startMoto(),
    wantCeph ? startCeph() : Promise.resolve(undefined),
  ] as const);
  const stopAll = async (): Promise<void> => {
    await Promise.allSettled(started.map((s) => (s.status === "fulfilled" ? s.value?.stop() : undefined)));
  };
  const [pgR, s3R, cephR] = started;
  if (pgR.status === "rejected" || s3R.status === "rejected" || cephR.status === "rejected") {
    await stopAll();
    const reasons = started.filter((s) => s.status === "rejected").map((s) => String(s.reason));
    throw new Error(`test servers failed to start:\n${reasons.join("\n")}`);
  }
  const pg = pgR.value;
  const s3 = s3R.value;
  const ceph = cephR.value;
  project.provide("pgPort", pg.port);
  project.provide("pgDir", pg.dir);
  project.provide("pgCertFile", pg.certFile);
  project.provide("pgKeyFile", pg.keyFile);
  project.provide("s3Endpoint", s3.endpoint);
  if (ceph) {
    console.log(
      `[global-setup] Ceph RadosGW at ${ceph.endpoint} (started and warmed up in ${ceph.startMs} ms)`,
    );
    project.provide("cephEndpoint", ceph.endpoint);
    project.provide("cephRegion", ceph.region);
    project.provide("cephAccessKeyId", ceph.accessKeyId);
    project.provide("cephSecretAccessKey", ceph.secretAccessKey);
  } else {
    const missing = missingCephBinaries();
    project.provide(
      "cephSkipReason",
      `Ceph RadosGW not started: C2S_CEPH is not 1` +
        (missing.length > 0 ? ` (and Ceph is not installed: missing ${missing.join(", ")})` : ""),
    );
  }
  return stopAll;
}
