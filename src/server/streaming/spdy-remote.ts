// Exec/attach and port-forward over SPDY/3.1 (kubectl, crictl and the kubelet speak it through moby/spdystream):
// the client opens one SPDY stream per channel, named by its `streamtype` header.
import { EventEmitter } from 'node:events';
import type { Duplex } from 'node:stream';
import { errorMessage } from '../../common/errors';
import { finalStatus, RemoteCommand, RemoteIo, ResizeDecoder, versionOf } from './remote-command';
import { headerValue } from './spdy-frames';
import { SpdySession, type SpdyStream } from './spdy-session';
import type { AttachRequest, ExecRequest } from './tokens';

/** The kubelet waits this long for the client to open the streams it announced. */
const STREAM_CREATION_TIMEOUT_MS = 30_000;

export function spdySession(socket: Duplex, head: Buffer): SpdySession {
  // moby/spdystream does no SPDY flow control (see SpdySessionOptions.flowControl).
  return new SpdySession(socket, { role: 'server', flowControl: false, head });
}

/** Serves one exec or attach session on an upgraded connection; resolves when it is over. */
export async function serveRemoteCommand(session: SpdySession, protocol: string, req: ExecRequest | AttachRequest, command: RemoteCommand): Promise<void> {
  const wanted = new Set(['error']);
  if (req.stdin) wanted.add('stdin');
  if (req.stdout) wanted.add('stdout');
  if (req.stderr && !req.tty) wanted.add('stderr');
  if (req.tty && versionOf(protocol) >= 3) wanted.add('resize');
  const streams = new Map<string, SpdyStream>();
  const aborter = new AbortController();
  session.on('close', () => aborter.abort(new Error('the client went away')));
  const ready = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for the client's streams (${[...wanted].filter((w) => !streams.has(w)).join(', ')})`)), STREAM_CREATION_TIMEOUT_MS);
    session.on('stream', (s) => {
      const type = headerValue(s.headers, 'streamtype') ?? '';
      s.on('error', () => undefined); // a reset stream ends the session below, not the daemon
      if (!wanted.has(type) || streams.has(type)) return s.reset();
      s.reply();
      streams.set(type, s);
      if (streams.size === wanted.size) {
        clearTimeout(timer);
        resolve();
      }
    });
    session.on('close', () => {
      clearTimeout(timer);
      reject(new Error('the client went away before opening its streams'));
    });
  });
  try {
    await ready;
  } catch {
    session.destroy();
    return;
  }
  const resizes = new EventEmitter();
  const decoder = new ResizeDecoder();
  const io: RemoteIo = { stdin: streams.get('stdin'), stdout: streams.get('stdout'), stderr: streams.get('stderr'), tty: req.tty, resizes };
  streams.get('resize')?.on('data', (b: Buffer) => decoder.push(b, (size) => {
    io.size = size;
    resizes.emit('resize', size);
  }));
  let result: { exitCode?: number } | Error;
  try {
    result = await command(io, aborter.signal);
  } catch (err) {
    result = err instanceof Error ? err : new Error(errorMessage(err));
  }
  await finish(session, streams, finalStatus(protocol, result));
}

async function finish(session: SpdySession, streams: Map<string, SpdyStream>, status: string): Promise<void> {
  if (session.isClosed) return;
  const ends = ['stdout', 'stderr'].map((t) => streams.get(t)).filter((s): s is SpdyStream => s !== undefined).map((s) => endStream(s));
  await Promise.all(ends);
  const error = streams.get('error');
  if (error) await endStream(error, status);
  session.close();
}

function endStream(s: SpdyStream, last?: string): Promise<void> {
  return new Promise((resolve) => {
    if (s.destroyed || s.writableEnded) return resolve();
    s.once('error', () => resolve());
    s.end(last ? Buffer.from(last) : undefined, () => resolve());
  });
}
