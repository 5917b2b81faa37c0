// The HTTP/2 transport and gRPC server (src/server/h2) at the protocol level: a raw frame-by-frame client for the
// framing, flow control, and every connection and stream error; node:http2 (nghttp2) and @grpc/grpc-js as real
// clients; graceful shutdown; and a fuzz run of hostile connections.
import crypto from 'node:crypto';
import { once } from 'node:events';
import fs from 'node:fs';
import http2 from 'node:http2';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import v8 from 'node:v8';
import vm from 'node:vm';
import zlib from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { Flag, FrameType, H2Error, PREFACE, Setting } from '../../src/server/h2/frames';
import { GrpcServer, type GrpcCall, type GrpcHandler, type GrpcServerOptions } from '../../src/server/h2/grpc-server';
import { encodeHeaders } from '../../src/server/h2/hpack';
import {
  H2RawClient, grpcMessage, grpcMessages, grpcRequestHeaders, headerValue, parseSettings, rawFrame, settingsPayload, uint32,
  type HeaderList, type RawClientOptions, type RawFrame, type StreamResult,
} from '../helpers/h2-raw-client';
import { until } from '../helpers/until';
import { seededRandom } from '../helpers/seeded-random';

const MAX_MESSAGE = 4 * 1024 * 1024;
const M = {
  echo: '/test.Test/Echo',
  slow: '/test.Test/Slow',
  stream: '/test.Test/Stream',
  big: '/test.Test/Big',
  fail: '/test.Test/Fail',
  digest: '/test.Test/Digest',
  burst: '/test.Test/Burst',
};

// ---- the handlers, and what they record for the tests ----

/** A call to Slow, by its request (a tag): it waits until the test finishes it, or until it is cancelled. */
interface SlowCall {
  call: GrpcCall;
  cancelled: boolean;
}
const slowCalls = new Map<string, SlowCall>();

/** A call to Stream, by its tag: how many of its send() promises resolved, and how it ended. */
interface StreamRun {
  resolved: number;
  finished: boolean;
  error: string | undefined;
}
const streamRuns = new Map<string, StreamRun>();

/** A call to Burst, by its tag: it sends its messages without waiting for one send() before the next. */
interface BurstRun {
  call: GrpcCall;
  settled: number;
  rejected: number;
}
const burstRuns = new Map<string, BurstRun>();

/** Deterministic bytes: a reply or request whose every byte can be checked. */
function pattern(size: number, seed = 0): Buffer {
  const out = Buffer.allocUnsafe(size);
  for (let i = 0; i < size; i++) out[i] = (i * 31 + seed * 7 + (i >>> 8)) & 0xff;
  return out;
}

/** The i-th message the Stream handler sends. */
function streamMessage(i: number, size: number): Buffer {
  const message = pattern(Math.max(4, size), i);
  message.writeUInt32BE(i, 0);
  return message;
}

const sha256 = (b: Buffer): string => crypto.createHash('sha256').update(b).digest('hex');

async function runStream(request: Buffer, call: GrpcCall): Promise<void> {
  let run: StreamRun | undefined;
  try {
    const { tag, count, size } = JSON.parse(request.toString()) as { tag: string; count: number; size: number };
    if (typeof tag !== 'string' || !(count >= 0 && count <= 10_000) || !(size >= 0 && size <= 1 << 20)) throw new Error('bad request');
    run = { resolved: 0, finished: false, error: undefined };
    streamRuns.set(tag, run);
    for (let i = 0; i < count; i++) {
      await call.send(streamMessage(i, size));
      run.resolved++;
    }
    call.finish(0, '');
    run.finished = true;
  } catch (err) {
    if (run) run.error = err instanceof Error ? err.message : String(err);
    else call.finish(3, 'bad stream request');
  }
}

function testHandlers(): Map<string, GrpcHandler> {
  return new Map<string, GrpcHandler>([
    [M.echo, (request, call) => call.reply(request)],
    [M.slow, (request, call) => {
      const slow: SlowCall = { call, cancelled: false };
      call.onCancel(() => {
        slow.cancelled = true;
      });
      slowCalls.set(request.toString(), slow);
    }],
    [M.stream, (request, call) => {
      void runStream(request, call);
    }],
    [M.big, (request, call) => {
      const size = request.length === 4 ? request.readUInt32BE(0) : -1;
      if (size < 0 || size > 2 * MAX_MESSAGE) return call.finish(3, 'bad size');
      call.reply(pattern(size));
    }],
    [M.fail, (_request, call) => call.finish(5, 'not found: ü%')],
    [M.digest, (request, call) => call.reply(Buffer.from(`${request.length} ${sha256(request)}`))],
    [M.burst, (request, call) => {
      // {tag, count, size, manual}: all sends at once; then finish once they all resolved, or when the test says.
      const { tag, count, size, manual } = JSON.parse(request.toString()) as { tag: string; count: number; size: number; manual: boolean };
      const run: BurstRun = { call, settled: 0, rejected: 0 };
      burstRuns.set(tag, run);
      const sends = Array.from({ length: count }, (_, i) => call.send(streamMessage(i, size)).then(() => {
        run.settled++;
      }, () => {
        run.settled++;
        run.rejected++;
      }));
      if (!manual) void Promise.all(sends).then(() => call.finish(0, ''));
    }],
  ]);
}

// ---- servers and clients, all cleaned up after each test ----

let dir = '';
let sock = '';
let server: GrpcServer | undefined;
let socketCount = 0;
const cleanups: Array<() => void> = [];

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-h2-'));
  sock = path.join(dir, 'main.sock');
  server = new GrpcServer(testHandlers(), { maxMessageBytes: MAX_MESSAGE });
  await server.listen(sock);
});

afterEach(() => {
  for (const cleanup of cleanups.splice(0).reverse()) cleanup();
});

afterAll(() => {
  server?.destroy();
  if (dir !== '') fs.rmSync(dir, { recursive: true, force: true });
});

/** Another server, for tests that change its options or shut it down. */
async function startServer(options: Partial<GrpcServerOptions> = {}): Promise<{ server: GrpcServer; sock: string }> {
  const s = new GrpcServer(testHandlers(), { maxMessageBytes: MAX_MESSAGE, ...options });
  const p = path.join(dir, `extra-${++socketCount}.sock`);
  cleanups.push(() => s.destroy());
  await s.listen(p);
  return { server: s, sock: p };
}

async function connect(options: RawClientOptions = {}, socketPath = sock): Promise<H2RawClient> {
  const c = await H2RawClient.connect(socketPath, options);
  cleanups.push(() => c.close());
  return c;
}

const isSettings = (f: RawFrame): boolean => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) === 0;
const isSettingsAck = (f: RawFrame): boolean => f.type === FrameType.SETTINGS && (f.flags & Flag.ACK) !== 0;

/** A raw client past the handshake: the server's SETTINGS is in, and ours was acknowledged. */
async function ready(options: RawClientOptions = {}, socketPath = sock): Promise<H2RawClient> {
  const c = await connect(options, socketPath);
  await c.waitFor(isSettings, 5000, "the server's SETTINGS");
  await c.waitFor(isSettingsAck, 5000, 'the ACK of our SETTINGS');
  return c;
}

function serverSettings(c: H2RawClient): Map<number, number> {
  const f = c.received.find(isSettings);
  if (!f) throw new Error('no SETTINGS from the server');
  return parseSettings(f.payload);
}

/** DATA payload bytes the client sent on a stream so far. */
function sentOn(c: H2RawClient, stream: number): number {
  return c.sentData.get(stream) ?? 0;
}

/** DATA payload bytes received on a stream so far. */
function dataBytes(c: H2RawClient, stream: number): number {
  return c.received.filter((f) => f.type === FrameType.DATA && f.stream === stream).reduce((n, f) => n + f.payload.length, 0);
}

function status(r: StreamResult): { status: string | undefined; message: string | undefined } {
  return { status: headerValue(r.trailers, 'grpc-status'), message: headerValue(r.trailers, 'grpc-message') };
}

/** Messages compared by length, then content (jest's toEqual walks a large Buffer byte by byte, slowly). */
function expectMessages(actual: Buffer[], expected: Buffer[]): void {
  expect(actual.map((m) => m.length)).toEqual(expected.map((m) => m.length));
  const differ = (m: Buffer, e: Buffer): string => {
    let i = 0;
    while (i < m.length && m[i] === e[i]) i++;
    return `differs at byte ${i}`;
  };
  expect(actual.map((m, i) => (m.equals(expected[i] ?? Buffer.alloc(0)) ? 'same' : differ(m, expected[i] ?? Buffer.alloc(0)))))
    .toEqual(expected.map(() => 'same'));
}

/** Echo on a fresh stream: the connection still serves. */
async function expectEcho(c: H2RawClient, stream: number): Promise<void> {
  const message = Buffer.from(`still serving on ${stream}`);
  c.grpcRequest(stream, M.echo, message);
  const r = await c.stream(stream);
  expect({ status: status(r).status, messages: r.messages }).toEqual({ status: '0', messages: [message] });
}

/**
 * Sends gRPC bodies on streams whose HEADERS went out already, round-robin in DATA frames of up to 16384 bytes, as
 * a well-behaved client does: within the windows the server granted (its SETTINGS and WINDOW_UPDATEs), waiting
 * for more when they run out. The last frame of each body has END_STREAM.
 */
async function upload(c: H2RawClient, bodies: Array<{ stream: number; body: Buffer }>, timeoutMs = 5000, end = true): Promise<void> {
  const initial = serverSettings(c).get(Setting.INITIAL_WINDOW_SIZE) ?? 65_535;
  // What the client sent before counts against the connection window; these streams are new.
  let connWindow = 65_535 - c.dataBytesSent;
  const windows = new Map(bodies.map((b) => [b.stream, initial]));
  const offsets = new Map(bodies.map((b) => [b.stream, 0]));
  let seen = 0;
  for (;;) {
    for (; seen < c.received.length; seen++) {
      const f = c.received[seen];
      if (f?.type !== FrameType.WINDOW_UPDATE) continue;
      const increment = f.payload.readUInt32BE(0);
      if (f.stream === 0) connWindow += increment;
      else if (windows.has(f.stream)) windows.set(f.stream, (windows.get(f.stream) ?? 0) + increment);
    }
    let progressed = false;
    let remaining = false;
    for (const { stream, body } of bodies) {
      const at = offsets.get(stream) ?? 0;
      if (at >= body.length) continue;
      remaining = true;
      const n = Math.min(16_384, body.length - at, connWindow, windows.get(stream) ?? 0);
      if (n <= 0) continue;
      c.data(stream, body.subarray(at, at + n), { endStream: end && at + n === body.length });
      offsets.set(stream, at + n);
      windows.set(stream, (windows.get(stream) ?? 0) - n);
      connWindow -= n;
      progressed = true;
    }
    if (!remaining) return;
    if (progressed) {
      await new Promise((resolve) => setImmediate(resolve));
      continue;
    }
    const from = seen;
    const sent = bodies.map((b) => `stream ${b.stream}: ${offsets.get(b.stream)}/${b.body.length}`).join(', ');
    await c.waitFor((f) => f.type === FrameType.WINDOW_UPDATE && c.received.indexOf(f) >= from, timeoutMs,
      `a WINDOW_UPDATE to go on uploading (${sent}; connection window ${connWindow})`);
  }
}

