// Exec/attach and port-forward over WebSocket (kubectl 1.30+ and the kubelet's websocket path): every binary message
// starts with its channel byte. remotecommand: 0 stdin, 1 stdout, 2 stderr, 3 error, 4 resize, and in v5 255 =
// "close channel <next byte>". Port-forward: for the i-th port of the URL, channel 2i carries data and 2i+1 errors,
// each opened by a message holding the port (little-endian uint16).
import { EventEmitter } from 'node:events';
import { PassThrough, Writable } from 'node:stream';
import { WebSocket, type RawData } from 'ws';
import { errorMessage } from '../../common/errors';
import { type PortConnector, portAllowed } from './port-forward';
import { finalStatus, RemoteCommand, type RemoteIo, ResizeDecoder, versionOf } from './remote-command';
import type { AttachRequest, ExecRequest, PortForwardRequest } from './tokens';

const CLOSE_CHANNEL = 255;

/** Writes become messages on one channel; the callback waits for the socket, so a slow client slows the source. */
class ChannelWriter extends Writable {
  constructor(private readonly ws: WebSocket, private readonly channel: number) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.ws.readyState !== WebSocket.OPEN) return cb(new Error('the websocket is closed'));
    this.ws.send(Buffer.concat([Buffer.from([this.channel]), chunk]), { binary: true }, (err) => cb(err ?? null));
  }
}

function toBuffer(data: RawData): Buffer {
  return Buffer.isBuffer(data) ? data : Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data);
}

/** Feeds client bytes into a stream, pausing the socket while the stream is full. */
function inbound(ws: WebSocket): PassThrough {
  const stream = new PassThrough();
  stream.on('drain', () => ws.resume());
  return stream;
}

function push(ws: WebSocket, stream: PassThrough, payload: Buffer): void {
  if (stream.writableEnded || stream.destroyed) return;
  if (!stream.write(payload)) ws.pause();
}

export async function serveWsRemoteCommand(ws: WebSocket, protocol: string, req: ExecRequest | AttachRequest, command: RemoteCommand): Promise<void> {
  const aborter = new AbortController();
  const stdin = req.stdin ? inbound(ws) : undefined;
  const resizes = new EventEmitter();
  const decoder = new ResizeDecoder();
  const stdout = req.stdout ? new ChannelWriter(ws, 1) : undefined;
  const stderr = req.stderr && !req.tty ? new ChannelWriter(ws, 2) : undefined;
  const io: RemoteIo = { stdin, stdout, stderr, tty: req.tty, resizes };
  ws.on('message', (data) => {
    const b = toBuffer(data);
    const [channel] = b;
    if (channel === 0 && stdin) push(ws, stdin, b.subarray(1));
    else if (channel === 4 && req.tty) {
      decoder.push(b.subarray(1), (size) => {
        io.size = size;
        resizes.emit('resize', size);
      });
    }
    else if (channel === CLOSE_CHANNEL && versionOf(protocol) >= 5 && b[1] === 0) stdin?.end();
  });
  ws.on('close', () => {
    stdin?.end();
    aborter.abort(new Error('the client went away'));
  });
  ws.on('error', () => undefined);
  let result: { exitCode?: number } | Error;
  try {
    result = await command(io, aborter.signal);
  } catch (err) {
    result = err instanceof Error ? err : new Error(errorMessage(err));
  }
  if (ws.readyState !== WebSocket.OPEN) return;
  const outputs = [stdout, stderr].filter((w): w is ChannelWriter => w !== undefined);
  await Promise.all(outputs.map((w) => new Promise<void>((resolve) => w.end(() => resolve()))));
  const status = finalStatus(protocol, result);
  await new Promise<void>((resolve) => ws.send(Buffer.concat([Buffer.from([3]), Buffer.from(status)]), { binary: true }, () => resolve()));
  ws.close(1000);
}

export async function serveWsPortForward(ws: WebSocket, req: PortForwardRequest, ports: number[], connect: PortConnector): Promise<void> {
  ws.on('error', () => undefined);
  const inputs = ports.map(() => inbound(ws));
  ws.on('message', (data) => {
    const b = toBuffer(data);
    const channel = b[0] ?? -1;
    const input = channel % 2 === 0 ? inputs[channel / 2] : undefined;
    if (input) push(ws, input, b.subarray(1));
  });
  const closed = new Promise<void>((resolve) => ws.on('close', () => resolve()));
  ws.on('close', () => inputs.forEach((i) => i.end()));
  const portBytes = (port: number): Buffer => Buffer.from([port & 0xff, port >> 8]);
  await Promise.all(
    ports.map(async (port, i) => {
      const [data, error] = [new ChannelWriter(ws, 2 * i), new ChannelWriter(ws, 2 * i + 1)];
      data.write(portBytes(port));
      error.write(portBytes(port));
      try {
        if (!portAllowed(req, port)) throw new Error(`port ${port} was not named in the PortForward request`);
        const conn = connect(port);
        const input = inputs[i] as PassThrough;
        input.pipe(conn.stream);
        conn.stream.pipe(data, { end: false });
        await Promise.all([new Promise<void>((resolve) => conn.stream.once('close', () => resolve())), conn.done]);
      } catch (err) {
        error.write(Buffer.from(`error forwarding port ${port} to pod ${req.podId}: ${errorMessage(err)}`));
      }
    }),
  );
  ws.close(1000);
  await closed;
}
