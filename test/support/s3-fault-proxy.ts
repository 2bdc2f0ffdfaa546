// A fault-injecting HTTP proxy in front of a real S3 server (moto, Ceph): every request is
// forwarded unchanged (same method, path, headers, body, so SigV4 signatures stay valid) unless a
// rule picks it for a fault. Each fault is something real S3 does (AWS S3 API Reference, "Error
// responses" and the operations' pages; "Best practices design patterns: optimizing Amazon S3
// performance"):
//   "500"       → 500 InternalError (an S3 XML error body): "We encountered an internal error.
//                 Please try again." — the request did not take effect.
//   "503"       → 503 SlowDown: "Please reduce your request rate." S3 sends it in bursts while a
//                 prefix scales; a burst is a rule with `from` and `times` (consecutive matches).
//   "reset"     → the connection is reset before the server sees the request (ECONNRESET).
//   "lost"      → forwarded; the server executes it, then the client's connection is reset instead
//                 of answering: "executed, answer lost". A CreateMultipartUpload so treated leaves an
//                 upload whose id the client never learns; a CompleteMultipartUpload so treated
//                 meets NoSuchUpload when retried ("The specified multipart upload does not exist.
//                 The upload ID might be invalid, or the multipart upload might have been aborted
//                 or completed." — CompleteMultipartUpload, Special errors).
//   "no-such-upload" → 404 NoSuchUpload, not forwarded: what a server that forgets a completed
//                 upload answers a Complete retried after it succeeded (AWS's text above allows it;
//                 moto and AWS itself answer such a retry 200, moto/s3/responses.py "Operation is
//                 idempotent"). Put it behind a "lost" Complete.
//   "error-200" → 200 OK whose body is an S3 error, after the XML declaration and whitespace:
//                 "A request could fail after the initial 200 OK response has been sent. This means
//                 that a 200 OK response can contain either a success or an error." (Complete-
//                 MultipartUpload; CopyObject says the same). Not forwarded: the request failed.
//   "stall"     → no answer at all until the client gives up (or `stallMs`, then forwarded)
//   "hold"      → parked until release() is called, then forwarded (to pin an export in a phase)
//   "hold-after"→ forwarded at once; the server's answer is parked until release(): a Complete
//                 that "could take several minutes to finalize", here with the server done first.
//   "delay-after" → forwarded at once; the answer goes out `stallMs` after the server's.
// A rule matches by S3 operation (derived from method and query, e.g. "UploadPart"), key or one
// request's identity (requestId), and
// fires with a probability, or on the Nth matching request (or from the Nth on), a limited number
// of times. A probability is drawn from a seed and the request itself (its operation, object name
// without the export's id, part number, and how often that request came before), not from
// Math.random: which requests fail does not depend on the order concurrent requests arrive in,
// so a test meets the same faults every run. The proxy counts requests per operation, faults injected, and the most UploadPart
// requests it saw in flight at once; waitFor() resolves when a request of some operation arrives;
// it keeps, per forwarded request, when it went to the server and when the server's answer was
// complete (serverBusyMs: the S3 server's own share of a stretch of time).
import {
  createServer,
  request as httpRequest,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from "node:http";
import type { Socket } from "node:net";

export type S3Op =
  | "CreateMultipartUpload"
  | "UploadPart"
  | "CompleteMultipartUpload"
  | "AbortMultipartUpload"
  | "ListMultipartUploads"
  | "ListParts"
  | "ListObjectsV2"
  | "ListObjects"
  | "PutObject"
  | "GetObject"
  | "HeadObject"
  | "DeleteObject"
  | "DeleteObjects"
  | "CreateBucket"
  | "Other";

export type Fault =
  | "500"
  | "503"
  | "reset"
  | "lost"
  | "error-200"
  | "no-such-upload"
  | "stall"
  | "hold"
  | "hold-after"
  | "delay-after";

export interface FaultRule {
  /** Operations this rule applies to (all when absent). */
  op?: S3Op | S3Op[];
  /** Object keys (without the bucket) this rule applies to. */
  key?: RegExp;
  /**
   * Only this request (its requestId: operation, object name without the export's id, part
   * number), e.g. a SeenRequest's `id` from an earlier export: the same request of every export,
   * also when retries elsewhere change how many requests come before it.
   */
  request?: string;
  fault: Fault;
  /** Chance per matching request (default 1), drawn from `seed` and the request (requestDraw). */
  probability?: number;
  /** Seed of the `probability` draws (default 0). */
  seed?: number;
  /**
   * Fires only while the request (its requestId) has met fewer faults than this, of any rule.
   * Not an S3 behaviour (S3 promises no such limit): with the client's attempts minus one, every
   * request finally gets through, so a test of retries cannot fail by drawing one request's every
   * attempt (the AWS SDKs' standard retry mode gives up after `maxAttempts`).
   */
  perRequest?: number;
  /** Only the Nth matching request (1-based) — e.g. the 3rd UploadPart. */
  nth?: number;
  /** From the Nth matching request on (with `times`: a burst of consecutive faults). */
  from?: number;
  /** How many times the rule fires at most (default: once with `nth`, unlimited otherwise). */
  times?: number;
  /** "stall": forward after this long instead of never answering; "delay-after": answer this late. */
  stallMs?: number;
}

export interface SeenRequest {
  op: S3Op;
  /** requestId: the same for this request in every export, and for its retries. */
  id: string;
  method: string;
  key: string;
  fault: Fault | null;
  /** performance.now() when it arrived. */
  at: number;
  /** Forwarded: when it went to the server, and when the server's answer had fully arrived. */
  sent?: number;
  answered?: number;
}

interface LiveRule extends FaultRule {
  matched: number;
  fired: number;
}

/**
 * What makes a request the same one across runs and retries: its operation, the object's name
 * without the export's id (ids and test prefixes differ every run) and its part number.
 */
export function requestId(op: S3Op, key: string, url: URL): string {
  const name = key
    .slice(key.lastIndexOf("/") + 1)
    .replace(/[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}/g, "<id>");
  return `${op} ${name} ${url.searchParams.get("partNumber") ?? ""}`;
}

/** A uniform draw in [0, 1) from `seed`, the request's id and how often it came before (FNV-1a, then murmur3's finalizer). */
export function requestDraw(seed: number, id: string, n: number): number {
  let h = 0x811c9dc5;
  for (const c of `${seed}|${id}|${n}`) h = Math.imul(h ^ c.charCodeAt(0), 0x01000193);
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return (h >>> 0) / 2 ** 32;
}

export function classify(method: string, url: URL): { op: S3Op; bucket: string; key: string } {
  const parts = url.pathname.replace(/^\//, "").split("/");
  const bucket = decodeURIComponent(parts[0] ?? "");
  const key = parts.slice(1).map(decodeURIComponent).join("/");
  const q = url.searchParams;
  let op: S3Op = "Other";
  if (key === "") {
    if (method === "GET" && q.has("uploads")) op = "ListMultipartUploads";
    else if (method === "GET" && q.get("list-type") === "2") op = "ListObjectsV2";
    else if (method === "GET") op = "ListObjects";
    else if (method === "POST" && q.has("delete")) op = "DeleteObjects";
    else if (method === "PUT") op = "CreateBucket";
  } else if (method === "PUT") op = q.has("partNumber") && q.has("uploadId") ? "UploadPart" : "PutObject";
  else if (method === "POST" && q.has("uploads")) op = "CreateMultipartUpload";
  else if (method === "POST" && q.has("uploadId")) op = "CompleteMultipartUpload";
  else if (method === "DELETE") op = q.has("uploadId") ? "AbortMultipartUpload" : "DeleteObject";
  else if (method === "GET") op = q.has("uploadId") ? "ListParts" : "GetObject";
  else if (method === "HEAD") op = "HeadObject";
  return { op, bucket, key };
}

const S3_ERRORS: Record<"500" | "503" | "no-such-upload", { status: number; code: string; message: string }> =
  {
    "no-such-upload": {
      status: 404,
      code: "NoSuchUpload",
      message:
        "The specified multipart upload does not exist. The upload ID might be invalid, or the multipart upload might have been aborted or completed.",
    },
    "500": {
      status: 500,
      code: "InternalError",
      message: "We encountered an internal error. Please try again.",
    },
    "503": { status: 503, code: "SlowDown", message: "Please reduce your request rate." },
  };

export class S3FaultProxy {
  readonly counts = new Map<S3Op, number>();
  readonly faults = new Map<Fault, number>();
  readonly log: SeenRequest[] = [];
  /** Most UploadPart requests in flight at once (bodies being sent or awaiting an answer). */
  maxPartsInFlight = 0;
  private partsInFlight = 0;
  private rules: LiveRule[] = [];
  /** Per requestId: times it came, and faults it met (since setRules). */
  private readonly seenAs = new Map<string, { times: number; faults: number }>();
  private held: Array<() => void> = [];
  private readonly sockets = new Set<Socket>();
  private waiters: Array<{ op: S3Op | "*"; n: number; resolve: () => void }> = [];

  private constructor(
    private readonly server: Server,
    private readonly target: URL,
    readonly endpoint: string,
  ) {}

  static async start(targetEndpoint: string): Promise<S3FaultProxy> {
    const server = createServer();
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const addr = server.address();
    const port = typeof addr === "object" && addr ? addr.port : 0;
    const p = new S3FaultProxy(server, new URL(targetEndpoint), `http://127.0.0.1:${port}`);
    server.on("connection", (s) => {
      p.sockets.add(s);
      s.on("close", () => p.sockets.delete(s));
    });
    server.on("request", (req, res) => p.handle(req, res));
    return p;
  }

  /** Replaces the fault rules (and their counters). */
  setRules(...rules: FaultRule[]): void {
    this.rules = rules.map((r) => ({ ...r, matched: 0, fired: 0 }));
    this.seenAs.clear();
  }

  /** No more faults; parked requests are forwarded. */
  clear(): void {
    this.rules = [];
    this.release();
  }

  /** Forwards every request parked by a "hold" rule. */
  release(): void {
    const h = this.held;
    this.held = [];
    for (const f of h) f();
  }

  /** Requests of `op` seen ("*": of any operation). */
  count(op: S3Op | "*"): number {
    if (op === "*") return this.log.length;
    return this.counts.get(op) ?? 0;
  }

  faultCount(f?: Fault): number {
    if (f !== undefined) return this.faults.get(f) ?? 0;
    let n = 0;
    for (const v of this.faults.values()) n += v;
    return n;
  }

  resetStats(): void {
    this.counts.clear();
    this.faults.clear();
    this.log.length = 0;
    this.maxPartsInFlight = 0;
  }

  /** Resolves once `n` requests of `op` have arrived in total (counting from the last resetStats). */
  waitFor(op: S3Op | "*", n = 1, timeoutMs = 30_000): Promise<void> {
    if (this.count(op) >= n) return Promise.resolve();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`timed out waiting for ${n} ${op} request(s); saw ${this.count(op)}`)),
        timeoutMs,
      );
      this.waiters.push({
        op,
        n,
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
      });
    });
  }

  async close(): Promise<void> {
    this.clear();
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  private pick(op: S3Op, key: string, id: string): LiveRule | null {
    if (this.rules.length === 0) return null;
    let seen = this.seenAs.get(id);
    if (seen === undefined) {
      seen = { times: 0, faults: 0 };
      this.seenAs.set(id, seen);
    }
    const before = seen.times++;
    for (const r of this.rules) {
      const ops = r.op === undefined ? null : Array.isArray(r.op) ? r.op : [r.op];
      if (ops !== null && !ops.includes(op)) continue;
      if (r.key !== undefined && !r.key.test(key)) continue;
      if (r.request !== undefined && r.request !== id) continue;
      r.matched++;
      const limit = r.times ?? (r.nth !== undefined ? 1 : Number.POSITIVE_INFINITY);
      if (r.fired >= limit) continue;
      if (r.nth !== undefined && r.matched !== r.nth) continue;
      if (r.from !== undefined && r.matched < r.from) continue;
      if (r.perRequest !== undefined && seen.faults >= r.perRequest) continue;
      if (r.probability !== undefined && requestDraw(r.seed ?? 0, id, before) >= r.probability) continue;
      r.fired++;
      seen.faults++;
      return r;
    }
    return null;
  }

  private handle(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url ?? "/", "http://x");
    const { op, key } = classify(req.method ?? "GET", url);
    const id = requestId(op, key, url);
    const rule = this.pick(op, key, id);
    const fault = rule?.fault ?? null;
    this.counts.set(op, this.count(op) + 1);
    if (fault !== null) this.faults.set(fault, (this.faults.get(fault) ?? 0) + 1);
    const seen: SeenRequest = { op, id, method: req.method ?? "", key, fault, at: performance.now() };
    this.log.push(seen);
    let settled = false;
    if (op === "UploadPart") {
      this.partsInFlight++;
      this.maxPartsInFlight = Math.max(this.maxPartsInFlight, this.partsInFlight);
      const done = (): void => {
        if (settled) return;
        settled = true;
        this.partsInFlight--;
      };
      res.once("close", done);
      req.socket.once("close", done);
    }
    const ready = this.waiters.filter((w) => (w.op === op || w.op === "*") && this.count(w.op) >= w.n);
    this.waiters = this.waiters.filter((w) => !ready.includes(w));
    for (const w of ready) w.resolve();

    switch (fault) {
      case "500":
      case "503":
      case "no-such-upload": {
        const e = S3_ERRORS[fault];
        req.resume();
        req.once("end", () => {
          res.writeHead(e.status, { "content-type": "application/xml" });
          res.end(
            `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${e.code}</Code><Message>${e.message}</Message><RequestId>fault-proxy</RequestId></Error>`,
          );
        });
        return;
      }
      case "reset":
        req.socket.resetAndDestroy();
        return;
      case "error-200":
        req.resume();
        req.once("end", () => {
          res.writeHead(200, { "content-type": "application/xml" });
          // S3 sends the declaration and keep-alive whitespace first, the outcome at the end.
          res.write(`<?xml version="1.0" encoding="UTF-8"?>\n${" ".repeat(64)}\n`);
          res.end(
            "<Error><Code>InternalError</Code><Message>We encountered an internal error. Please try again.</Message><RequestId>fault-proxy</RequestId></Error>",
          );
        });
        return;
      case "lost":
      case "hold-after":
      case "delay-after":
        this.forward(req, res, undefined, seen, (answer) => {
          if (fault === "lost") req.socket.resetAndDestroy();
          else if (fault === "hold-after") this.held.push(answer);
          else setTimeout(answer, rule?.stallMs ?? 1000);
        });
        return;
      case "stall":
      case "hold": {
        // Read the body (so the client waits for an answer, not to send), then say nothing until
        // the stall ends or the hold is released.
        const body: Buffer[] = [];
        let ended = false;
        let go = false;
        const send = (): void => {
          if (ended && go && !req.socket.destroyed) this.forward(req, res, Buffer.concat(body), seen);
        };
        req.on("data", (d: Buffer) => body.push(d));
        req.once("end", () => {
          ended = true;
          send();
        });
        const proceed = (): void => {
          go = true;
          send();
        };
        if (fault === "hold") this.held.push(proceed);
        else if (rule?.stallMs !== undefined) {
          const t = setTimeout(proceed, rule.stallMs);
          req.socket.once("close", () => clearTimeout(t));
        }
        return;
      }
      default:
        this.forward(req, res, undefined, seen);
    }
  }

  /**
   * Forwards to the real server; `body`: the request body, when it was read already. `then`: the
   * server's whole answer has arrived — call `answer` to send it on (or do something else).
   */
  private forward(
    req: IncomingMessage,
    res: ServerResponse,
    body: Buffer | undefined,
    seen: SeenRequest,
    then?: (answer: () => void) => void,
  ): void {
    seen.sent = performance.now();
    const up = httpRequest(
      {
        host: this.target.hostname,
        port: this.target.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (upRes) => {
        const chunks: Buffer[] = [];
        upRes.on("data", (d: Buffer) => chunks.push(d));
        upRes.once("end", () => {
          seen.answered = performance.now();
          const answer = (): void => {
            if (res.destroyed) return;
            res.writeHead(upRes.statusCode ?? 502, upRes.headers);
            res.end(Buffer.concat(chunks));
          };
          if (then !== undefined) then(answer);
          else answer();
        });
      },
    );
    up.on("error", () => req.socket.destroy());
    res.on("close", () => {
      // The server's work goes on when the client gives up: only a request still being sent is cut.
      if (!req.complete) up.destroy();
    });
    if (body !== undefined) up.end(body);
    else req.pipe(up);
  }

  /**
   * Milliseconds of [from, to] during which the S3 server behind the proxy had at least one request
   * to answer (the union of the forwarded requests' intervals): the server's own share of a wait.
   */
  serverBusyMs(from: number, to: number): number {
    const spans = this.log
      .filter((r) => r.sent !== undefined)
      .map((r) => [Math.max(from, r.sent!), Math.min(to, r.answered ?? to)] as const)
      .filter(([a, b]) => b > a)
      .sort((x, y) => x[0] - y[0]);
    let busy = 0;
    let end = from;
    for (const [a, b] of spans) {
      if (b <= end) continue;
      busy += b - Math.max(a, end);
      end = b;
    }
    return busy;
  }
}