// ---- node:http2 and @grpc/grpc-js clients ----

function h2Session(socketPath = sock): http2.ClientHttp2Session {
  const session = http2.connect('http://localhost', { createConnection: () => net.connect(socketPath) });
  session.on('error', () => undefined);
  cleanups.push(() => session.destroy());
  return session;
}

interface H2Reply {
  headers: http2.IncomingHttpHeaders;
  body: Buffer;
  trailers: http2.IncomingHttpHeaders;
}

function h2Request(session: http2.ClientHttp2Session, method: string, extra: http2.OutgoingHttpHeaders = {}): http2.ClientHttp2Stream {
  return session.request({ ':method': 'POST', ':path': method, 'content-type': 'application/grpc', te: 'trailers', ...extra });
}

function h2Call(session: http2.ClientHttp2Session, method: string, body: Buffer, extra: http2.OutgoingHttpHeaders = {}): Promise<H2Reply> {
  return new Promise((resolve, reject) => {
    const req = h2Request(session, method, extra);
    let headers: http2.IncomingHttpHeaders = {};
    let trailers: http2.IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    req.on('response', (h) => {
      headers = h;
    });
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    req.on('end', () => resolve({ headers, body: Buffer.concat(chunks), trailers }));
    req.on('error', reject);
    req.end(body);
  });
}

function grpcClient(socketPath = sock, options: grpc.ChannelOptions = {}): grpc.Client {
  const client = new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure(), options);
  cleanups.push(() => client.close());
  return client;
}

const identity = (b: Buffer): Buffer => b;

function unary(client: grpc.Client, method: string, message: Buffer, options: grpc.CallOptions = {}): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(method, identity, identity, message, new grpc.Metadata(), options, (err, reply) => {
      if (err) reject(err);
      else resolve(reply ?? Buffer.alloc(0));
    });
  });
}

async function unaryError(client: grpc.Client, method: string, message: Buffer, options: grpc.CallOptions = {}): Promise<grpc.ServiceError> {
  try {
    await unary(client, method, message, options);
  } catch (err) {
    return err as grpc.ServiceError;
  }
  throw new Error(`${method} succeeded`);
}

async function waitSlow(tag: string): Promise<SlowCall> {
  return until(`the Slow handler to get "${tag}"`, () => slowCalls.get(tag), 5000, 5);
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

// ---- unary calls ----

describe('unary calls', () => {
  it('echo: HEADERS (:status 200, application/grpc), one DATA, trailers (grpc-status 0, END_STREAM), in one write', async () => {
    const c = await ready();
    c.grpcRequest(1, M.echo, Buffer.from('hello'));
    const r = await c.stream(1);
    expect(r.frames.map((f) => [f.type, f.flags])).toEqual([
      [FrameType.HEADERS, Flag.END_HEADERS],
      [FrameType.DATA, 0],
      [FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM],
    ]);
    expect(r.headers).toEqual([[':status', '200'], ['content-type', 'application/grpc']]);
    expect(r.data).toEqual(grpcMessage(Buffer.from('hello')));
    expect(r.trailers).toEqual([['grpc-status', '0']]);
    // One writev: all three frames came in the socket read that held the first one.
    const read = r.frames[0]?.readFirst;
    expect(r.frames.map((f) => [f.readFirst, f.readLast])).toEqual([[read, read], [read, read], [read, read]]);
    await c.sync();
    expect(c.received.filter((f) => f.stream === 1 && f.type === FrameType.RST_STREAM)).toEqual([]);
  });

  it('echo of an empty message and of a 1 MiB one, and many calls on one connection', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 1 << 22]] });
    c.windowUpdate(0, 1 << 24);
    c.grpcRequest(1, M.echo, Buffer.alloc(0));
    expect((await c.stream(1)).messages).toEqual([Buffer.alloc(0)]);
    const large = pattern(1 << 20, 9);
    c.headers(3, grpcRequestHeaders(M.echo));
    await upload(c, [{ stream: 3, body: grpcMessage(large) }]);
    const r = await c.stream(3);
    expect(r.messages.length).toBe(1);
    expect(r.messages[0]?.equals(large)).toBe(true);
    for (let i = 0; i < 50; i++) c.grpcRequest(5 + 2 * i, M.echo, Buffer.from(`call ${i}`));
    for (let i = 0; i < 50; i++) expect((await c.stream(5 + 2 * i)).messages).toEqual([Buffer.from(`call ${i}`)]);
  });

  it('echo through node:http2', async () => {
    const session = h2Session();
    const reply = await h2Call(session, M.echo, grpcMessage(Buffer.from('via nghttp2')));
    expect(reply.headers[':status']).toBe(200);
    expect(reply.headers['content-type']).toBe('application/grpc');
    expect(grpcMessages(reply.body)).toEqual([Buffer.from('via nghttp2')]);
    expect(reply.trailers['grpc-status']).toBe('0');
  });

  it('echo through @grpc/grpc-js: concurrent calls of many sizes', async () => {
    const client = grpcClient();
    const sizes = [0, 1, 5, 100, 16_379, 16_384, 65_535, 65_536, 200_000, 1 << 20];
    const replies = await Promise.all(sizes.map((size, i) => unary(client, M.echo, pattern(size, i))));
    replies.forEach((reply, i) => expect(reply.equals(pattern(sizes[i] ?? 0, i))).toBe(true));
  });

  it('an error status is a trailers-only response with a percent-encoded grpc-message', async () => {
    const c = await ready();
    c.grpcRequest(1, M.fail, Buffer.from('x'));
    const r = await c.stream(1);
    expect(r.frames.map((f) => [f.type, f.flags])).toEqual([[FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM]]);
    expect(r.headers).toEqual([
      [':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '5'], ['grpc-message', 'not found: %C3%BC%25'],
    ]);
    const err = await unaryError(grpcClient(), M.fail, Buffer.from('x'));
    expect({ code: err.code, details: err.details }).toEqual({ code: grpc.status.NOT_FOUND, details: 'not found: ü%' });
  });

  it('an unknown method is UNIMPLEMENTED (12), naming the method', async () => {
    const c = await ready();
    c.grpcRequest(1, '/test.Test/Nope', Buffer.from('x'));
    const r = await c.stream(1);
    expect(status(r).status).toBe('12');
    expect(status(r).message).toContain('/test.Test/Nope');
    const err = await unaryError(grpcClient(), '/test.Test/Nope', Buffer.from('x'));
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
    expect(err.details).toContain('/test.Test/Nope');
  });

  it('GET is answered with :status 405', async () => {
    const c = await ready();
    c.headers(1, [[':method', 'GET'], [':scheme', 'http'], [':path', M.echo], [':authority', 'x'], ['content-type', 'application/grpc']], { endStream: true });
    const r = await c.stream(1);
    expect(headerValue(r.headers, ':status')).toBe('405');
    expect(r.frames.at(-1)?.flags).toBe(Flag.END_HEADERS | Flag.END_STREAM);
    await expectEcho(c, 3);
  });

  it('content-type text/plain is answered with :status 415', async () => {
    const c = await ready();
    c.grpcRequest(1, M.echo, Buffer.from('x'), { headers: grpcRequestHeaders(M.echo).map(([n, v]): [string, string] => [n, n === 'content-type' ? 'text/plain' : v]) });
    const r = await c.stream(1);
    expect(headerValue(r.headers, ':status')).toBe('415');
    expect(r.data.length).toBe(0);
    await expectEcho(c, 3);
  });

  it('application/grpc+proto is a gRPC content-type', async () => {
    const c = await ready();
    c.grpcRequest(1, M.echo, Buffer.from('proto'), { headers: grpcRequestHeaders(M.echo).map(([n, v]): [string, string] => [n, n === 'content-type' ? 'application/grpc+proto' : v]) });
    expect((await c.stream(1)).messages).toEqual([Buffer.from('proto')]);
  });

  it('a request message over maxMessageBytes is RESOURCE_EXHAUSTED (8) as soon as its length is known', async () => {
    const c = await ready();
    c.headers(1, grpcRequestHeaders(M.echo));
    const head = Buffer.alloc(5);
    head.writeUInt32BE(MAX_MESSAGE + 1, 1);
    // The length prefix and a little of the message: the rest is never sent.
    c.data(1, Buffer.concat([head, pattern(1000)]));
    const r = await c.stream(1);
    expect(status(r).status).toBe('8');
    expect(status(r).message).toContain('exceeds');
    // The server has its answer, and asks the client to stop sending (RFC 9113 §8.1).
    expect(await c.rstCode(1)).toBe(H2Error.NO_ERROR);
    await expectEcho(c, 3);
  });

  it('a reply over maxMessageBytes is RESOURCE_EXHAUSTED (8)', async () => {
    const c = await ready();
    c.grpcRequest(1, M.big, uint32(MAX_MESSAGE + 1));
    const r = await c.stream(1);
    expect(status(r).status).toBe('8');
    expect(r.data.length).toBe(0);
  });

  it('two request messages in a unary call are an error', async () => {
    const c = await ready();
    c.headers(1, grpcRequestHeaders(M.echo));
    c.data(1, Buffer.concat([grpcMessage(Buffer.from('one')), grpcMessage(Buffer.from('two'))]), { endStream: true });
    const r = await c.stream(1);
    expect(r.messages).toEqual([]);
    expect(Number(status(r).status)).toBeGreaterThan(0);
    // The second message in its own frame, too.
    c.headers(3, grpcRequestHeaders(M.echo));
    c.data(3, grpcMessage(Buffer.from('one')));
    c.data(3, grpcMessage(Buffer.from('two')), { endStream: true });
    const r3 = await c.stream(3);
    expect(r3.messages).toEqual([]);
    expect(Number(status(r3).status)).toBeGreaterThan(0);
  });

  it('a request without a message, or with a cut one, is an error', async () => {
    const c = await ready();
    c.headers(1, grpcRequestHeaders(M.echo), { endStream: true });
    const r = await c.stream(1);
    expect(r.messages).toEqual([]);
    expect(Number(status(r).status)).toBeGreaterThan(0);
    c.headers(3, grpcRequestHeaders(M.echo));
    c.data(3, grpcMessage(Buffer.from('0123456789')).subarray(0, 9), { endStream: true });
    const r3 = await c.stream(3);
    expect(r3.messages).toEqual([]);
    expect(Number(status(r3).status)).toBeGreaterThan(0);
    c.headers(5, grpcRequestHeaders(M.echo));
    c.data(5, Buffer.from([0, 0]), { endStream: true });
    expect(Number(status(await c.stream(5)).status)).toBeGreaterThan(0);
  });

  it('a gzip or deflate message with its grpc-encoding is decoded', async () => {
    const c = await ready();
    const message = Buffer.from('compress me '.repeat(100));
    c.grpcRequest(1, M.echo, zlib.gzipSync(message), { compressedFlag: 1, extraHeaders: [['grpc-encoding', 'gzip']] });
    const r = await c.stream(1);
    expect(status(r).status).toBe('0');
    expect(r.messages).toEqual([message]);
    expect(r.data[0]).toBe(0); // the reply is not compressed
    c.grpcRequest(3, M.echo, zlib.deflateSync(message), { compressedFlag: 1, extraHeaders: [['grpc-encoding', 'deflate']] });
    expect((await c.stream(3)).messages).toEqual([message]);
    // An uncompressed message is fine whatever the grpc-encoding.
    c.grpcRequest(5, M.echo, message, { extraHeaders: [['grpc-encoding', 'gzip']] });
    expect((await c.stream(5)).messages).toEqual([message]);
  });

  it('gzip through @grpc/grpc-js (grpc.default_compression_algorithm)', async () => {
    const message = Buffer.alloc(100_000, 'z');
    for (const algorithm of [1, 2]) {
      const client = grpcClient(sock, { 'grpc.default_compression_algorithm': algorithm });
      expect((await unary(client, M.echo, message)).equals(message)).toBe(true);
    }
  });

  it('a gzip message that inflates past maxMessageBytes is RESOURCE_EXHAUSTED; a corrupt one is an error', async () => {
    const c = await ready();
    c.grpcRequest(1, M.echo, zlib.gzipSync(Buffer.alloc(MAX_MESSAGE + 1000)), { compressedFlag: 1, extraHeaders: [['grpc-encoding', 'gzip']] });
    const r = await c.stream(1);
    expect(status(r).status).toBe('8');
    const corrupt = zlib.gzipSync(Buffer.from('hello'));
    corrupt[12] = (corrupt[12] ?? 0) ^ 0xff;
    corrupt.writeUInt32BE(0xdeadbeef, corrupt.length - 8);
    c.grpcRequest(3, M.echo, corrupt, { compressedFlag: 1, extraHeaders: [['grpc-encoding', 'gzip']] });
    const r3 = await c.stream(3);
    expect(r3.messages).toEqual([]);
    expect(Number(status(r3).status)).toBeGreaterThan(0);
  });

  it('a compressed message in an unknown grpc-encoding is UNIMPLEMENTED (12)', async () => {
    const c = await ready();
    c.grpcRequest(1, M.echo, Buffer.from('snappy bytes'), { compressedFlag: 1, extraHeaders: [['grpc-encoding', 'snappy']] });
    const r = await c.stream(1);
    expect(status(r).status).toBe('12');
    expect(status(r).message).toContain('snappy');
  });

  it('a compressed message without grpc-encoding is INTERNAL (13)', async () => {
    const c = await ready();
    c.grpcRequest(1, M.echo, zlib.gzipSync(Buffer.from('x')), { compressedFlag: 1 });
    expect(status(await c.stream(1)).status).toBe('13');
    c.grpcRequest(3, M.echo, zlib.gzipSync(Buffer.from('x')), { compressedFlag: 1, extraHeaders: [['grpc-encoding', 'identity']] });
    expect(status(await c.stream(3)).status).toBe('13');
    // Flags other than 0 and 1 are not gRPC.
    c.grpcRequest(5, M.echo, Buffer.from('x'), { compressedFlag: 2 });
    expect(Number(status(await c.stream(5)).status)).toBeGreaterThan(0);
  });
});

