// A SPDY/3.1 session over a byte stream (the socket after `Upgrade: SPDY/3.1`), in either role. Each SPDY stream
// is a Node Duplex. Memory stays bounded both ways. With flow control, what we send waits for the peer's windows
// and the socket's drain, and what we receive is credited back (WINDOW_UPDATE) only as the reader consumes it.
// Without it (moby/spdystream peers), sending waits for the socket only, and a reader that falls behind stops us
// reading the socket, so TCP pushes back on the peer.
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { Duplex } from 'node:stream';
import {
  DEFAULT_WINDOW_SIZE, FLAG_FIN, FLAG_UNIDIRECTIONAL, FrameEncoder, FrameParser, GoAwayStatus, normalizeHeaders,
  RstStatus, SettingsId, SpdyProtocolError, type ParserLimits, type SpdyFrame, type SpdyHeaders, type SpdyHeadersInit,
} from './spdy-frames';

const MAX_WINDOW = 0x7fffffff;
const MAX_DATA_FRAME = 16 * 1024; // several frames per window keep the pipe full while credit travels back
const CONTROL_BACKLOG = 1024 * 1024; // stop reading a peer that floods us with frames to answer but never reads

export interface SpdySessionOptions {
  role: 'client' | 'server';
  /**
   * true: SPDY/3.1 windows, SETTINGS and WINDOW_UPDATE as the spec says. false: none of it, for moby/spdystream
   * (kubectl, crictl, the kubelet), which despite `Upgrade: SPDY/3.1` never sends WINDOW_UPDATE and ignores ours,
   * so windows would stall our sends after 64 KiB and its sends would overrun ours.
   */
  flowControl: boolean;
  /** Receive window granted to each stream (default and minimum 64 KiB; announced by SETTINGS when larger). */
  streamWindowSize?: number;
  /** Receive window of the whole session (default and minimum 64 KiB; grown by WINDOW_UPDATE when larger). */
  sessionWindowSize?: number;
  /** Peer streams open at once beyond which new ones are refused (default 100). */
  maxConcurrentStreams?: number;
  /** Bytes read past the HTTP upgrade response (the `head` of an 'upgrade' event). */
  head?: Buffer;
  limits?: ParserLimits;
}

export interface SpdySessionEvents {
  stream: [stream: SpdyStream];
  goaway: [lastGoodStreamId: number, status: number];
  /** The session is over; `err` is set when it ended by an error rather than a clean close. */
  close: [err: Error | undefined];
}

export interface OpenStreamOptions {
  fin?: boolean; // send no data: the SYN_STREAM carries FIN
  unidirectional?: boolean; // the peer may not send data
  priority?: number;
  associatedStreamId?: number;
}

/** The peer reset a stream (RST_STREAM status), or the session ended under it (CANCEL). */
export class SpdyStreamError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
    this.name = 'SpdyStreamError';
  }
}

interface PendingWrite { chunk: Buffer; offset: number; cb: (err?: Error | null) => void }
interface StreamState {
  host: StreamHost;
  sendWindow: number;
  recvWindow: number;
  owed: number; // received, not yet credited back: in the readable buffer, or dropped with the stream
  grant: number; // consumed, not yet announced in a WINDOW_UPDATE
  pending: PendingWrite | undefined;
  localFin: boolean;
  remoteFin: boolean;
  replied: boolean; // inbound: our SYN_REPLY went out; outbound: the peer's arrived
  detached: boolean; // out of the session's table: nothing more to send for it, not even RST_STREAM
}
/** What a stream asks of its session. */
interface StreamHost {
  send(frame: SpdyFrame): void;
  pump(s: SpdyStream): void;
  credit(s: SpdyStream): void;
  finished(s: SpdyStream): void;
  gone(s: SpdyStream, err: Error | null): void;
}
const STATE = Symbol('spdy-stream-state');
const closedError = (why: string): SpdyStreamError => new SpdyStreamError(RstStatus.CANCEL, why);

/**
 * One SPDY stream. Writes become DATA frames, end() sends FIN, received DATA is readable, a received FIN ends it.
 * Also emits 'reply' and 'headers' (SpdyHeaders). Like a socket it errors (SpdyStreamError) when the peer resets it
 * or the session dies, so give it an 'error' listener (pipeline() does).
 */
