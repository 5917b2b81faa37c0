// The streaming server: Exec, Attach and PortForward hand out a URL here with a single-use token; the client (the
// kubelet, crictl, kubectl) connects and upgrades to SPDY/3.1 or WebSocket. Plain HTTP by default on 127.0.0.1, TLS
// when a certificate and key are configured.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import os from 'node:os';
import type { Duplex } from 'node:stream';
import { WebSocketServer, type WebSocket } from 'ws';
import { errorMessage } from '../../common/errors';
import type { Logger } from '../log';
import { type PortConnector, parsePort, serveSpdyPortForward } from './port-forward';
import { headerList, negotiate, PORT_FORWARD_PROTOCOL, REMOTE_COMMAND_PROTOCOLS, type RemoteCommand, WEBSOCKET_PROTOCOLS } from './remote-command';
import { serveRemoteCommand, spdySession } from './spdy-remote';
import { type AttachRequest, type ExecRequest, type PortForwardRequest, type StreamRequest, TokenStore } from './tokens';
import { serveWsPortForward, serveWsRemoteCommand } from './ws-remote';

/** What the sessions run: the runtime side of exec, attach and port-forward. */
export interface StreamingBackend {
  exec(req: ExecRequest): RemoteCommand;
  attach(req: AttachRequest): RemoteCommand;
  portForward(req: PortForwardRequest): PortConnector;
}

export interface StreamingOptions {
  address: string;
  port: number;
  tls?: { certFile: string; keyFile: string };
  tokenTtlMs: () => number;
  idleTimeoutMs: () => number;
  backend: StreamingBackend;
  log: Logger;
  /** Told +1 when a session starts and -1 when it ends (berth_streams_active), and of each failed session. */
  onSession?: (delta: 1 | -1) => void;
  onError?: () => void;
}

const KINDS = new Set(['exec', 'attach', 'portforward']);