// ---- deadlines and cancellation ----

describe('deadlines and cancellation', () => {
  it('grpc-timeout 50m: DEADLINE_EXCEEDED (4) and the handler is cancelled', async () => {
    const c = await ready();
    const started = Date.now();
    c.grpcRequest(1, M.slow, Buffer.from('deadline-raw'), { extraHeaders: [['grpc-timeout', '50m']] });
    const r = await c.stream(1);
    expect(Date.now() - started).toBeGreaterThanOrEqual(45);
    expect(status(r).status).toBe('4');
    const slow = await waitSlow('deadline-raw');
    await until('onCancel', () => slow.cancelled, 2000);
    expect(slow.call.cancelled).toBe(true);
    await expectEcho(c, 3);
  });

  it('RST_STREAM(CANCEL) cancels the handler, and the connection keeps serving', async () => {
    const c = await ready();
    c.grpcRequest(1, M.slow, Buffer.from('rst-cancel'));
    const slow = await waitSlow('rst-cancel');
    expect(slow.cancelled).toBe(false);
    c.rstStream(1, H2Error.CANCEL);
    await until('onCancel', () => slow.cancelled, 2000);
    // A listener added once the call is cancelled hears of it at once.
    let late = false;
    slow.call.onCancel(() => {
      late = true;
    });
    expect(late).toBe(true);
    // A reply after the cancel goes nowhere.
    slow.call.reply(Buffer.from('too late'));
    await expectEcho(c, 3);
    expect(c.received.filter((f) => f.stream === 1)).toEqual([]);
  });

  it('a streaming handler sees send() reject once the client resets', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 0]] });
    c.grpcRequest(1, M.stream, Buffer.from(JSON.stringify({ tag: 'rst-stream', count: 1000, size: 100_000 })));
    const run = await until('the stream run', () => streamRuns.get('rst-stream'));
    await c.sync();
    c.rstStream(1, H2Error.CANCEL);
    await until('send() to reject', () => run.error, 2000);
    expect(run.finished).toBe(false);
    c.settings([[Setting.INITIAL_WINDOW_SIZE, 65_535]]);
    await expectEcho(c, 3);
  });

  it('through @grpc/grpc-js: cancel() and a deadline both reach the handler', async () => {
    const client = grpcClient();
    const call = client.makeUnaryRequest(M.slow, identity, identity, Buffer.from('grpc-js-cancel'), () => undefined);
    const slow = await waitSlow('grpc-js-cancel');
    call.cancel();
    await until('onCancel after cancel()', () => slow.cancelled, 2000);
    const err = await unaryError(client, M.slow, Buffer.from('grpc-js-deadline'), { deadline: Date.now() + 100 });
    expect(err.code).toBe(grpc.status.DEADLINE_EXCEEDED);
    const timed = await waitSlow('grpc-js-deadline');
    await until('onCancel after the deadline', () => timed.cancelled, 2000);
    expect((await unary(client, M.echo, Buffer.from('after'))).toString()).toBe('after');
  });
});

// ---- flow control ----

