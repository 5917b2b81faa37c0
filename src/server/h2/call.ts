// One gRPC call on an HTTP/2 stream: the request message read (size-bounded, maybe compressed), the handler run,
// the reply and status written; grpc-timeout deadlines; cancellation from the client, the deadline or the
// connection.
import zlib from 'node:zlib';
import { H2Error } from './frames';
import { encodeHeaders } from './hpack';
import { GRPC_HEADER_BYTES, grpcFramed, type H2Stream, type H2StreamEvents, type Headers } from './stream';

/** gRPC status codes (the gRPC spec's numbering). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  RESOURCE_EXHAUSTED: 8,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
} as const;

export interface GrpcCall {
  readonly method: string;
  /** True once the client cancelled, its deadline passed, or the connection closed. */
  readonly cancelled: boolean;
  /** Called once when the call is cancelled (at once if it already is); never when it ends normally. */
  onCancel(listener: () => void): void;
  /** A unary call's reply: the message, then status OK. */
  reply(message: Buffer): void;
  /** One message of a streaming reply; resolves when the transport can take more. */
  send(message: Buffer): Promise<void>;
  /** Ends the call with a status (OK after a streamed reply, or an error). */
  finish(code: number, details: string): void;
}

export type GrpcHandler = (request: Buffer, call: GrpcCall) => void;

const RESPONSE_HEADERS = encodeHeaders([[':status', '200'], ['content-type', 'application/grpc']]);
const OK_TRAILERS = encodeHeaders([['grpc-status', '0']]);
/** A response to a request that is not gRPC at all (wrong method or content-type). */
export function httpError(stream: H2Stream, status: number, message: string): void {
  stream.respond(encodeHeaders([[':status', String(status)], ['content-type', 'application/grpc'], ['grpc-status', String(Code.INTERNAL)], ['grpc-message', percentEncode(message)]]), true);
}

export class ServerCall implements GrpcCall, H2StreamEvents {
  cancelled = false;
  private done = false;
  private headersSent = false;
  private chunks: Buffer[] = [];
  private received = 0;
  private expected: number | undefined;
  /** When grpc-timeout runs out, on performance.now()'s clock (0: no deadline), and the header that set it. */
  deadline = 0;
  private timeout = '';
  private cancelListeners: (() => void)[] | undefined;
  /** send() promises waiting for room: all of them, as a handler may send again before one resolves. */
  private drainWaiters: { resolve: () => void; reject: (err: Error) => void }[] = [];

  constructor(
    private readonly stream: H2Stream,
    readonly method: string,
    private readonly maxMessageBytes: number,
    private readonly handler: GrpcHandler | undefined,
    private readonly encoding: string,
  ) {}

  setDeadline(value: string): void {
    const ms = parseTimeout(value);
    if (ms === undefined) return this.finish(Code.INTERNAL, `malformed grpc-timeout "${value}"`);
    this.timeout = value;
    this.deadline = performance.now() + ms;
    deadlines.add(this);
  }

  /** Called by the deadline sweep once the deadline has passed. */
  expire(): void {
    this.finish(Code.DEADLINE_EXCEEDED, `${this.method}: deadline of ${this.timeout} exceeded`);
    this.cancel();
  }

  // ---- request (H2StreamEvents) ----

  data(chunk: Buffer): void {
    if (this.done) return this.stream.consume(chunk.length);
    this.chunks.push(chunk);
    this.received += chunk.length;
    if (this.expected === undefined && this.received >= GRPC_HEADER_BYTES) {
      // Checked as soon as the length is known, so an oversize message is refused before it is buffered.
      const head = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
      this.expected = head.readUInt32BE(1);
      if (this.expected > this.maxMessageBytes) {
        return this.finish(Code.RESOURCE_EXHAUSTED, `${this.method}: request message of ${this.expected} bytes exceeds the limit of ${this.maxMessageBytes} (api.max_message_bytes)`);
      }
    }
    if (this.expected !== undefined && this.received > GRPC_HEADER_BYTES + this.expected) {
      this.finish(Code.INTERNAL, `${this.method}: more than one request message`);
    }
  }

