// What the streaming server's sessions run: exec through the container's OCI runtime (a terminal via the stream
// helper when asked), attach to conmon's attach socket, port-forward from a helper inside the pod's netns.
import path from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { failedPrecondition } from '../common/errors';
import { attach as attachContainer, portForward as forwardPort } from '../runtime/stream-io';
import type { ServerContext } from './context';
import type { RemoteIo, TerminalSize } from './streaming/remote-command';
import type { StreamingBackend } from './streaming/server';

// kubectl and crictl send the terminal's size on the resize channel right after the streams open, racing the exec's
// start: a process that started first would see a 0x0 terminal (`stty size` fails on it). So a tty exec waits for the
// first size this long at most; a client that sends none starts after the wait, at the runtime's default size.
const FIRST_SIZE_WAIT_MS = 1000;

/** The size the client sent, waiting up to `ms` for its first one. */
function firstSize(io: RemoteIo, ms: number, signal: AbortSignal): Promise<TerminalSize | undefined> {
  if (io.size || signal.aborted) return Promise.resolve(io.size);
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      io.resizes.off('resize', done);
      signal.removeEventListener('abort', done);
      resolve(io.size);
    };
    const timer = setTimeout(done, ms);
    io.resizes.once('resize', done);
    signal.addEventListener('abort', done, { once: true });
  });
}

/** Copies src into dst without ending dst (the transport ends it after the status); resolves when src is done. */
function drain(src: Readable, dst: Writable | undefined): Promise<void> {
  return new Promise((resolve) => {
    src.once('end', resolve);
    src.once('close', resolve);
    src.once('error', () => resolve());
    if (!dst) return void src.resume();
    src.pipe(dst, { end: false });
    // The client is gone: what is still coming is thrown away, so src can reach its end.
    const discard = (): void => {
      src.unpipe(dst);
      src.resume();
    };
    dst.once('close', discard);
    dst.once('error', discard);
  });
}

export function streamingBackend(s: ServerContext): StreamingBackend {
  const running = async (id: string): Promise<ReturnType<ServerContext['containers']['store']['resolve']>> => {
    const c = await s.containers.status(id);
    if (c.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${c.id} is not running (${c.state})`);
    return c;
  };
  return {
    exec: (req) => async (io, signal) => {
      const c = await running(req.containerId);
      // The terminal starts at the client's first size (see FIRST_SIZE_WAIT_MS); later resizes follow it.
      const size = req.tty ? await firstSize(io, FIRST_SIZE_WAIT_MS, signal) : undefined;
      const proc = await s.containers.runtimeOf(c).execStream(c.id, req.cmd, { tty: req.tty, ...(size ? { rows: size.height, cols: size.width } : {}) });
      const kill = (): void => proc.kill();
      signal.addEventListener('abort', kill, { once: true });
      try {
        if (io.stdin) io.stdin.pipe(proc.stdin);
        else proc.stdin.end();
        io.resizes.on('resize', (sz: { width: number; height: number }) => proc.resize(sz.height, sz.width));
        if (io.size && io.size !== size) proc.resize(io.size.height, io.size.width); // arrived while the exec started
        const outputs = 'output' in proc ? [drain(proc.output, io.stdout)] : [drain(proc.stdout, io.stdout), drain(proc.stderr, io.stderr)];
        const { exitCode } = await proc.exit;
        await Promise.all(outputs);
        return { exitCode };
      } finally {
        signal.removeEventListener('abort', kill);
        io.stdin?.unpipe(proc.stdin);
      }
    },
    attach: (req) => async (io, signal) => {
      const c = await running(req.containerId);
      const a = attachContainer({ attachSocket: path.join(c.bundle, 'attach'), ctlFifo: path.join(c.bundle, 'ctl'), tty: req.tty, stdin: req.stdin && c.config.stdin });
      // Detaching (the client leaves) never stops the container.
      const detach = (): void => void a.close();
      signal.addEventListener('abort', detach, { once: true });
      try {
        if (io.stdin && a.stdin) io.stdin.pipe(a.stdin);
        io.resizes.on('resize', (size: { width: number; height: number }) => a.resize(size.height, size.width));
        if (io.size) a.resize(io.size.height, io.size.width);
        const outputs = [drain(a.stdout, io.stdout), drain(a.stderr, io.stderr)];
        await a.done;
        await Promise.all(outputs);
        return {};
      } finally {
        signal.removeEventListener('abort', detach);
      }
    },
    portForward: (req) => (port) => {
      const pod = s.sandboxes.get(req.podId);
      return forwardPort({ ...(pod.hostNetwork || !pod.namespaces.net ? {} : { netnsPath: pod.namespaces.net }), port });
    },
  };
}
