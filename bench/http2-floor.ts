// The floors under any Node CRI server, for the lifecycle benchmark to time beside each ContainerStatus call with
// the same client: `http2`, a bare node:http2 server (no gRPC library, no berth code) answering every unary call with
// one fixed gRPC reply; `grpc-js`, a bare grpc-js server whose ContainerStatus returns that same reply (the server
// berth used before its own transport, src/server/h2); `raw-h2`, a sketch of the least any HTTP/2 transport in Node
// could do (see serveRawH2: a measuring stick, not a server). The report shows berth's ContainerStatus against each.
//
//   node dist/bench/http2-floor.js http2|grpc-js|raw-h2 SOCKET   (then one JSON ContainerStatusResponse per stdin line)
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import readline from 'node:readline';
import * as grpc from '@grpc/grpc-js';
import { loadCri } from '../src/server/proto';

export type FloorKind = 'http2' | 'grpc-js' | 'raw-h2';

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
  if (kind === 'raw-h2') {
    serveRawH2(socket, () => reply);
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

// HTTP/2 (RFC 9113) frame types and flags the sketch below needs.
const DATA = 0x0;
const HEADERS = 0x1;
const SETTINGS = 0x4;
const PING = 0x6;
const GOAWAY = 0x7;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
const ACK = 0x1;
const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
// Header blocks in HPACK (RFC 7541) from the static table and literals only, so no dynamic table is needed:
// ":status: 200" (static index 8), "content-type: application/grpc" (literal, indexed name 31), and the trailer
// "grpc-status: 0" (literal, new name).
const RESPONSE_HEADERS = Buffer.concat([Buffer.from([0x88, 0x0f, 0x10, 16]), Buffer.from('application/grpc')]);
const TRAILERS = Buffer.concat([Buffer.from([0x00, 11]), Buffer.from('grpc-status'), Buffer.from([1]), Buffer.from('0')]);

function h2frame(type: number, flags: number, stream: number, payload: Buffer): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream & 0x7fffffff, 5);
  return Buffer.concat([head, payload]);
}

/**
 * The least an HTTP/2 server in Node could do per unary call: frames parsed from the socket, the request's header
 * block not even decoded (every call gets the one reply), and headers + message + trailers sent in a single write,
 * as Go's gRPC does (node:http2 sends the trailers in a write of their own). It ignores flow control, padding,
 * CONTINUATION and everything else a real server must handle: a measuring stick for what a lean transport could
 * reach, not a transport.
 */
function serveRawH2(socket: string, reply: () => Buffer): void {
  const server = net.createServer((conn) => {
    let buf: Buffer = Buffer.alloc(0);
    let prefaced = false;
    conn.write(h2frame(SETTINGS, 0, 0, Buffer.alloc(0)));
    conn.on('error', () => undefined);
    conn.on('data', (chunk: Buffer) => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
      if (!prefaced) {
        if (buf.length < PREFACE.length) return;
        buf = buf.subarray(PREFACE.length);
        prefaced = true;
      }
      const out: Buffer[] = [];
      while (buf.length >= 9) {
        const len = buf.readUIntBE(0, 3);
        if (buf.length < 9 + len) break;
        const [type, flags] = [buf[3] ?? 0, buf[4] ?? 0];
        const stream = buf.readUInt32BE(5) & 0x7fffffff;
        const payload = buf.subarray(9, 9 + len);
        buf = buf.subarray(9 + len);
        if (type === SETTINGS && !(flags & ACK)) out.push(h2frame(SETTINGS, ACK, 0, Buffer.alloc(0)));
        else if (type === PING && !(flags & ACK)) out.push(h2frame(PING, ACK, 0, payload));
        else if (type === GOAWAY) conn.end();
        else if ((type === DATA || type === HEADERS) && flags & END_STREAM) {
          out.push(h2frame(HEADERS, END_HEADERS, stream, RESPONSE_HEADERS), h2frame(DATA, 0, stream, reply()),
            h2frame(HEADERS, END_HEADERS | END_STREAM, stream, TRAILERS));
        }
      }
      if (out.length > 0) conn.write(Buffer.concat(out));
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