describe('flow control', () => {
  it('SETTINGS_INITIAL_WINDOW_SIZE 100: a 10 KB reply comes only as the client opens the stream window', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 100]] });
    c.grpcRequest(1, M.big, uint32(10_240));
    // The handler replies at once; a PING round trip brings everything the server would send.
    await c.sync();
    expect(dataBytes(c, 1)).toBeLessThanOrEqual(100);
    expect(dataBytes(c, 1)).toBeGreaterThan(0);
    let allowed = 100;
    while (dataBytes(c, 1) < 10_245) {
      const before = dataBytes(c, 1);
      c.windowUpdate(1, 1000);
      allowed += 1000;
      await c.sync();
      expect(dataBytes(c, 1)).toBeLessThanOrEqual(allowed);
      expect(dataBytes(c, 1)).toBeGreaterThan(before);
      if (allowed > 20_000) break;
    }
    const r = await c.stream(1);
    expectMessages(r.messages, [pattern(10_240)]);
    expect(status(r).status).toBe('0');
  });

  it('the connection window: without a connection WINDOW_UPDATE the server stops at 65535 bytes', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 1 << 20]] });
    c.grpcRequest(1, M.big, uint32(100_000));
    await c.sync();
    expect(dataBytes(c, 1)).toBe(65_535);
    // More stream window does not help.
    c.windowUpdate(1, 1 << 20);
    await c.sync();
    expect(dataBytes(c, 1)).toBe(65_535);
    c.windowUpdate(0, 50_000);
    const r = await c.stream(1);
    expectMessages(r.messages, [pattern(100_000)]);
    expect(dataBytes(c, 1)).toBe(100_005);
  });

  it('streams blocked on the connection window all go on when it opens', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 1 << 20]] });
    c.grpcRequest(1, M.big, uint32(50_000));
    c.grpcRequest(3, M.big, uint32(50_000));
    await c.sync();
    expect(dataBytes(c, 1) + dataBytes(c, 3)).toBe(65_535);
    c.windowUpdate(0, 100_000);
    expectMessages((await c.stream(1)).messages, [pattern(50_000)]);
    expectMessages((await c.stream(3)).messages, [pattern(50_000)]);
  });

  it.each([16_384, 20_000])('a peer SETTINGS_MAX_FRAME_SIZE of %d bounds every DATA frame of a 100 KB reply', async (max) => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 1 << 20], [Setting.MAX_FRAME_SIZE, max]] });
    c.windowUpdate(0, 1 << 20);
    c.grpcRequest(1, M.big, uint32(100_000));
    const r = await c.stream(1);
    expectMessages(r.messages, [pattern(100_000)]);
    const sizes = r.frames.filter((f) => f.type === FrameType.DATA).map((f) => f.payload.length);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(max);
  });

  it('a larger SETTINGS_INITIAL_WINDOW_SIZE mid-stream re-opens a blocked stream', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 100]] });
    c.grpcRequest(1, M.big, uint32(10_240));
    await c.sync();
    expect(dataBytes(c, 1)).toBeLessThanOrEqual(100);
    const from = c.received.length;
    c.settings([[Setting.INITIAL_WINDOW_SIZE, 65_535]]);
    const r = await c.stream(1);
    expectMessages(r.messages, [pattern(10_240)]);
    expect(c.received.slice(from).some(isSettingsAck)).toBe(true);
  });

  it('a smaller SETTINGS_INITIAL_WINDOW_SIZE mid-stream makes the window negative (RFC 9113 §6.9.2)', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 1000]] });
    c.grpcRequest(1, M.big, uint32(10_240));
    await c.sync();
    expect(dataBytes(c, 1)).toBe(1000);
    c.settings([[Setting.INITIAL_WINDOW_SIZE, 0]]); // window 0 - 1000 = -1000
    c.windowUpdate(1, 1500); // -1000 + 1500 = 500
    await c.sync();
    expect(dataBytes(c, 1)).toBe(1500);
    c.settings([[Setting.INITIAL_WINDOW_SIZE, 65_535]]);
    const r = await c.stream(1);
    expectMessages(r.messages, [pattern(10_240)]);
  });

  it('3 MB requests in many DATA frames, one after another on one connection, within the windows the server grants', async () => {
    const c = await ready();
    const settings = serverSettings(c);
    expect(settings.get(Setting.INITIAL_WINDOW_SIZE)).toBeGreaterThanOrEqual(3 * 1024 * 1024 + 5);
    expect(settings.get(Setting.ENABLE_PUSH)).toBe(0);
    expect(settings.get(Setting.MAX_CONCURRENT_STREAMS)).toBe(1000);
    const connUpdate = c.received.find((f) => f.type === FrameType.WINDOW_UPDATE && f.stream === 0);
    expect(65_535 + (connUpdate?.payload.readUInt32BE(0) ?? 0)).toBeGreaterThanOrEqual(3 * 1024 * 1024 + 5);
    for (const [i, stream] of [1, 3, 5].entries()) {
      const body = pattern(3 * 1024 * 1024, i);
      c.headers(stream, grpcRequestHeaders(M.digest));
      await upload(c, [{ stream, body: grpcMessage(body) }]);
      const r = await c.stream(stream);
      expect(r.messages.map(String)).toEqual([`${body.length} ${sha256(body)}`]);
    }
    expect(c.received.filter((f) => f.type === FrameType.DATA).length).toBe(3);
    expect(c.received.filter((f) => f.type === FrameType.GOAWAY || f.type === FrameType.RST_STREAM)).toEqual([]);
  });

  it('two 3 MB requests interleaved on one connection both complete (no flow-control deadlock)', async () => {
    const c = await ready();
    const bodies = [1, 3].map((stream, i) => ({ stream, message: pattern(3 * 1024 * 1024, 10 + i) }));
    for (const { stream } of bodies) c.headers(stream, grpcRequestHeaders(M.digest));
    await upload(c, bodies.map(({ stream, message }) => ({ stream, body: grpcMessage(message) })));
    for (const { stream, message } of bodies) {
      expect((await c.stream(stream)).messages.map(String)).toEqual([`${message.length} ${sha256(message)}`]);
    }
  });

  it('two concurrent 3 MB requests through @grpc/grpc-js', async () => {
    const client = grpcClient(sock, { 'grpc.max_send_message_length': MAX_MESSAGE });
    const messages = [pattern(3 * 1024 * 1024, 20), pattern(3 * 1024 * 1024, 21)];
    const replies = await Promise.all(messages.map((m) => unary(client, M.digest, m, { deadline: Date.now() + 10_000 })));
    expect(replies.map(String)).toEqual(messages.map((m) => `${m.length} ${sha256(m)}`));
  });
});

// ---- server streaming ----

describe('server streaming', () => {
  it('a few messages: HEADERS, one DATA per message, trailers', async () => {
    const c = await ready();
    c.grpcRequest(1, M.stream, Buffer.from(JSON.stringify({ tag: 'three', count: 3, size: 10 })));
    const r = await c.stream(1);
    expect(r.headers).toEqual([[':status', '200'], ['content-type', 'application/grpc']]);
    expect(r.messages).toEqual([0, 1, 2].map((i) => streamMessage(i, 10)));
    expect(r.trailers).toEqual([['grpc-status', '0']]);
  });

  it('sends made without waiting for each other all resolve', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 0]] });
    c.grpcRequest(1, M.burst, Buffer.from(JSON.stringify({ tag: 'burst', count: 6, size: 100_000, manual: false })));
    const run = await until('the burst handler', () => burstRuns.get('burst'));
    await c.sync();
    expect(run.settled).toBeLessThan(6); // the window is shut: some sends wait
    c.settings([[Setting.INITIAL_WINDOW_SIZE, 1 << 20]]);
    c.windowUpdate(0, 1 << 20);
    const r = await c.stream(1);
    expectMessages(r.messages, [0, 1, 2, 3, 4, 5].map((i) => streamMessage(i, 100_000)));
    expect(status(r).status).toBe('0');
    expect([run.settled, run.rejected]).toEqual([6, 0]);
  });

  it('sends still waiting when the handler finishes settle with the call', async () => {
    const c = await ready({ settings: [[Setting.INITIAL_WINDOW_SIZE, 0]] });
    c.grpcRequest(1, M.burst, Buffer.from(JSON.stringify({ tag: 'burst-early', count: 4, size: 100_000, manual: true })));
    const run = await until('the burst handler', () => burstRuns.get('burst-early'));
    await c.sync();
    expect(run.settled).toBeLessThan(4);
    run.call.finish(0, '');
    await until('every send() to settle', () => run.settled === 4, 2000);
    expect(run.rejected).toBe(0);
    c.settings([[Setting.INITIAL_WINDOW_SIZE, 1 << 20]]);
    c.windowUpdate(0, 1 << 20);
    const r = await c.stream(1);
    // The queued messages go out before the trailers.
    expectMessages(r.messages, [0, 1, 2, 3].map((i) => streamMessage(i, 100_000)));
    expect(status(r).status).toBe('0');
  });

  it('1000 messages of 10 KB to a node:http2 client that pauses: send() stalls, then everything arrives', async () => {
    const session = h2Session();
    const req = h2Request(session, M.stream);
    let trailers: http2.IncomingHttpHeaders | undefined;
    req.on('trailers', (t) => {
      trailers = t;
    });
    req.end(grpcMessage(Buffer.from(JSON.stringify({ tag: 'paused', count: 1000, size: 10_240 }))));
    // Nothing reads the stream: node:http2 stops returning window, and the handler's send() must stop resolving.
    const run = await until('the stream handler', () => streamRuns.get('paused'));
    let last = -1;
    let since = Date.now();
    await until('send() to stall', () => {
      if (run.resolved !== last) {
        last = run.resolved;
        since = Date.now();
        return false;
      }
      return Date.now() - since >= 300;
    }, 10_000, 10);
    expect(run.finished).toBe(false);
    expect(run.resolved).toBeLessThan(100); // under 1 MB queued or in flight, of 10 MB
    const chunks: Buffer[] = [];
    req.on('data', (chunk: Buffer) => chunks.push(chunk));
    await once(req, 'end');
    const messages = grpcMessages(Buffer.concat(chunks));
    expect(messages.length).toBe(1000);
    expect(messages.findIndex((m, i) => !m.equals(streamMessage(i, 10_240)))).toBe(-1);
    await until('trailers', () => trailers, 2000);
    expect(trailers?.['grpc-status']).toBe('0');
    expect(run).toEqual({ resolved: 1000, finished: true, error: undefined });
  });

  it('through @grpc/grpc-js', async () => {
    const client = grpcClient();
    const call = client.makeServerStreamRequest(M.stream, identity, identity, Buffer.from(JSON.stringify({ tag: 'grpc-js-stream', count: 200, size: 1000 })));
    const received: Buffer[] = [];
    call.on('data', (m: Buffer) => received.push(m));
    const [st] = (await once(call, 'status')) as [grpc.StatusObject];
    expect(st.code).toBe(grpc.status.OK);
    expect(received.length).toBe(200);
    expect(received.findIndex((m, i) => !m.equals(streamMessage(i, 1000)))).toBe(-1);
  });
});

// ---- connection errors ----

const header = (list: ReadonlyArray<readonly [string, string]>, stream = 1, flags = Flag.END_HEADERS | Flag.END_STREAM): Buffer =>
  rawFrame(FrameType.HEADERS, flags, stream, encodeHeaders(list));
const echoHeaders = grpcRequestHeaders(M.echo);
const ping8 = Buffer.from('12345678');

/** A block of one 4000-octet literal added to the dynamic table, then 17 references to it: 68 KB decoded. */
function expandingBlock(): Buffer {
  // 0x40: literal with incremental indexing, new name "x"; then the value's length 4000 in a 7-bit prefix
  // (RFC 7541 §5.1: 127, then 3873 = 30 * 128 + 33 in two octets).
  const literal = Buffer.concat([Buffer.from([0x40, 1, 0x78, 0x7f, 0x80 | 33, 30]), Buffer.alloc(4000, 'v')]);
  return Buffer.concat([encodeHeaders(echoHeaders), literal, Buffer.alloc(17, 0xbe)]);
}