export class SpdyStream extends Duplex {
  /** Headers of the peer's SYN_REPLY, once it arrived (streams we opened). Also emitted as 'reply'. */
  replyHeaders: SpdyHeaders | undefined;
  /** @internal */
  readonly [STATE]: StreamState;

  /** @internal Streams come from SpdySession.openStream() or its 'stream' event. */
  constructor(
    host: StreamHost,
    readonly id: number,
    /** Headers of the SYN_STREAM that opened this stream. */
    readonly headers: SpdyHeaders,
    /** Opened by the peer. */
    readonly inbound: boolean,
    windows: { send: number; recv: number },
  ) {
    super({ allowHalfOpen: true });
    this[STATE] = {
      host, sendWindow: windows.send, recvWindow: windows.recv, owed: 0, grant: 0, pending: undefined,
      localFin: false, remoteFin: false, replied: false, detached: false,
    };
  }

  /** Answers the peer's SYN_STREAM. Writing or ending first sends an empty reply implicitly. */
  reply(headers: SpdyHeadersInit = {}, opts: { fin?: boolean } = {}): void {
    const st = this[STATE];
    if (!this.inbound || st.replied) throw new Error(`stream ${this.id}: not the peer's stream, or already replied`);
    st.replied = true;
    const h = normalizeHeaders(headers);
    this[STATE].host.send({ type: 'SYN_REPLY', streamId: this.id, flags: opts.fin ? FLAG_FIN : 0, headers: h });
    if (opts.fin) endLocally(this);
  }

  sendHeaders(headers: SpdyHeadersInit): void {
    this[STATE].host.send({ type: 'HEADERS', streamId: this.id, flags: 0, headers: normalizeHeaders(headers) });
  }

  /** Sends RST_STREAM and destroys the stream (without an error: the reset was ours). */
  reset(status: number = RstStatus.CANCEL): void {
    if (!this[STATE].detached) this[STATE].host.send({ type: 'RST_STREAM', streamId: this.id, status });
    this[STATE].detached = true;
    this.destroy();
  }

  /** Resolves with the SYN_REPLY headers (streams we opened); rejects if the stream dies first. */
  waitForReply(): Promise<SpdyHeaders> {
    if (this.replyHeaders) return Promise.resolve(this.replyHeaders);
    return new Promise((resolve, reject) => {
      const onReply = (h: SpdyHeaders): void => {
        this.off('close', onClose);
        resolve(h);
      };
      const onClose = (): void => {
        this.off('reply', onReply);
        reject(this.errored ?? closedError(`stream ${this.id} closed before its reply`));
      };
      this.once('reply', onReply);
      this.once('close', onClose);
    });
  }

  /** Bytes we may send before the peer grants more (diagnostics, tests). */
  get sendWindow(): number {
    return this[STATE].sendWindow;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    this.ensureReplied();
    this[STATE].pending = { chunk, offset: 0, cb };
    this[STATE].host.pump(this);
  }

  override _final(cb: (err?: Error | null) => void): void {
    const st = this[STATE];
    if (!st.localFin) {
      this.ensureReplied();
      st.localFin = true;
      this[STATE].host.send({ type: 'DATA', streamId: this.id, flags: FLAG_FIN, data: Buffer.alloc(0) });
      this[STATE].host.finished(this);
    }
    cb();
  }

  override _read(): void {
    this[STATE].host.credit(this);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const p = this[STATE].pending;
    this[STATE].pending = undefined;
    if (p) process.nextTick(p.cb, err ?? closedError(`stream ${this.id} destroyed`));
    this[STATE].host.gone(this, err);
    cb(err);
  }

  private ensureReplied(): void {
    if (this.inbound && !this[STATE].replied) this.reply();
  }
}

/** Our side is done with no FIN of its own: it rode on a SYN frame, or the stream is unidirectional. */
function endLocally(s: SpdyStream): void {
  s[STATE].localFin = true;
  s.end();
  s[STATE].host.finished(s);
}

