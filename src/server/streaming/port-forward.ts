// Port-forward: each forwarded connection is a TCP connection made inside the pod's network namespace (by the stream
// helper, never a setns in Node), its bytes copied both ways with backpressure. Over SPDY the client opens a data and
// an error stream per connection, paired by `requestid`; over WebSocket each port in the URL gets a channel pair.
import type { Duplex } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { errorMessage } from '../../common/errors';
import { headerValue } from './spdy-frames';
import type { SpdySession, SpdyStream } from './spdy-session';
import type { PortForwardRequest } from './tokens';

/** A connection to the port inside the pod: `done` rejects (with the reason) when it could not be made or broke. */
export interface PortConnection {
  stream: Duplex;
  done: Promise<void>;
}

export type PortConnector = (port: number) => PortConnection;

export function parsePort(text: string | undefined): number | undefined {
  if (text === undefined || !/^\d{1,5}$/.test(text)) return undefined;
  const port = Number(text);
  return port >= 1 && port <= 65535 ? port : undefined;
}

export function portAllowed(req: PortForwardRequest, port: number): boolean {
  return req.ports.length === 0 || req.ports.includes(port);
}

/** Copies both ways until both sides are done; a failure on one side ends the other. */
export async function splice(a: Duplex, b: Duplex): Promise<void> {
  const one = pipeline(a, b).catch(() => b.destroy());
  const two = pipeline(b, a).catch(() => a.destroy());
  await Promise.all([one, two]);
}

interface Pair {
  data?: SpdyStream;
  error?: SpdyStream;
  started: boolean;
}

export function serveSpdyPortForward(session: SpdySession, req: PortForwardRequest, connect: PortConnector): Promise<void> {
  const pairs = new Map<string, Pair>();
  session.on('stream', (s) => {
    s.on('error', () => undefined);
    const type = headerValue(s.headers, 'streamtype');
    const port = parsePort(headerValue(s.headers, 'port'));
    // Old clients send no request id: the error stream comes first, its data stream two ids later.
    const key = headerValue(s.headers, 'requestid') ?? String(type === 'data' ? s.id - 2 : s.id);
    if ((type !== 'data' && type !== 'error') || port === undefined) return s.reset();
    s.reply();
    const pair = pairs.get(key) ?? { started: false };
    pairs.set(key, pair);
    if (pair[type]) return s.reset();
    pair[type] = s;
    if (type === 'error') s.resume(); // the client never writes on it; it only waits for our message or its end
    if (pair.data && pair.error && !pair.started) {
      pair.started = true;
      void forward(req, port, pair.data, pair.error, connect).finally(() => pairs.delete(key));
    }
  });
  return new Promise((resolve) => session.on('close', () => resolve()));
}

async function forward(req: PortForwardRequest, port: number, data: SpdyStream, error: SpdyStream, connect: PortConnector): Promise<void> {
  try {
    if (!portAllowed(req, port)) throw new Error(`port ${port} was not named in the PortForward request`);
    const conn = connect(port);
    await Promise.all([splice(data, conn.stream), conn.done]);
    error.end(); // empty: no error (the client reads it to the end)
  } catch (err) {
    error.end(Buffer.from(`error forwarding port ${port} to pod ${req.podId}: ${errorMessage(err)}`));
    data.end();
  }
}
