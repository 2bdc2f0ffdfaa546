// The proxy must be indistinguishable from the database: the same message scripts sent straight
// to PostgreSQL and through the proxy get the same reply bytes (BackendKeyData and backend pids
// aside, which differ per connection by nature).

import { serialize } from "pg-protocol";
import { afterAll, beforeAll, describe, expect, inject, test } from "vitest";
import { startTestProxy, type TestProxy } from "../support/proxy.js";
import { type Message, WireClient } from "../support/wire-client.js";

const pgPort = inject("pgPort");
let proxy: TestProxy;

beforeAll(async () => {
  proxy = await startTestProxy({ upstreamPort: pgPort });
});
afterAll(async () => {
  await proxy?.shutdown(0);
});

/** Makes replies comparable across two connections: backend pids are per connection. */
function normalize(ms: Message[]): string[] {
  return ms
    .filter((m) => m.type !== "K")
    .map((m) => {
      if (m.type === "A") {
        const b = Buffer.from(m.body);
        b.writeInt32BE(0, 0);
        return `A:${b.toString("hex")}`;
      }
      return `${m.type}:${m.body.toString("hex")}`;
    });
}

type Script = (c: WireClient) => Promise<Message[]>;

const q = (sql: string): Buffer => serialize.query(sql);
const ext = (sql: string, values: Array<string | null> = []): Buffer[] => [
  serialize.parse({ text: sql, name: "", types: [] }),
  serialize.bind({ values }),
  serialize.describe({ type: "P", name: "" }),
  serialize.execute({ portal: "", rows: 0 }),
];

const scripts: Record<string, Script> = {
  "simple query": async (c) => {
    c.send(q("select 1 as a, 'x'::text as b, null::int as c, now() > '2000-01-01' as d"));
    return c.untilReady();
  },
  "multi-statement with a mid-batch error": async (c) => {
    c.send(q("select 1; select 1/0; select 2"));
    return c.untilReady();
  },
  "empty query and only a comment": async (c) => {
    c.send(q(""), q("-- nothing"), q(";"));
    return c.untilReady(3);
  },
  "extended query": async (c) => {
    c.send(...ext("select $1::int + 1 as n, $2::text as t", ["41", null]), serialize.sync());
    return c.untilReady();
  },
  "extended query with an error before Sync": async (c) => {
    c.send(
      serialize.parse({ text: "select nonsense from", name: "", types: [] }),
      serialize.bind({ values: [] }),
      serialize.execute({ portal: "", rows: 0 }),
      serialize.sync(),
    );
    return c.untilReady();
  },
  "Flush without Sync, then Sync": async (c) => {
    c.send(...ext("select generate_series(1, 3)"), serialize.flush());
    const first = await c.until((ms) => ms.some((m) => m.type === "C"));
    c.send(serialize.sync());
    return [...first, ...(await c.untilReady())];
  },
  "two Syncs in one write": async (c) => {
    c.send(...ext("select 1"), serialize.sync(), ...ext("select 2"), serialize.sync());
    return c.untilReady(2);
  },
  "named statement and portal with row limit": async (c) => {
    c.send(
      serialize.parse({ text: "select g from generate_series(1, 5) g", name: "s1", types: [] }),
      serialize.bind({ statement: "s1", portal: "p1", values: [] }),
      serialize.execute({ portal: "p1", rows: 2 }),
      serialize.execute({ portal: "p1", rows: 0 }),
      serialize.close({ type: "S", name: "s1" }),
      serialize.sync(),
    );
    return c.untilReady();
  },
  "COPY FROM STDIN and COPY TO STDOUT": async (c) => {
    c.send(q("create temp table t (a int, b text)"));
    const out = await c.untilReady();
    c.send(q("copy t from stdin"));
    out.push(...(await c.until((ms) => ms.some((m) => m.type === "G"))));
    c.send(serialize.copyData(Buffer.from("1\tone\n2\ttwo\n")), serialize.copyDone());
    out.push(...(await c.untilReady()));
    c.send(q("copy t to stdout with (format csv, header)"));
    out.push(...(await c.untilReady()));
    c.send(q("copy t from stdin"));
    out.push(...(await c.until((ms) => ms.some((m) => m.type === "G"))));
    c.send(serialize.copyFail("client gave up"));
    out.push(...(await c.untilReady()));
    return out;
  },
  "LISTEN/NOTIFY": async (c) => {
    c.send(q("listen chan; notify chan, 'payload'; select 1"));
    return c.untilReady();
  },
  "error inside BEGIN gives E status and 25P02": async (c) => {
    c.send(q("begin"), q("select 1/0"), q("select 1"), q("rollback"), q("select 2"));
    return c.untilReady(5);
  },
  "notice from the server": async (c) => {
    c.send(q("do $$ begin raise notice 'hello %', 42; end $$"));
    return c.untilReady();
  },
  "COPY to a server file is forwarded and refused by the server": async (c) => {
    c.send(q("copy (select 1) to '/nonexistent-dir/x.csv'"));
    return c.untilReady();
  },
};

