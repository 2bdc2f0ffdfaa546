// A connected loopback pair whose accepted side is moved to onread reads the way the session
// moves its sockets (src/proxy/fast-socket.ts): for the unit tests of those reads and writes.
import { connect, createServer, type Server, type Socket } from "node:net";
import { withStaticReads } from "../../src/proxy/fast-socket.js";

const servers: Server[] = [];
const sockets: Socket[] = [];

/**
 * `peer` is the plain end (paused first when `pausePeer`, so the kernel's buffers fill); `sock`
 * reads through onread into a `bufferSize`-byte buffer, each read handed to `onChunk`.
 */
export async function onreadPair(
  bufferSize: number,
  onChunk: (chunk: Buffer) => void,
  pausePeer = false,
): Promise<{ peer: Socket; sock: Socket }> {
  const server = createServer();
  servers.push(server);
  const accepted = new Promise<Socket>((resolve) => server.once("connection", resolve));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  const peer = connect((server.address() as { port: number }).port, "127.0.0.1");
  sockets.push(peer);
  await new Promise((r) => peer.once("connect", r));
  if (pausePeer) peer.pause();
  const sock = withStaticReads(await accepted, bufferSize, onChunk);
  if (sock === null) throw new Error("the socket did not move to onread reads");
  sockets.push(sock);
  sock.resume();
  return { peer, sock };
}

/** Closes every pair made so far (a test file's afterEach). */
export async function closeOnreadPairs(): Promise<void> {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
}
