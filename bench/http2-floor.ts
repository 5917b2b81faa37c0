// The floor under any Node CRI server: a bare node:http2 server (no grpc-js, no berth code) that answers every unary
// call with one fixed gRPC reply. The lifecycle benchmark times it beside each ContainerStatus call, with the same
// client, so the report shows how much of berth's ContainerStatus is Node's HTTP/2 stack itself.
//
//   node dist/bench/http2-floor.js SOCKET     (then one JSON ContainerStatusResponse per stdin line: the reply)
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import readline from 'node:readline';
import { loadCri } from '../src/server/proto';

export interface Floor {
  socket: string;
  /** The reply from now on (a decoded ContainerStatusResponse, as the client got it from berth). */
  setReply(reply: unknown): void;
  stop(): void;
}

/** Starts the floor server in its own process (a server in the client's process would skip the cross-process wake-up). */
export async function startFloor(socket: string): Promise<Floor> {
  const child: ChildProcess = spawn(process.execPath, [__filename, socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`http2 floor server exited (${code}) before listening`)));
    child.stdout?.once('data', () => resolve());
  });
  return {
    socket,
    setReply: (reply) => child.stdin?.write(`${JSON.stringify(reply)}\n`),
    stop: () => {
      child.kill();
      fs.rmSync(socket, { force: true });
    },
  };
}

function serve(socket: string): void {
  const method = loadCri().runtime.v1.RuntimeService.service.ContainerStatus;
  let reply = frame(method.responseSerialize({}));
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    reply = frame(method.responseSerialize(JSON.parse(line) as never));
  });
  process.stdin.on('end', () => process.exit(0));
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('data', () => undefined); // the request is read and dropped
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(reply);
    });
  });
  fs.rmSync(socket, { force: true });
  server.listen(socket, () => process.stdout.write('listening\n'));
}

/** A gRPC length-prefixed message: flag byte 0 (uncompressed), 4-byte big-endian length. */
function frame(message: Buffer): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

if (require.main === module) serve(process.argv[2] ?? '');
