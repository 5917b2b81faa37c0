// A raw HTTP/2 client over a unix socket, for testing the server transport at the protocol level: it writes
// whatever frames a test builds (well formed or not), and reads back every frame the server sends, parsed, with
// header blocks decoded. It follows no flow control and enforces nothing: a test decides what to send and when.
import net from 'node:net';
import { HpackDecoder, encodeHeaders } from '../../src/server/h2/hpack';
import { Flag, FrameType, PREFACE } from '../../src/server/h2/frames';

export { Flag, FrameType, Setting } from '../../src/server/h2/frames';

export type HeaderList = Array<[string, string]>;

export interface RawFrame {
  type: number;
  flags: number;
  stream: number;
  /** The payload as sent, padding and priority fields included. */
  payload: Buffer;
  /** The decoded header list, on the frame that ends a header block (HEADERS or CONTINUATION with END_HEADERS). */
  headers?: HeaderList;
  /** Why the header block ending here did not decode. */
  headersError?: string;
  /** Index of the socket read (data event) that held the frame's first byte, and its last. */
  readFirst: number;
  readLast: number;
}

export interface RawClientOptions {
  /** Send the preface and our SETTINGS on connect (default true). */
  handshake?: boolean;
  /** Our SETTINGS (default: none, an empty SETTINGS frame). */
  settings?: ReadonlyArray<readonly [number, number]>;
  /** Answer the server's SETTINGS with an ACK (default: true when handshake is). */
  autoAck?: boolean;
}

/** What came back on one stream: the response headers, the body, and the trailers or reset that ended it. */
export interface StreamResult {
  /** The first header list (for a trailers-only response, the only one). */
  headers: HeaderList | undefined;
  /** The header list that ended the stream, if one did. */
  trailers: HeaderList | undefined;
  data: Buffer;
  /** The gRPC messages in data; a trailing partial message is left out. */
  messages: Buffer[];
  /** RST_STREAM's error code, if the stream was reset. */
  rst: number | undefined;
  frames: RawFrame[];
}

export interface HeadersOptions {
  endStream?: boolean;
  /** Default true. */
  endHeaders?: boolean;
  /** Pad length (the PADDED flag and that many zero octets). */
  pad?: number;
  /** Add the PRIORITY flag and 5 bytes of priority fields. */
  priority?: boolean;
}

export interface DataOptions {
  endStream?: boolean;
  pad?: number;
}

export interface GrpcRequestOptions {
  extraHeaders?: ReadonlyArray<readonly [string, string]>;
  /** Replaces the default header list entirely. */
  headers?: ReadonlyArray<readonly [string, string]>;
  /** END_STREAM on the DATA frame (default true). */
  endStream?: boolean;
  /** The gRPC message's compressed-flag octet (default 0). */
  compressedFlag?: number;
}

/** A frame's bytes: the 9-byte header with `length` (default: the payload's length), then the payload. */
export function rawFrame(type: number, flags: number, stream: number, payload: Buffer = Buffer.alloc(0), length = payload.length): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream >>> 0, 5);
  return Buffer.concat([head, payload]);
}

export function settingsPayload(settings: ReadonlyArray<readonly [number, number]>): Buffer {
  const out = Buffer.alloc(6 * settings.length);
  settings.forEach(([id, value], i) => {
    out.writeUInt16BE(id, 6 * i);
    out.writeUInt32BE(value >>> 0, 6 * i + 2);
  });
  return out;
}

export function uint32(value: number): Buffer {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
}

/** A gRPC length-prefixed message. */
export function grpcMessage(message: Buffer, compressedFlag = 0): Buffer {
  const head = Buffer.alloc(5);
  head[0] = compressedFlag;
  head.writeUInt32BE(message.length, 1);
  return Buffer.concat([head, message]);
}

