// SPDY/3.1 for the streaming server: the framing layer against the spec's wire format (and bytes as Go's
// moby/spdystream sends them), hostile input, and two sessions talking over a real TCP socket pair.
import crypto from 'node:crypto';
import { once } from 'node:events';
import net from 'node:net';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import zlib from 'node:zlib';
import {
  DEFAULT_WINDOW_SIZE, FLAG_FIN, FLAG_UNIDIRECTIONAL, FrameEncoder, FrameParser, GoAwayStatus, HeaderCompressor,
  HeaderDecompressor, RstStatus, SettingsId, SPDY_DICTIONARY, SPDY_DICTIONARY_ID, SpdyProtocolError,
  decodeNameValueBlock, encodeNameValueBlock, headerValue, normalizeHeaders,
  type ParserLimits, type SpdyErrorCode, type SpdyFrame,
} from '../../src/server/streaming/spdy-frames';
import {
  SpdySession, SpdyStream, SpdyStreamError, type SpdySessionOptions,
} from '../../src/server/streaming/spdy-session';

const h = normalizeHeaders;

/** Every frame type, each with the fields a peer could set. */
const SAMPLE_FRAMES: SpdyFrame[] = [
  { type: 'SYN_STREAM', streamId: 1, associatedStreamId: 0, priority: 3, slot: 0, flags: FLAG_FIN,
    headers: h({ streamtype: 'stdout', port: ['80', '8080'] }) },
  { type: 'SYN_STREAM', streamId: 0x7fffffff, associatedStreamId: 5, priority: 7, slot: 9, flags: FLAG_UNIDIRECTIONAL,
    headers: h({ streamtype: 'error', requestid: '1' }) },
  { type: 'SYN_REPLY', streamId: 1, flags: 0, headers: h({ ':status': '200' }) },
  { type: 'HEADERS', streamId: 3, flags: FLAG_FIN, headers: h({ 'x-empty': '' }) },
  { type: 'RST_STREAM', streamId: 3, status: RstStatus.CANCEL },
  { type: 'SETTINGS', flags: 1, entries: [
    { flags: 1, id: SettingsId.INITIAL_WINDOW_SIZE, value: 1 << 20 },
    { flags: 0, id: SettingsId.MAX_CONCURRENT_STREAMS, value: 0xffffffff },
  ] },
  { type: 'SETTINGS', flags: 0, entries: [] },
  { type: 'PING', id: 0xfffffffe },
  { type: 'GOAWAY', lastGoodStreamId: 7, status: GoAwayStatus.PROTOCOL_ERROR },
  { type: 'WINDOW_UPDATE', streamId: 0, delta: 0x7fffffff },
  { type: 'WINDOW_UPDATE', streamId: 5, delta: 1 },
  { type: 'DATA', streamId: 1, flags: 0, data: Buffer.from('hello') },
  { type: 'DATA', streamId: 0x7fffffff, flags: FLAG_FIN, data: Buffer.alloc(0) },
  { type: 'DATA', streamId: 2, flags: 0, data: crypto.randomBytes(70_000) },
];

/** The error a parser throws on `input`, or a test failure if it takes it. */
function parseError(input: Buffer, parser = new FrameParser()): SpdyProtocolError {
  try {
    parser.push(input);
  } catch (err) {
    if (err instanceof SpdyProtocolError) return err;
    throw err;
  }
  throw new Error('expected a SpdyProtocolError');
}

function controlFrame(type: number, flags: number, body: Buffer, version = 3): Buffer {
  const head = Buffer.alloc(8);
  head.writeUInt16BE(0x8000 | version, 0);
  head.writeUInt16BE(type, 2);
  head.writeUInt32BE(((flags << 24) | body.length) >>> 0, 4);
  return Buffer.concat([head, body]);
}

/** A SYN_STREAM around an already compressed header block. */
function synStream(streamId: number, block: Buffer): Buffer {
  const fixed = Buffer.alloc(10);
  fixed.writeUInt32BE(streamId, 0);
  return controlFrame(1, 0, Buffer.concat([fixed, block]));
}

function firstBlock(nv: Buffer): Buffer {
  return new HeaderCompressor().compress(nv);
}

describe('SPDY/3 header dictionary', () => {
  it('is the 1423 bytes of draft 3 section 2.6.10.1, the DICTID every SPDY/3 peer sends', () => {
    expect(SPDY_DICTIONARY.length).toBe(1423);
    expect(SPDY_DICTIONARY.subarray(0, 11)).toEqual(Buffer.from('\0\0\0\x07options', 'latin1'));
    expect(SPDY_DICTIONARY.toString('latin1').endsWith('charset=iso-8859-1,utf-,*,enq=0.')).toBe(true);
    // zlib writes the dictionary's adler32 into the stream header: the id a peer checks ours against.
    const z = zlib.deflateSync(Buffer.from('x'), { dictionary: SPDY_DICTIONARY });
    expect(z.readUInt32BE(2)).toBe(SPDY_DICTIONARY_ID);
    expect(SPDY_DICTIONARY_ID).toBe(0xe3c6a7c2);
  });

  it('decodes a SYN_STREAM as Go (compress/zlib, best compression, preset dictionary) sends it', () => {
    const head = '80030001' + '0000002b' + '00000001' + '00000000' + '0000'; // 43 bytes; stream 1, no priority
    const zlibHeader = '78f9' + 'e3c6a7c2'; // deflate, level 9, preset dictionary with its id
    const block = '62606060' + '04a7b392a2d4c45c6851c2565c92925f5a02' + '000000ffff'; // ends in a sync flush
    const wire = Buffer.from(head + zlibHeader + block, 'hex');
    expect(new FrameParser().push(wire)).toEqual([{
      type: 'SYN_STREAM', streamId: 1, associatedStreamId: 0, priority: 0, slot: 0, flags: 0,
      headers: { streamtype: ['stdout'] },
    }]);
  });
});