describe("proxy parity with direct PostgreSQL", () => {
  for (const [name, script] of Object.entries(scripts)) {
    test(name, async () => {
      const direct = await WireClient.connect(pgPort);
      const viaProxy = await WireClient.connect(proxy.port);
      try {
        const a = normalize(await script(direct));
        const b = normalize(await script(viaProxy));
        expect(b).toEqual(a);
        expect(a.length).toBeGreaterThan(0);
      } finally {
        await direct.close();
        await viaProxy.close();
      }
    });
  }

  test("GSSENCRequest gets 'N' and the startup goes on; protocol 3.2 and _pq_ options are negotiated by the server", async () => {
    const { connect } = await import("node:net");
    const gssenc = Buffer.from([0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30]);
    // Protocol 3.2 with an unknown _pq_ option: PostgreSQL 15 answers NegotiateProtocolVersion.
    const params = Buffer.from(
      "user\0postgres\0database\0postgres\0options\0-c search_path=pg_catalog\0_pq_.bogus\0x\0\0",
    );
    const startup = Buffer.alloc(8 + params.length);
    startup.writeInt32BE(startup.length, 0);
    startup.writeInt32BE((3 << 16) | 2, 4);
    params.copy(startup, 8);
    // PostgreSQL itself (built with GSSAPI) would answer 'G'; the proxy answers 'N', so the direct
    // run starts without the request.
    const run = (port: number, withGss: boolean): Promise<Buffer> =>
      new Promise((resolve, reject) => {
        const s = connect({ port, host: "127.0.0.1" });
        let buf = Buffer.alloc(0);
        s.on("error", reject);
        s.on("data", (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          if (buf.length === 1 && buf[0] === 0x4e) s.write(startup);
          // ReadyForQuery ends the startup.
          if (buf.includes(Buffer.from([0x5a, 0, 0, 0, 5]))) {
            s.end(serialize.end());
            resolve(buf);
          }
        });
        s.write(withGss ? gssenc : startup);
      });
    const strip = (b: Buffer): string[] => {
      const out: string[] = [];
      let i = b[0] === 0x4e ? 1 : 0;
      while (i < b.length) {
        const len = b.readInt32BE(i + 1);
        if (b[i] !== 0x4b) out.push(b.subarray(i, i + 1 + len).toString("hex"));
        i += 1 + len;
      }
      return out;
    };
    const direct = await run(pgPort, false);
    const viaProxy = await run(proxy.port, true);
    expect(viaProxy[0]).toBe(0x4e);
    const a = strip(direct);
    const b = strip(viaProxy);
    expect(b).toEqual(a);
    expect(a.some((m) => m.startsWith("76"))).toBe(true); // 'v' NegotiateProtocolVersion
  });

  test("startup replies are the same apart from BackendKeyData", async () => {
    const { connect } = await import("node:net");
    const grab = (port: number): Promise<Message[]> =>
      new Promise((resolve, reject) => {
        const s = connect({ port, host: "127.0.0.1" });
        let buf = Buffer.alloc(0);
        s.on("data", (d: Buffer) => {
          buf = Buffer.concat([buf, d]);
          const ms: Message[] = [];
          let i = 0;
          while (i + 5 <= buf.length && i + 1 + buf.readInt32BE(i + 1) <= buf.length) {
            const len = buf.readInt32BE(i + 1);
            ms.push({ type: String.fromCharCode(buf[i]!), body: buf.subarray(i + 5, i + 1 + len) });
            i += 1 + len;
          }
          if (ms.some((m) => m.type === "Z")) {
            s.end(serialize.end());
            resolve(ms);
          }
        });
        s.on("error", reject);
        s.write(serialize.startup({ user: "postgres", database: "postgres", application_name: "parity" }));
      });
    const a = await grab(pgPort);
    const b = await grab(proxy.port);
    expect(normalize(b)).toEqual(normalize(a));
    const k = b.find((m) => m.type === "K")!;
    expect(k.body.readInt32BE(0)).toBeGreaterThan(0);
  });
});
