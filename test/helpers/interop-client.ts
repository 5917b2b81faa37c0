// Drives an independent gRPC client process (grpc-go, as the kubelet and crictl use; gRPC C-core via python3-grpcio)
// over JSON lines, so tests can check berth's server transport against other implementations than grpc-js.
// Messages are opaque protobuf bytes here: callers encode and decode them with the loaded proto definitions.
// The clients are built/installed by scripts/build-interop.sh; see test/interop/ for the protocol.
import { ChildProcessWithoutNullStreams, spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import { packageRoot } from '../../src/common/package-root';

export type InteropKind = 'grpc-go' | 'grpc-c';

export interface InteropCallOptions {
  /** The call's deadline; 0 means none. Default 10 s, so a hung call fails as DEADLINE_EXCEEDED, not a jest timeout. */
  timeoutMs?: number;
  /** A server-streaming call: every message until the end, an error, a cancel or `maxMessages`. */
  stream?: boolean;
  /** The client cancels the call after this long (the reply then carries CANCELLED = 1). */
  cancelAfterMs?: number;
  /** A stream: the client cancels once this many messages came (the reply then carries CANCELLED = 1). */
  maxMessages?: number;
}

export interface InteropReply {
  /** The gRPC status code the client reports (0 OK). */
  code: number;
  message: string;
  /** The protobuf messages received (one for a successful unary call). */
  responses: Buffer[];
}

export interface InteropClient {
  readonly kind: InteropKind;
  call(method: string, request: Buffer, opts?: InteropCallOptions): Promise<InteropReply>;
  /** What the client process wrote on stderr. */
  stderr(): string;
  /** Lets in-flight calls answer (a short grace), then kills the process; pending calls are rejected. */
  close(): Promise<void>;
}

const DEFAULT_TIMEOUT_MS = 10_000;
const CLOSE_GRACE_MS = 2_000;

/** The command that runs a kind's client; python3-grpcio is installed for Debian's /usr/bin/python3 only. */
export function interopCommand(kind: InteropKind): { file: string; args: string[] } {
  const root = packageRoot();
  return kind === 'grpc-go'
    ? { file: path.join(root, 'build', 'interop', 'grpc-go-client'), args: [] }
    : { file: '/usr/bin/python3', args: [path.join(root, 'test', 'interop', 'grpc-c-client.py')] };
}

/** Why a kind's client cannot run here (undefined when it can): the tests fail with this rather than a spawn error. */
export function interopClientMissing(kind: InteropKind): string | undefined {
  const { file, args } = interopCommand(kind);
  const hint = 'install golang-go golang-google-grpc-dev python3-grpcio and run scripts/build-interop.sh';
  if (!fs.existsSync(file)) return `${kind} interop client ${file} is missing (${hint})`;
  for (const a of args) if (!fs.existsSync(a)) return `${kind} interop client ${a} is missing`;
  if (kind === 'grpc-c' && spawnSync(file, ['-c', 'import grpc'], { stdio: 'ignore' }).status !== 0) {
    return `${kind} interop client: ${file} cannot import grpc (${hint})`;
  }
  return undefined;
}

interface Pending {
  resolve(reply: InteropReply): void;
  reject(err: Error): void;
}

export function startInteropClient(kind: InteropKind, socketPath: string): InteropClient {
  const { file, args } = interopCommand(kind);
  const child: ChildProcessWithoutNullStreams = spawn(file, [...args, socketPath], { stdio: ['pipe', 'pipe', 'pipe'] });
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let stderr = '';
  // Set once the process is gone (or cannot start): every pending and later call fails with it.
  let dead: Error | undefined;

  const failAll = (err: Error): void => {
    dead ??= err;
    for (const p of pending.values()) p.reject(dead);
    pending.clear();
  };

  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      failAll(new Error(`${kind} interop client exited (${code ?? signal ?? '?'}) with calls pending; stderr:\n${stderr}`));
      resolve();
    });
    // A spawn failure emits 'error' and no 'exit'.
    child.once('error', (err) => {
      failAll(new Error(`${kind} interop client failed: ${err.message}`));
      resolve();
    });
  });
  // Writes to a dead process's stdin fail with EPIPE: the 'exit' handler reports that better.
  child.stdin.on('error', () => undefined);

  readline.createInterface({ input: child.stdout }).on('line', (line) => {
    let reply: { id: number } & InteropReply;
    try {
      reply = parseReply(line);
    } catch (err) {
      failAll(new Error(`${kind} interop client wrote an unreadable line ${JSON.stringify(line)}: ${(err as Error).message}`));
      child.kill('SIGKILL');
      return;
    }
    const p = pending.get(reply.id);
    if (!p) return;
    pending.delete(reply.id);
    p.resolve({ code: reply.code, message: reply.message, responses: reply.responses });
  });

  return {
    kind,
    stderr: () => stderr,
    call: (method, request, opts = {}) => {
      if (dead) return Promise.reject(dead);
      const id = nextId++;
      const line = JSON.stringify({
        id,
        method,
        request: request.toString('base64'),
        timeoutMs: opts.timeoutMs ?? DEFAULT_TIMEOUT_MS,
        stream: opts.stream ?? false,
        cancelAfterMs: opts.cancelAfterMs ?? 0,
        maxMessages: opts.maxMessages ?? 0,
      });
      return new Promise<InteropReply>((resolve, reject) => {
        pending.set(id, { resolve, reject });
        child.stdin.write(`${line}\n`);
      });
    },
    close: async () => {
      if (child.exitCode === null && child.signalCode === null && !dead) {
        child.stdin.end();
        const timer = setTimeout(() => child.kill('SIGKILL'), CLOSE_GRACE_MS);
        await exited;
        clearTimeout(timer);
      }
      failAll(new Error(`${kind} interop client closed`));
    },
  };
}

function parseReply(line: string): { id: number } & InteropReply {
  const v = JSON.parse(line) as unknown;
  if (typeof v !== 'object' || v === null) throw new Error('not an object');
  const r = v as Record<string, unknown>;
  const { id, code, message, responses } = r;
  if (typeof id !== 'number' || typeof code !== 'number' || typeof message !== 'string' || !Array.isArray(responses)) {
    throw new Error('missing id, code, message or responses');
  }
  return {
    id,
    code,
    message,
    responses: responses.map((x) => {
      if (typeof x !== 'string') throw new Error('a response is not a base64 string');
      return Buffer.from(x, 'base64');
    }),
  };
}