/** A SPDY/3.1 session; see the file comment. Listen for 'stream' (peer-opened streams) and 'close'. */
export class SpdySession extends EventEmitter<SpdySessionEvents> {
  readonly role: 'client' | 'server';
  private readonly encoder = new FrameEncoder();
  private readonly parser: FrameParser;
  private readonly streams = new Map<number, SpdyStream>();
  private readonly blocked = new Set<SpdyStream>(); // streams whose write waits for a window or the socket
  private readonly behind = new Set<SpdyStream>(); // without flow control: readers we stop reading the socket for
  private readonly pings = new Map<number, { start: bigint; resolve: (ms: number) => void; reject: (e: Error) => void }>();
  private readonly streamWindow: number;
  private readonly sessionWindow: number;
  private readonly maxStreams: number;
  private readonly flow: boolean;
  private readonly host: StreamHost;
  private nextStreamId: number;
  private nextPingId: number;
  private lastPeerStreamId = 0;
  private peerInitialWindow = DEFAULT_WINDOW_SIZE;
  private sendWindow = DEFAULT_WINDOW_SIZE;
  private recvWindow: number;
  private grant = 0;
  private goawaySent = false;
  private goawayReceived = false;
  private closed = false;
  private reading = false;

  private readonly onSocketData = (chunk: Buffer): void => this.onData(chunk);
  private readonly onSocketDrain = (): void => this.onDrain();
  private readonly onSocketEnd = (): void => this.teardown(closedError('SPDY peer closed the connection'), false);
  private readonly onSocketError = (err: Error): void => this.teardown(err, true);

