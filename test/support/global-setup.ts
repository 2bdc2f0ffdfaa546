// One PostgreSQL and one moto for the whole run; test files make their own databases/buckets.
import type { TestProject } from "vitest/node";
import { startMoto } from "./moto.js";
import { startPostgres } from "./postgres.js";

declare module "vitest" {
  export interface ProvidedContext {
    pgPort: number;
    pgDir: string;
    pgCertFile: string;
    pgKeyFile: string;
    s3Endpoint: string;
  }
}

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  const [pg, s3] = await Promise.all([startPostgres(), startMoto()]);
  project.provide("pgPort", pg.port);
  project.provide("pgDir", pg.dir);
  project.provide("pgCertFile", pg.certFile);
  project.provide("pgKeyFile", pg.keyFile);
  project.provide("s3Endpoint", s3.endpoint);
  return async () => {
    await Promise.allSettled([pg.stop(), s3.stop()]);
  };
}