/** The gRPC messages in a body; a trailing partial message is left out. */
export function grpcMessages(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  while (body.length - at >= 5) {
    const length = body.readUInt32BE(at + 1);
    if (body.length - at - 5 < length) break;
    out.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return out;
}

/** The request header list a gRPC client sends. */
export function grpcRequestHeaders(path: string, extra: ReadonlyArray<readonly [string, string]> = []): HeaderList {
  return [
    [':method', 'POST'], [':scheme', 'http'], [':path', path], [':authority', 'localhost'],
    ['content-type', 'application/grpc'], ['te', 'trailers'], ...extra.map(([n, v]): [string, string] => [n, v]),
  ];
}

export function headerValue(headers: HeaderList | undefined, name: string): string | undefined {
  return headers?.find(([n]) => n === name)?.[1];
}

/** A HEADERS frame's payload with optional padding and priority fields around a block. */
function headersPayload(block: Buffer, pad: number | undefined, priority: boolean): Buffer {
  const parts: Buffer[] = [];
  if (pad !== undefined) parts.push(Buffer.from([pad]));
  if (priority) parts.push(Buffer.from([0, 0, 0, 0, 15]));
  parts.push(block);
  if (pad !== undefined) parts.push(Buffer.alloc(pad));
  return Buffer.concat(parts);
}

interface Waiter {
  predicate: (f: RawFrame) => boolean;
  resolve: (f: RawFrame) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class H2RawClient {
  /** Every frame received, in order. */
  readonly received: RawFrame[] = [];
  /** Frames not yet taken by next() or waitFor(). */
  private unread: RawFrame[] = [];
  private waiters: Waiter[] = [];
  private input: Buffer = Buffer.alloc(0);
  private inputFirstRead = 0;
  private reads = 0;
  private readonly decoder = new HpackDecoder(4096);
  private block: { parts: Buffer[]; stream: number } | undefined;
  private socketClosed = false;
  private readonly closedPromise: Promise<void>;
  private pingCounter = 0;
  /** Answer the server's SETTINGS with an ACK; a test may turn it off (or on) at any time. */
  autoAck: boolean;
  /** DATA payload bytes sent (what counts against the server's connection window). */
  dataBytesSent = 0;
  /** The same, per stream. */
  readonly sentData = new Map<number, number>();
  /** A socket error (EPIPE, ECONNRESET...), if one happened. */
  socketError: Error | undefined;
  private constructor(readonly socket: net.Socket, options: RawClientOptions) {
    // Without our preface, an ACK would be the first thing the server reads: no ACK unless asked for.
    this.autoAck = options.autoAck ?? (options.handshake ?? true);
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('error', (err) => {
      this.socketError = err;
    });
    this.closedPromise = new Promise((resolve) => {
      socket.once('close', () => {
        this.socketClosed = true;
        for (const w of this.waiters.splice(0)) {
          clearTimeout(w.timer);
          w.reject(new Error(`connection closed while waiting; received ${this.describe()}`));
        }
        resolve();
      });
    });
  }

  static async connect(socketPath: string, options: RawClientOptions = {}): Promise<H2RawClient> {
    const socket = net.createConnection(socketPath);
    await new Promise<void>((resolve, reject) => {
      socket.once('connect', resolve);
      socket.once('error', reject);
    });
    const client = new H2RawClient(socket, options);
    if (options.handshake ?? true) client.send(Buffer.concat([PREFACE, rawFrame(FrameType.SETTINGS, 0, 0, settingsPayload(options.settings ?? []))]));
    return client;
  }

  get isClosed(): boolean {
    return this.socketClosed;
  }

  /** Resolves once the socket has closed (either side). */
  closed(): Promise<void> {
    return this.closedPromise;
  }

  /** Resolves when the socket is closed; rejects after timeoutMs. */
  async waitClosed(timeoutMs = 5000): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    try {
      await Promise.race([
        this.closedPromise,
        new Promise<never>((_, reject) => {
          timer = setTimeout(() => reject(new Error(`socket not closed after ${timeoutMs} ms; received ${this.describe()}`)), timeoutMs);
        }),
      ]);
    } finally {
      clearTimeout(timer);
    }
  }

  close(): void {
    this.socket.destroy();
  }

  // ---- output ----

  send(bytes: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(bytes);
  }

  frame(type: number, flags: number, stream: number, payload?: Buffer, length?: number): void {
    if (type === FrameType.DATA) this.countData(stream, payload?.length ?? 0);
    this.send(rawFrame(type, flags, stream, payload, length));
  }

  settings(settings: ReadonlyArray<readonly [number, number]>): void {
    this.frame(FrameType.SETTINGS, 0, 0, settingsPayload(settings));
  }

  settingsAck(): void {
    this.frame(FrameType.SETTINGS, Flag.ACK, 0);
  }

  windowUpdate(stream: number, increment: number): void {
    this.frame(FrameType.WINDOW_UPDATE, 0, stream, uint32(increment));
  }

  rstStream(stream: number, code: number): void {
    this.frame(FrameType.RST_STREAM, 0, stream, uint32(code));
  }

  ping(data: Buffer, ack = false): void {
    this.frame(FrameType.PING, ack ? Flag.ACK : 0, 0, data);
  }

  /** A HEADERS frame carrying `block` (an HPACK block), or a header list to encode. */
  headers(stream: number, headers: Buffer | ReadonlyArray<readonly [string, string]>, options: HeadersOptions = {}): void {
    const block = Buffer.isBuffer(headers) ? headers : encodeHeaders(headers);
    let flags = 0;
    if (options.endStream) flags |= Flag.END_STREAM;
    if (options.endHeaders ?? true) flags |= Flag.END_HEADERS;
    if (options.pad !== undefined) flags |= Flag.PADDED;
    if (options.priority) flags |= Flag.PRIORITY;
    this.frame(FrameType.HEADERS, flags, stream, headersPayload(block, options.pad, options.priority ?? false));
  }

  continuation(stream: number, block: Buffer, endHeaders: boolean): void {
    this.frame(FrameType.CONTINUATION, endHeaders ? Flag.END_HEADERS : 0, stream, block);
  }

  data(stream: number, data: Buffer, options: DataOptions = {}): void {
    let flags = options.endStream ? Flag.END_STREAM : 0;
    let payload = data;
    if (options.pad !== undefined) {
      flags |= Flag.PADDED;
      payload = Buffer.concat([Buffer.from([options.pad]), data, Buffer.alloc(options.pad)]);
    }
    this.frame(FrameType.DATA, flags, stream, payload);
  }

  /** A whole gRPC request in one write: HEADERS, then one DATA frame with the message (END_STREAM by default). */
  grpcRequest(stream: number, path: string, message: Buffer, options: GrpcRequestOptions = {}): void {
    const headers = options.headers ?? grpcRequestHeaders(path, options.extraHeaders);
    const flags = Flag.END_HEADERS;
    const data = grpcMessage(message, options.compressedFlag ?? 0);
    this.countData(stream, data.length);
    this.send(Buffer.concat([
      rawFrame(FrameType.HEADERS, flags, stream, encodeHeaders(headers)),
      rawFrame(FrameType.DATA, (options.endStream ?? true) ? Flag.END_STREAM : 0, stream, data),
    ]));
  }

  private countData(stream: number, bytes: number): void {
    this.dataBytesSent += bytes;
    this.sentData.set(stream, (this.sentData.get(stream) ?? 0) + bytes);
  }

  // ---- input ----

  /** The next frame not yet taken. */
  next(timeoutMs = 5000): Promise<RawFrame> {
    return this.waitFor(() => true, timeoutMs, 'any frame');
  }

  /** Takes the first not-yet-taken frame that matches, waiting up to timeoutMs for it. */
  waitFor(predicate: (f: RawFrame) => boolean, timeoutMs = 5000, what = 'a matching frame'): Promise<RawFrame> {
    const i = this.unread.findIndex(predicate);
    if (i >= 0) return Promise.resolve(this.unread.splice(i, 1)[0] as RawFrame);
    if (this.socketClosed) return Promise.reject(new Error(`connection closed before ${what}; received ${this.describe()}`));
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        predicate,
        resolve,
        reject,
        timer: setTimeout(() => {
          this.waiters = this.waiters.filter((w) => w !== waiter);
          reject(new Error(`timed out after ${timeoutMs} ms waiting for ${what}; received ${this.describe()}`));
        }, timeoutMs),
      };
      this.waiters.push(waiter);
    });
  }

  /** The GOAWAY the server sends: its last stream id, error code and debug text. */
  async goaway(timeoutMs = 5000): Promise<{ lastStream: number; code: number; debug: string }> {
    const f = await this.waitFor((x) => x.type === FrameType.GOAWAY, timeoutMs, 'GOAWAY');
    return { lastStream: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4), debug: f.payload.toString('utf8', 8) };
  }

  /** RST_STREAM's code on a stream. */
  async rstCode(stream: number, timeoutMs = 5000): Promise<number> {
    const f = await this.waitFor((x) => x.type === FrameType.RST_STREAM && x.stream === stream, timeoutMs, `RST_STREAM on ${stream}`);
    return f.payload.readUInt32BE(0);
  }

  /** A round trip: a PING with fresh data and its ACK. Everything the server wrote before answering has arrived. */
  async sync(timeoutMs = 5000): Promise<void> {
    const data = Buffer.alloc(8);
    data.writeUInt32BE(0x5359_4e43, 0);
    data.writeUInt32BE(++this.pingCounter, 4);
    this.ping(data);
    await this.waitFor((f) => f.type === FrameType.PING && (f.flags & Flag.ACK) !== 0 && f.payload.equals(data), timeoutMs, 'PING ACK');
  }

  /**
   * Takes the frames of one stream until it ends (END_STREAM at the end of a header block or on DATA, or
   * RST_STREAM), waiting up to timeoutMs in all.
   */
  async stream(stream: number, timeoutMs = 5000): Promise<StreamResult> {
    const frames: RawFrame[] = [];
    const blocks: HeaderList[] = [];
    const data: Buffer[] = [];
    let rst: number | undefined;
    let endPending = false;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = await this.waitFor((x) => x.stream === stream, Math.max(1, deadline - Date.now()), `the end of stream ${stream}`);
      frames.push(f);
      if (f.type === FrameType.RST_STREAM) {
        rst = f.payload.readUInt32BE(0);
        break;
      }
      if (f.type === FrameType.HEADERS && (f.flags & Flag.END_STREAM)) endPending = true;
      if (f.headers) blocks.push(f.headers);
      if (f.type === FrameType.DATA) {
        data.push(unpadded(f));
        if (f.flags & Flag.END_STREAM) break;
      }
      if ((f.type === FrameType.HEADERS || f.type === FrameType.CONTINUATION) && (f.flags & Flag.END_HEADERS) && endPending) break;
    }
    const body = Buffer.concat(data);
    return {
      headers: blocks[0],
      trailers: endPending ? blocks[blocks.length - 1] : undefined,
      data: body,
      messages: grpcMessages(body),
      rst,
      frames,
    };
  }

  /** One line per frame received, for failure messages. */
  describe(): string {
    const names = ['DATA', 'HEADERS', 'PRIORITY', 'RST_STREAM', 'SETTINGS', 'PUSH_PROMISE', 'PING', 'GOAWAY', 'WINDOW_UPDATE', 'CONTINUATION'];
    const list = this.received.slice(-20).map((f) => {
      let extra = '';
      if (f.type === FrameType.RST_STREAM || f.type === FrameType.WINDOW_UPDATE) extra = ` ${f.payload.length >= 4 ? f.payload.readUInt32BE(0) : '?'}`;
      if (f.type === FrameType.GOAWAY && f.payload.length >= 8) extra = ` code ${f.payload.readUInt32BE(4)} "${f.payload.toString('utf8', 8)}"`;
      if (f.headers) extra = ` ${JSON.stringify(f.headers)}`;
      return `${names[f.type] ?? `type ${f.type}`}(stream ${f.stream}, flags 0x${f.flags.toString(16)}, ${f.payload.length} bytes${extra})`;
    });
    return `${this.received.length} frames [${list.join(', ')}]${this.socketClosed ? ', closed' : ''}`;
  }

  private onData(chunk: Buffer): void {
    const read = this.reads++;
    if (this.input.length === 0) this.inputFirstRead = read;
    this.input = this.input.length === 0 ? chunk : Buffer.concat([this.input, chunk]);
    let at = 0;
    while (this.input.length - at >= 9) {
      const length = this.input.readUIntBE(at, 3);
      if (this.input.length - at < 9 + length) break;
      const f: RawFrame = {
        type: this.input[at + 3] as number,
        flags: this.input[at + 4] as number,
        stream: this.input.readUInt32BE(at + 5) & 0x7fffffff,
        payload: Buffer.from(this.input.subarray(at + 9, at + 9 + length)),
        readFirst: this.inputFirstRead,
        readLast: read,
      };
      at += 9 + length;
      this.inputFirstRead = read;
      this.decodeHeaders(f);
      this.deliver(f);
    }
    this.input = at === this.input.length ? Buffer.alloc(0) : Buffer.from(this.input.subarray(at));
  }

  private decodeHeaders(f: RawFrame): void {
    if (f.type === FrameType.HEADERS) {
      let fragment = unpadded(f);
      if (f.flags & Flag.PRIORITY) fragment = fragment.subarray(5);
      this.block = { parts: [fragment], stream: f.stream };
    } else if (f.type === FrameType.CONTINUATION && this.block) {
      this.block.parts.push(f.payload);
    } else {
      return;
    }
    if (!(f.flags & Flag.END_HEADERS)) return;
    const block = Buffer.concat(this.block.parts);
    this.block = undefined;
    try {
      f.headers = this.decoder.decode(block, Number.MAX_SAFE_INTEGER);
    } catch (err) {
      f.headersError = err instanceof Error ? err.message : String(err);
    }
  }

  private deliver(f: RawFrame): void {
    this.received.push(f);
    if (f.type === FrameType.SETTINGS && !(f.flags & Flag.ACK) && this.autoAck) this.settingsAck();
    const i = this.waiters.findIndex((w) => w.predicate(f));
    if (i >= 0) {
      const [w] = this.waiters.splice(i, 1);
      if (w) {
        clearTimeout(w.timer);
        w.resolve(f);
        return;
      }
    }
    this.unread.push(f);
  }
}

/** A DATA or HEADERS frame's payload without its padding. */
export function unpadded(f: RawFrame): Buffer {
  if (!(f.flags & Flag.PADDED) || (f.type !== FrameType.DATA && f.type !== FrameType.HEADERS)) return f.payload;
  const pad = f.payload[0] ?? 0;
  return f.payload.subarray(1, Math.max(1, f.payload.length - pad));
}

/** The server's SETTINGS values, from its SETTINGS frame. */
export function parseSettings(payload: Buffer): Map<number, number> {
  const out = new Map<number, number>();
  for (let i = 0; i + 6 <= payload.length; i += 6) out.set(payload.readUInt16BE(i), payload.readUInt32BE(i + 2));
  return out;
}
