// COPY TO S3 over the extended protocol, message by message, as drivers send it: the replies
// must be what PostgreSQL would send for a utility statement (ParseComplete, BindComplete, NoData,
// CommandComplete "COPY n", ReadyForQuery), and errors must skip to Sync.
import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { motoAccess, type S3Access, S3Check, startCopyProxy } from "../support/copy-proxy.js";
import type { TestProxy } from "../support/proxy.js";
import { type Message, WireClient } from "../support/wire-client.js";

const pgPort = inject("pgPort");
const s3: S3Access = motoAccess();
const check = new S3Check(s3);
let proxy: TestProxy;
let bucket: string;

beforeAll(async () => {
  proxy = await startCopyProxy({ upstreamPort: pgPort, s3 });
  bucket = await check.bucket("extended");
});
afterAll(async () => {
  await proxy?.shutdown(0);
});

const types = (ms: Message[]): string => ms.map((m) => m.type).join("");
const tag = (ms: Message[]): string | undefined =>
  ms
    .find((m) => m.type === "C")
    ?.body.toString()
    .replace(/\0$/, "");
const code = (ms: Message[]): string | undefined => {
  const e = ms.find((m) => m.type === "E");
  return e ? /C([0-9A-Z]{5})\0/.exec(e.body.toString("latin1"))?.[1] : undefined;
};

describe("extended protocol", () => {
  test("named statement: Parse, Describe S, Bind, Describe P, Execute, Sync; executed twice; Close", async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      const sql = `COPY (SELECT g FROM generate_series(1, 3) g) TO 's3://${bucket}/named' WITH (FORMAT = 'csv')`;
      c.send(
        serialize.parse({ name: "exp", text: sql, types: [] }),
        serialize.describe({ type: "S", name: "exp" }),
        serialize.sync(),
      );
      expect(types(await c.untilReady())).toBe("1tnZ");
      c.send(
        serialize.bind({ statement: "exp", portal: "p" }),
        serialize.describe({ type: "P", name: "p" }),
        serialize.execute({ portal: "p" }),
        serialize.sync(),
      );
      const first = await c.untilReady();
      // NoticeResponses before CommandComplete: the final one (and progress, on a slow machine).
      expect(types(first)).toMatch(/^2nN+CZ$/);
      expect(tag(first)).toBe("COPY 3");
      // Second run of the same statement: the prefix is no longer empty.
      c.send(
        serialize.bind({ statement: "exp", portal: "" }),
        serialize.execute({ portal: "" }),
        serialize.sync(),
      );
      const second = await c.untilReady();
      expect(types(second)).toBe("2EZ");
      expect(code(second)).toBe("58000");
      c.send(serialize.close({ type: "S", name: "exp" }), serialize.sync());
      expect(types(await c.untilReady())).toBe("3Z");
      // Closed: binding it now goes to the server, which has never heard of it.
      c.send(serialize.bind({ statement: "exp", portal: "" }), serialize.sync());
      const gone = await c.untilReady();
      expect(code(gone)).toBe("26000");
      // And the session goes on.
      c.send(serialize.query("select 1"));
      expect(types(await c.untilReady())).toBe("TDCZ");
    } finally {
      await c.close();
    }
  });

  test("an invalid COPY TO S3 in Parse: one error, the rest of the segment skipped, ReadyForQuery", async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.send(
        serialize.parse({ text: `COPY (SELECT 1) TO 's3://${bucket}/bad' WITH (FORMAT = 'xml')`, types: [] }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
      );
      const ms = await c.untilReady();
      expect(types(ms)).toBe("EZ");
      expect(code(ms)).toBe("22023");
      expect(await check.keys(bucket, "bad")).toEqual([]);
    } finally {
      await c.close();
    }
  });

  test("an error earlier in the Sync segment skips the export", async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.send(
        serialize.parse({
          name: "e1",
          text: `COPY (SELECT 1) TO 's3://${bucket}/skipped' WITH (FORMAT = 'csv')`,
          types: [],
        }),
        serialize.sync(),
      );
      await c.untilReady();
      c.send(
        serialize.parse({
          name: "e2",
          text: `COPY (SELECT 1) TO 'nope://x' WITH (FORMAT = 'csv')`,
          types: [],
        }),
        serialize.bind({ statement: "e1", portal: "" }),
        serialize.execute({}),
        serialize.sync(),
      );
      const ms = await c.untilReady();
      expect(types(ms)).toBe("EZ");
      expect(code(ms)).toBe("0A000");
      expect(await check.keys(bucket, "skipped")).toEqual([]);
    } finally {
      await c.close();
    }
  });

  test("a Sync segment mixing ordinary statements with a COPY TO S3 is refused after the server's replies", async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      c.send(
        serialize.parse({ text: "select 41 + 1", types: [] }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.parse({
          name: "m",
          text: `COPY (SELECT 1) TO 's3://${bucket}/mixed' WITH (FORMAT = 'csv')`,
          types: [],
        }),
        serialize.sync(),
      );
      const ms = await c.untilReady();
      expect(types(ms)).toBe("12DCEZ");
      expect(code(ms)).toBe("0A000");
      c.send(serialize.query("select 2"));
      expect(types(await c.untilReady())).toBe("TDCZ");
      // The refused statement was not kept: binding it reaches the server, which does not know it.
      c.send(serialize.bind({ statement: "m", portal: "" }), serialize.sync());
      expect(code(await c.untilReady())).toBe("26000");
      expect(await check.keys(bucket, "mixed")).toEqual([]);
    } finally {
      await c.close();
    }
  });

  test("pipelined: two COPY segments and a query in one write are answered in order", async () => {
    const c = await WireClient.connect(proxy.port);
    try {
      const copy = (p: string): Buffer[] => [
        serialize.parse({
          text: `COPY (SELECT 1) TO 's3://${bucket}/${p}' WITH (FORMAT = 'csv')`,
          types: [],
        }),
        serialize.bind({}),
        serialize.execute({}),
        serialize.sync(),
      ];
      c.send(...copy("pipe1"), serialize.query("select 'between'"), ...copy("pipe2"));
      const ms = await c.untilReady(3);
      expect(types(ms)).toMatch(/^12N+CZTDCZ12N+CZ$/);
      expect(ms.filter((m) => m.type === "C").map((m) => m.body.toString().replace(/\0$/, ""))).toEqual([
        "COPY 1",
        "SELECT 1",
        "COPY 1",
      ]);
    } finally {
      await c.close();
    }
  });
});
