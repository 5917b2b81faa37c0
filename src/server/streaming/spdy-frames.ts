// SPDY/3 framing (draft 3, as used by SPDY/3.1 and Go's moby/spdystream): frame encode/decode, header-block
// compression, and an incremental parser for untrusted network input. Everything here is synchronous; the
// session (spdy-session.ts) owns sockets, streams and flow control.
import zlib from 'node:zlib';

export const SPDY_VERSION = 3;
/** Largest length the 24-bit length field can carry. */
export const MAX_FRAME_LENGTH = 0xffffff;
/** The SPDY/3.1 initial stream and session window. */
export const DEFAULT_WINDOW_SIZE = 64 * 1024;

export const FLAG_FIN = 0x01;
export const FLAG_UNIDIRECTIONAL = 0x02;
export const FLAG_CLEAR_SETTINGS = 0x01;

export const RstStatus = {
  PROTOCOL_ERROR: 1, INVALID_STREAM: 2, REFUSED_STREAM: 3, UNSUPPORTED_VERSION: 4, CANCEL: 5, INTERNAL_ERROR: 6,
  FLOW_CONTROL_ERROR: 7, STREAM_IN_USE: 8, STREAM_ALREADY_CLOSED: 9, FRAME_TOO_LARGE: 11,
} as const;
export const GoAwayStatus = { OK: 0, PROTOCOL_ERROR: 1, INTERNAL_ERROR: 2 } as const;
export const SettingsId = { MAX_CONCURRENT_STREAMS: 4, INITIAL_WINDOW_SIZE: 7 } as const;

const TYPE_CODE = {
  SYN_STREAM: 1, SYN_REPLY: 2, RST_STREAM: 3, SETTINGS: 4, PING: 6, GOAWAY: 7, HEADERS: 8, WINDOW_UPDATE: 9,
} as const;
type ControlType = keyof typeof TYPE_CODE;
const TYPE_NAME = new Map<number, ControlType>(
  Object.entries(TYPE_CODE).map(([name, code]) => [code, name as ControlType]),
);

/** Lower-case header name → its values (the wire joins several values with NUL). */
export type SpdyHeaders = Record<string, string[]>;
/** What callers may pass: a single value or several. */
export type SpdyHeadersInit = Record<string, string | readonly string[]>;

export interface DataFrame { type: 'DATA'; streamId: number; flags: number; data: Buffer }
export interface SynStreamFrame {
  type: 'SYN_STREAM'; streamId: number; associatedStreamId: number; priority: number; slot: number; flags: number;
  headers: SpdyHeaders;
}
export interface SynReplyFrame { type: 'SYN_REPLY'; streamId: number; flags: number; headers: SpdyHeaders }
export interface RstStreamFrame { type: 'RST_STREAM'; streamId: number; status: number }
export interface SettingsEntry { flags: number; id: number; value: number }
export interface SettingsFrame { type: 'SETTINGS'; flags: number; entries: SettingsEntry[] }
export interface PingFrame { type: 'PING'; id: number }
export interface GoAwayFrame { type: 'GOAWAY'; lastGoodStreamId: number; status: number }
export interface HeadersFrame { type: 'HEADERS'; streamId: number; flags: number; headers: SpdyHeaders }
export interface WindowUpdateFrame { type: 'WINDOW_UPDATE'; streamId: number; delta: number }
export type SpdyFrame =
  | DataFrame | SynStreamFrame | SynReplyFrame | RstStreamFrame | SettingsFrame | PingFrame | GoAwayFrame
  | HeadersFrame | WindowUpdateFrame;

export type SpdyErrorCode =
  | 'FRAME_TOO_LARGE' | 'UNSUPPORTED_VERSION' | 'INVALID_FRAME' | 'COMPRESSION_ERROR' | 'HEADERS_TOO_LARGE'
  | 'INVALID_HEADERS';

/** Malformed or oversized input from the peer. The session answers it with GOAWAY(PROTOCOL_ERROR). */
export class SpdyProtocolError extends Error {
  constructor(readonly code: SpdyErrorCode, message: string) {
    super(message);
    this.name = 'SpdyProtocolError';
  }
}