const CONNECTION_ERRORS: Array<[string, () => Buffer, H2Error]> = [
  ['a frame larger than 16384 bytes', () => rawFrame(FrameType.DATA, 0, 1, Buffer.alloc(16_385)), H2Error.FRAME_SIZE_ERROR],
  ['HEADERS on an even stream', () => header(echoHeaders, 2), H2Error.PROTOCOL_ERROR],
  ['HEADERS on stream 0', () => header(echoHeaders, 0), H2Error.PROTOCOL_ERROR],
  ['a PING inside a header block', () => Buffer.concat([header(echoHeaders, 1, 0), rawFrame(FrameType.PING, 0, 0, ping8)]), H2Error.PROTOCOL_ERROR],
  ['HEADERS inside a header block', () => Buffer.concat([header(echoHeaders, 1, 0), header(echoHeaders, 3)]), H2Error.PROTOCOL_ERROR],
  ['DATA inside a header block', () => Buffer.concat([header(echoHeaders, 1, 0), rawFrame(FrameType.DATA, 0, 1, Buffer.alloc(5))]), H2Error.PROTOCOL_ERROR],
  ['a CONTINUATION of another stream', () => Buffer.concat([header(echoHeaders, 1, 0), rawFrame(FrameType.CONTINUATION, Flag.END_HEADERS, 3)]), H2Error.PROTOCOL_ERROR],
  ['a CONTINUATION without HEADERS', () => rawFrame(FrameType.CONTINUATION, Flag.END_HEADERS, 1, encodeHeaders(echoHeaders)), H2Error.PROTOCOL_ERROR],
  ['an HPACK index of 0', () => rawFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x80])), H2Error.COMPRESSION_ERROR],
  ['an HPACK index past the tables', () => rawFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0xbe])), H2Error.COMPRESSION_ERROR],
  ['a truncated HPACK literal', () => rawFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x00, 0x05, 0x61])), H2Error.COMPRESSION_ERROR],
  ['an HPACK integer that overflows', () => rawFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f])), H2Error.COMPRESSION_ERROR],
  ['an HPACK table size update above 4096', () => rawFrame(FrameType.HEADERS, Flag.END_HEADERS, 1, Buffer.from([0x3f, 0xe2, 0x1f])), H2Error.COMPRESSION_ERROR],
  ['a header block over 64 KiB in CONTINUATIONs', () => Buffer.concat([
    rawFrame(FrameType.HEADERS, 0, 1, Buffer.alloc(16_384, 0x80 | 2)),
    ...[1, 2, 3, 4].map(() => rawFrame(FrameType.CONTINUATION, 0, 1, Buffer.alloc(16_384, 0x80 | 2))),
  ]), H2Error.ENHANCE_YOUR_CALM],
  ['padded HEADERS with more padding than payload', () => rawFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.PADDED, 1, Buffer.from([5, 0x82, 0x84])), H2Error.PROTOCOL_ERROR],
  ['HEADERS with the PRIORITY flag but no room for it', () => rawFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.PRIORITY, 1, Buffer.from([0, 0])), H2Error.PROTOCOL_ERROR],
  ['DATA on an idle stream', () => rawFrame(FrameType.DATA, 0, 1, Buffer.from('x')), H2Error.PROTOCOL_ERROR],
  ['DATA on stream 0', () => rawFrame(FrameType.DATA, 0, 0, Buffer.from('x')), H2Error.PROTOCOL_ERROR],
  ['RST_STREAM on an idle stream', () => rawFrame(FrameType.RST_STREAM, 0, 1, uint32(H2Error.CANCEL)), H2Error.PROTOCOL_ERROR],
  ['RST_STREAM on stream 0', () => rawFrame(FrameType.RST_STREAM, 0, 0, uint32(H2Error.CANCEL)), H2Error.PROTOCOL_ERROR],
  ['RST_STREAM of 5 bytes', () => rawFrame(FrameType.RST_STREAM, 0, 1, Buffer.alloc(5)), H2Error.FRAME_SIZE_ERROR],
  ['WINDOW_UPDATE on an idle stream', () => rawFrame(FrameType.WINDOW_UPDATE, 0, 7, uint32(1)), H2Error.PROTOCOL_ERROR],
  ['WINDOW_UPDATE of 0 on the connection', () => rawFrame(FrameType.WINDOW_UPDATE, 0, 0, uint32(0)), H2Error.PROTOCOL_ERROR],
  ['a connection WINDOW_UPDATE past 2^31-1', () => rawFrame(FrameType.WINDOW_UPDATE, 0, 0, uint32(0x7fff_ffff)), H2Error.FLOW_CONTROL_ERROR],
  ['WINDOW_UPDATE of 3 bytes', () => rawFrame(FrameType.WINDOW_UPDATE, 0, 0, Buffer.alloc(3)), H2Error.FRAME_SIZE_ERROR],
  ['PING of 7 bytes', () => rawFrame(FrameType.PING, 0, 0, Buffer.alloc(7)), H2Error.FRAME_SIZE_ERROR],
  ['PING on a stream', () => rawFrame(FrameType.PING, 0, 1, ping8), H2Error.PROTOCOL_ERROR],
  ['SETTINGS of 7 bytes', () => rawFrame(FrameType.SETTINGS, 0, 0, Buffer.alloc(7)), H2Error.FRAME_SIZE_ERROR],
  ['SETTINGS ACK with a payload', () => rawFrame(FrameType.SETTINGS, Flag.ACK, 0, Buffer.alloc(6)), H2Error.FRAME_SIZE_ERROR],
  ['SETTINGS on a stream', () => rawFrame(FrameType.SETTINGS, 0, 1), H2Error.PROTOCOL_ERROR],
  ['SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1', () => rawFrame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.INITIAL_WINDOW_SIZE, 0x8000_0000]])), H2Error.FLOW_CONTROL_ERROR],
  ['SETTINGS_MAX_FRAME_SIZE below 16384', () => rawFrame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.MAX_FRAME_SIZE, 16_383]])), H2Error.PROTOCOL_ERROR],
  ['SETTINGS_MAX_FRAME_SIZE above 2^24-1', () => rawFrame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.MAX_FRAME_SIZE, 1 << 24]])), H2Error.PROTOCOL_ERROR],
  ['SETTINGS_ENABLE_PUSH of 2', () => rawFrame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.ENABLE_PUSH, 2]])), H2Error.PROTOCOL_ERROR],
  ['PUSH_PROMISE from the client', () => rawFrame(FrameType.PUSH_PROMISE, Flag.END_HEADERS, 1, Buffer.concat([uint32(2), encodeHeaders(echoHeaders)])), H2Error.PROTOCOL_ERROR],
  ['GOAWAY on a stream', () => rawFrame(FrameType.GOAWAY, 0, 1, Buffer.alloc(8)), H2Error.PROTOCOL_ERROR],
  ['GOAWAY of 7 bytes', () => rawFrame(FrameType.GOAWAY, 0, 0, Buffer.alloc(7)), H2Error.FRAME_SIZE_ERROR],
  ['PRIORITY on stream 0', () => rawFrame(FrameType.PRIORITY, 0, 0, Buffer.alloc(5)), H2Error.PROTOCOL_ERROR],
];