  end(): void {
    if (this.done) return;
    const body = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [];
    this.stream.consume(this.received);
    if (!this.handler) return this.finish(Code.UNIMPLEMENTED, `unknown method ${this.method}`);
    if (body.length < GRPC_HEADER_BYTES) return this.finish(Code.INTERNAL, `${this.method}: the request has no message`);
    const length = body.readUInt32BE(1);
    if (body.length !== GRPC_HEADER_BYTES + length) {
      return this.finish(Code.INTERNAL, `${this.method}: expected one request message of ${length} bytes, got ${body.length - GRPC_HEADER_BYTES} bytes`);
    }
    let message = body.subarray(GRPC_HEADER_BYTES);
    if (body[0] === 1) {
      const inflated = this.decompress(message);
      if (!inflated) return;
      message = inflated;
    } else if (body[0] !== 0) {
      return this.finish(Code.INTERNAL, `${this.method}: unknown message flags ${body[0]}`);
    }
    try {
      this.handler(message, this);
    } catch (err) {
      this.finish(Code.INTERNAL, `internal error: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  abort(): void {
    this.done = true;
    this.cancel();
  }

  drain(): void {
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const waiter of waiters) waiter.resolve();
  }

  private decompress(message: Buffer): Buffer | undefined {
    const options = { maxOutputLength: this.maxMessageBytes };
    try {
      if (this.encoding === 'gzip') return zlib.gunzipSync(message, options);
      if (this.encoding === 'deflate') return zlib.inflateSync(message, options);
    } catch (err) {
      // zlib's maxOutputLength error (a RangeError, but maybe from another realm: tell it by its code).
      if ((err as NodeJS.ErrnoException | undefined)?.code === 'ERR_BUFFER_TOO_LARGE') {
        this.finish(Code.RESOURCE_EXHAUSTED, `${this.method}: decompressed request exceeds the limit of ${this.maxMessageBytes} bytes`);
      } else {
        this.finish(Code.INTERNAL, `${this.method}: cannot decompress the ${this.encoding} request: ${err instanceof Error ? err.message : String(err)}`);
      }
      return undefined;
    }
    if (this.encoding === '' || this.encoding === 'identity') {
      this.finish(Code.INTERNAL, `${this.method}: compressed message without a grpc-encoding`);
    } else {
      this.finish(Code.UNIMPLEMENTED, `${this.method}: message encoding "${this.encoding}" is not supported (identity, gzip, deflate are)`);
    }
    return undefined;
  }

  // ---- reply (GrpcCall) ----

  onCancel(listener: () => void): void {
    if (this.cancelled) return listener();
    (this.cancelListeners ??= []).push(listener);
  }

  reply(message: Buffer): void {
    if (this.done) return;
    if (!this.checkSize(message)) return;
    this.done = true;
    this.clearTimer();
    if (this.headersSent) {
      this.stream.write(grpcFramed(message));
      this.stream.end(OK_TRAILERS);
    } else {
      this.stream.unary(RESPONSE_HEADERS, message, OK_TRAILERS);
    }
  }

  send(message: Buffer): Promise<void> {
    if (this.cancelled) return Promise.reject(new Error(`${this.method} cancelled by the client`));
    if (this.done) return Promise.reject(new Error(`${this.method} has already finished`));
    if (!this.checkSize(message)) return Promise.reject(new Error(`${this.method}: reply message too large`));
    if (!this.headersSent) {
      this.headersSent = true;
      this.stream.respond(RESPONSE_HEADERS, false);
    }
    if (this.stream.write(grpcFramed(message))) return Promise.resolve();
    return new Promise((resolve, reject) => {
      this.drainWaiters.push({ resolve, reject });
    });
  }

  finish(code: number, details: string): void {
    if (this.done) return;
    this.done = true;
    this.clearTimer();
    this.release();
    // Sends still waiting: their messages are queued ahead of the trailers, and nothing more will drain.
    this.drain();
    const status: Headers = [['grpc-status', String(code)]];
    if (details !== '' && code !== Code.OK) status.push(['grpc-message', percentEncode(details)]);
    if (this.headersSent) {
      this.stream.end(code === Code.OK ? OK_TRAILERS : encodeHeaders(status));
    } else {
      this.stream.respond(encodeHeaders([[':status', '200'], ['content-type', 'application/grpc'], ...status]), true);
    }
  }

  /** Drops a request still being read and returns its bytes to the flow-control window. */
  private release(): void {
    if (this.chunks.length === 0) return;
    this.chunks = [];
    this.stream.consume(this.received);
  }

  private checkSize(message: Buffer): boolean {
    if (message.length <= this.maxMessageBytes) return true;
    this.finish(Code.RESOURCE_EXHAUSTED, `${this.method}: reply message of ${message.length} bytes exceeds the limit of ${this.maxMessageBytes} (api.max_message_bytes)`);
    return false;
  }

  private cancel(): void {
    this.clearTimer();
    if (this.cancelled) return;
    this.cancelled = true;
    const waiters = this.drainWaiters;
    this.drainWaiters = [];
    for (const waiter of waiters) waiter.reject(new Error(`${this.method} cancelled`));
    const listeners = this.cancelListeners ?? [];
    this.cancelListeners = undefined;
    for (const listener of listeners) listener();
    if (!this.stream.closed) this.stream.reset(H2Error.CANCEL);
  }

  private clearTimer(): void {
    if (this.deadline !== 0) deadlines.delete(this);
    this.deadline = 0;
  }
}

// Milliseconds per grpc-timeout unit, by the unit's char code.
const UNITS = new Map([['H', 3_600_000], ['M', 60_000], ['S', 1000], ['m', 1], ['u', 0.001], ['n', 0.000_001]].map(([u, ms]) => [(u as string).charCodeAt(0), ms as number]));

/** grpc-timeout: at most 8 digits and a unit (H, M, S, m, u, n); milliseconds, rounded up. */
function parseTimeout(value: string): number | undefined {
  const n = value.length;
  if (n < 2 || n > 9) return undefined;
  const perUnit = UNITS.get(value.charCodeAt(n - 1));
  if (perUnit === undefined) return undefined;
  let amount = 0;
  for (let i = 0; i < n - 1; i++) {
    const digit = value.charCodeAt(i) - 48;
    if (digit < 0 || digit > 9) return undefined;
    amount = amount * 10 + digit;
  }
  return Math.ceil(amount * perUnit);
}

/**
 * The calls that have a deadline, checked by one timer while there are any: the kubelet sets a timeout on every
 * call, and a timer per call costs more than the call it guards. A deadline is enforced up to SWEEP_MS late; the
 * client enforces its own to the moment, so this only bounds the work a call abandoned by its client goes on doing.
 */
const SWEEP_MS = 25;
const deadlines = new (class {
  private readonly calls = new Set<ServerCall>();
  private timer: NodeJS.Timeout | undefined;

  add(call: ServerCall): void {
    this.calls.add(call);
    this.timer ??= setInterval(() => this.sweep(), SWEEP_MS).unref();
  }

  delete(call: ServerCall): void {
    this.calls.delete(call);
  }

  // The timer stops at the first sweep that finds nothing to watch, not when the last call ends: calls come one
  // after another, and a timer made and cleared per call is what this avoids.
  private sweep(): void {
    if (this.calls.size === 0 && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
      return;
    }
    const now = performance.now();
    for (const call of this.calls) if (call.deadline <= now) call.expire();
  }
})();

/** grpc-message: UTF-8, with bytes outside printable ASCII and '%' percent-encoded. */
function percentEncode(text: string): string {
  let plain = true;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c > 0x7e || c === 0x25) {
      plain = false;
      break;
    }
  }
  if (plain) return text;
  let out = '';
  for (const byte of Buffer.from(text, 'utf8')) {
    out += byte < 0x20 || byte > 0x7e || byte === 0x25 ? `%${byte.toString(16).toUpperCase().padStart(2, '0')}` : String.fromCharCode(byte);
  }
  return out;
}