describe('SPDY frames', () => {
  it('round-trips every frame type', () => {
    const enc = new FrameEncoder();
    const parser = new FrameParser();
    for (const f of SAMPLE_FRAMES) expect(parser.push(enc.encode(f))).toEqual([f]);
  });

  it('lays frames out as the spec does', () => {
    const enc = new FrameEncoder();
    expect(enc.encode({ type: 'PING', id: 7 }).toString('hex')).toBe('8003000600000004' + '00000007');
    expect(enc.encode({ type: 'RST_STREAM', streamId: 3, status: 5 }).toString('hex'))
      .toBe('8003000300000008' + '00000003' + '00000005');
    expect(enc.encode({ type: 'WINDOW_UPDATE', streamId: 1, delta: 0x10000 }).toString('hex'))
      .toBe('8003000900000008' + '00000001' + '00010000');
    expect(enc.encode({ type: 'GOAWAY', lastGoodStreamId: 9, status: 1 }).toString('hex'))
      .toBe('8003000700000008' + '00000009' + '00000001');
    expect(enc.encode({ type: 'SETTINGS', flags: 0, entries: [{ flags: 1, id: 7, value: 65536 }] }).toString('hex'))
      .toBe('800300040000000c' + '00000001' + '01000007' + '00010000');
    expect(enc.encode({ type: 'DATA', streamId: 5, flags: FLAG_FIN, data: Buffer.from('hi') }).toString('hex'))
      .toBe('00000005' + '01000002' + '6869');
    const syn = enc.encode(SAMPLE_FRAMES[0] as SpdyFrame);
    expect(syn.subarray(0, 5).toString('hex')).toBe('8003000101');
    expect(syn.readUInt32BE(4) & 0xffffff).toBe(syn.length - 8);
    expect(syn.subarray(8, 18).toString('hex')).toBe('00000001' + '00000000' + '6000');
    expect(syn.readUInt32BE(20)).toBe(SPDY_DICTIONARY_ID); // zlib header 78xx, then the dictionary id
  });

  it('writes name/value blocks with lower-case names and NUL-joined values', () => {
    const nv = encodeNameValueBlock(h({ port: ['80', '443'] }));
    expect(nv.toString('latin1')).toBe('\0\0\0\x01\0\0\0\x04port\0\0\0\x0680\x00443');
    expect(decodeNameValueBlock(nv)).toEqual({ port: ['80', '443'] });
    expect(headerValue(decodeNameValueBlock(nv), 'port')).toBe('80');
    expect(() => h({ Port: '80' })).toThrow(TypeError);
    expect(() => h({ port: 'a\0b' })).toThrow(TypeError);
    // A name from the network never reaches an object's prototype.
    const proto = decodeNameValueBlock(encodeNameValueBlock(h({ ['__proto__']: 'x' })));
    expect(Object.getPrototypeOf(proto)).toBeNull();
    expect(proto['__proto__']).toEqual(['x']);
  });

  it('compresses every header block of a direction as one zlib stream', () => {
    const headers = h({ streamtype: 'stdout', requestid: 'a-long-request-identifier-0123456789' });
    const nv = encodeNameValueBlock(headers);
    const comp = new HeaderCompressor();
    const blocks = [comp.compress(nv), comp.compress(nv), comp.compress(nv)];
    const [b1, b2, b3] = blocks as [Buffer, Buffer, Buffer];
    expect(b2.length).toBeLessThan(b1.length); // the second refers back into the first
    expect(b2[0]).not.toBe(0x78); // no second zlib header: the same stream goes on
    for (const b of blocks) expect(b.subarray(-4).toString('hex')).toBe('0000ffff'); // sync flush per block
    // The context decodes them in order; a fresh one cannot decode a later block alone.
    const de = new HeaderDecompressor(1 << 20);
    for (const b of blocks) expect(decodeNameValueBlock(de.decompress(b))).toEqual(headers);
    expect(() => new HeaderDecompressor(1 << 20).decompress(b3)).toThrow(SpdyProtocolError);
    // An ordinary streaming zlib inflater reads the concatenation as the single stream it is.
    const plain = zlib.inflateSync(Buffer.concat(blocks), {
      dictionary: SPDY_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH,
    });
    expect(plain).toEqual(Buffer.concat([nv, nv, nv]));
  });

  it('decodes header blocks from an independent persistent zlib deflater using the dictionary', async () => {
    const deflater = zlib.createDeflate({ dictionary: SPDY_DICTIONARY, level: 9 });
    const chunks: Buffer[] = [];
    deflater.on('data', (c: Buffer) => chunks.push(c));
    const blockOf = async (headers: Record<string, string[]>): Promise<Buffer> => {
      deflater.write(encodeNameValueBlock(headers));
      await new Promise<void>((resolve) => deflater.flush(zlib.constants.Z_SYNC_FLUSH, () => resolve()));
      return Buffer.concat(chunks.splice(0));
    };
    const sets = [
      h({ streamtype: 'stdin', requestid: '0' }),
      h({ streamtype: 'stdout', requestid: '0' }),
      h({ streamtype: 'error', port: '8080', 'x-filler': 'z'.repeat(40_000) }), // beyond one 32 KiB window
      h({ streamtype: 'stderr', requestid: '0' }),
    ];
    const parser = new FrameParser();
    for (const [i, headers] of sets.entries()) {
      expect(parser.push(synStream(2 * i + 1, await blockOf(headers)))).toEqual([
        { type: 'SYN_STREAM', streamId: 2 * i + 1, associatedStreamId: 0, priority: 0, slot: 0, flags: 0, headers },
      ]);
    }
    deflater.close();
  });

  it('parses frames fed byte by byte, and many packed into one chunk', () => {
    const enc = new FrameEncoder();
    const wire = Buffer.concat(SAMPLE_FRAMES.map((f) => enc.encode(f)));
    const slow = new FrameParser();
    const got: SpdyFrame[] = [];
    for (let i = 0; i < wire.length; i++) got.push(...slow.push(wire.subarray(i, i + 1)));
    expect(got).toEqual(SAMPLE_FRAMES);
    expect(new FrameParser().push(wire)).toEqual(SAMPLE_FRAMES);
    // And split at arbitrary points.
    const odd = new FrameParser();
    const got2: SpdyFrame[] = [];
    for (let i = 0; i < wire.length; i += 997) got2.push(...odd.push(wire.subarray(i, i + 997)));
    expect(got2).toEqual(SAMPLE_FRAMES);
  });

  it('ignores unknown control frame types', () => {
    const parser = new FrameParser();
    const unknown = controlFrame(10, 0, Buffer.alloc(12)); // CREDENTIAL, which nobody speaks
    expect(parser.push(Buffer.concat([unknown, new FrameEncoder().encode({ type: 'PING', id: 1 })])))
      .toEqual([{ type: 'PING', id: 1 }]);
  });

  const nvCount = (n: number): Buffer => Buffer.from([n >>> 24, (n >> 16) & 255, (n >> 8) & 255, n & 255]);
  const cases: [string, () => Buffer, SpdyErrorCode, ParserLimits?][] = [
    ['a SPDY/2 control frame', () => controlFrame(6, 0, Buffer.alloc(4), 2), 'UNSUPPORTED_VERSION'],
    ['a DATA frame over the limit (on its header alone)', () => Buffer.from('0000000100000401', 'hex'),
      'FRAME_TOO_LARGE', { maxDataLength: 1024 }],
    ['a control frame over the limit', () => Buffer.from('80030001' + '00ffffff', 'hex'), 'FRAME_TOO_LARGE'],
    ['a PING of the wrong length', () => controlFrame(6, 0, Buffer.alloc(8)), 'INVALID_FRAME'],
    ['a RST_STREAM of the wrong length', () => controlFrame(3, 0, Buffer.alloc(4)), 'INVALID_FRAME'],
    ['a SETTINGS frame whose count disagrees', () => controlFrame(4, 0, Buffer.from('00000002' + '01000007' + '00000001', 'hex')),
      'INVALID_FRAME'],
    ['a SYN_STREAM too short for its fields', () => controlFrame(1, 0, Buffer.alloc(6)), 'INVALID_FRAME'],
    ['a SYN_STREAM with no header block', () => controlFrame(1, 0, Buffer.alloc(10)), 'COMPRESSION_ERROR'],
    ['a header block that is not zlib', () => synStream(1, Buffer.from('not zlib at all')), 'COMPRESSION_ERROR'],
    ['a header block under another dictionary', () => synStream(1, zlib.deflateSync(nvCount(0), { dictionary: Buffer.from('x') })),
      'COMPRESSION_ERROR'],
    ['a truncated header block', () => synStream(1, firstBlock(encodeNameValueBlock(h({ streamtype: 'stdout' }))).subarray(0, 12)),
      'INVALID_HEADERS'],
    ['a header block claiming 4 billion pairs', () => synStream(1, firstBlock(nvCount(0xffffffff))), 'INVALID_HEADERS'],
    ['an upper-case header name', () => synStream(1, firstBlock(Buffer.from('\0\0\0\x01\0\0\0\x04Port\0\0\0\x0280', 'latin1'))),
      'INVALID_HEADERS'],
    ['a duplicate header name', () => synStream(1, firstBlock(Buffer.from('\0\0\0\x02\0\0\0\x01a\0\0\0\0\0\0\0\x01a\0\0\0\0', 'latin1'))),
      'INVALID_HEADERS'],
    ['an empty header name', () => synStream(1, firstBlock(Buffer.from('\0\0\0\x01\0\0\0\0\0\0\0\x01x', 'latin1'))),
      'INVALID_HEADERS'],
    ['trailing bytes after the pairs', () => synStream(1, firstBlock(Buffer.from('\0\0\0\0junk', 'latin1'))), 'INVALID_HEADERS'],
  ];
  it.each(cases.map(([name, input, code, limits]) => [name, { input, code, limits }] as const))(
    'rejects %s with a typed error', (_name, { input, code, limits }) => {
    const p = new FrameParser(limits);
    expect(parseError(input(), p).code).toBe(code);
    // The context is gone after an error: the parser stays failed.
    expect(parseError(new FrameEncoder().encode({ type: 'PING', id: 1 }), p).code).toBe(code);
  });

  it('stops inflating a zlib bomb in a header block at the limit', () => {
    const bomb = zlib.deflateSync(Buffer.alloc(64 * 1024 * 1024), {
      dictionary: SPDY_DICTIONARY, finishFlush: zlib.constants.Z_SYNC_FLUSH, level: 9,
    });
    expect(bomb.length).toBeLessThan(100 * 1024); // 64 MiB in a frame under the default control-frame limit
    const before = process.memoryUsage().arrayBuffers;
    const started = Date.now();
    expect(parseError(synStream(1, bomb)).code).toBe('HEADERS_TOO_LARGE');
    expect(parseError(synStream(1, bomb), new FrameParser({ maxHeaderBytes: 4096, maxControlLength: 1 << 20 })).code).toBe('HEADERS_TOO_LARGE');
    expect(Date.now() - started).toBeLessThan(1000); // it stopped early: inflating all of it takes longer
    expect(process.memoryUsage().arrayBuffers - before).toBeLessThan(32 * 1024 * 1024);
  });

  it('turns random and corrupted input into SpdyProtocolError or frames, never a crash', () => {
    const enc = new FrameEncoder();
    const valid = Buffer.concat(SAMPLE_FRAMES.slice(0, 13).map((f) => enc.encode(f)));
    let rejected = 0;
    for (let i = 0; i < 400; i++) {
      let input: Buffer;
      if (i % 2 === 0) {
        input = crypto.randomBytes(2 + (i % 300));
        if (i % 4 === 0) input[0] = (input[0] as number) | 0x80; // mostly control frames
        if (i % 8 === 0) input.writeUInt16BE(0x8003, 0);
      } else {
        input = Buffer.from(valid);
        for (let k = 0; k < 1 + (i % 5); k++) input[crypto.randomInt(input.length)] = crypto.randomInt(256);
      }
      const parser = new FrameParser({ maxHeaderBytes: 64 * 1024 });
      try {
        for (let off = 0; off < input.length; off += 7) parser.push(input.subarray(off, off + 7));
      } catch (err) {
        expect(err).toBeInstanceOf(SpdyProtocolError);
        rejected++;
      }
    }
    expect(rejected).toBeGreaterThan(100);
  });
});

