// The floors under any Node CRI server, for the lifecycle benchmark to time beside each ContainerStatus call with
// the same client: `http2`, a bare node:http2 server (no gRPC library, no berth code) answering every unary call with
// one fixed gRPC reply; `grpc-js`, a bare grpc-js server whose ContainerStatus returns that same reply (the library
// berth uses, without berth). The report shows how much of berth's ContainerStatus each layer takes.
//
//   node dist/bench/http2-floor.js http2|grpc-js SOCKET   (then one JSON ContainerStatusResponse per stdin line)
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { loadCri } from '../src/server/proto';

export type FloorKind = 'http2' | 'grpc-js';

export interface Floor {
  kind: FloorKind;
  socket: string;
  /** The reply from now on (a decoded ContainerStatusResponse, as the client got it from berth). */
  setReply(reply: unknown): void;
  stop(): void;
}

/** Starts the floor server in its own process (a server in the client's process would skip the cross-process wake-up). */
export async function startFloor(kind: FloorKind, socket: string): Promise<Floor> {
  const child: ChildProcess = spawn(process.execPath, [__filename, kind, socket], { stdio: ['pipe', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    child.once('exit', (code) => reject(new Error(`http2 floor server exited (${code}) before listening`)));
    child.stdout?.once('data', () => resolve());
  });
  return {
    kind,
    socket,
    setReply: (reply) => child.stdin?.write(`${JSON.stringify(reply)}\n`),
    stop: () => {
      child.kill();
      fs.rmSync(socket, { force: true });
    },
  };
}

function serve(kind: string, socket: string): void {
  const service = loadCri().runtime.v1.RuntimeService.service;
  let message: unknown = {};
  let reply = frame(service.ContainerStatus.responseSerialize({}));
  readline.createInterface({ input: process.stdin }).on('line', (line) => {
    message = JSON.parse(line) as unknown;
    reply = frame(service.ContainerStatus.responseSerialize(message as never));
  });
  process.stdin.on('end', () => process.exit(0));
  fs.rmSync(socket, { force: true });
  if (kind === 'grpc-js') {
    // As berth sets its server up (channelz off), with the reply as the decoded message grpc-js serialises itself.
    const server = new grpc.Server({ 'grpc.enable_channelz': 0 });
    server.addService({ ContainerStatus: service.ContainerStatus }, {
      ContainerStatus: (_call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => callback(null, message),
    });
    server.bindAsync(`unix:${socket}`, grpc.ServerCredentials.createInsecure(), (err) => {
      if (err) throw err;
      process.stdout.write('listening\n');
    });
    return;
  }
  const server = http2.createServer();
  server.on('stream', (stream) => {
    stream.on('data', () => undefined); // the request is read and dropped
    stream.on('end', () => {
      stream.respond({ ':status': 200, 'content-type': 'application/grpc' }, { waitForTrailers: true });
      stream.once('wantTrailers', () => stream.sendTrailers({ 'grpc-status': '0' }));
      stream.end(reply);
    });
  });
  server.listen(socket, () => process.stdout.write('listening\n'));
}

/** A gRPC length-prefixed message: flag byte 0 (uncompressed), 4-byte big-endian length. */
function frame(message: Buffer): Buffer {
  const out = Buffer.alloc(5 + message.length);
  out.writeUInt32BE(message.length, 1);
  message.copy(out, 5);
  return out;
}

if (require.main === module) serve(process.argv[2] ?? '', process.argv[3] ?? '');
