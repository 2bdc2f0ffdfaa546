// While a statement's rows stream, the export's upstream client has the channel read in bulk
// (FlowGate.bulkReads), and turns that off when the statement is over, failed or not, so the
// session's own round trips after it (ROLLBACK, the client's next query) are read at once.
import { describe, expect, test } from "vitest";
import { BULK_READ_GAP_MS, UpstreamClient } from "../../src/copy/upstream-client.js";
import type {
  UpstreamChannel,
  UpstreamMessageHandler,
  UpstreamRunHandler,
} from "../../src/proxy/copy-hook.js";
import {
  bindComplete,
  closeComplete,
  commandComplete,
  dataRow,
  errorResponse,
  readyForQuery,
} from "../../src/wire/backend.js";

function channel() {
  let handler: UpstreamMessageHandler = () => {};
  let runHandler: UpstreamRunHandler | undefined;
  const ch = {
    bulk: [] as number[],
    setHandler(h: UpstreamMessageHandler, run?: UpstreamRunHandler): void {
      handler = h;
      runHandler = run;
    },
    send: (): boolean => true,
    pause(): void {},
    resume(): void {},
    cancel: (): Promise<void> => Promise.resolve(),
    parameters: new Map<string, string>(),
    lost: new AbortController().signal,
    refuseLarger(): void {},
    bulkReads(gapMs: number): void {
      ch.bulk.push(gapMs);
    },
    deliver(msg: Buffer): void {
      if (msg[0] === 0x44 && runHandler) runHandler(0x44, msg, 0, msg.length, 1);
      else handler(msg[0]!, msg, 5, msg.length);
    },
  };
  return ch satisfies UpstreamChannel;
}

describe("UpstreamClient.execute: bulk reads", () => {
  test("on while the rows stream, off once the statement is over", async () => {
    const ch = channel();
    const client = new UpstreamClient(ch);
    let rows = 0;
    const done = client.execute("s", [0], (_b, _s, _e, n) => {
      rows += n;
      // The rows arrive while the channel reads in bulk.
      expect(ch.bulk).toEqual([BULK_READ_GAP_MS]);
    });
    expect(ch.bulk).toEqual([BULK_READ_GAP_MS]);
    ch.deliver(bindComplete());
    ch.deliver(dataRow(["1"]));
    ch.deliver(dataRow(["2"]));
    ch.deliver(commandComplete("SELECT 2"));
    ch.deliver(closeComplete());
    ch.deliver(readyForQuery("T"));
    await expect(done).resolves.toBe("SELECT 2");
    expect(rows).toBe(2);
    expect(ch.bulk).toEqual([BULK_READ_GAP_MS, 0]);
  });

  test("off after a failed statement too", async () => {
    const ch = channel();
    const client = new UpstreamClient(ch);
    const done = client.execute("s", [0], () => {});
    ch.deliver(errorResponse({ severity: "ERROR", code: "42P01", message: "relation does not exist" }));
    ch.deliver(readyForQuery("E"));
    await expect(done).rejects.toMatchObject({ code: "42P01" });
    expect(ch.bulk).toEqual([BULK_READ_GAP_MS, 0]);
  });
});