  constructor(private readonly socket: Duplex, opts: SpdySessionOptions) {
    super();
    this.role = opts.role;
    this.flow = opts.flowControl;
    this.streamWindow = checkWindow(opts.streamWindowSize);
    this.sessionWindow = checkWindow(opts.sessionWindowSize);
    this.recvWindow = this.flow ? this.sessionWindow : Infinity;
    // Infinite windows turn every window check and wait into a no-op; only the socket paces us.
    if (!this.flow) this.sendWindow = this.peerInitialWindow = Infinity;
    this.maxStreams = opts.maxConcurrentStreams ?? 100;
    // With flow control no DATA frame may exceed a stream's window, so nothing bigger is ever buffered.
    const maxDataLength = this.flow ? this.streamWindow : undefined;
    this.parser = new FrameParser({ maxDataLength, ...opts.limits });
    this.nextStreamId = this.nextPingId = this.role === 'client' ? 1 : 2;
    this.host = {
      send: (f) => this.send(f),
      pump: (s) => this.pump(s),
      credit: (s) => this.credit(s),
      finished: (s) => this.maybeDetach(s),
      gone: (s, err) => this.streamGone(s, err),
    };
    // Small frames (WINDOW_UPDATE, a keystroke) must not sit out Nagle's delay; Go's peers set this too.
    if (socket instanceof net.Socket) socket.setNoDelay(true);
    socket.on('drain', this.onSocketDrain);
    socket.on('end', this.onSocketEnd);
    socket.on('close', this.onSocketEnd);
    socket.on('error', this.onSocketError);
    if (this.flow && this.streamWindow !== DEFAULT_WINDOW_SIZE) {
      const entry = { flags: 0, id: SettingsId.INITIAL_WINDOW_SIZE, value: this.streamWindow };
      this.send({ type: 'SETTINGS', flags: 0, entries: [entry] });
    }
    if (this.flow && this.sessionWindow > DEFAULT_WINDOW_SIZE) {
      this.send({ type: 'WINDOW_UPDATE', streamId: 0, delta: this.sessionWindow - DEFAULT_WINDOW_SIZE });
    }
    // Reading starts a tick later, so 'stream' listeners are attached before the first frame (even one in `head`).
    process.nextTick(() => {
      if (this.closed) return;
      if (socket.destroyed) return this.onSocketEnd();
      if (opts.head && opts.head.length > 0) this.onData(opts.head);
      if (this.closed) return;
      socket.on('data', this.onSocketData);
      this.reading = true;
      this.pace();
    });
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Opens a stream from our side (SYN_STREAM); stream.waitForReply() waits for the peer's SYN_REPLY. */
  openStream(headers: SpdyHeadersInit, opts: OpenStreamOptions = {}): SpdyStream {
    if (this.closed || this.goawaySent || this.goawayReceived) throw new Error('SPDY session is closing');
    const id = this.nextStreamId;
    if (id > MAX_WINDOW) throw new Error('SPDY stream ids exhausted');
    this.nextStreamId += 2;
    const h = normalizeHeaders(headers);
    const windows = { send: this.peerInitialWindow, recv: this.flow ? this.streamWindow : Infinity };
    const s = new SpdyStream(this.host, id, h, false, windows);
    this.streams.set(id, s);
    const flags = (opts.fin ? FLAG_FIN : 0) | (opts.unidirectional ? FLAG_UNIDIRECTIONAL : 0);
    const { priority = 0, associatedStreamId = 0 } = opts;
    this.send({ type: 'SYN_STREAM', streamId: id, associatedStreamId, priority, slot: 0, flags, headers: h });
    if (opts.unidirectional) this.remoteDone(s);
    if (opts.fin) endLocally(s);
    return s;
  }

  /** Round-trip time of a PING, in milliseconds. */
  ping(): Promise<number> {
    if (this.closed) return Promise.reject(closedError('SPDY session is closed'));
    const id = this.nextPingId;
    this.nextPingId = (this.nextPingId + 2) % 0x100000000; // ids keep their parity when they wrap
    return new Promise((resolve, reject) => {
      this.pings.set(id, { start: process.hrtime.bigint(), resolve, reject });
      this.send({ type: 'PING', id });
    });
  }

  /** Tells the peer to open no more streams; streams already open carry on. */
  goAway(status: number = GoAwayStatus.OK): void {
    if (this.closed || this.goawaySent) return;
    this.goawaySent = true;
    this.send({ type: 'GOAWAY', lastGoodStreamId: this.lastPeerStreamId, status });
  }

  /** GOAWAY, then end the connection; streams still open are destroyed with an error. */
  close(): void {
    this.goAway();
    this.teardown(closedError('SPDY session closed'), false);
  }

  /** Drops the connection at once. */
  destroy(err?: Error): void {
    this.teardown(err ?? closedError('SPDY session destroyed'), err !== undefined);
    this.socket.destroy();
  }

  private send(frame: SpdyFrame): void {
    if (!this.closed) this.socket.write(this.encoder.encode(frame));
  }

  private onData(chunk: Buffer): void {
    let frames: SpdyFrame[];
    try {
      frames = this.parser.push(chunk);
    } catch (err) {
      return this.protocolError(err instanceof Error ? err.message : String(err), err);
    }
    for (const f of frames) if (!this.closed) this.onFrame(f);
    this.pace();
  }

  /** Reads the socket only while no reader is behind and the peer is not making us queue answers unread. */
  private pace(): void {
    if (!this.reading || this.closed) return;
    const hold = this.behind.size > 0 || this.socket.writableLength > CONTROL_BACKLOG;
    if (hold && !this.socket.isPaused()) this.socket.pause();
    if (!hold && this.socket.isPaused()) this.socket.resume();
  }

  private onDrain(): void {
    this.pace();
    for (const s of [...this.blocked]) if (!this.socket.writableNeedDrain) this.pump(s);
  }

  private onFrame(f: SpdyFrame): void {
    const s = 'streamId' in f && f.type !== 'SYN_STREAM' ? this.streams.get(f.streamId) : undefined;
    switch (f.type) {
      case 'DATA': return this.onDataFrame(f.streamId, f.flags, f.data);
      case 'SYN_STREAM': return this.onSynStream(f.streamId, f.flags, f.headers);
      case 'SYN_REPLY':
        if (!s) return; // a stream already gone: the peer had not heard yet
        if (s.inbound || s.replyHeaders) return this.kill(s, RstStatus.STREAM_IN_USE, 'duplicate SYN_REPLY', true);
        s.replyHeaders = f.headers;
        s[STATE].replied = true;
        s.emit('reply', f.headers);
        if (f.flags & FLAG_FIN) this.remoteDone(s);
        return;
      case 'HEADERS':
        if (!s) return;
        s.emit('headers', f.headers);
        if (f.flags & FLAG_FIN) this.remoteDone(s);
        return;
      case 'RST_STREAM':
        if (s) this.kill(s, f.status, `reset by peer (status ${f.status})`, false);
        return;
      case 'SETTINGS':
        for (const e of f.entries) {
          if (!this.flow || e.id !== SettingsId.INITIAL_WINDOW_SIZE || e.value > MAX_WINDOW) continue;
          // It moves the windows of open streams too (spec 2.6.4), possibly below zero.
          for (const x of this.streams.values()) x[STATE].sendWindow += e.value - this.peerInitialWindow;
          this.peerInitialWindow = e.value;
        }
        return this.onDrain();
      case 'PING': {
        if ((f.id % 2 === 1) === (this.role === 'server')) return this.send(f); // the peer's ping: echo it
        const p = this.pings.get(f.id);
        this.pings.delete(f.id);
        return p?.resolve(Number(process.hrtime.bigint() - p.start) / 1e6);
      }
      case 'GOAWAY':
        this.goawayReceived = true;
        for (const x of [...this.streams.values()]) {
          if (!x.inbound && x.id > f.lastGoodStreamId) this.kill(x, RstStatus.REFUSED_STREAM, 'refused by GOAWAY', false);
        }
        this.emit('goaway', f.lastGoodStreamId, f.status);
        return;
      case 'WINDOW_UPDATE':
        if (!this.flow) return;
        if (f.streamId === 0) {
          if (this.sendWindow + f.delta > MAX_WINDOW) return this.protocolError('session window overflow');
          this.sendWindow += f.delta;
          return this.onDrain();
        }
        if (!s) return;
        if (s[STATE].sendWindow + f.delta > MAX_WINDOW) {
          return this.kill(s, RstStatus.FLOW_CONTROL_ERROR, 'window overflow', true);
        }
        s[STATE].sendWindow += f.delta;
        return this.pump(s);
    }
  }

  private onSynStream(id: number, flags: number, headers: SpdyHeaders): void {
    if (id === 0 || (id % 2 === 1) !== (this.role === 'server') || id <= this.lastPeerStreamId) {
      return this.protocolError(`SYN_STREAM with invalid stream id ${id}`);
    }
    this.lastPeerStreamId = id;
    let open = 0;
    for (const x of this.streams.values()) if (x.inbound) open++;
    if (this.goawaySent || open >= this.maxStreams) {
      return this.send({ type: 'RST_STREAM', streamId: id, status: RstStatus.REFUSED_STREAM });
    }
    const windows = { send: this.peerInitialWindow, recv: this.flow ? this.streamWindow : Infinity };
    const s = new SpdyStream(this.host, id, headers, true, windows);
    this.streams.set(id, s);
    if (flags & FLAG_UNIDIRECTIONAL) endLocally(s);
    if (flags & FLAG_FIN) this.remoteDone(s);
    this.emit('stream', s);
  }

  private onDataFrame(id: number, flags: number, data: Buffer): void {
    if (data.length > this.recvWindow) return this.protocolError('peer overran the session window');
    this.recvWindow -= data.length;
    const s = this.streams.get(id);
    const st = s?.[STATE];
    if (!s || !st || st.remoteFin || data.length > st.recvWindow) {
      this.creditSession(data.length); // dropped, but it counted against the session window
      if (st?.remoteFin) this.kill(s as SpdyStream, RstStatus.STREAM_ALREADY_CLOSED, 'DATA after FIN', true);
      else if (s) this.kill(s, RstStatus.FLOW_CONTROL_ERROR, 'peer overran the stream window', true);
      return;
    }
    st.recvWindow -= data.length;
    st.owed += data.length;
    // Credit at once only while the reader keeps up; otherwise _read() credits as it drains the buffer.
    if (data.length > 0 && s.push(data)) this.credit(s);
    else if (data.length > 0 && !this.flow) this.behind.add(s);
    if (flags & FLAG_FIN) this.remoteDone(s);
  }

  private remoteDone(s: SpdyStream): void {
    s[STATE].remoteFin = true;
    s.push(null);
    // No _read() follows the end: credit what the stream still holds once its reader drained it. Without flow
    // control nothing more can come for it, so it no longer holds up the socket.
    if (this.flow) s.once('end', () => this.credit(s));
    else if (this.behind.delete(s)) this.pace();
    this.maybeDetach(s);
  }

  /** Hands consumed bytes back to the peer, batched to half a window. */
  private credit(s: SpdyStream): void {
    if (!this.flow) {
      if (this.behind.delete(s)) this.pace();
      return;
    }
    const st = s[STATE];
    const n = st.owed;
    if (n === 0) return;
    st.owed = 0;
    st.grant += n;
    if (!st.remoteFin && !st.detached && st.grant >= this.streamWindow / 2) {
      st.recvWindow += st.grant;
      this.send({ type: 'WINDOW_UPDATE', streamId: s.id, delta: st.grant });
      st.grant = 0;
    }
    this.creditSession(n);
  }

  private creditSession(n: number): void {
    if (!this.flow) return;
    this.grant += n;
    if (this.grant >= this.sessionWindow / 2) {
      this.recvWindow += this.grant;
      this.send({ type: 'WINDOW_UPDATE', streamId: 0, delta: this.grant });
      this.grant = 0;
    }
  }

  /** Sends as much of a stream's pending write as both windows and the socket allow. */
  private pump(s: SpdyStream): void {
    const st = s[STATE];
    const p = st.pending;
    if (!p || this.closed) return;
    while (p.offset < p.chunk.length) {
      const n = Math.min(p.chunk.length - p.offset, st.sendWindow, this.sendWindow, MAX_DATA_FRAME);
      if (n <= 0 || this.socket.writableNeedDrain) {
        this.blocked.delete(s); // to the back of the queue: streams take turns
        this.blocked.add(s);
        return;
      }
      st.sendWindow -= n;
      this.sendWindow -= n;
      this.send({ type: 'DATA', streamId: s.id, flags: 0, data: p.chunk.subarray(p.offset, p.offset + n) });
      p.offset += n;
    }
    this.blocked.delete(s);
    st.pending = undefined;
    p.cb();
  }

  /** Both sides sent FIN: the stream leaves the table, though its reader may still drain buffered data. */
  private maybeDetach(s: SpdyStream): void {
    const st = s[STATE];
    if (st.localFin && st.remoteFin && !st.detached) {
      st.detached = true;
      this.streams.delete(s.id);
    }
  }

  private streamGone(s: SpdyStream, err: Error | null): void {
    const st = s[STATE];
    this.blocked.delete(s);
    if (this.behind.delete(s)) this.pace();
    if (this.streams.get(s.id) === s) this.streams.delete(s.id);
    if (!st.detached) {
      this.send({ type: 'RST_STREAM', streamId: s.id, status: err ? RstStatus.INTERNAL_ERROR : RstStatus.CANCEL });
    }
    st.detached = true;
    this.creditSession(st.owed); // what the dead stream held no longer counts against the session window
    st.owed = 0;
  }

  /** Destroys a stream with a SpdyStreamError, sending RST_STREAM when the peer has not already said it. */
  private kill(s: SpdyStream, status: number, why: string, sendRst: boolean): void {
    if (sendRst) this.send({ type: 'RST_STREAM', streamId: s.id, status });
    s[STATE].detached = true;
    s.destroy(new SpdyStreamError(status, `stream ${s.id}: ${why}`));
  }

  private protocolError(why: string, cause?: unknown): void {
    this.goAway(GoAwayStatus.PROTOCOL_ERROR);
    const err = cause instanceof SpdyProtocolError ? cause : new SpdyProtocolError('INVALID_FRAME', why);
    this.teardown(err, true);
  }

  /** Ends the session once: streams are destroyed, pings fail, the socket is ended and let go. */
  private teardown(reason: Error, isError: boolean): void {
    if (this.closed) return;
    this.closed = true;
    const streams = [...this.streams.values()];
    this.streams.clear();
    this.blocked.clear();
    this.behind.clear();
    for (const s of streams) {
      s[STATE].detached = true;
      s.destroy(reason);
    }
    for (const p of this.pings.values()) p.reject(reason);
    this.pings.clear();
    const sock = this.socket;
    sock.off('data', this.onSocketData).off('drain', this.onSocketDrain).off('end', this.onSocketEnd);
    sock.off('close', this.onSocketEnd).off('error', this.onSocketError);
    sock.on('error', () => {}); // late errors of a socket we are done with
    sock.resume(); // discard whatever else the peer sends
    if (!sock.destroyed) {
      sock.end();
      // Let a GOAWAY leave, but do not hold the socket for a peer that never hangs up.
      const timer = setTimeout(() => sock.destroy(), 2000).unref();
      sock.once('close', () => clearTimeout(timer));
    }
    this.emit('close', isError ? reason : undefined);
  }
}

function checkWindow(size: number | undefined): number {
  const n = size ?? DEFAULT_WINDOW_SIZE;
  if (!Number.isInteger(n) || n < DEFAULT_WINDOW_SIZE || n > MAX_WINDOW) {
    throw new RangeError(`SPDY window size must be an integer in [${DEFAULT_WINDOW_SIZE}, ${MAX_WINDOW}]`);
  }
  return n;
}
