// Test clients for the streaming server, speaking what kubectl/crictl/the kubelet speak: SPDY/3.1 (moby/spdystream:
// no flow control) and WebSocket (channel.k8s.io framing), for exec/attach and port-forward.
import http from 'node:http';
import type { Socket } from 'node:net';
import { PassThrough, type Readable } from 'node:stream';
import { WebSocket } from 'ws';
import { SpdySession, type SpdyStream } from '../../src/server/streaming/spdy-session';

export interface CommandResult {
  stdout: string;
  stderr: string;
  /** What arrived on the error channel (a JSON status from v4 on). */
  status: string;
}

export interface CommandOptions {
  stdin?: Buffer | Readable;
  tty?: boolean;
  stdout?: boolean;
  stderr?: boolean;
  /** Sent on the resize channel right after the streams open. */
  resize?: { width: number; height: number };
  protocols?: string[];
  /** Called with stdout as it arrives (attach tests stop early). */
  onStdout?: (soFar: string) => boolean | void;
}

export function upgradeSpdy(url: string, protocols: string[]): Promise<{ session: SpdySession; protocol: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method: 'POST', headers: { Connection: 'Upgrade', Upgrade: 'SPDY/3.1', 'X-Stream-Protocol-Version': protocols } });
    req.on('upgrade', (res, socket: Socket, head) => {
      resolve({ session: new SpdySession(socket, { role: 'client', flowControl: false, head }), protocol: String(res.headers['x-stream-protocol-version'] ?? '') });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => reject(Object.assign(new Error(`HTTP ${res.statusCode ?? 0}: ${body.trim()}`), { statusCode: res.statusCode })));
    });
    req.on('error', reject);
    req.end();
  });
}

function collect(s: Readable | undefined): Promise<string> {
  if (!s) return Promise.resolve('');
  return new Promise((resolve) => {
    let text = '';
    s.on('data', (d: Buffer) => (text += d.toString('utf8')));
    s.on('end', () => resolve(text));
    s.on('error', () => resolve(text));
    s.on('close', () => resolve(text));
  });
}

export async function spdyCommand(url: string, opts: CommandOptions = {}): Promise<CommandResult & { protocol: string }> {
  const { session, protocol } = await upgradeSpdy(url, opts.protocols ?? ['v4.channel.k8s.io', 'v3.channel.k8s.io', 'v2.channel.k8s.io', 'channel.k8s.io']);
  const open = (type: string): SpdyStream => session.openStream({ streamtype: type }).on('error', () => undefined);
  const error = open('error');
  const stdin = opts.stdin !== undefined ? open('stdin') : undefined;
  const stdout = opts.stdout !== false ? open('stdout') : undefined;
  const stderr = opts.stderr !== false && !opts.tty ? open('stderr') : undefined;
  const resize = opts.tty ? open('resize') : undefined;
  error.end(); // the client only reads the error stream
  stdout?.end();
  stderr?.end();
  if (resize && opts.resize) resize.write(JSON.stringify({ Width: opts.resize.width, Height: opts.resize.height }));
  if (stdin && opts.stdin) {
    if (Buffer.isBuffer(opts.stdin)) stdin.end(opts.stdin);
    else opts.stdin.pipe(stdin);
  }
  if (stdout && opts.onStdout) {
    let text = '';
    stdout.on('data', (d: Buffer) => {
      text += d.toString();
      if (opts.onStdout?.(text) === true) session.destroy();
    });
  }
  const [out, err, status] = await Promise.all([collect(stdout), collect(stderr), collect(error)]);
  resize?.end();
  session.close();
  return { stdout: out, stderr: err, status, protocol };
}

export async function wsCommand(url: string, opts: CommandOptions = {}): Promise<CommandResult & { protocol: string }> {
  const ws = new WebSocket(url.replace(/^http/, 'ws'), opts.protocols ?? ['v5.channel.k8s.io', 'v4.channel.k8s.io']);
  const out = { stdout: '', stderr: '', status: '' };
  // Listening from the start: the server may write before our 'open' handler has run.
  ws.on('message', (data: Buffer) => {
    const text = data.subarray(1).toString('utf8');
    if (data[0] === 1) out.stdout += text;
    else if (data[0] === 2) out.stderr += text;
    else if (data[0] === 3) out.status += text;
    if (data[0] === 1 && opts.onStdout?.(out.stdout) === true) ws.close();
  });
  const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
    ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode ?? 0}`)));
  });
  const send = (channel: number, data: Buffer): void => ws.send(Buffer.concat([Buffer.from([channel]), data]));
  if (opts.tty && opts.resize) send(4, Buffer.from(JSON.stringify({ Width: opts.resize.width, Height: opts.resize.height })));
  if (opts.stdin !== undefined) {
    const input = Buffer.isBuffer(opts.stdin) ? PassThrough.from([opts.stdin]) : opts.stdin;
    input.on('data', (d: Buffer) => send(0, d));
    input.on('end', () => ws.protocol === 'v5.channel.k8s.io' && ws.send(Buffer.from([255, 0])));
  }
  await closed;
  return { ...out, protocol: ws.protocol };
}

/** One forwarded connection over SPDY: writes `send`, then reads until the pod side closes. */
export async function spdyPortForward(session: SpdySession, port: number, requestId: number, send: Buffer | Readable): Promise<{ data: Buffer; error: string }> {
  const error = session.openStream({ streamtype: 'error', port: String(port), requestid: String(requestId) }).on('error', () => undefined);
  const data = session.openStream({ streamtype: 'data', port: String(port), requestid: String(requestId) }).on('error', () => undefined);
  error.end();
  const chunks: Buffer[] = [];
  data.on('data', (d: Buffer) => chunks.push(d));
  if (Buffer.isBuffer(send)) data.end(send);
  else send.pipe(data);
  const [errText] = await Promise.all([collect(error), new Promise<void>((resolve) => { data.on('end', resolve); data.on('close', resolve); })]);
  return { data: Buffer.concat(chunks), error: errText };
}