// The zlib preset dictionary of SPDY/3 (draft 3, section 2.6.10.1): 65 length-prefixed words, then a run of
// status codes, dates and MIME types. 1423 bytes, adler32 0xe3c6a7c2 (the DICTID every SPDY/3 peer sends).
const DICTIONARY_WORDS = [
  'options', 'head', 'post', 'put', 'delete', 'trace', 'accept', 'accept-charset', 'accept-encoding',
  'accept-language', 'accept-ranges', 'age', 'allow', 'authorization', 'cache-control', 'connection',
  'content-base', 'content-encoding', 'content-language', 'content-length', 'content-location', 'content-md5',
  'content-range', 'content-type', 'date', 'etag', 'expect', 'expires', 'from', 'host', 'if-match',
  'if-modified-since', 'if-none-match', 'if-range', 'if-unmodified-since', 'last-modified', 'location',
  'max-forwards', 'pragma', 'proxy-authenticate', 'proxy-authorization', 'range', 'referer', 'retry-after',
  'server', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'user-agent', 'vary', 'via', 'warning',
  'www-authenticate', 'method', 'get', 'status', '200 OK', 'version', 'HTTP/1.1', 'url', 'public', 'set-cookie',
  'keep-alive', 'origin',
];
const DICTIONARY_TAIL =
  '100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505' +
  '203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 Unauthorized' +
  '403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 Service Unavailable' +
  'Jan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMT' +
  'chunked,text/html,image/png,image/jpg,image/gif,application/xml,application/xhtml+xml,text/plain,' +
  'text/javascript,publicprivatemax-age=gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.';
export const SPDY_DICTIONARY: Buffer = Buffer.concat([
  ...DICTIONARY_WORDS.flatMap((w) => [u32(w.length), Buffer.from(w, 'latin1')]),
  Buffer.from(DICTIONARY_TAIL, 'latin1'),
]);
export const SPDY_DICTIONARY_ID = 0xe3c6a7c2;

const WINDOW = 32 * 1024; // deflate's history window: all a later block may refer back to

function u32(n: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(n >>> 0);
  return b;
}

function keepTail(history: Buffer, added: Buffer): Buffer {
  const all = Buffer.concat([history, added]);
  return all.length <= WINDOW ? all : Buffer.from(all.subarray(all.length - WINDOW));
}

/**
 * One direction's header compression. SPDY compresses every header block of a session as one zlib stream,
 * each block ending in a sync flush. Node has no synchronous persistent deflate, so later blocks are raw deflate
 * primed with the last 32 KiB already sent: byte-for-byte a valid continuation of the same stream.
 */
export class HeaderCompressor {
  private history: Buffer | undefined;

  compress(block: Buffer): Buffer {
    const flush = { finishFlush: zlib.constants.Z_SYNC_FLUSH };
    const out = this.history === undefined
      ? zlib.deflateSync(block, { ...flush, dictionary: SPDY_DICTIONARY })
      : zlib.deflateRawSync(block, { ...flush, dictionary: this.history });
    this.history = keepTail(this.history ?? SPDY_DICTIONARY, block);
    return out;
  }
}

/** The receiving half of HeaderCompressor's scheme. Output per block is capped, so a zlib bomb fails early. */
export class HeaderDecompressor {
  private history: Buffer | undefined;

  constructor(private readonly maxBytes: number) {}

  decompress(block: Buffer): Buffer {
    let body = block;
    if (this.history === undefined) body = block.subarray(zlibHeaderLength(block));
    let out: Buffer;
    try {
      out = zlib.inflateRawSync(body, {
        dictionary: this.history ?? SPDY_DICTIONARY,
        finishFlush: zlib.constants.Z_SYNC_FLUSH,
        maxOutputLength: this.maxBytes,
      });
    } catch (err) {
      if ((err as { code?: unknown }).code === 'ERR_BUFFER_TOO_LARGE') {
        throw new SpdyProtocolError('HEADERS_TOO_LARGE', `header block inflates beyond ${this.maxBytes} bytes`);
      }
      throw new SpdyProtocolError('COMPRESSION_ERROR', `bad header block: ${String(err)}`);
    }
    this.history = keepTail(this.history ?? SPDY_DICTIONARY, out);
    return out;
  }
}

