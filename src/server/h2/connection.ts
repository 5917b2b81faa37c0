// One HTTP/2 server connection (RFC 9113) over a socket, for gRPC: client-opened streams, HPACK, flow control both
// ways, SETTINGS/PING/GOAWAY/RST_STREAM. No server push, no priorities (read and ignored), no TLS, no HTTP/1.
// Everything a stream writes during one synchronous run goes out in one corked write, so a unary reply (headers,
// message, trailers) is one syscall, as Go's gRPC sends it.
import type { Socket } from 'node:net';
import { encodeHeaders, HpackDecoder, HpackListTooLarge } from './hpack';
import {
  ConnectionError, DEFAULT_MAX_FRAME, DEFAULT_WINDOW, Flag, FRAME_HEADER_BYTES, FrameType, goawayFrame, H2Error, frame,
  MAX_FRAME_LIMIT, MAX_WINDOW, PREFACE, protocol, rstStreamFrame, Setting, settingsFrame, unpad, windowUpdateFrame,
  writeFrameHeader,
} from './frames';
import { checkRequestHeaders } from './request-headers';
import { GRPC_HEADER_BYTES, H2Stream, STREAM_HIGH_WATER, type Headers, type StreamOwner } from './stream';

export interface H2Limits {
  maxConcurrentStreams: number;
  /**
   * Our receive window per stream and per connection: the largest request body that can be in flight on a stream.
   * A stream's window reopens as its owner consumes; the connection's as DATA arrives, so streams that are all
   * mid-message cannot starve each other of it, until the connection buffers twice this much: then it waits for
   * owners to consume (a bound on memory per connection, whatever the number of streams).
   */
  receiveWindow: number;
  /** Largest decoded header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE). */
  maxHeaderListSize: number;
}

const SOCKET_HIGH_WATER = 1024 * 1024;
// A peer that stops reading while making us write (pings, resets) is cut off past this.
const SOCKET_LIMIT = 64 * 1024 * 1024;
const CREDIT_THRESHOLD = 64 * 1024;
// A client may reset this many streams at once, and RESET_RATE more each second: each reset stream may have
// started a handler whose work outlives it, so opening and resetting streams in a loop must not be free.
const RESET_BURST = 1000;
const RESET_RATE = 100;

export class H2Connection implements StreamOwner {
  private readonly streams = new Map<number, H2Stream>();
  private readonly hpack: HpackDecoder;
  private input: Buffer | undefined;
  private prefaceSeen = false;
  private settingsSeen = false;
  private lastStreamId = 0;
  private goingAway = false;
  private peerGoneAway = false;
  private dead = false;
  // Peer's settings that shape what we send.
  private peerInitialWindow = DEFAULT_WINDOW;
  private peerMaxFrame = DEFAULT_MAX_FRAME;
  private sendWindow = DEFAULT_WINDOW;
  private recvWindow: number;
  private connCredit = 0;
  /** Received bytes that streams' owners hold, and connection window held back while they are too many. */
  private buffered = 0;
  private heldCredit = 0;
  /** Streams with DATA queued behind the connection's send window. */
  private readonly blocked = new Set<H2Stream>();
  /** A header block arriving in HEADERS + CONTINUATION frames. */
  private pendingBlock: { stream: number; flags: number; parts: Buffer[]; size: number } | undefined;
  private corked = false;
  /** Client resets allowed before the connection is cut (a token bucket: CVE-2023-44487's rapid reset). */
  private resetTokens = RESET_BURST;
  private resetRefilledAt = Date.now();