describe('connection errors: GOAWAY with the right code, then the socket closes', () => {
  it('a bad preface (an HTTP/1 request): the socket is just closed', async () => {
    const c = await connect({ handshake: false });
    c.send(Buffer.from('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    await c.waitClosed();
    expect(c.received.filter((f) => f.type === FrameType.GOAWAY)).toEqual([]);
  });

  it('a preface that arrives a byte at a time is fine', async () => {
    const c = await connect({ handshake: false });
    for (const byte of PREFACE) {
      c.send(Buffer.from([byte]));
      await sleep(1);
    }
    c.settings([]);
    await c.waitFor(isSettingsAck);
    await expectEcho(c, 1);
  });

  it('a first frame other than SETTINGS: PROTOCOL_ERROR', async () => {
    const c = await connect({ handshake: false });
    c.send(Buffer.concat([PREFACE, rawFrame(FrameType.PING, 0, 0, ping8)]));
    const g = await c.goaway();
    expect([g.code, g.lastStream]).toEqual([H2Error.PROTOCOL_ERROR, 0]);
    await c.waitClosed();
  });

  it.each(CONNECTION_ERRORS)('%s', async (_name, bytes, code) => {
    const c = await ready();
    c.send(bytes());
    const g = await c.goaway();
    expect([g.code, g.debug.length > 0]).toEqual([code, true]);
    await c.waitClosed();
  });

  it('GOAWAY names the last stream the server took', async () => {
    const c = await ready();
    await expectEcho(c, 1);
    await expectEcho(c, 5);
    c.send(rawFrame(FrameType.PING, 0, 0, Buffer.alloc(7)));
    expect(await c.goaway()).toEqual({ lastStream: 5, code: H2Error.FRAME_SIZE_ERROR, debug: expect.any(String) });
    await c.waitClosed();
  });

  it('a connection error cancels the calls in flight', async () => {
    const c = await ready();
    c.grpcRequest(1, M.slow, Buffer.from('conn-error'));
    const slow = await waitSlow('conn-error');
    c.send(rawFrame(FrameType.PING, 0, 0, Buffer.alloc(7)));
    expect((await c.goaway()).code).toBe(H2Error.FRAME_SIZE_ERROR);
    await until('onCancel', () => slow.cancelled, 2000);
    await c.waitClosed();
  });
});

// ---- stream errors ----

const without = (name: string): HeaderList => echoHeaders.filter(([n]) => n !== name);
const MALFORMED: Array<[string, HeaderList]> = [
  ['without :path', without(':path')],
  ['without :method', without(':method')],
  ['with an empty :path', echoHeaders.map(([n, v]): [string, string] => [n, n === ':path' ? '' : v])],
  ['with an upper-case header name', [...echoHeaders, ['X-Upper', '1']]],
  ['with a pseudo-header after a regular header', [...without(':path'), [':path', M.echo]]],
  ['with an unknown pseudo-header', [[':foo', 'bar'], ...echoHeaders]],
  ['with a response pseudo-header', [[':status', '200'], ...echoHeaders]],
  ['with a connection-specific header', [...echoHeaders, ['connection', 'keep-alive']]],
  ['with transfer-encoding', [...echoHeaders, ['transfer-encoding', 'chunked']]],
  ['with :path twice', [[':path', M.echo], ...echoHeaders]],
  ['with :method twice', [[':method', 'POST'], ...echoHeaders]],
  ['without :scheme', without(':scheme')],
  ['with te other than trailers', [...without('te'), ['te', 'gzip']]],
];

describe('stream errors: RST_STREAM, and the connection goes on', () => {
  it('a header list that decodes past 64 KiB: that request gets RESOURCE_EXHAUSTED, the HPACK table stays in sync', async () => {
    const c = await ready();
    c.send(rawFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 1, expandingBlock()));
    const r = await c.stream(1);
    expect(status(r)).toEqual({ status: '8', message: expect.stringContaining('request header list larger than 65536 octets') });
    expect(c.received.filter((f) => f.type === FrameType.GOAWAY)).toEqual([]);
    // The oversized block inserted "x: v…" (4000 octets) into the table; a request that refers to it (index 62)
    // decodes only if the server's table followed the block it refused.
    c.send(rawFrame(FrameType.HEADERS, Flag.END_HEADERS, 3, Buffer.concat([encodeHeaders(echoHeaders), Buffer.from([0xbe])])));
    c.data(3, grpcMessage(Buffer.from('after the big one')), { endStream: true });
    const r3 = await c.stream(3);
    expect({ status: status(r3).status, messages: r3.messages }).toEqual({ status: '0', messages: [Buffer.from('after the big one')] });
  });

  it.each(MALFORMED)('a request %s: PROTOCOL_ERROR', async (_name, headers) => {
    const c = await ready();
    c.headers(1, headers);
    c.data(1, grpcMessage(Buffer.from('x')), { endStream: true });
    expect(await c.rstCode(1)).toBe(H2Error.PROTOCOL_ERROR);
    await expectEcho(c, 3);
    expect(c.received.filter((f) => f.stream === 1 && f.type !== FrameType.RST_STREAM)).toEqual([]);
    expect(c.received.filter((f) => f.type === FrameType.GOAWAY)).toEqual([]);
  });

  it('more streams than SETTINGS_MAX_CONCURRENT_STREAMS: REFUSED_STREAM', async () => {
    const { sock: p } = await startServer({ maxConcurrentStreams: 2 });
    const c = await ready({}, p);
    expect(serverSettings(c).get(Setting.MAX_CONCURRENT_STREAMS)).toBe(2);
    c.grpcRequest(1, M.slow, Buffer.from('mcs-1'));
    c.grpcRequest(3, M.slow, Buffer.from('mcs-2'));
    c.grpcRequest(5, M.echo, Buffer.from('refused'));
    expect(await c.rstCode(5)).toBe(H2Error.REFUSED_STREAM);
    const first = await waitSlow('mcs-1');
    const second = await waitSlow('mcs-2');
    first.call.reply(Buffer.from('one done'));
    expect((await c.stream(1)).messages).toEqual([Buffer.from('one done')]);
    await expectEcho(c, 7);
    second.call.finish(0, '');
    expect(status(await c.stream(3)).status).toBe('0');
    expect([first.cancelled, second.cancelled]).toEqual([false, false]);
  });

  it('a refused stream still updates the HPACK table', async () => {
    const { sock: p } = await startServer({ maxConcurrentStreams: 1 });
    const c = await ready({}, p);
    c.grpcRequest(1, M.slow, Buffer.from('hpack-refused'));
    await waitSlow('hpack-refused');
    // Stream 3 (refused) adds ":path: /test.Test/Echo" to the table; stream 5 refers to it by index 62.
    const method = encodeHeaders([[':method', 'POST'], [':scheme', 'http']]);
    const rest = encodeHeaders([[':authority', 'x'], ['content-type', 'application/grpc']]);
    const indexed = Buffer.concat([method, Buffer.from([0x44, M.echo.length]), Buffer.from(M.echo), rest]);
    c.send(rawFrame(FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, 3, indexed));
    expect(await c.rstCode(3)).toBe(H2Error.REFUSED_STREAM);
    slowCalls.get('hpack-refused')?.call.finish(0, '');
    await c.stream(1);
    c.send(Buffer.concat([
      rawFrame(FrameType.HEADERS, Flag.END_HEADERS, 5, Buffer.concat([method, Buffer.from([0xbe]), rest])),
      rawFrame(FrameType.DATA, Flag.END_STREAM, 5, grpcMessage(Buffer.from('by index'))),
    ]));
    expect((await c.stream(5)).messages).toEqual([Buffer.from('by index')]);
  });

  it('DATA after END_STREAM: STREAM_CLOSED, and the call is cancelled', async () => {
    const c = await ready();
    c.grpcRequest(1, M.slow, Buffer.from('data-after-end'));
    const slow = await waitSlow('data-after-end');
    c.data(1, Buffer.from('more'));
    expect(await c.rstCode(1)).toBe(H2Error.STREAM_CLOSED);
    await until('onCancel', () => slow.cancelled, 2000);
    await expectEcho(c, 3);
  });

  it('HEADERS after END_STREAM: STREAM_CLOSED', async () => {
    const c = await ready();
    c.grpcRequest(1, M.slow, Buffer.from('headers-after-end'));
    const slow = await waitSlow('headers-after-end');
    c.headers(1, [['x-trailer', '1']], { endStream: true });
    expect(await c.rstCode(1)).toBe(H2Error.STREAM_CLOSED);
    await until('onCancel', () => slow.cancelled, 2000);
    await expectEcho(c, 3);
  });

  it('trailers without END_STREAM: PROTOCOL_ERROR', async () => {
    const c = await ready();
    c.headers(1, echoHeaders);
    c.data(1, grpcMessage(Buffer.from('x')));
    c.headers(1, [['x-trailer', '1']]);
    expect(await c.rstCode(1)).toBe(H2Error.PROTOCOL_ERROR);
    await expectEcho(c, 3);
  });

  it('a stream WINDOW_UPDATE of 0: PROTOCOL_ERROR; one past 2^31-1: FLOW_CONTROL_ERROR', async () => {
    const c = await ready();
    c.headers(1, echoHeaders);
    c.windowUpdate(1, 0);
    expect(await c.rstCode(1)).toBe(H2Error.PROTOCOL_ERROR);
    c.headers(3, echoHeaders);
    c.windowUpdate(3, 0x7fff_ffff);
    expect(await c.rstCode(3)).toBe(H2Error.FLOW_CONTROL_ERROR);
    await expectEcho(c, 5);
  });
});

// ---- frames that are accepted or ignored ----

describe('frames the server accepts or ignores', () => {
  it('PING is answered with ACK and the same 8 bytes; a PING ACK is not answered', async () => {
    const c = await ready();
    const data = crypto.randomBytes(8);
    c.ping(data);
    const ack = await c.waitFor((f) => f.type === FrameType.PING);
    expect([ack.flags, ack.stream, ack.payload]).toEqual([Flag.ACK, 0, data]);
    c.ping(Buffer.from('ackack!!'), true);
    await c.sync();
    expect(c.received.filter((f) => f.type === FrameType.PING).length).toBe(2);
  });

  it('padded HEADERS and padded DATA', async () => {
    const c = await ready();
    for (const [i, pad] of [0, 1, 200].entries()) {
      const stream = 1 + 2 * i;
      c.headers(stream, echoHeaders, { pad });
      c.data(stream, grpcMessage(Buffer.from(`padded ${pad}`)), { pad, endStream: true });
      expect((await c.stream(stream)).messages).toEqual([Buffer.from(`padded ${pad}`)]);
    }
  });

  it('HEADERS with the PRIORITY flag, padded or not', async () => {
    const c = await ready();
    c.headers(1, echoHeaders, { priority: true });
    c.data(1, grpcMessage(Buffer.from('prio')), { endStream: true });
    expect((await c.stream(1)).messages).toEqual([Buffer.from('prio')]);
    c.headers(3, echoHeaders, { priority: true, pad: 7 });
    c.data(3, grpcMessage(Buffer.from('prio padded')), { endStream: true });
    expect((await c.stream(3)).messages).toEqual([Buffer.from('prio padded')]);
  });

  it('PRIORITY frames and unknown frame types are ignored', async () => {
    const c = await ready();
    c.frame(FrameType.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 3, 200])); // an idle stream
    c.frame(0x42, 0xff, 0, Buffer.from('unknown on the connection'));
    c.frame(0xfa, 0x01, 1, Buffer.from('unknown on an idle stream'));
    c.headers(1, echoHeaders);
    c.frame(FrameType.PRIORITY, 0, 1, Buffer.from([0x80, 0, 0, 0, 16])); // an open stream
    c.frame(0x0a, 0, 1, Buffer.alloc(100)); // ALTSVC-like
    c.data(1, grpcMessage(Buffer.from('ignored all that')), { endStream: true });
    expect((await c.stream(1)).messages).toEqual([Buffer.from('ignored all that')]);
    expect(c.received.filter((f) => f.type === FrameType.GOAWAY)).toEqual([]);
  });

  it('client trailers (HEADERS with END_STREAM after DATA)', async () => {
    const c = await ready();
    c.headers(1, echoHeaders);
    c.data(1, grpcMessage(Buffer.from('with trailers')));
    c.headers(1, [['x-client-trailer', 'yes']], { endStream: true });
    const r = await c.stream(1);
    expect(r.messages).toEqual([Buffer.from('with trailers')]);
    expect(status(r).status).toBe('0');
  });

  it('a header block split over CONTINUATION frames, and a request split over many DATA frames', async () => {
    const c = await ready();
    const block = encodeHeaders([...echoHeaders, ['x-long', 'l'.repeat(20_000)]]);
    c.frame(FrameType.HEADERS, 0, 1, block.subarray(0, 10));
    c.continuation(1, block.subarray(10, 16_000), false);
    c.continuation(1, Buffer.alloc(0), false);
    c.continuation(1, block.subarray(16_000), true);
    const body = grpcMessage(Buffer.from('one byte at a time'));
    for (const byte of body) c.data(1, Buffer.from([byte]));
    c.data(1, Buffer.alloc(0), { endStream: true });
    expect((await c.stream(1)).messages).toEqual([Buffer.from('one byte at a time')]);
  });

  it('the HPACK dynamic table carries over from block to block', async () => {
    const c = await ready();
    const method = encodeHeaders([[':method', 'POST'], [':scheme', 'http']]);
    const rest = encodeHeaders([[':authority', 'x'], ['content-type', 'application/grpc']]);
    const addPath = (p: string): Buffer => Buffer.concat([Buffer.from([0x44, p.length]), Buffer.from(p)]);
    const request = (stream: number, pathField: Buffer, message: string): Buffer => Buffer.concat([
      rawFrame(FrameType.HEADERS, Flag.END_HEADERS, stream, Buffer.concat([method, pathField, rest])),
      rawFrame(FrameType.DATA, Flag.END_STREAM, stream, grpcMessage(Buffer.from(message))),
    ]);
    c.send(request(1, addPath(M.echo), 'first')); // table: [62] :path Echo
    expect((await c.stream(1)).messages).toEqual([Buffer.from('first')]);
    c.send(request(3, Buffer.from([0xbe]), 'by index 62'));
    expect((await c.stream(3)).messages).toEqual([Buffer.from('by index 62')]);
    c.send(request(5, addPath(M.fail), 'fail')); // table: [62] :path Fail, [63] :path Echo
    expect(status(await c.stream(5)).status).toBe('5');
    c.send(request(7, Buffer.from([0xbf]), 'by index 63'));
    expect((await c.stream(7)).messages).toEqual([Buffer.from('by index 63')]);
  });

  it('a client GOAWAY: the server lets the call in flight finish, then closes', async () => {
    const c = await ready();
    c.grpcRequest(1, M.slow, Buffer.from('client-goaway'));
    const slow = await waitSlow('client-goaway');
    c.frame(FrameType.GOAWAY, 0, 0, Buffer.concat([uint32(1), uint32(H2Error.NO_ERROR)]));
    await c.sync();
    expect(c.isClosed).toBe(false);
    slow.call.reply(Buffer.from('bye'));
    expect((await c.stream(1)).messages).toEqual([Buffer.from('bye')]);
    await c.waitClosed();
  });
});

// ---- resource limits ----

/** A full garbage collection, for heap measurements (V8's gc, exposed at run time). */
function collectGarbage(): () => void {
  v8.setFlagsFromString('--expose-gc');
  const gc = vm.runInNewContext('gc') as () => void;
  return () => gc();
}

