// One HTTP/2 stream as its owner (the gRPC call) sees it: what it hears, and how it writes. The connection does
// the framing, flow control and bookkeeping (connection.ts, through StreamOwner).
import type { H2Error } from './frames';

/** What a stream's owner hears from the connection. */
export interface H2StreamEvents {
  data(chunk: Buffer): void;
  end(): void;
  /** The stream is gone before it ended normally: reset by the peer, or the connection closed. */
  abort(reason: string): void;
  /** There is room to write again after `write` returned false. */
  drain(): void;
}

export type Headers = Array<[string, string]>;

/** What a stream needs of its connection. */
export interface StreamOwner {
  sendHeaders(stream: H2Stream, block: Buffer, end: boolean): void;
  sendUnary(stream: H2Stream, headers: Buffer, message: Buffer, trailers: Buffer): boolean;
  pump(stream: H2Stream): void;
  resetStream(stream: H2Stream, code: H2Error, reason: string): void;
  credit(stream: H2Stream, bytes: number): void;
  released(bytes: number): void;
  socketHasRoom(): boolean;
}

// A stream's owner is told to wait once this much of its output is queued (flow control or a slow socket).
export const STREAM_HIGH_WATER = 256 * 1024;
export const GRPC_HEADER_BYTES = 5;

export class H2Stream {
  events: H2StreamEvents | undefined;
  /** Peer's window for our DATA on this stream. */
  sendWindow: number;
  recvWindow: number;
  remoteEnded = false;
  /** END_STREAM is queued or sent: nothing more may be written. */
  localEnded = false;
  closed = false;
  /** Received bytes the owner has not yet released with consume(). */
  unconsumed = 0;
  queue: Buffer[] = [];
  queuedBytes = 0;
  trailers: Buffer | undefined;
  wantsDrain = false;

  constructor(private readonly conn: StreamOwner, readonly id: number, sendWindow: number, recvWindow: number) {
    this.sendWindow = sendWindow;
    this.recvWindow = recvWindow;
  }

  /** HEADERS with an HPACK block; `end` makes it a trailers-only response. */
  respond(block: Buffer, end: boolean): void {
    if (this.localEnded || this.closed) return;
    if (end) this.localEnded = true;
    this.conn.sendHeaders(this, block, end);
  }

  /**
   * A whole unary reply: HEADERS, the gRPC message in one DATA frame, trailers. In one buffer and one write when the
   * windows and the peer's frame size allow (they nearly always do), else as respond + write + end.
   */
  unary(headers: Buffer, message: Buffer, trailers: Buffer): void {
    if (this.localEnded || this.closed) return;
    if (!this.conn.sendUnary(this, headers, message, trailers)) {
      this.respond(headers, false);
      this.write(grpcFramed(message));
      this.end(trailers);
    }
  }

  /** Queues DATA; false when the owner should wait for `drain`. */
  write(data: Buffer): boolean {
    if (this.localEnded || this.closed) return false;
    if (data.length > 0) {
      this.queue.push(data);
      this.queuedBytes += data.length;
      this.conn.pump(this);
    }
    const ok = this.queuedBytes < STREAM_HIGH_WATER && this.conn.socketHasRoom();
    if (!ok) this.wantsDrain = true;
    return ok;
  }

  /** Trailers (an HPACK block) with END_STREAM, after the queued DATA. */
  end(trailers: Buffer): void {
    if (this.localEnded || this.closed) return;
    this.localEnded = true;
    this.trailers = trailers;
    this.conn.pump(this);
  }

  reset(code: H2Error): void {
    this.conn.resetStream(this, code, 'reset by the server');
  }

  /** Releases received bytes, so the peer may send more (flow control credit). */
  consume(bytes: number): void {
    const n = Math.min(bytes, this.unconsumed);
    this.unconsumed -= n;
    this.conn.released(n);
    this.conn.credit(this, n);
  }
}

/** A gRPC length-prefixed message: flag 0 (uncompressed), then the 4-byte big-endian length. */
export function grpcFramed(message: Buffer): Buffer {
  const out = Buffer.allocUnsafe(GRPC_HEADER_BYTES + message.length);
  out[0] = 0;
  out.writeUInt32BE(message.length, 1);
  message.copy(out, GRPC_HEADER_BYTES);
  return out;
}