  constructor(
    private readonly socket: Socket,
    private readonly limits: H2Limits,
    private readonly onStream: (stream: H2Stream, headers: Headers) => void,
    private readonly onIdle: () => void,
    /** The connection ends on a protocol error: the reason, for the log. */
    private readonly onError: (message: string) => void = () => undefined,
  ) {
    this.hpack = new HpackDecoder(4096);
    this.recvWindow = limits.receiveWindow;
    this.write(settingsFrame([
      [Setting.MAX_CONCURRENT_STREAMS, limits.maxConcurrentStreams],
      [Setting.INITIAL_WINDOW_SIZE, limits.receiveWindow],
      [Setting.MAX_HEADER_LIST_SIZE, limits.maxHeaderListSize],
      [Setting.ENABLE_PUSH, 0],
    ]));
    if (limits.receiveWindow > DEFAULT_WINDOW) this.write(windowUpdateFrame(0, limits.receiveWindow - DEFAULT_WINDOW));
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    socket.on('drain', () => this.notifyDrain());
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => this.closed('connection closed'));
  }

  get activeStreams(): number {
    return this.streams.size;
  }

  /** Graceful close: no new streams; the socket ends once the open ones finish. */
  shutdown(): void {
    if (this.goingAway || this.dead) return;
    this.goingAway = true;
    this.write(goawayFrame(this.lastStreamId, H2Error.NO_ERROR));
    this.endIfIdle();
  }

  destroy(): void {
    this.socket.destroy();
  }

  socketHasRoom(): boolean {
    return this.socket.writableLength < SOCKET_HIGH_WATER;
  }

  // ---- output ----

  /** Frames written in one synchronous run are corked and leave in one writev. */
  private write(buf: Buffer): void {
    if (this.dead) return;
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      queueMicrotask(() => {
        this.corked = false;
        this.socket.uncork();
        if (this.socket.writableLength > SOCKET_LIMIT) this.fail(new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'peer is not reading'));
      });
    }
    this.socket.write(buf);
  }

  sendHeaders(stream: H2Stream, block: Buffer, end: boolean): void {
    let flags = end ? Flag.END_STREAM : 0;
    let type: FrameType = FrameType.HEADERS;
    let at = 0;
    // A block larger than the peer's frame size continues in CONTINUATION frames.
    do {
      const len = Math.min(this.peerMaxFrame, block.length - at);
      const last = at + len >= block.length;
      const head = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
      writeFrameHeader(head, 0, len, type, flags | (last ? Flag.END_HEADERS : 0), stream.id);
      this.write(head);
      if (len > 0) this.write(block.subarray(at, at + len));
      at += len;
      type = FrameType.CONTINUATION;
      flags = 0;
    } while (at < block.length);
    if (end) this.finishLocal(stream);
  }

  /** The unary fast path (see H2Stream.unary): false when it does not fit the windows or frame size. */
  sendUnary(stream: H2Stream, headers: Buffer, message: Buffer, trailers: Buffer): boolean {
    const data = GRPC_HEADER_BYTES + message.length;
    const limit = Math.min(stream.sendWindow, this.sendWindow);
    if (data > limit || data > this.peerMaxFrame || headers.length > this.peerMaxFrame || trailers.length > this.peerMaxFrame) return false;
    const out = Buffer.allocUnsafe(3 * FRAME_HEADER_BYTES + headers.length + data + trailers.length);
    let at = 0;
    writeFrameHeader(out, at, headers.length, FrameType.HEADERS, Flag.END_HEADERS, stream.id);
    at += FRAME_HEADER_BYTES + headers.copy(out, at + FRAME_HEADER_BYTES);
    writeFrameHeader(out, at, data, FrameType.DATA, 0, stream.id);
    at += FRAME_HEADER_BYTES;
    out[at] = 0;
    out.writeUInt32BE(message.length, at + 1);
    at += GRPC_HEADER_BYTES + message.copy(out, at + GRPC_HEADER_BYTES);
    writeFrameHeader(out, at, trailers.length, FrameType.HEADERS, Flag.END_HEADERS | Flag.END_STREAM, stream.id);
    trailers.copy(out, at + FRAME_HEADER_BYTES);
    stream.sendWindow -= data;
    this.sendWindow -= data;
    stream.localEnded = true;
    this.write(out);
    this.finishLocal(stream);
    return true;
  }

  /** Sends what flow control allows of a stream's queue, then its trailers once the queue is empty. */
  pump(stream: H2Stream): void {
    while (stream.queue.length > 0) {
      const room = Math.min(stream.sendWindow, this.sendWindow);
      if (room <= 0) {
        if (this.sendWindow <= 0) this.blocked.add(stream);
        return;
      }
      const head = stream.queue[0] as Buffer;
      const len = Math.min(room, head.length, this.peerMaxFrame);
      const header = Buffer.allocUnsafe(FRAME_HEADER_BYTES);
      writeFrameHeader(header, 0, len, FrameType.DATA, 0, stream.id);
      this.write(header);
      if (len === head.length) {
        stream.queue.shift();
        this.write(head);
      } else {
        stream.queue[0] = head.subarray(len);
        this.write(head.subarray(0, len));
      }
      stream.queuedBytes -= len;
      stream.sendWindow -= len;
      this.sendWindow -= len;
    }
    this.blocked.delete(stream);
    if (stream.trailers) {
      const trailers = stream.trailers;
      stream.trailers = undefined;
      this.sendHeaders(stream, trailers, true);
    } else if (stream.wantsDrain && stream.queuedBytes < STREAM_HIGH_WATER) {
      this.notifyDrain();
    }
  }

  /** Our side is done: the stream closes, resetting the peer's side if it is still sending (RFC 9113 §8.1). */
  private finishLocal(stream: H2Stream): void {
    if (!stream.remoteEnded) this.write(rstStreamFrame(stream.id, H2Error.NO_ERROR));
    this.close(stream);
  }

  resetStream(stream: H2Stream, code: H2Error, reason: string): void {
    if (stream.closed) return;
    this.write(rstStreamFrame(stream.id, code));
    stream.localEnded = true;
    this.close(stream);
    stream.events?.abort(reason);
  }

  private close(stream: H2Stream): void {
    if (stream.closed) return;
    stream.closed = true;
    stream.queue = [];
    stream.queuedBytes = 0;
    this.blocked.delete(stream);
    this.streams.delete(stream.id);
    this.released(stream.unconsumed);
    stream.unconsumed = 0;
    this.endIfIdle();
  }

  /** Reopens a stream's window (the connection's reopened when the DATA arrived). */
  credit(stream: H2Stream, bytes: number): void {
    if (bytes <= 0) return;
    // Only a stream that is still receiving needs its window back.
    if (!stream.closed && !stream.remoteEnded) {
      stream.recvWindow += bytes;
      this.write(windowUpdateFrame(stream.id, bytes));
    }
  }

  /** Owners let go of received bytes: window held back for them is returned once the connection is under budget. */
  released(bytes: number): void {
    this.buffered -= bytes;
    if (this.heldCredit > 0 && this.buffered <= 2 * this.limits.receiveWindow) {
      this.connCredit += this.heldCredit;
      this.heldCredit = 0;
      this.flushCredit();
    }
  }

  private flushCredit(): void {
    if (this.connCredit < CREDIT_THRESHOLD) return;
    this.recvWindow += this.connCredit;
    this.write(windowUpdateFrame(0, this.connCredit));
    this.connCredit = 0;
  }

  private notifyDrain(): void {
    if (!this.socketHasRoom()) return;
    for (const stream of [...this.streams.values()]) {
      if (stream.wantsDrain && stream.queuedBytes < STREAM_HIGH_WATER) {
        stream.wantsDrain = false;
        stream.events?.drain();
      }
    }
  }

  private endIfIdle(): void {
    if ((this.goingAway || this.peerGoneAway) && this.streams.size === 0 && !this.dead) {
      this.dead = true;
      this.socket.end();
    }
    if (this.streams.size === 0) this.onIdle();
  }

  private fail(err: ConnectionError): void {
    if (this.dead) return;
    this.onError(err.message);
    this.write(goawayFrame(this.lastStreamId, err.code, err.message));
    this.dead = true;
    this.input = undefined;
    this.socket.end();
    // A peer that does not read its GOAWAY must not hold the socket open.
    setTimeout(() => this.socket.destroy(), 1000).unref();
    this.closed(`connection error: ${err.message}`);
  }

  private closed(reason: string): void {
    this.dead = true;
    const open = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    for (const stream of open) {
      stream.closed = true;
      stream.events?.abort(reason);
    }
    this.onIdle();
  }

  // ---- input ----

  private receive(chunk: Buffer): void {
    if (this.dead) return;
    let buf = this.input ? Buffer.concat([this.input, chunk]) : chunk;
    try {
      if (!this.prefaceSeen) {
        const n = Math.min(buf.length, PREFACE.length);
        if (buf.compare(PREFACE, 0, n, 0, n) !== 0) {
          // Not HTTP/2 with prior knowledge (an HTTP/1 client, say): nothing to say in a language it speaks.
          this.dead = true;
          this.socket.destroy();
          return;
        }
        if (buf.length < PREFACE.length) {
          this.input = buf;
          return;
        }
        this.prefaceSeen = true;
        buf = buf.subarray(PREFACE.length);
      }
      let at = 0;
      while (buf.length - at >= FRAME_HEADER_BYTES && !this.dead) {
        const length = (buf[at]! << 16) | (buf[at + 1]! << 8) | buf[at + 2]!;
        if (length > DEFAULT_MAX_FRAME) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, `frame of ${length} bytes exceeds SETTINGS_MAX_FRAME_SIZE`);
        if (buf.length - at < FRAME_HEADER_BYTES + length) break;
        const type = buf[at + 3]!;
        const flags = buf[at + 4]!;
        const streamId = buf.readUInt32BE(at + 5) & MAX_WINDOW;
        const payload = buf.subarray(at + FRAME_HEADER_BYTES, at + FRAME_HEADER_BYTES + length);
        at += FRAME_HEADER_BYTES + length;
        this.frame(type, flags, streamId, payload);
      }
      this.input = at < buf.length ? Buffer.from(buf.subarray(at)) : undefined;
    } catch (err) {
      if (err instanceof ConnectionError) this.fail(err);
      else this.fail(new ConnectionError(H2Error.INTERNAL_ERROR, err instanceof Error ? err.message : String(err)));
    }
  }

  private frame(type: number, flags: number, id: number, payload: Buffer): void {
    if (!this.settingsSeen && type !== FrameType.SETTINGS) throw protocol('the first frame must be SETTINGS');
    if (this.pendingBlock && (type !== FrameType.CONTINUATION || id !== this.pendingBlock.stream)) {
      throw protocol('a header block was interrupted before END_HEADERS');
    }
    switch (type) {
      case FrameType.DATA: return this.onData(flags, id, payload);
      case FrameType.HEADERS: return this.onHeaders(flags, id, payload);
      case FrameType.CONTINUATION: return this.onContinuation(flags, id, payload);
      case FrameType.SETTINGS: return this.onSettings(flags, id, payload);
      case FrameType.PING: return this.onPing(flags, id, payload);
      case FrameType.WINDOW_UPDATE: return this.onWindowUpdate(id, payload);
      case FrameType.RST_STREAM: return this.onRstStream(id, payload);
      case FrameType.GOAWAY: return this.onGoaway(id, payload);
      case FrameType.PRIORITY:
        if (id === 0) throw protocol('PRIORITY on stream 0');
        if (payload.length !== 5) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PRIORITY frame is not 5 bytes');
        return;
      case FrameType.PUSH_PROMISE: throw protocol('a client cannot push');
      default: return; // unknown frame types are ignored (RFC 9113 §4.1)
    }
  }

  private onSettings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw protocol('SETTINGS on a stream');
    if (flags & Flag.ACK) {
      if (payload.length !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS ACK with a payload');
      return;
    }
    if (payload.length % 6 !== 0) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'SETTINGS payload is not a multiple of 6');
    this.settingsSeen = true;
    for (let i = 0; i < payload.length; i += 6) {
      const key = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (key === Setting.ENABLE_PUSH && value > 1) throw protocol('SETTINGS_ENABLE_PUSH must be 0 or 1');
      if (key === Setting.INITIAL_WINDOW_SIZE) {
        if (value > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1');
        const delta = value - this.peerInitialWindow;
        this.peerInitialWindow = value;
        for (const stream of this.streams.values()) {
          stream.sendWindow += delta;
          if (stream.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'a stream window grew above 2^31-1');
        }
      }
      if (key === Setting.MAX_FRAME_SIZE) {
        if (value < DEFAULT_MAX_FRAME || value > MAX_FRAME_LIMIT) throw protocol('SETTINGS_MAX_FRAME_SIZE out of range');
        this.peerMaxFrame = value;
      }
    }
    this.write(frame(FrameType.SETTINGS, Flag.ACK, 0));
    for (const stream of [...this.streams.values()]) if (stream.queue.length > 0) this.pump(stream);
  }

  private onPing(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) throw protocol('PING on a stream');
    if (payload.length !== 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'PING is not 8 bytes');
    if (!(flags & Flag.ACK)) this.write(frame(FrameType.PING, Flag.ACK, 0, payload));
  }

  private onGoaway(id: number, payload: Buffer): void {
    if (id !== 0) throw protocol('GOAWAY on a stream');
    if (payload.length < 8) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'GOAWAY shorter than 8 bytes');
    this.peerGoneAway = true;
    this.endIfIdle();
  }

  private onWindowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'WINDOW_UPDATE is not 4 bytes');
    const increment = payload.readUInt32BE(0) & MAX_WINDOW;
    if (id === 0) {
      if (increment === 0) throw protocol('WINDOW_UPDATE of 0 on the connection');
      this.sendWindow += increment;
      if (this.sendWindow > MAX_WINDOW) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'connection window above 2^31-1');
      for (const stream of [...this.blocked]) this.pump(stream);
      return;
    }
    const stream = this.open(id, 'WINDOW_UPDATE');
    if (!stream) return;
    if (increment === 0) return this.resetStream(stream, H2Error.PROTOCOL_ERROR, 'WINDOW_UPDATE of 0');
    stream.sendWindow += increment;
    if (stream.sendWindow > MAX_WINDOW) return this.resetStream(stream, H2Error.FLOW_CONTROL_ERROR, 'stream window above 2^31-1');
    this.pump(stream);
  }

  private onRstStream(id: number, payload: Buffer): void {
    if (payload.length !== 4) throw new ConnectionError(H2Error.FRAME_SIZE_ERROR, 'RST_STREAM is not 4 bytes');
    const stream = this.open(id, 'RST_STREAM');
    if (!stream) return;
    const now = Date.now();
    this.resetTokens = Math.min(RESET_BURST, this.resetTokens + ((now - this.resetRefilledAt) / 1000) * RESET_RATE);
    this.resetRefilledAt = now;
    if (--this.resetTokens < 0) throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, 'too many streams reset by the client');
    stream.localEnded = true;
    this.close(stream);
    stream.events?.abort(`reset by the client (code ${payload.readUInt32BE(0)})`);
  }

  /** The open stream a frame is for; undefined for a closed one; a connection error for stream 0 or an idle one. */
  private open(id: number, what: string): H2Stream | undefined {
    if (id === 0) throw protocol(`${what} on stream 0`);
    if (id > this.lastStreamId) throw protocol(`${what} on idle stream ${id}`);
    return this.streams.get(id);
  }

  private onData(flags: number, id: number, payload: Buffer): void {
    const stream = this.open(id, 'DATA');
    // Every DATA byte, padding included, counts against the connection window.
    this.recvWindow -= payload.length;
    if (this.recvWindow < 0) throw new ConnectionError(H2Error.FLOW_CONTROL_ERROR, 'DATA beyond the connection window');
    // The connection window is returned on arrival (held until messages complete, it deadlocks concurrent uploads
    // that together exceed it), unless the connection already buffers more than its budget.
    const data = unpad(flags, payload, 'DATA');
    const buffering = stream !== undefined && !stream.remoteEnded && this.buffered + data.length > 2 * this.limits.receiveWindow;
    if (buffering) {
      this.heldCredit += data.length;
      this.connCredit += payload.length - data.length;
    } else {
      this.connCredit += payload.length;
    }
    this.flushCredit();
    const overhead = payload.length - data.length;
    if (!stream || stream.remoteEnded) {
      if (stream) this.resetStream(stream, H2Error.STREAM_CLOSED, 'DATA after END_STREAM');
      return;
    }
    stream.recvWindow -= payload.length;
    if (stream.recvWindow < 0) return this.resetStream(stream, H2Error.FLOW_CONTROL_ERROR, 'DATA beyond the stream window');
    if (overhead > 0) this.credit(stream, overhead);
    stream.unconsumed += data.length;
    this.buffered += data.length;
    if (flags & Flag.END_STREAM) stream.remoteEnded = true;
    if (data.length > 0) stream.events?.data(data);
    if (stream.remoteEnded && !stream.closed) stream.events?.end();
  }

  private onHeaders(flags: number, id: number, payload: Buffer): void {
    if (id === 0) throw protocol('HEADERS on stream 0');
    let fragment = unpad(flags, payload, 'HEADERS');
    if (flags & Flag.PRIORITY) {
      if (fragment.length < 5) throw protocol('HEADERS too short for its priority fields');
      fragment = fragment.subarray(5);
    }
    this.pendingBlock = { stream: id, flags, parts: [fragment], size: fragment.length };
    if (flags & Flag.END_HEADERS) this.headerBlockDone();
    else this.checkBlockSize();
  }

  private onContinuation(flags: number, id: number, payload: Buffer): void {
    const pending = this.pendingBlock;
    if (!pending || pending.stream !== id) throw protocol('CONTINUATION without HEADERS');
    // An empty fragment is not kept: a flood of them would grow parts without growing size.
    if (payload.length > 0) pending.parts.push(payload);
    pending.size += payload.length;
    if (flags & Flag.END_HEADERS) this.headerBlockDone();
    else this.checkBlockSize();
  }

  private checkBlockSize(): void {
    // Every field costs at least one byte of block, so the raw block is bounded by the decoded limit too.
    if ((this.pendingBlock?.size ?? 0) > this.limits.maxHeaderListSize) {
      throw new ConnectionError(H2Error.ENHANCE_YOUR_CALM, `header block larger than ${this.limits.maxHeaderListSize} bytes`);
    }
  }

  private headerBlockDone(): void {
    const pending = this.pendingBlock;
    if (!pending) return;
    this.checkBlockSize();
    this.pendingBlock = undefined;
    const block = pending.parts.length === 1 ? (pending.parts[0] as Buffer) : Buffer.concat(pending.parts);
    let headers: Headers;
    let tooLarge = false;
    try {
      // Always decoded, even for a stream about to be refused: the decoder's table must follow every block.
      headers = this.hpack.decode(block, this.limits.maxHeaderListSize);
    } catch (err) {
      // Too large but decoded to the end: the table is in sync, so only this request is refused (RFC 9113 §10.5.1).
      if (!(err instanceof HpackListTooLarge)) {
        throw new ConnectionError(H2Error.COMPRESSION_ERROR, err instanceof Error ? err.message : 'bad header block');
      }
      headers = [];
      tooLarge = true;
    }
    const id = pending.stream;
    const end = (pending.flags & Flag.END_STREAM) !== 0;
    const existing = this.streams.get(id);
    if (existing && tooLarge) return this.resetStream(existing, H2Error.ENHANCE_YOUR_CALM, 'trailers larger than SETTINGS_MAX_HEADER_LIST_SIZE');
    if (existing) {
      // Trailers from the client: they must end the stream.
      if (existing.remoteEnded) return this.resetStream(existing, H2Error.STREAM_CLOSED, 'HEADERS after END_STREAM');
      if (!end) return this.resetStream(existing, H2Error.PROTOCOL_ERROR, 'trailers without END_STREAM');
      existing.remoteEnded = true;
      existing.events?.end();
      return;
    }
    if (id % 2 === 0) throw protocol(`client opened even stream ${id}`);
    if (id <= this.lastStreamId) {
      this.write(rstStreamFrame(id, H2Error.STREAM_CLOSED));
      return;
    }
    this.lastStreamId = id;
    if (this.goingAway || this.streams.size >= this.limits.maxConcurrentStreams) {
      this.write(rstStreamFrame(id, H2Error.REFUSED_STREAM));
      return;
    }
    if (tooLarge) {
      const stream = new H2Stream(this, id, this.peerInitialWindow, this.limits.receiveWindow);
      stream.remoteEnded = end;
      this.streams.set(id, stream);
      stream.respond(encodeHeaders([[':status', '200'], ['content-type', 'application/grpc'], ['grpc-status', '8'],
        ['grpc-message', `request header list larger than ${this.limits.maxHeaderListSize} octets (SETTINGS_MAX_HEADER_LIST_SIZE)`]]), true);
      return;
    }
    const malformed = checkRequestHeaders(headers);
    if (malformed) {
      this.write(rstStreamFrame(id, H2Error.PROTOCOL_ERROR));
      return;
    }
    const stream = new H2Stream(this, id, this.peerInitialWindow, this.limits.receiveWindow);
    stream.remoteEnded = end;
    this.streams.set(id, stream);
    this.onStream(stream, headers);
    if (end && !stream.closed) stream.events?.end();
  }
}