/** Checks the zlib header that opens a session's header stream and returns its length. */
function zlibHeaderLength(block: Buffer): number {
  const cmf = block[0];
  const flg = block[1];
  if (cmf === undefined || flg === undefined || (cmf & 0x0f) !== 8 || cmf >> 4 > 7 || ((cmf << 8) | flg) % 31 !== 0) {
    throw new SpdyProtocolError('COMPRESSION_ERROR', 'header block does not start a zlib stream');
  }
  if ((flg & 0x20) === 0) return 2;
  if (block.length < 6 || block.readUInt32BE(2) !== SPDY_DICTIONARY_ID) {
    throw new SpdyProtocolError('COMPRESSION_ERROR', 'header block uses an unknown preset dictionary');
  }
  return 6;
}

/** Checks caller headers: names must be lower-case already (the spec says so and Go's reader rejects others). */
export function normalizeHeaders(init: SpdyHeadersInit): SpdyHeaders {
  const out: SpdyHeaders = Object.create(null) as SpdyHeaders;
  for (const [name, v] of Object.entries(init)) {
    if (name === '' || name !== name.toLowerCase()) throw new TypeError(`SPDY header name must be lower-case: ${name}`);
    const values = typeof v === 'string' ? [v] : [...v];
    if (values.some((x) => x.includes('\0'))) throw new TypeError(`SPDY header ${name} has a NUL in a value`);
    if (values.length > 0) out[name] = values;
  }
  return out;
}

/** The first value of a header, if present. */
export function headerValue(headers: SpdyHeaders, name: string): string | undefined {
  return headers[name]?.[0];
}

/** The uncompressed name/value block: a count, then length-prefixed names and NUL-joined values. */
export function encodeNameValueBlock(headers: SpdyHeaders): Buffer {
  const names = Object.keys(headers);
  const parts: Buffer[] = [u32(names.length)];
  for (const name of names) {
    const n = Buffer.from(name, 'utf8');
    const v = Buffer.from((headers[name] ?? []).join('\0'), 'utf8');
    parts.push(u32(n.length), n, u32(v.length), v);
  }
  return Buffer.concat(parts);
}

export function decodeNameValueBlock(buf: Buffer): SpdyHeaders {
  const bad = (why: string): SpdyProtocolError => new SpdyProtocolError('INVALID_HEADERS', why);
  let off = 0;
  const field = (): Buffer => {
    if (off + 4 > buf.length) throw bad('truncated header block');
    const len = buf.readUInt32BE(off);
    if (off + 4 + len > buf.length) throw bad('truncated header block');
    off += 4 + len;
    return buf.subarray(off - len, off);
  };
  if (buf.length < 4) throw bad('truncated header block');
  const count = buf.readUInt32BE(0);
  off = 4;
  const headers: SpdyHeaders = Object.create(null) as SpdyHeaders;
  // Every pair takes at least 8 bytes, so a huge claimed count fails on the data, not on allocation.
  for (let i = 0; i < count; i++) {
    const name = field().toString('utf8');
    const value = field().toString('utf8');
    if (name === '') throw bad('empty header name');
    if (name !== name.toLowerCase()) throw bad(`header name is not lower-case: ${name}`);
    if (name in headers) throw bad(`duplicate header: ${name}`);
    headers[name] = value.split('\0');
  }
  if (off !== buf.length) throw bad('trailing bytes after header block');
  return headers;
}

/** Serialises frames; holds the outgoing header-compression context, so one encoder per session. */
export class FrameEncoder {
  private readonly compressor = new HeaderCompressor();