// ---- sessions over TCP ----

async function socketPair(): Promise<[net.Socket, net.Socket]> {
  const listener = net.createServer();
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const accepted = once(listener, 'connection') as Promise<[net.Socket]>;
  const client = net.connect((listener.address() as net.AddressInfo).port, '127.0.0.1');
  await once(client, 'connect');
  const [server] = await accepted;
  listener.close();
  return [client, server];
}

/** Everything a stream yields until its FIN (without destroying it, as for-await would). */
function readAll(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  return new Promise((resolve, reject) => {
    stream.once('end', () => resolve(Buffer.concat(chunks)));
    stream.once('error', reject);
  });
}

/** Like a socket, a stream emits 'error' when reset or when its session dies; tests that expect none ignore it. */
function quiet(stream: SpdyStream): SpdyStream {
  return stream.on('error', () => {});
}

function open(session: SpdySession, ...args: Parameters<SpdySession['openStream']>): SpdyStream {
  return quiet(session.openStream(...args));
}

/** Resolves with the error a stream is destroyed with. */
function streamError(stream: SpdyStream): Promise<Error> {
  return new Promise((resolve) => stream.once('error', resolve));
}

describe('SPDY sessions over a socket pair', () => {
  let sockets: net.Socket[] = [];
  let sessions: SpdySession[] = [];

  async function connect(serverOpts: Partial<SpdySessionOptions> = {}, flowControl = true): Promise<{
    client: SpdySession; server: SpdySession; clientSocket: net.Socket; serverSocket: net.Socket;
  }> {
    const [clientSocket, serverSocket] = await socketPair();
    sockets.push(clientSocket, serverSocket);
    const client = new SpdySession(clientSocket, { role: 'client', flowControl });
    const server = new SpdySession(serverSocket, { role: 'server', flowControl, ...serverOpts });
    sessions.push(client, server);
    client.on('stream', quiet);
    server.on('stream', quiet);
    return { client, server, clientSocket, serverSocket };
  }

  /** A server that echoes every stream back, replying with the request's streamtype. */
  function echo(server: SpdySession): void {
    server.on('stream', (s) => {
      s.reply({ streamtype: headerValue(s.headers, 'streamtype') ?? '' });
      s.pipe(s);
    });
  }

  afterEach(() => {
    for (const s of sessions) s.destroy();
    for (const s of sockets) s.destroy();
    sessions = [];
    sockets = [];
  });

  it('opens a stream, exchanges data both ways, and half-closes with FIN', async () => {
    const { client, server } = await connect();
    const accepted = once(server, 'stream') as Promise<[SpdyStream]>;
    const c = open(client, { streamtype: 'stdin', requestid: '1' });
    expect(c.id).toBe(1);
    const [s] = await accepted;
    expect(s.id).toBe(1);
    expect(s.inbound).toBe(true);
    expect(s.headers).toEqual({ streamtype: ['stdin'], requestid: ['1'] });
    s.reply({ ok: 'yes' });
    expect(await c.waitForReply()).toEqual({ ok: ['yes'] });

    c.write('ping from client');
    c.end(); // FIN: the server's readable side ends, its writable side stays open
    expect((await readAll(s)).toString()).toBe('ping from client');
    expect(s.writable).toBe(true);
    s.write('late answer');
    s.end();
    expect((await readAll(c)).toString()).toBe('late answer');
    // Both sides read to the end and sent FIN: each stream closes on its own.
    await Promise.all([c, s].map((x) => (x.closed ? Promise.resolve([]) : once(x, 'close'))));
    expect(c.errored).toBeNull();
    expect(s.errored).toBeNull();

    // Stream ids go up by two on each side.
    const accepted2 = once(server, 'stream') as Promise<[SpdyStream]>;
    expect(open(client, { streamtype: 'stdout' }, { fin: true }).id).toBe(3);
    const [s2] = await accepted2;
    expect(s2.id).toBe(3);
    await readAll(s2); // the FIN rode on the SYN_STREAM
  });

  it('honours FIN on SYN frames and unidirectional streams', async () => {
    const { client, server } = await connect();
    server.on('stream', (s) => {
      if (headerValue(s.headers, 'kind') === 'push') {
        expect(s.writable).toBe(false); // unidirectional: we may not send
        void readAll(s).then((b) => open(server, { got: b.toString() }, { fin: true }));
      } else {
        s.reply({}, { fin: true }); // a reply that also ends our side
      }
    });
    const back = once(client, 'stream') as Promise<[SpdyStream]>;
    const uni = open(client, { kind: 'push' }, { unidirectional: true });
    uni.end('one way');
    const [fromServer] = await back;
    expect(fromServer.id).toBe(2); // server-initiated ids are even
    expect(fromServer.headers).toEqual({ got: ['one way'] });
    expect((await readAll(fromServer)).length).toBe(0);

    const c = open(client, { kind: 'plain' });
    await c.waitForReply();
    c.end();
    expect((await readAll(c)).length).toBe(0); // the reply's FIN ended it
  });

  it('resets streams with RST_STREAM in both directions', async () => {
    const { client, server } = await connect();
    const accepted: SpdyStream[] = [];
    server.on('stream', (s) => {
      accepted.push(s);
      s.reply();
    });
    const c1 = open(client, { n: '1' });
    await c1.waitForReply();
    const serverSide = accepted[0] as SpdyStream;
    const err1 = streamError(serverSide);
    c1.reset(RstStatus.CANCEL);
    expect(c1.destroyed).toBe(true);
    const e1 = await err1;
    expect(e1).toBeInstanceOf(SpdyStreamError);
    expect((e1 as SpdyStreamError).status).toBe(RstStatus.CANCEL);

    const c2 = open(client, { n: '2' });
    await c2.waitForReply();
    const err2 = streamError(c2);
    (accepted[1] as SpdyStream).reset(RstStatus.INTERNAL_ERROR);
    expect((await err2 as SpdyStreamError).status).toBe(RstStatus.INTERNAL_ERROR);

    // Destroying a stream tells the peer too.
    const c3 = open(client, { n: '3' });
    await c3.waitForReply();
    const err3 = streamError(accepted[2] as SpdyStream);
    c3.destroy();
    expect((await err3 as SpdyStreamError).status).toBe(RstStatus.CANCEL);

    // The session carries on.
    server.removeAllListeners('stream');
    echo(server);
    const c4 = open(client, { n: '4' });
    c4.end('still fine');
    expect((await readAll(c4)).toString()).toBe('still fine');
  });

  it('answers PING in both roles', async () => {
    const { client, server } = await connect();
    const [a, b, c] = await Promise.all([client.ping(), client.ping(), server.ping()]);
    for (const rtt of [a, b, c]) expect(rtt).toBeGreaterThanOrEqual(0);
  });

  it.each([
    ['SPDY/3.1 windows', true],
    ['no flow control (moby/spdystream peers): TCP backpressure', false],
  ])('moves 50 MiB with %s: the sender waits for the reader, memory stays bounded', async (_name, flowControl) => {
    const { client, server } = await connect({}, flowControl);
    const accepted = once(server, 'stream') as Promise<[SpdyStream]>;
    const total = 50 * 1024 * 1024;
    const chunk = 64 * 1024;
    const sent = crypto.createHash('sha256');
    let produced = 0;
    const source = Readable.from((function* () {
      while (produced < total) {
        const b = crypto.randomBytes(chunk);
        produced += b.length;
        sent.update(b);
        yield b;
      }
    })());
    const c = open(client, { streamtype: 'data' });
    const upload = pipeline(source, c);
    const [s] = await accepted;
    s.reply();

    // Nobody reads on the server yet: the client stalls once the 64 KiB windows are spent (or, without flow
    // control, once the server stops reading the socket and the kernel's buffers fill).
    await new Promise((r) => setTimeout(r, 300));
    const bufferBound = flowControl ? DEFAULT_WINDOW_SIZE : 3 * DEFAULT_WINDOW_SIZE; // one socket read past full
    expect(s.readableLength).toBeLessThanOrEqual(bufferBound);
    if (flowControl) expect(c.sendWindow).toBeLessThanOrEqual(0);
    expect(produced).toBeLessThan((flowControl ? 4 : 16) * 1024 * 1024); // not the 50 MiB
    const stalledAt = produced;
    await new Promise((r) => setTimeout(r, 100));
    expect(produced).toBe(stalledAt);

    const received = crypto.createHash('sha256');
    let bytes = 0;
    let maxBuffered = 0;
    s.on('data', (b: Buffer) => {
      bytes += b.length;
      received.update(b);
      maxBuffered = Math.max(maxBuffered, s.readableLength);
    });
    await Promise.all([upload, once(s, 'end')]);
    expect(bytes).toBe(total);
    expect(received.digest('hex')).toBe(sent.digest('hex'));
    expect(maxBuffered).toBeLessThanOrEqual(bufferBound);
  });

  it.each([true, false])('carries many concurrent streams both ways at once (flow control: %s)', async (flowControl) => {
    const { client, server } = await connect({}, flowControl);
    echo(server);
    const results = await Promise.all(Array.from({ length: 40 }, async (_, i) => {
      const payload = crypto.randomBytes(100_000 + i * 1000); // each beyond a window: every stream must wait
      const c = open(client, { streamtype: `s${i}` });
      const back = readAll(c);
      expect(headerValue(await c.waitForReply(), 'streamtype')).toBe(`s${i}`);
      c.end(payload);
      return (await back).equals(payload);
    }));
    expect(results.every(Boolean)).toBe(true);
  });

  it.each([true, false])('a stream that ended while its reader lagged does not hold up the others (flow control: %s)',
    async (flowControl) => {
      const { client, server } = await connect({}, flowControl);
      const accepted: SpdyStream[] = [];
      server.on('stream', (s) => {
        accepted.push(s.pause()); // nobody reads yet
        s.reply();
      });
      const first = crypto.randomBytes(60_000); // within the windows: all of it and the FIN arrive unread
      const a = open(client, { n: 'a' });
      a.end(first);
      await new Promise((r) => setTimeout(r, 200));
      const sa = accepted[0] as SpdyStream;
      const gotA = readAll(sa.resume());
      expect((await gotA).equals(first)).toBe(true);
      // The session window (or the socket) must be free again for the next stream.
      const second = crypto.randomBytes(200_000);
      const b = open(client, { n: 'b' });
      b.end(second);
      await new Promise((r) => setTimeout(r, 50));
      expect((await readAll((accepted[1] as SpdyStream).resume())).equals(second)).toBe(true);
    });

  it('refuses streams beyond maxConcurrentStreams', async () => {
    const { client, server } = await connect({ maxConcurrentStreams: 2 });
    server.on('stream', (s) => s.reply());
    const a = open(client, {});
    const b = open(client, {});
    const c = open(client, {});
    const err = streamError(c);
    await Promise.all([a.waitForReply(), b.waitForReply()]);
    expect((await err as SpdyStreamError).status).toBe(RstStatus.REFUSED_STREAM);
  });

  it('announces a larger window with SETTINGS and WINDOW_UPDATE, and the peer uses it', async () => {
    const { client, server } = await connect({ streamWindowSize: 1 << 20, sessionWindowSize: 4 << 20 });
    echo(server);
    await client.ping(); // the SETTINGS came before the ping's answer
    const c = open(client, {});
    expect(c.sendWindow).toBe(1 << 20);
    const payload = crypto.randomBytes(3 << 20);
    const back = readAll(c);
    c.end(payload);
    expect((await back).equals(payload)).toBe(true);
  });

  it('stops opening streams after GOAWAY', async () => {
    const { client, server } = await connect();
    const goaway = once(client, 'goaway');
    server.goAway();
    expect(await goaway).toEqual([0, GoAwayStatus.OK]);
    expect(() => client.openStream({})).toThrow(/closing/);
  });

  it('destroys every stream, fails pings and lets go of the socket when the connection ends', async () => {
    const { client, server, clientSocket, serverSocket } = await connect();
    const accepted: SpdyStream[] = [];
    server.on('stream', (s) => {
      accepted.push(s);
      s.reply();
    });
    const mine = [open(client, {}), open(client, {}), open(client, {})];
    await Promise.all(mine.map((s) => s.waitForReply()));
    const serverErrors = accepted.map(streamError);
    const clientErrors = mine.map(streamError);
    const serverClosed = once(server, 'close');
    const clientClosed = once(client, 'close');
    serverSocket.destroy(); // the connection drops under open streams
    for (const e of await Promise.all([...serverErrors, ...clientErrors])) expect(e).toBeInstanceOf(Error);
    await Promise.all([serverClosed, clientClosed]);
    expect(server.isClosed && client.isClosed).toBe(true);
    await expect(client.ping()).rejects.toThrow();
    expect(() => client.openStream({})).toThrow();
    for (const sock of [clientSocket, serverSocket]) {
      expect(sock.listenerCount('data')).toBe(0);
      expect(sock.listenerCount('drain')).toBe(0);
    }
    await once(clientSocket, 'close');
    expect([...mine, ...accepted].every((s) => s.destroyed)).toBe(true);
  });

  it('a clean close() ends the peer session too', async () => {
    const { client, server } = await connect();
    echo(server);
    const c = open(client, {});
    await c.waitForReply();
    const err = streamError(c);
    const closed = once(server, 'close');
    client.close();
    expect(await closed).toEqual([undefined]);
    expect(await err).toBeInstanceOf(SpdyStreamError);
  });

  it('answers garbage with GOAWAY(PROTOCOL_ERROR) and closes', async () => {
    const [raw, serverSocket] = await socketPair();
    sockets.push(raw, serverSocket);
    const server = new SpdySession(serverSocket, { role: 'server', flowControl: true });
    sessions.push(server);
    const closed = once(server, 'close') as Promise<[Error]>;
    const reply = readAll(raw);
    raw.write(controlFrame(6, 0, Buffer.alloc(4), 2)); // SPDY/2
    const [err] = await closed;
    expect(err).toBeInstanceOf(SpdyProtocolError);
    expect((err as SpdyProtocolError).code).toBe('UNSUPPORTED_VERSION');
    expect(new FrameParser().push(await reply)).toEqual([
      { type: 'GOAWAY', lastGoodStreamId: 0, status: GoAwayStatus.PROTOCOL_ERROR },
    ]);
  });

  it('resets a stream whose peer ignores its window, and rejects bad stream ids', async () => {
    const [raw, serverSocket] = await socketPair();
    sockets.push(raw, serverSocket);
    // A big session window, so the stream's own 64 KiB is what the peer overruns.
    const server = new SpdySession(serverSocket, { role: 'server', flowControl: true, sessionWindowSize: 1 << 20 });
    sessions.push(server);
    const errors: Error[] = [];
    server.on('stream', (s) => {
      s.on('error', (e) => errors.push(e));
      s.pause(); // read nothing: no credit goes back
    });
    const enc = new FrameEncoder();
    const parser = new FrameParser();
    const frames: SpdyFrame[] = [];
    raw.on('data', (b: Buffer) => frames.push(...parser.push(b)));
    raw.write(enc.encode({ type: 'SYN_STREAM', streamId: 1, associatedStreamId: 0, priority: 0, slot: 0, flags: 0,
      headers: h({}) }));
    for (let i = 0; i < 5; i++) {
      raw.write(enc.encode({ type: 'DATA', streamId: 1, flags: 0, data: Buffer.alloc(16 * 1024) }));
    }
    await new Promise((r) => setTimeout(r, 200));
    expect(frames).toContainEqual({ type: 'RST_STREAM', streamId: 1, status: RstStatus.FLOW_CONTROL_ERROR });
    expect((errors[0] as SpdyStreamError).status).toBe(RstStatus.FLOW_CONTROL_ERROR);

    // An even (server-side) id from the client is a session error.
    const closed = once(server, 'close');
    raw.write(enc.encode({ type: 'SYN_STREAM', streamId: 4, associatedStreamId: 0, priority: 0, slot: 0, flags: 0,
      headers: h({}) }));
    await closed;
    await new Promise((r) => setTimeout(r, 50));
    expect(frames).toContainEqual({ type: 'GOAWAY', lastGoodStreamId: 1, status: GoAwayStatus.PROTOCOL_ERROR });
  });

  it('reads frames that arrived with the HTTP upgrade (head) before the socket', async () => {
    const [raw, serverSocket] = await socketPair();
    sockets.push(raw, serverSocket);
    const enc = new FrameEncoder();
    const syn = enc.encode({ type: 'SYN_STREAM', streamId: 1, associatedStreamId: 0, priority: 0, slot: 0, flags: 0,
      headers: h({ streamtype: 'stdin' }) });
    const data = enc.encode({ type: 'DATA', streamId: 1, flags: FLAG_FIN, data: Buffer.from('tail') });
    const head = Buffer.concat([syn, data.subarray(0, 5)]);
    const server = new SpdySession(serverSocket, { role: 'server', flowControl: false, head });
    sessions.push(server);
    server.on('stream', quiet);
    const accepted = once(server, 'stream') as Promise<[SpdyStream]>;
    raw.write(data.subarray(5));
    const [s] = await accepted;
    expect(headerValue(s.headers, 'streamtype')).toBe('stdin');
    expect((await readAll(s)).toString()).toBe('tail');
  });
  it('serves a peer that, like moby/spdystream, ignores windows and sends no WINDOW_UPDATE', async () => {
    const [raw, serverSocket] = await socketPair();
    sockets.push(raw, serverSocket);
    const server = new SpdySession(serverSocket, { role: 'server', flowControl: false });
    sessions.push(server);
    const enc = new FrameEncoder();
    const parser = new FrameParser();
    const frames: SpdyFrame[] = [];
    const fromServer = crypto.createHash('sha256');
    let bytesFromServer = 0;
    raw.on('data', (b: Buffer) => {
      for (const f of parser.push(b)) {
        if (f.type !== 'DATA') frames.push(f);
        else {
          fromServer.update(f.data);
          bytesFromServer += f.data.length;
        }
      }
    });
    const toServer = crypto.randomBytes(4 * 1024 * 1024);
    const download = crypto.randomBytes(3 * 1024 * 1024);
    const accepted = once(server, 'stream') as Promise<[SpdyStream]>;
    raw.write(enc.encode({ type: 'SYN_STREAM', streamId: 1, associatedStreamId: 0, priority: 0, slot: 0, flags: 0,
      headers: h({ streamtype: 'data' }) }));
    // 4 MiB in 32 KiB frames (Go's io.Copy), never waiting for credit; the server is not reading yet.
    for (let off = 0; off < toServer.length; off += 32 * 1024) {
      const data = toServer.subarray(off, off + 32 * 1024);
      const last = off + data.length === toServer.length;
      raw.write(enc.encode({ type: 'DATA', streamId: 1, flags: last ? FLAG_FIN : 0, data }));
    }
    const [s] = await accepted;
    s.reply();
    await new Promise((r) => setTimeout(r, 200));
    expect(s.readableLength).toBeLessThanOrEqual(3 * DEFAULT_WINDOW_SIZE); // the socket waits, not our memory
    s.end(download); // far beyond any window the peer never grants
    expect((await readAll(s)).equals(toServer)).toBe(true);
    await new Promise<void>((resolve) => {
      const check = (): void => (bytesFromServer === download.length ? resolve() : void setTimeout(check, 10));
      check();
    });
    expect(fromServer.digest('hex')).toBe(crypto.createHash('sha256').update(download).digest('hex'));
    // Nothing but the reply went back: no WINDOW_UPDATE, SETTINGS or RST_STREAM for a peer that ignores them.
    expect(frames).toEqual([{ type: 'SYN_REPLY', streamId: 1, flags: 0, headers: {} }]);
  });
  it('stops reading a peer that floods a stream nobody reads, and goes on once it is read', async () => {
    const [raw, serverSocket] = await socketPair();
    sockets.push(raw, serverSocket);
    raw.on('error', () => {});
    raw.resume();
    // No flow control, as with kubectl and the kubelet: the peer may send without limit, so reading has to stop.
    const server = new SpdySession(serverSocket, { role: 'server', flowControl: false });
    sessions.push(server);
    const opened = once(server, 'stream') as Promise<[SpdyStream]>;
    const closed = once(server, 'close') as Promise<[Error | undefined]>;
    const enc = new FrameEncoder();
    raw.write(enc.encode({ type: 'SYN_STREAM', streamId: 1, associatedStreamId: 0, priority: 0, slot: 0, flags: 0, headers: h({ streamtype: 'x' }) }));
    const chunk = Buffer.alloc(32 * 1024, 7);
    for (let i = 0; i < 200; i++) raw.write(enc.encode({ type: 'DATA', streamId: 1, flags: 0, data: chunk })); // 6.25 MiB
    raw.end();
    const [st] = await opened;
    quiet(st);
    const deadline = Date.now() + 10_000;
    while (!serverSocket.isPaused() && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    await new Promise((r) => setTimeout(r, 200));
    expect(serverSocket.isPaused()).toBe(true);
    expect(st.readableLength).toBeLessThan(1 << 20); // held in the kernel's socket buffers and the peer, not here
    expect(server.isClosed).toBe(false); // the peer's end waits behind the unread data
    let got = 0;
    st.on('data', (b: Buffer) => (got += b.length));
    await closed;
    expect(got).toBe(200 * chunk.length);
  });

  it.each([true, false])('survives well-formed but hostile frame sequences (flow control: %s)', async (flowControl) => {
    const pick = <T>(xs: readonly T[]): T => xs[crypto.randomInt(xs.length)] as T;
    const id = (): number => pick([0, 1, 2, 3, 5, 7, 0x7fffffff, crypto.randomInt(1, 50)]);
    const u32 = (): number => pick([0, 1, 0x7fffffff, 0xffffffff, crypto.randomInt(0, 0x100000)]);
    const randomFrame = (): SpdyFrame => {
      const flags = crypto.randomInt(4);
      switch (crypto.randomInt(9)) {
        case 0: return { type: 'SYN_STREAM', streamId: id(), associatedStreamId: id(), priority: 0, slot: 0, flags,
          headers: h({ streamtype: 'x' }) };
        case 1: return { type: 'SYN_REPLY', streamId: id(), flags, headers: h({}) };
        case 2: return { type: 'HEADERS', streamId: id(), flags, headers: h({ a: 'b' }) };
        case 3: return { type: 'RST_STREAM', streamId: id(), status: u32() };
        case 4: return { type: 'SETTINGS', flags, entries: [{ flags, id: pick([4, 7, 99]), value: u32() }] };
        case 5: return { type: 'PING', id: u32() };
        case 6: return { type: 'GOAWAY', lastGoodStreamId: id(), status: u32() };
        case 7: return { type: 'WINDOW_UPDATE', streamId: id(), delta: u32() };
        default: return { type: 'DATA', streamId: id(), flags: flags & 1, data: crypto.randomBytes(crypto.randomInt(40_000)) };
      }
    };
    for (let round = 0; round < 10; round++) {
      const [raw, serverSocket] = await socketPair();
      sockets.push(raw, serverSocket);
      raw.on('error', () => {});
      raw.resume();
      const server = new SpdySession(serverSocket, { role: 'server', flowControl });
      sessions.push(server);
      server.on('stream', (st) => {
        // Read, as the streaming server's consumers do: a stream nobody reads holds the socket (the next test).
        quiet(st).resume();
        if (crypto.randomInt(2) === 0) st.end('reply data');
      });
      const closed = once(server, 'close') as Promise<[Error | undefined]>;
      const enc = new FrameEncoder();
      for (let i = 0; i < 60; i++) raw.write(enc.encode(randomFrame()));
      raw.end();
      const [err] = await closed;
      if (err) expect(err).toBeInstanceOf(SpdyProtocolError);
    }
  });
});