describe('resource limits', () => {
  it('a connection that buffers more than twice its window gets no more until calls consume or go', async () => {
    const { sock: small } = await startServer({ maxMessageBytes: 64 * 1024 });
    const c = await ready({}, small);
    const window = serverSettings(c).get(Setting.INITIAL_WINDOW_SIZE) ?? 0;
    expect(window).toBeGreaterThan(64 * 1024);
    // Eight calls each declare a 64 KiB message and send all of it but its last byte: nothing can be consumed.
    const streams = [1, 3, 5, 7, 9, 11, 13, 15];
    const messages = streams.map((_, i) => pattern(64 * 1024, 30 + i));
    for (const stream of streams) c.headers(stream, grpcRequestHeaders(M.digest));
    const partial = streams.map((stream, i) => ({ stream, body: grpcMessage(messages[i] as Buffer).subarray(0, -1) }));
    await expect(upload(c, partial, 500, false)).rejects.toThrow(/WINDOW_UPDATE/);
    // The first window, plus twice the window of credit, plus at most one frame past the budget.
    expect(c.dataBytesSent).toBeLessThanOrEqual(3 * window + 16_384);
    expect(c.dataBytesSent).toBeLessThan(partial.reduce((n, p) => n + p.body.length, 0));
    // Half the calls go: what they held is released and the others can finish.
    const creditBefore = c.received.filter((f) => f.type === FrameType.WINDOW_UPDATE && f.stream === 0).length;
    for (const stream of streams.slice(0, 4)) c.rstStream(stream, H2Error.CANCEL);
    await c.waitFor((f) => f.type === FrameType.WINDOW_UPDATE && f.stream === 0 &&
      c.received.filter((g) => g.type === FrameType.WINDOW_UPDATE && g.stream === 0).length > creditBefore, 5000, 'connection credit after the resets');
    // Each remaining call sends what it still owes, within the credit it now gets.
    const rest = streams.slice(4).map((stream, i) => ({ stream, body: grpcMessage(messages[i + 4] as Buffer).subarray(sentOn(c, stream)) }));
    await upload(c, rest);
    for (const [i, stream] of streams.slice(4).entries()) {
      const m = messages[i + 4] as Buffer;
      expect((await c.stream(stream)).messages.map(String)).toEqual([`${m.length} ${sha256(m)}`]);
    }
  });

  it('a client that opens and resets streams in a loop is cut off (rapid reset): ENHANCE_YOUR_CALM', async () => {
    const c = await ready();
    let stream = 1;
    // A burst within the allowance is fine...
    for (let i = 0; i < 500; i++, stream += 2) {
      c.grpcRequest(stream, M.slow, Buffer.from(`rapid-${stream}`));
      c.rstStream(stream, H2Error.CANCEL);
    }
    await expectEcho(c, stream);
    stream += 2;
    expect(c.received.some((f) => f.type === FrameType.GOAWAY)).toBe(false);
    // ...a thousand more at once is not.
    for (let i = 0; i < 1000; i++, stream += 2) {
      c.grpcRequest(stream, M.slow, Buffer.from(`rapid-${stream}`));
      c.rstStream(stream, H2Error.CANCEL);
    }
    const g = await c.goaway();
    expect([g.code, g.debug]).toEqual([H2Error.ENHANCE_YOUR_CALM, 'too many streams reset by the client']);
    await c.waitClosed();
    for (const [tag, slow] of slowCalls) if (tag.startsWith('rapid-')) expect(slow.cancelled).toBe(true);
  });

  it('a connection that breaks the protocol is reported through onError, and the server goes on', async () => {
    const errors: string[] = [];
    const { sock: s2 } = await startServer({ onError: (message) => errors.push(message) });
    const c = await ready({}, s2);
    c.send(rawFrame(FrameType.PING, 0, 0, Buffer.alloc(7)));
    await c.goaway();
    await until('onError', () => errors.length > 0, 2000);
    expect(errors).toEqual([expect.stringMatching(/^closed a CRI connection: PING is not 8 bytes/)]);
    await expectEcho(await ready({}, s2), 1);
  });

  it('a flood of empty CONTINUATION frames does not grow the server heap', async () => {
    const gc = collectGarbage();
    const c = await ready();
    c.headers(1, echoHeaders, { endHeaders: false });
    const batch = Buffer.concat(Array.from({ length: 10_000 }, () => rawFrame(FrameType.CONTINUATION, 0, 1)));
    gc();
    const before = process.memoryUsage().heapUsed;
    // 2 million frames, 18 MB on the wire: while the block is open, nothing of it may be kept.
    for (let i = 0; i < 200; i++) {
      c.send(batch);
      if (c.socket.writableLength > 1 << 20) await once(c.socket, 'drain');
    }
    await until('the flood to leave the client', () => c.socket.writableLength === 0);
    await sleep(100);
    gc();
    const grown = process.memoryUsage().heapUsed - before;
    expect(grown).toBeLessThan(50 * 1024 * 1024);
    c.continuation(1, Buffer.alloc(0), true);
    c.data(1, grpcMessage(Buffer.from('after the flood')), { endStream: true });
    expect((await c.stream(1)).messages).toEqual([Buffer.from('after the flood')]);
  });
});

// ---- shutdown and destroy ----

describe('shutdown() and destroy()', () => {
  it('shutdown(): GOAWAY; the call in flight completes, a new stream is refused, and it resolves after the call', async () => {
    const { server: s, sock: p } = await startServer();
    const c = await ready({}, p);
    c.grpcRequest(1, M.slow, Buffer.from('shutdown-1'));
    const slow = await waitSlow('shutdown-1');
    let resolved = false;
    const done = s.shutdown().then(() => {
      resolved = true;
    });
    expect(await c.goaway()).toEqual({ lastStream: 1, code: H2Error.NO_ERROR, debug: '' });
    c.grpcRequest(3, M.echo, Buffer.from('too late'));
    expect(await c.rstCode(3)).toBe(H2Error.REFUSED_STREAM);
    await c.sync();
    await sleep(50);
    expect(resolved).toBe(false);
    expect(c.isClosed).toBe(false);
    // No new connections.
    await expect(H2RawClient.connect(p).then((extra) => extra.close())).rejects.toThrow();
    slow.call.reply(Buffer.from('finished'));
    const r = await c.stream(1);
    expect(r.messages).toEqual([Buffer.from('finished')]);
    expect(status(r).status).toBe('0');
    await done;
    expect(slow.cancelled).toBe(false);
    await c.waitClosed();
  });

  it('shutdown() with nothing in flight resolves and closes idle connections', async () => {
    const { server: s, sock: p } = await startServer();
    const c = await ready({}, p);
    const quiet = await connect({ handshake: false }, p);
    await s.shutdown();
    expect((await c.goaway()).code).toBe(H2Error.NO_ERROR);
    await c.waitClosed();
    await quiet.waitClosed();
  });

  it('destroy() cancels the calls in flight and closes the connections', async () => {
    const { server: s, sock: p } = await startServer();
    const c = await ready({}, p);
    c.grpcRequest(1, M.slow, Buffer.from('destroy-1'));
    c.grpcRequest(3, M.slow, Buffer.from('destroy-2'));
    const calls = [await waitSlow('destroy-1'), await waitSlow('destroy-2')];
    s.destroy();
    await until('onCancel', () => calls.every((x) => x.cancelled), 2000);
    await c.waitClosed();
  });
});

// ---- fuzz ----

const rng = seededRandom;

interface FuzzState {
  rand: () => number;
  n: number;
  nextStream: number;
  calls: number;
}

const int = (s: FuzzState, max: number): number => Math.floor(s.rand() * max);
const pick = <T>(s: FuzzState, list: readonly T[]): T => list[int(s, list.length)] as T;
/** Bytes from the connection's PRNG, so that its seed replays it exactly. */
function bytes(s: FuzzState, n: number): Buffer {
  const out = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) out[i] = int(s, 256);
  return out;
}

/** A valid gRPC request on the next stream: mostly quick calls, some slow or streaming ones; framed in various ways. */
function fuzzRequest(s: FuzzState): Buffer {
  const stream = s.nextStream;
  s.nextStream += 2;
  const kind = int(s, 6);
  const tag = `fuzz-${s.n}-${s.calls++}`;
  const [method, message] = [
    [M.echo, s.rand() < 0.7 ? bytes(s, int(s, 100)) : Buffer.alloc(int(s, 70_000))],
    [M.fail, Buffer.from('x')],
    [M.big, uint32(int(s, 100_000))],
    [M.slow, Buffer.from(tag)],
    [M.stream, Buffer.from(JSON.stringify({ tag, count: int(s, 40), size: int(s, 5000) }))],
    ['/test.Test/Unknown', Buffer.from('?')],
  ][kind] as [string, Buffer];
  const headers = grpcRequestHeaders(method, s.rand() < 0.2 ? [['grpc-timeout', `${1 + int(s, 50)}m`]] : []);
  const block = encodeHeaders(headers);
  const frames: Buffer[] = [];
  if (s.rand() < 0.7) {
    frames.push(rawFrame(FrameType.HEADERS, Flag.END_HEADERS, stream, block));
  } else {
    // Padded, with priority fields, and continued.
    const pad = int(s, 20);
    const cut = int(s, block.length);
    frames.push(rawFrame(FrameType.HEADERS, Flag.PADDED | Flag.PRIORITY, stream,
      Buffer.concat([Buffer.from([pad]), bytes(s, 5), block.subarray(0, cut), Buffer.alloc(pad)])));
    frames.push(rawFrame(FrameType.CONTINUATION, Flag.END_HEADERS, stream, block.subarray(cut)));
  }
  const body = grpcMessage(message);
  for (let at = 0; ; at += 16_000) {
    const end = Math.min(body.length, at + 16_000);
    const pad = s.rand() < 0.2 ? int(s, 300) : -1;
    const payload = pad < 0 ? body.subarray(at, end) : Buffer.concat([Buffer.from([pad]), body.subarray(at, end), Buffer.alloc(pad)]);
    frames.push(rawFrame(FrameType.DATA, (end === body.length ? Flag.END_STREAM : 0) | (pad < 0 ? 0 : Flag.PADDED), stream, payload));
    if (end === body.length) break;
  }
  return Buffer.concat(frames);
}