  encode(frame: SpdyFrame): Buffer {
    switch (frame.type) {
      case 'DATA': {
        const head = Buffer.allocUnsafe(8);
        head.writeUInt32BE(frame.streamId & 0x7fffffff, 0);
        head.writeUInt32BE(((frame.flags & 0xff) << 24 | checkLength(frame.data.length)) >>> 0, 4);
        return Buffer.concat([head, frame.data]);
      }
      case 'SYN_STREAM': {
        const fixed = Buffer.alloc(10);
        fixed.writeUInt32BE(frame.streamId & 0x7fffffff, 0);
        fixed.writeUInt32BE(frame.associatedStreamId & 0x7fffffff, 4);
        fixed[8] = (frame.priority & 0x07) << 5;
        fixed[9] = frame.slot & 0xff;
        return control('SYN_STREAM', frame.flags, fixed, this.headerBlock(frame.headers));
      }
      case 'SYN_REPLY':
      case 'HEADERS':
        return control(frame.type, frame.flags, u32(frame.streamId & 0x7fffffff), this.headerBlock(frame.headers));
      case 'RST_STREAM':
        return control('RST_STREAM', 0, u32(frame.streamId & 0x7fffffff), u32(frame.status));
      case 'SETTINGS': {
        const body = Buffer.allocUnsafe(4 + 8 * frame.entries.length);
        body.writeUInt32BE(frame.entries.length, 0);
        frame.entries.forEach((e, i) => {
          body.writeUInt32BE((((e.flags & 0xff) << 24) | (e.id & 0xffffff)) >>> 0, 4 + 8 * i);
          body.writeUInt32BE(e.value >>> 0, 8 + 8 * i);
        });
        return control('SETTINGS', frame.flags, body);
      }
      case 'PING':
        return control('PING', 0, u32(frame.id));
      case 'GOAWAY':
        return control('GOAWAY', 0, u32(frame.lastGoodStreamId & 0x7fffffff), u32(frame.status));
      case 'WINDOW_UPDATE':
        return control('WINDOW_UPDATE', 0, u32(frame.streamId & 0x7fffffff), u32(frame.delta & 0x7fffffff));
    }
  }

  private headerBlock(headers: SpdyHeaders): Buffer {
    return this.compressor.compress(encodeNameValueBlock(headers));
  }
}

function checkLength(n: number): number {
  if (n > MAX_FRAME_LENGTH) throw new RangeError(`SPDY frame payload of ${n} bytes exceeds ${MAX_FRAME_LENGTH}`);
  return n;
}

function control(type: ControlType, flags: number, ...body: Buffer[]): Buffer {
  const len = checkLength(body.reduce((n, b) => n + b.length, 0));
  const head = Buffer.allocUnsafe(8);
  head.writeUInt16BE(0x8000 | SPDY_VERSION, 0);
  head.writeUInt16BE(TYPE_CODE[type], 2);
  head.writeUInt32BE((((flags & 0xff) << 24) | len) >>> 0, 4);
  return Buffer.concat([head, ...body]);
}

export interface ParserLimits {
  /** Largest DATA payload accepted (default: the wire maximum, 16 MiB - 1). */
  maxDataLength?: number;
  /** Largest decompressed header block (default 1 MiB). */
  maxHeaderBytes?: number;
  /** Largest control frame payload (default: maxHeaderBytes + 4 KiB, room for an incompressible block). */
  maxControlLength?: number;
}

interface PendingHead { control: boolean; word0: number; flags: number; length: number }

/**
 * Incremental parser: push() network chunks, get back every frame they complete. Holds at most one partial
 * frame (bounded by the limits) plus unparsed bytes of the last chunk. Errors are sticky: once a SpdyProtocolError
 * is thrown the header-compression context is unusable, so every later push() throws it again.
 */
export class FrameParser {
  private readonly maxData: number;
  private readonly maxControl: number;
  private readonly inflater: HeaderDecompressor;
  private chunks: Buffer[] = [];
  private buffered = 0;
  private head: PendingHead | undefined;
  private failed: SpdyProtocolError | undefined;

  constructor(limits: ParserLimits = {}) {
    const maxHeaderBytes = limits.maxHeaderBytes ?? 1024 * 1024;
    this.maxData = Math.min(limits.maxDataLength ?? MAX_FRAME_LENGTH, MAX_FRAME_LENGTH);
    this.maxControl = Math.min(limits.maxControlLength ?? maxHeaderBytes + 4096, MAX_FRAME_LENGTH);
    this.inflater = new HeaderDecompressor(maxHeaderBytes);
  }

  push(chunk: Buffer): SpdyFrame[] {
    if (this.failed) throw this.failed;
    if (chunk.length > 0) {
      this.chunks.push(chunk);
      this.buffered += chunk.length;
    }
    const frames: SpdyFrame[] = [];
    try {
      for (;;) {
        if (!this.head) {
          if (this.buffered < 8) break;
          this.head = this.readHead(this.take(8));
        }
        if (this.buffered < this.head.length) break;
        const { head } = this;
        this.head = undefined;
        const frame = this.decode(head, this.take(head.length));
        if (frame) frames.push(frame);
      }
    } catch (err) {
      this.failed = err instanceof SpdyProtocolError ? err : new SpdyProtocolError('INVALID_FRAME', String(err));
      this.chunks = [];
      this.buffered = 0;
      throw this.failed;
    }
    return frames;
  }