export class StreamingServer {
  private readonly tokens: TokenStore;
  private readonly wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 * 1024 });
  private readonly sockets = new Set<Duplex>();
  private baseUrl = '';

  private constructor(private readonly server: http.Server, private readonly opts: StreamingOptions) {
    this.tokens = new TokenStore(opts.tokenTtlMs);
  }

  static async start(opts: StreamingOptions): Promise<StreamingServer> {
    const handler = (_req: http.IncomingMessage, res: http.ServerResponse): void => {
      res.writeHead(400, { 'content-type': 'text/plain' }).end('this endpoint needs an upgrade to SPDY/3.1 or websocket\n');
    };
    const server = opts.tls ? https.createServer({ cert: fs.readFileSync(opts.tls.certFile), key: fs.readFileSync(opts.tls.keyFile) }, handler) : http.createServer(handler);
    const s = new StreamingServer(server, opts);
    server.on('upgrade', (req: http.IncomingMessage, socket: Duplex, head: Buffer) => s.onUpgrade(req, socket, head));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(opts.port, opts.address, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const { port } = server.address() as AddressInfo;
    s.baseUrl = `${opts.tls ? 'https' : 'http'}://${urlHost(opts.address)}:${port}`;
    return s;
  }

  get port(): number {
    return (this.server.address() as AddressInfo).port;
  }

  /** A fresh URL for the request: single use, valid for the token TTL. */
  url(req: StreamRequest): string {
    return `${this.baseUrl}/${req.kind}/${this.tokens.issue(req)}`;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.wss.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private onUpgrade(req: http.IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', () => undefined);
    const [, kind, token, extra] = (req.url ?? '').split('?')[0]?.split('/') ?? [];
    const request = kind !== undefined && KINDS.has(kind) && token && extra === undefined ? this.tokens.consume(token) : undefined;
    if (!request || request.kind !== kind) return refuse(socket, 404, 'unknown, used or expired streaming token');
    const upgrade = (req.headers.upgrade ?? '').toLowerCase();
    if (upgrade === 'websocket') return this.upgradeWebSocket(req, socket, head, request);
    if (upgrade !== 'spdy/3.1') return refuse(socket, 400, `cannot upgrade to "${req.headers.upgrade ?? ''}": SPDY/3.1 or websocket only`);
    const supported = request.kind === 'portforward' ? [PORT_FORWARD_PROTOCOL] : REMOTE_COMMAND_PROTOCOLS;
    const protocol = negotiate(headerList(req.headers['x-stream-protocol-version']), supported);
    if (protocol === undefined) return refuse(socket, 403, `none of the offered stream protocols is supported (supported: ${supported.join(', ')})`);
    socket.write(['HTTP/1.1 101 Switching Protocols', 'Connection: Upgrade', 'Upgrade: SPDY/3.1', ...(protocol ? [`X-Stream-Protocol-Version: ${protocol}`] : []), '', ''].join('\r\n'));
    const session = spdySession(socket, head);
    const served = request.kind === 'portforward' ? serveSpdyPortForward(session, request, this.opts.backend.portForward(request)) : serveRemoteCommand(session, protocol || 'channel.k8s.io', request, this.command(request));
    this.track(socket, served, `spdy ${request.kind}`);
  }

  private upgradeWebSocket(req: http.IncomingMessage, socket: Duplex, head: Buffer, request: StreamRequest): void {
    const offered = headerList(req.headers['sec-websocket-protocol']);
    const supported: readonly string[] = request.kind === 'portforward' ? [...WEBSOCKET_PROTOCOLS, PORT_FORWARD_PROTOCOL] : WEBSOCKET_PROTOCOLS;
    const protocol = negotiate(offered, supported);
    if (!protocol) return refuse(socket, 403, `none of the offered websocket protocols is supported (supported: ${supported.join(', ')})`);
    const ports = request.kind === 'portforward' ? new URL(req.url ?? '/', 'http://x').searchParams.getAll('port').map(parsePort) : [];
    if (ports.some((p) => p === undefined)) return refuse(socket, 400, 'a port in the URL is not a number in 1..65535');
    this.wss.handleUpgrade(req, socket, head, (ws: WebSocket) => {
      const served =
        request.kind === 'portforward'
          ? serveWsPortForward(ws, request, ports.length > 0 ? (ports as number[]) : request.ports, this.opts.backend.portForward(request))
          : serveWsRemoteCommand(ws, protocol, request, this.command(request));
      this.track(socket, served, `ws ${request.kind}`);
    });
  }

  private command(req: ExecRequest | AttachRequest): RemoteCommand {
    return req.kind === 'exec' ? this.opts.backend.exec(req) : this.opts.backend.attach(req);
  }

  private track(socket: Duplex, served: Promise<void>, kind = ''): void {
    this.sockets.add(socket);
    this.opts.onSession?.(1);
    this.opts.log.debug({ kind }, 'streaming: session started');
    const idle = this.opts.idleTimeoutMs();
    (socket as Socket).setTimeout?.(idle, () => {
      this.opts.log.info({ idleMs: idle }, 'streaming: closing an idle session');
      socket.destroy();
    });
    served
      .catch((err: unknown) => {
        this.opts.onError?.();
        this.opts.log.warn({ err: errorMessage(err) }, 'streaming: session failed');
        socket.destroy();
      })
      .finally(() => {
        this.opts.log.debug({ kind }, 'streaming: session over');
        this.sockets.delete(socket);
        this.opts.onSession?.(-1);
      });
  }
}

function refuse(socket: Duplex, status: number, message: string): void {
  socket.end(`HTTP/1.1 ${status} ${http.STATUS_CODES[status] ?? ''}\r\nContent-Type: text/plain\r\nContent-Length: ${Buffer.byteLength(message) + 1}\r\nConnection: close\r\n\r\n${message}\n`);
}

/** The host for URLs: a wildcard bind is reached through the node's first non-internal address. */
function urlHost(address: string): string {
  let host = address;
  if (address === '0.0.0.0' || address === '::' || address === '') {
    const found = Object.values(os.networkInterfaces()).flat().find((i) => i && !i.internal && i.family === 'IPv4');
    host = found?.address ?? '127.0.0.1';
  }
  return host.includes(':') ? `[${host}]` : host;
}