/** A frame a peer may well send: right sizes, streams that exist or may be opened. */
function plausibleFrame(s: FuzzState): Buffer {
  const open = s.nextStream - 2;
  switch (int(s, 7)) {
    case 0: return rawFrame(FrameType.PING, s.rand() < 0.8 ? 0 : Flag.ACK, 0, bytes(s, 8));
    case 1: return rawFrame(FrameType.WINDOW_UPDATE, 0, open > 0 && s.rand() < 0.5 ? open : 0, uint32(1 + int(s, 1 << 20)));
    case 2: return rawFrame(FrameType.SETTINGS, 0, 0, settingsPayload(Array.from({ length: int(s, 4) }, () => pick(s, [
      [Setting.HEADER_TABLE_SIZE, int(s, 1 << 16)], [Setting.ENABLE_PUSH, int(s, 2)], [Setting.MAX_CONCURRENT_STREAMS, int(s, 1000)],
      [Setting.INITIAL_WINDOW_SIZE, pick(s, [0, 1, 100, 65_535, 1 << 20])], [Setting.MAX_FRAME_SIZE, 16_384 + int(s, 100_000)],
      [Setting.MAX_HEADER_LIST_SIZE, int(s, 1 << 20)], [0x42, int(s, 1 << 30)],
    ] as Array<[number, number]>))));
    case 3: return rawFrame(FrameType.PRIORITY, 0, Math.max(1, open + 2 * int(s, 3)), bytes(s, 5));
    case 4: return open > 0 ? rawFrame(FrameType.RST_STREAM, 0, open, uint32(int(s, 14))) : rawFrame(FrameType.SETTINGS, Flag.ACK, 0);
    case 5: return rawFrame(10 + int(s, 246), int(s, 256), int(s, 8), bytes(s, int(s, 40)));
    default: return rawFrame(FrameType.SETTINGS, Flag.ACK, 0);
  }
}

/** A random frame (its length field matches its payload). */
function randomFrame(s: FuzzState): Buffer {
  const type = s.rand() < 0.85 ? int(s, 10) : int(s, 256);
  const flags = s.rand() < 0.5 ? pick(s, [0, Flag.END_STREAM, Flag.END_HEADERS, Flag.END_HEADERS | Flag.END_STREAM, Flag.PADDED, Flag.PRIORITY]) : int(s, 256);
  const stream = pick(s, [0, 1, s.nextStream - 2, s.nextStream, s.nextStream + 2, 2, int(s, 0x8000_0000), 0x7fff_ffff]);
  let payload: Buffer;
  const shape = s.rand();
  if (type === FrameType.HEADERS && shape < 0.4) {
    const names = [':method', ':path', ':scheme', ':authority', ':status', 'content-type', 'te', 'grpc-timeout', 'grpc-encoding', 'X-Up', 'connection', ''];
    const values = ['POST', 'GET', M.echo, M.slow, 'http', 'application/grpc', 'trailers', '1m', 'gzip', '', '\u00ff\u0000'];
    payload = encodeHeaders(Array.from({ length: int(s, 8) }, () => [pick(s, names), pick(s, values)] as [string, string]));
  } else if (shape < 0.5) {
    payload = Buffer.alloc(pick(s, [0, 1, 4, 5, 6, 7, 8, 9, 12]));
    for (let i = 0; i < payload.length; i++) payload[i] = s.rand() < 0.5 ? 0 : int(s, 256);
  } else if (shape < 0.97) {
    payload = bytes(s, int(s, 64));
  } else {
    payload = bytes(s, s.rand() < 0.7 ? int(s, 16_385) : 16_385 + int(s, 1000));
  }
  return rawFrame(type, flags, stream, payload);
}

/** A connection's next frame: a request, a plausible frame, or (more often, the more hostile the connection) junk. */
function fuzzFrame(s: FuzzState, hostility: number): Buffer {
  const r = s.rand();
  if (r < 0.3) return fuzzRequest(s);
  if (r < 0.3 + 0.7 * (1 - hostility)) return plausibleFrame(s);
  return randomFrame(s);
}

/** Valid traffic with a few bytes changed, dropped, or added: the framing itself may come apart. */
function fuzzBytes(s: FuzzState): Buffer {
  const parts: Buffer[] = [];
  for (let i = 0, count = 1 + int(s, 6); i < count; i++) {
    const r = s.rand();
    if (r < 0.5) parts.push(fuzzRequest(s));
    else if (r < 0.65) parts.push(rawFrame(FrameType.PING, 0, 0, bytes(s, 8)));
    else if (r < 0.8) parts.push(rawFrame(FrameType.WINDOW_UPDATE, 0, pick(s, [0, s.nextStream - 2]), uint32(1 + int(s, 100_000))));
    else if (r < 0.9) parts.push(rawFrame(FrameType.SETTINGS, 0, 0, settingsPayload([[Setting.INITIAL_WINDOW_SIZE, int(s, 200_000)]])));
    else parts.push(rawFrame(FrameType.RST_STREAM, 0, Math.max(1, s.nextStream - 2), uint32(H2Error.CANCEL)));
  }
  const traffic = Buffer.concat(parts);
  // Where the frames start (a request's several frames count as one; their headers are hit less).
  const starts = parts.map((_, i) => parts.slice(0, i).reduce((n, p) => n + p.length, 0));
  for (let i = 0, count = 1 + int(s, 5); i < count && traffic.length > 0; i++) {
    // Half the time in a frame header, where the framing is.
    const at = s.rand() < 0.5 ? Math.min(traffic.length - 1, pick(s, starts) + int(s, 9)) : int(s, traffic.length);
    traffic[at] = s.rand() < 0.5 ? (traffic[at] ?? 0) ^ (1 << int(s, 8)) : int(s, 256);
  }
  if (s.rand() < 0.2) return traffic.subarray(0, int(s, traffic.length));
  if (s.rand() < 0.2) return Buffer.concat([traffic, bytes(s, int(s, 30))]);
  return traffic;
}

type Outcome = 'answered' | 'closed' | undefined;

async function outcome(c: H2RawClient, ping: Buffer, ms: number): Promise<Outcome> {
  for (const deadline = Date.now() + ms; ; await sleep(5)) {
    if (c.received.some((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(ping))) return 'answered';
    if (c.isClosed) return 'closed';
    if (Date.now() > deadline) return undefined;
  }
}

interface FuzzTally {
  answered: number;
  closed: number;
  flushed: number;
  /** gRPC statuses received: requests that made it through. */
  responses: number;
  goaways: Map<number, number>;
}

async function fuzzConnection(n: number, tally: FuzzTally): Promise<void> {
  const s: FuzzState = { rand: rng(0xf022 + n), n, nextStream: 1, calls: 0 };
  const settings: Array<[number, number]> = s.rand() < 0.3 ? [[Setting.INITIAL_WINDOW_SIZE, pick(s, [0, 100, 65_535, 1 << 20])]] : [];
  const c = await H2RawClient.connect(sock, { settings, autoAck: s.rand() < 0.8 });
  try {
    const framed = s.rand() < 0.7;
    const hostility = s.rand() ** 3; // many connections mostly well behaved, some hostile throughout
    const traffic = framed ? Buffer.concat(Array.from({ length: 1 + int(s, 20) }, () => fuzzFrame(s, hostility))) : fuzzBytes(s);
    // In a few writes, cut anywhere.
    const cuts = Array.from({ length: int(s, 4) }, () => int(s, traffic.length)).sort((a, b) => a - b);
    let from = 0;
    for (const cut of [...cuts, traffic.length]) {
      c.send(traffic.subarray(from, cut));
      from = cut;
      await new Promise((resolve) => setImmediate(resolve));
    }
    const ping = Buffer.alloc(8);
    ping.writeUInt32BE(0xf022f022, 0);
    ping.writeUInt32BE(n, 4);
    c.ping(ping);
    let result = await outcome(c, ping, framed ? 5000 : 300);
    if (result === undefined && !framed) {
      // The server may be waiting for the rest of a frame whose header was mangled: whatever it waits for (at most
      // 16384 bytes), zeros complete it and then make DATA frames on stream 0, a connection error.
      tally.flushed++;
      c.send(Buffer.alloc(16_384 + 18));
      result = await outcome(c, ping, 5000);
    }
    if (result === undefined) throw new Error(`fuzz connection ${n} (${framed ? 'frames' : 'bytes'}): neither answered nor closed; ${c.describe()}`);
    tally[result]++;
    tally.responses += c.received.filter((f) => headerValue(f.headers, 'grpc-status') !== undefined).length;
    for (const f of c.received) {
      if (f.type !== FrameType.GOAWAY || f.payload.length < 8) continue;
      const code = f.payload.readUInt32BE(4);
      tally.goaways.set(code, (tally.goaways.get(code) ?? 0) + 1);
      if (code === H2Error.INTERNAL_ERROR) throw new Error(`fuzz connection ${n}: INTERNAL_ERROR "${f.payload.toString('utf8', 8)}"`);
    }
  } finally {
    c.close();
  }
}

describe('fuzz', () => {
  it('300 hostile connections: the server never throws, answers or closes each, and still serves', async () => {
    // The real process (jest gives test code a copy whose listeners never fire): anything the server throws from a
    // socket callback, or a promise it leaves rejected, lands here.
    const realProcess = vm.runInThisContext('process') as NodeJS.Process;
    const thrown: unknown[] = [];
    const guard = (err: unknown): void => {
      thrown.push(err);
    };
    realProcess.on('uncaughtException', guard);
    realProcess.on('unhandledRejection', guard);
    try {
      const tally: FuzzTally = { answered: 0, closed: 0, flushed: 0, responses: 0, goaways: new Map() };
      const CONNECTIONS = 300;
      const PARALLEL = 30;
      for (let batch = 0; batch < CONNECTIONS; batch += PARALLEL) {
        await Promise.all(Array.from({ length: PARALLEL }, (_, i) => fuzzConnection(batch + i, tally)));
      }
      expect(thrown).toEqual([]);
      expect(tally.answered + tally.closed).toBe(CONNECTIONS);
      // Both ends were exercised: connections that survived their frames, and connection errors.
      expect(tally.answered).toBeGreaterThan(30);
      expect(tally.closed).toBeGreaterThan(30);
      // Requests mixed in with the junk were served.
      expect(tally.responses).toBeGreaterThan(100);
      // Every slow call of a closed connection was cancelled.
      await until('the fuzz slow calls to be cancelled', () => [...slowCalls].every(([tag, x]) => !tag.startsWith('fuzz-') || x.cancelled), 5000);
      const c = await ready();
      await expectEcho(c, 1);
      expect((await unary(grpcClient(), M.echo, Buffer.from('after the fuzz'))).toString()).toBe('after the fuzz');
      expect(thrown).toEqual([]);
    } finally {
      realProcess.off('uncaughtException', guard);
      realProcess.off('unhandledRejection', guard);
    }
  });
});
