// gRPC over our HTTP/2 connection (the gRPC-over-HTTP2 protocol) on a unix socket: one request message per call,
// unary or server-streaming replies, status in trailers (call.ts). Handlers get the request's bytes and reply with
// bytes: decoding and encoding protobuf is the RPC wrapper's job.
import net from 'node:net';
import { httpError, ServerCall, type GrpcHandler } from './call';
import { H2Connection } from './connection';
import { GRPC_HEADER_BYTES, type H2Stream, type Headers } from './stream';

export type { GrpcCall, GrpcHandler } from './call';

export interface GrpcServerOptions {
  /** Largest message accepted or sent. */
  maxMessageBytes: number;
  maxConcurrentStreams?: number;
  /** A connection failed (a client broke the protocol) or accepting one did (EMFILE): logged, never fatal. */
  onError?: (message: string) => void;
}

export class GrpcServer {
  private readonly connections = new Set<H2Connection>();
  private server: net.Server | undefined;
  private shuttingDown = false;
  private idleWaiters: (() => void)[] = [];

  constructor(
    private readonly handlers: ReadonlyMap<string, GrpcHandler>,
    private readonly options: GrpcServerOptions,
  ) {}

  /** Listens on a unix socket (the path must not exist). */
  listen(socketPath: string): Promise<void> {
    const limits = {
      maxConcurrentStreams: this.options.maxConcurrentStreams ?? 1000,
      // A whole request message may be in flight at once.
      receiveWindow: Math.min(0x7fff_ffff, this.options.maxMessageBytes + GRPC_HEADER_BYTES + 64 * 1024),
      maxHeaderListSize: 64 * 1024,
    };
    const server = net.createServer((socket) => {
      if (this.shuttingDown) return void socket.destroy();
      const conn = new H2Connection(socket, limits, (stream, headers) => this.call(stream, headers), () => this.checkIdle(),
        (message) => this.options.onError?.(`closed a CRI connection: ${message}`));
      this.connections.add(conn);
      socket.once('close', () => {
        this.connections.delete(conn);
        this.checkIdle();
      });
    });
    this.server = server;
    return new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(socketPath, () => {
        server.off('error', reject);
        // Once listening, an error is a failed accept (out of file descriptors, say): the server goes on.
        server.on('error', (err) => this.options.onError?.(`accepting a connection: ${err.message}`));
        resolve();
      });
    });
  }

  /** Stops accepting connections and calls; resolves once every in-flight call has finished. */
  shutdown(): Promise<void> {
    this.shuttingDown = true;
    this.server?.close();
    for (const conn of this.connections) conn.shutdown();
    return new Promise((resolve) => {
      this.idleWaiters.push(resolve);
      this.checkIdle();
    });
  }

  /** Closes every connection now: in-flight calls are cancelled. */
  destroy(): void {
    this.shuttingDown = true;
    this.server?.close();
    for (const conn of this.connections) conn.destroy();
  }

  private checkIdle(): void {
    if (!this.shuttingDown) return;
    for (const conn of this.connections) if (conn.activeStreams > 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const resolve of waiters) resolve();
  }

  private call(stream: H2Stream, headers: Headers): void {
    let method = '';
    let path = '';
    let contentType = '';
    let timeout = '';
    let encoding = '';
    for (const [name, value] of headers) {
      switch (name) {
        case ':method': method = value; break;
        case ':path': path = value; break;
        case 'content-type': contentType = value; break;
        case 'grpc-timeout': timeout = value; break;
        case 'grpc-encoding': encoding = value; break;
      }
    }
    if (method !== 'POST') return httpError(stream, 405, `HTTP method ${method} is not POST`);
    if (contentType !== 'application/grpc' && !contentType.startsWith('application/grpc+') && !contentType.startsWith('application/grpc;')) {
      return httpError(stream, 415, `content-type "${contentType}" is not application/grpc`);
    }
    const call = new ServerCall(stream, path, this.options.maxMessageBytes, this.handlers.get(path), encoding);
    stream.events = call;
    if (timeout !== '') call.setDeadline(timeout);
  }
}
