// What a MessageStream (./message-stream.ts) does with each type of message: the policies, the
// table of them by type byte that the stream's owner sets and changes as its session goes along
// (the client before and after login, the upstream inside and outside an export), and the
// handlers the owner gives the stream, which each policy calls.

export enum Policy {
  /** Forward untouched, never look at it. */
  Pass = 0,
  /** Forward untouched, but show the whole message to `observe` (small messages only). */
  Observe = 1,
  /** Remove from the stream and hand the whole message to `take`. */
  Take = 2,
  /** Look at the first `peekBytes` of the body, then let `decide` choose Pass or Take. */
  Peek = 3,
  /**
   * Like Take, but consecutive messages of this type that lie whole in one chunk go to `takeRun`
   * together (an export's DataRows: one call per read instead of one per row).
   */
  TakeRun = 4,
  /** Remove from the stream unseen, without assembling it (messages discarded until Sync). */
  Drop = 5,
}

export type PolicyTable = Uint8Array; // indexed by type byte

export function policyTable(entries: Record<string, Policy>): PolicyTable {
  const t = new Uint8Array(256);
  for (const [k, v] of Object.entries(entries)) t[k.charCodeAt(0)] = v;
  return t;
}

export interface MessageHandlers {
  /**
   * Bytes to pass on unchanged, in order. The buffer may be a view of an incoming chunk, but never
   * of a reused one (`reusesInput`): then it is a copy, which the handler may keep.
   */
  forward(bytes: Buffer): void;
  /** An observed message: `buf[start..end)` is the body; the message itself is still forwarded. */
  observe?(type: number, buf: Buffer, start: number, end: number): void;
  /**
   * A taken message: `buf[start..end)` is the body; `whole` is the complete message incl. header.
   * Valid only during the call (the buffer may be a reused read buffer).
   */
  take?(type: number, buf: Buffer, start: number, end: number): void;
  /**
   * TakeRun messages: `count` whole messages of type `type` (headers included) in `buf[start..end)`.
   * Valid only during the call. A message that spans chunks still comes alone to `take`.
   */
  takeRun?(type: number, buf: Buffer, start: number, end: number, count: number): void;
  /** For Peek messages: the first bytes of the body (fewer only if the body is shorter). */
  decide?(type: number, head: Buffer, bodyLength: number): Policy.Pass | Policy.Take;
  /** The stream is not pgwire: the caller should close the connection. */
  violation(reason: string): void;
  /**
   * A Take/TakeRun message longer than `maxTakeLength` (`total` bytes, header included): with
   * this handler it is dropped as it streams in, never assembled (memory stays bounded by the
   * setting); without it, the stream fails with a violation.
   */
  oversize?(type: number, total: number): void;
}