  /** Removes n buffered bytes (n <= buffered), copying only when they span chunks. */
  private take(n: number): Buffer {
    const first = this.chunks[0];
    if (n === 0 || first === undefined) return Buffer.alloc(0);
    this.buffered -= n;
    if (first.length >= n) {
      if (first.length === n) this.chunks.shift();
      else this.chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = Buffer.allocUnsafe(n);
    let off = 0;
    let used = 0; // whole chunks consumed; one splice at the end keeps byte-by-byte feeding linear
    while (off < n) {
      const c = this.chunks[used] as Buffer;
      const k = Math.min(c.length, n - off);
      c.copy(out, off, 0, k);
      off += k;
      if (k === c.length) used++;
      else this.chunks[used] = c.subarray(k);
    }
    this.chunks.splice(0, used);
    return out;
  }

  private readHead(b: Buffer): PendingHead {
    const word0 = b.readUInt32BE(0);
    const control = (word0 & 0x80000000) !== 0;
    const flags = b[4] as number;
    const length = b.readUInt32BE(4) & 0xffffff;
    if (control && ((word0 >>> 16) & 0x7fff) !== SPDY_VERSION) {
      throw new SpdyProtocolError('UNSUPPORTED_VERSION', `SPDY version ${(word0 >>> 16) & 0x7fff} is not supported`);
    }
    const max = control ? this.maxControl : this.maxData;
    if (length > max) {
      throw new SpdyProtocolError('FRAME_TOO_LARGE', `${control ? 'control' : 'data'} frame of ${length} bytes exceeds ${max}`);
    }
    return { control, word0, flags, length };
  }

  private decode(h: PendingHead, body: Buffer): SpdyFrame | undefined {
    if (!h.control) return { type: 'DATA', streamId: h.word0 & 0x7fffffff, flags: h.flags, data: body };
    const type = TYPE_NAME.get(h.word0 & 0xffff);
    if (type === undefined) return undefined; // unknown control frames are ignored (spec 2.2.1)
    const need = (ok: boolean): void => {
      if (!ok) throw new SpdyProtocolError('INVALID_FRAME', `${type} frame has bad length ${body.length}`);
    };
    const id = (off: number): number => body.readUInt32BE(off) & 0x7fffffff;
    switch (type) {
      case 'SYN_STREAM':
        need(body.length >= 10);
        return {
          type, streamId: id(0), associatedStreamId: id(4), priority: (body[8] as number) >> 5, slot: body[9] as number,
          flags: h.flags, headers: this.headers(body.subarray(10)),
        };
      case 'SYN_REPLY':
      case 'HEADERS':
        need(body.length >= 4);
        return { type, streamId: id(0), flags: h.flags, headers: this.headers(body.subarray(4)) };
      case 'RST_STREAM':
        need(body.length === 8);
        return { type, streamId: id(0), status: body.readUInt32BE(4) };
      case 'SETTINGS': {
        need(body.length >= 4 && body.length === 4 + 8 * body.readUInt32BE(0));
        const entries: SettingsEntry[] = [];
        for (let off = 4; off < body.length; off += 8) {
          const w = body.readUInt32BE(off);
          entries.push({ flags: w >>> 24, id: w & 0xffffff, value: body.readUInt32BE(off + 4) });
        }
        return { type, flags: h.flags, entries };
      }
      case 'PING':
        need(body.length === 4);
        return { type, id: body.readUInt32BE(0) };
      case 'GOAWAY':
        need(body.length === 8);
        return { type, lastGoodStreamId: id(0), status: body.readUInt32BE(4) };
      case 'WINDOW_UPDATE':
        need(body.length === 8);
        return { type, streamId: id(0), delta: id(4) };
    }
  }

  private headers(block: Buffer): SpdyHeaders {
    return decodeNameValueBlock(this.inflater.decompress(block));
  }
}
