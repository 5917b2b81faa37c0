// Byte streams behind the kubelet's exec, attach and port-forward: typed wrappers around berth-stream-helper
// (native/stream-helper.c), which does what Node cannot (receive a pty master over SCM_RIGHTS, speak conmon's
// SOCK_SEQPACKET attach socket, setns into a pod's network namespace), and around a plain `runtime exec` when no
// tty is wanted. Every child dies with its stream: kill()/close()/destroy() end it, and helpers carry a parent-death
// signal so a vanished berth takes them along.
import { spawn, type ChildProcess } from 'node:child_process';
import { constants as fsc, readFileSync } from 'node:fs';
import fs from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Duplex, PassThrough, Writable, type Readable } from 'node:stream';
import { BerthError, errnoCode, errorMessage, failedPrecondition, invalidArgument, type ErrorCode } from '../common/errors';
import { packageRoot } from '../common/package-root';
import { Capped, killGroup, killSession, sleep } from './process';
import { parseRuntimeError } from './runtime-errors';

const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', TMPDIR: os.tmpdir() };
const ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$/;
const HELPER_PREFIX = 'berth-stream-helper: ';
const STDERR_CAP = 64 * 1024;
const KILL_GRACE_MS = 3000;
const OUTPUT_GRACE_MS = 1000;
const MAX_FRAME = 1024 * 1024; // the helper sends at most 64 KiB; more means the framing is lost
// conmon's ctl fifo: "<type> <height> <width>\n", type 1 = resize the container's terminal.
const CTL_RESIZE = 1;

export interface ExecOptions {
  /** Absolute path of runc or crun, and its --root. */
  runtimePath: string;
  root: string;
  /** Container id. */
  id: string;
  /** A complete OCI process (the container's, with args/env replaced); `terminal` is set here. */
  process: object;
}

export interface TtyExecOptions extends ExecOptions {
  rows?: number;
  cols?: number;
}

export interface ExecResult {
  /** The process's exit code; 128+n when killed by signal n. */
  exitCode: number;
}

interface ExecBase {
  stdin: Writable;
  /** Rejects (BerthError) when the process never ran, with the runtime's own message. */
  exit: Promise<ExecResult>;
  /** SIGKILLs the process (and its process group); exit then resolves with 137. */
  kill(): void;
}

export interface TtyExec extends ExecBase {
  /** The terminal's output (stdout and stderr are one stream on a tty). */
  output: Readable;
  resize(rows: number, cols: number): void;
}

export interface PipedExec extends ExecBase {
  stdout: Readable;
  stderr: Readable;
  /** No terminal, nothing to resize: a no-op, so callers can treat both kinds alike. */
  resize(rows: number, cols: number): void;
}

export interface AttachOptions {
  /** conmon's attach socket (`<bundle>/attach` under --full-attach); may exceed sun_path's 108 bytes. */
  attachSocket: string;
  /** conmon's control fifo (`<bundle>/ctl`), for resizes. */
  ctlFifo: string;
  tty: boolean;
  /** Relay stdin to the container (created with stdin). Its end is passed on: conmon then closes the container's
   *  stdin if it was created stdin-once. Default false. */
  stdin?: boolean;
}

export interface Attach {
  stdin: Writable | null;
  stdout: Readable;
  /** Empty for a tty container (conmon sends everything as stdout). */
  stderr: Readable;
  resize(rows: number, cols: number): void;
  /** Detaches; never stops the container. Resolves once the helper is gone. */
  close(): Promise<void>;
  /** Resolves when the container's output ends (it exited) or after close(); rejects when attaching failed. */
  done: Promise<void>;
}

export interface PortForwardOptions {
  /** The pod's network namespace file; absent for a host-network pod. */
  netnsPath?: string;
  port: number;
}

export interface PortForward {
  /** Bytes to and from the port, with half-close both ways. On failure it just ends: the reason is in `done`. */
  stream: Duplex;
  /** Resolves when the connection is over; rejects (UNAVAILABLE) when it could not be made or broke. */
  done: Promise<void>;
}

/** The relay helper built by native/build.sh. */
export function streamHelperPath(): string {
  return path.join(packageRoot(), 'native', 'build', 'berth-stream-helper');
}

/** exec with a terminal: the runtime hands the pty master to berth-stream-helper, which relays it. */
export async function execTty(opts: TtyExecOptions): Promise<TtyExec> {
  checkExec(opts);
  const size = opts.rows !== undefined || opts.cols !== undefined ? [checkDim(opts.rows), checkDim(opts.cols)] : undefined;
  await helperReady();
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-exec-'));
  const procFile = path.join(dir, 'process.json');
  try {
    // consoleSize: the runtime sizes the pty before the process starts, so even an immediate `stty size` sees it.
    const proc = { ...opts.process, terminal: true, ...(size ? { consoleSize: { height: size[0], width: size[1] } } : {}) };
    await fs.writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw new BerthError('INTERNAL', `exec in ${opts.id}: ${errorMessage(err)}`);
  }
  const args = ['tty-exec', opts.runtimePath, opts.root, opts.id, procFile, ...(size ? size.map(String) : [])];
  // fd 3: resize lines to the helper; fd 4: its "exit <code>" line.
  const child = spawn(streamHelperPath(), args, { detached: true, env: ENV, stdio: ['pipe', 'pipe', 'pipe', 'pipe', 'pipe'] });
  track(child, termHelper(child));
  const [stdin, stdout, stderr, resizeIn, statusOut] = child.stdio as [Writable, Readable, Readable, Writable, Readable];
  for (const s of [stdin, resizeIn]) s.on('error', () => undefined); // EPIPE once the helper is gone
  const errText = new Capped(STDERR_CAP);
  stderr.on('data', (b: Buffer) => errText.push(b));
  let status = '';
  statusOut.on('data', (b: Buffer) => (status = (status + b.toString('utf8')).slice(0, 256)));
  const output = new PassThrough();
  stdout.pipe(output);

  const exit = (async (): Promise<ExecResult> => {
    try {
      const spawnErr = await exited(child, [statusOut, stderr]);
      if (spawnErr) output.end(); // its stdout never opened, so it will not end by itself
      const m = /^exit (\d{1,3})$/m.exec(status);
      if (m) return { exitCode: Number(m[1]) };
      throw runtimeError(opts.id, spawnErr ? `cannot run ${streamHelperPath()}: ${errorMessage(spawnErr)}` : helperMessage(errText.text()));
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  })();
  exit.catch(() => undefined); // the caller may only ever look at the streams
  return {
    stdin,
    output,
    exit,
    resize: (rows, cols) => {
      const line = `${checkDim(rows)} ${checkDim(cols)}\n`;
      if (resizeIn.writable) resizeIn.write(line);
    },
    kill: () => stopHelper(child),
  };
}

/** exec without a terminal: the runtime's own stdio are the process's, so Node's pipes are enough. */
export async function execPiped(opts: ExecOptions): Promise<PipedExec> {
  checkExec(opts);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-exec-'));
  const [procFile, pidFile, logFile] = ['process.json', 'pid', 'log'].map((f) => path.join(dir, f)) as [string, string, string];
  try {
    await fs.writeFile(procFile, JSON.stringify({ ...opts.process, terminal: false }), { mode: 0o600 });
  } catch (err) {
    await fs.rm(dir, { recursive: true, force: true });
    throw new BerthError('INTERNAL', `exec in ${opts.id}: ${errorMessage(err)}`);
  }
  // The runtime's errors go to the JSON log, apart from the process's stderr; the pid file lets kill() reach the
  // process itself (the runtime forwards signals, but SIGKILL cannot be forwarded).
  const args = ['--root', opts.root, '--log', logFile, '--log-format', 'json', 'exec', '--process', procFile, '--pid-file', pidFile, opts.id];
  const child = spawn(opts.runtimePath, args, { detached: true, env: { PATH: ENV.PATH }, stdio: ['pipe', 'pipe', 'pipe'] });
  track(child, () => {
    // The runtime cannot forward SIGKILL and gets no parent-death signal: reach the process through its pid file.
    const pid = Number.parseInt(readPidFile(pidFile), 10);
    if (pid > 1) for (const target of [-pid, pid]) tryKill(target);
    killGroup(child.pid);
  });
  child.stdin.on('error', () => undefined);
  // A process left behind in the container may hold the pipes open: the outputs end at the latest shortly after
  // the runtime exits.
  const [stdout, stderr] = [new PassThrough(), new PassThrough()];
  child.stdout.pipe(stdout);
  child.stderr.pipe(stderr);
  // The process first, by its pid file: SIGKILLing the runtime before it wrote the file would orphan the process
  // out of our reach. The file comes within milliseconds of the start; the runtime goes last in any case.
  let killing = false;
  const kill = (): void => {
    if (killing) return;
    killing = true;
    void (async () => {
      const deadline = Date.now() + KILL_GRACE_MS;
      for (;;) {
        const pid = Number.parseInt(await fs.readFile(pidFile, 'utf8').catch(() => ''), 10);
        if (pid > 1) {
          await killSession(pid);
          break;
        }
        if (child.exitCode !== null || child.signalCode !== null || Date.now() > deadline) break;
        await sleep(20);
      }
      killGroup(child.pid);
    })();
  };
  const exit = (async (): Promise<ExecResult> => {
    try {
      const spawnErr = await exited(child, []);
      const grace = setTimeout(() => {
        for (const [from, to] of [[child.stdout, stdout], [child.stderr, stderr]] as const) {
          from.unpipe(to);
          from.destroy();
          to.end();
        }
      }, OUTPUT_GRACE_MS);
      grace.unref();
      if (spawnErr) throw runtimeError(opts.id, `cannot run ${opts.runtimePath}: ${errorMessage(spawnErr)}`);
      const msg = parseRuntimeError(await fs.readFile(logFile, 'utf8').catch(() => ''), true);
      if (msg) throw runtimeError(opts.id, msg);
      const { exitCode: code, signalCode: sig } = child;
      return { exitCode: code ?? 128 + (sig ? (os.constants.signals[sig] ?? 0) : 0) };
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  })();
  exit.catch(() => undefined);
  return { stdin: child.stdin, stdout, stderr, exit, kill, resize: () => undefined };
}

/** Attaches to a container's stdio through conmon's attach socket. */
export function attach(opts: AttachOptions): Attach {
  for (const [what, p] of [['attach socket', opts.attachSocket], ['ctl fifo', opts.ctlFifo]] as const) {
    if (typeof p !== 'string' || !path.isAbsolute(p) || p.includes('\0')) throw invalidArgument(`attach: ${what} must be an absolute path`);
  }
  const withStdin = opts.stdin === true;
  const child = spawn(streamHelperPath(), ['attach', opts.attachSocket, ...(withStdin ? ['--stdin'] : [])], {
    detached: true, env: ENV, stdio: [withStdin ? 'pipe' : 'ignore', 'pipe', 'pipe'],
  });
  track(child, termHelper(child));
  child.stdin?.on('error', () => undefined);
  const errText = new Capped(STDERR_CAP);
  child.stderr?.on('data', (b: Buffer) => errText.push(b));
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  const demux = new FrameDemuxer(stdout, stderr);
  let badFrames: Error | undefined;
  demux.on('error', (err) => {
    badFrames = err;
    stopHelper(child);
    stdout.end();
    stderr.end();
  });
  child.stdout?.pipe(demux);
  let stopped = false;
  const done = exited(child, child.stderr ? [child.stderr] : []).then((spawnErr) => {
    if (spawnErr) {
      stdout.end();
      stderr.end();
      throw new BerthError('INTERNAL', `attach: cannot run ${streamHelperPath()}: ${errorMessage(spawnErr)}`);
    }
    if (badFrames) throw new BerthError('INTERNAL', `attach: ${badFrames.message}`);
    if (child.exitCode === 0 || stopped) return;
    const code: ErrorCode = child.exitCode === 2 ? 'FAILED_PRECONDITION' : 'INTERNAL';
    throw new BerthError(code, `attach: ${helperMessage(errText.text())}`);
  });
  done.catch(() => undefined);
  let ctlWrites = Promise.resolve();
  return {
    stdin: child.stdin ?? null,
    stdout,
    stderr,
    done,
    resize: (rows, cols) => {
      const line = `${CTL_RESIZE} ${checkDim(rows)} ${checkDim(cols)}\n`;
      // Best effort and in order, as the kubelet's resize events are: a gone conmon just means nothing to resize.
      if (opts.tty) ctlWrites = ctlWrites.then(() => writeFifo(opts.ctlFifo, line)).catch(() => undefined);
    },
    close: async () => {
      stopped = true;
      stopHelper(child);
      await done.catch(() => undefined);
    },
  };
}

/** A TCP connection to `port` on the pod's loopback: from inside its network namespace, or from Node for a
 *  host-network pod. IPv4 first, then IPv6, as containerd does. */
export function portForward(opts: PortForwardOptions): PortForward {
  const { port, netnsPath } = opts;
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw invalidArgument(`port-forward: port ${String(port)} is not 1-65535`);
  if (netnsPath !== undefined && (!path.isAbsolute(netnsPath) || netnsPath.includes('\0'))) throw invalidArgument('port-forward: netns path must be absolute');
  const refused = (reason: string): BerthError => new BerthError('UNAVAILABLE', `connect to port ${port} in the pod's network namespace: ${reason}`);

  if (netnsPath === undefined) {
    let sock: net.Socket | undefined;
    const stream = new Relay(() => sock?.destroy());
    const done = (async () => {
      const v4 = await connect('127.0.0.1', port);
      const s = v4 instanceof net.Socket ? v4 : await connect('::1', port);
      if (!(s instanceof net.Socket)) {
        stream.fail();
        throw refused(reasonOf(v4 instanceof Error ? v4 : s));
      }
      sock = s;
      if (stream.destroyed) s.destroy();
      let broke: Error | undefined;
      s.on('error', (err) => (broke = err));
      stream.bind(s, s);
      await new Promise((resolve) => s.once('close', resolve));
      if (broke) throw new BerthError('UNAVAILABLE', `port-forward to port ${port}: ${reasonOf(broke)}`);
    })();
    done.catch(() => undefined);
    return { stream, done };
  }

  const child = spawn(streamHelperPath(), ['port-forward', netnsPath, String(port)], { detached: true, env: ENV, stdio: ['pipe', 'pipe', 'pipe'] });
  track(child, termHelper(child));
  const errText = new Capped(STDERR_CAP);
  child.stderr.on('data', (b: Buffer) => errText.push(b));
  child.stdin.on('error', () => undefined);
  let cancelled = false;
  const stream = new Relay(() => {
    cancelled = true;
    stopHelper(child);
  });
  stream.bind(child.stdout, child.stdin);
  const done = exited(child, [child.stderr]).then((spawnErr) => {
    if (spawnErr) {
      stream.fail();
      throw new BerthError('INTERNAL', `port-forward: cannot run ${streamHelperPath()}: ${errorMessage(spawnErr)}`);
    }
    if (child.exitCode === 0 || cancelled) return;
    const msg = helperMessage(errText.text());
    throw new BerthError(child.exitCode === 2 ? 'UNAVAILABLE' : 'INTERNAL', msg.startsWith('connect to port') ? msg : `port-forward to port ${port}: ${msg}`);
  });
  done.catch(() => undefined);
  return { stream, done };
}

// ---- internals ----

/**
 * A Duplex over a readable and a writable bound later (once a connection exists). Writes wait for the binding and
 * for the destination to take each chunk; reads pause the source while our reader is behind. fail() ends it
 * quietly (the reason travels elsewhere): reads end, writes are dropped.
 */
class Relay extends Duplex {
  private src: Readable | undefined;
  private dst: Writable | undefined;
  private failed = false;
  private wantRead = false;
  private waiting: (() => void)[] = [];

  constructor(private readonly onAbort: () => void) {
    super({ allowHalfOpen: true });
  }

  bind(src: Readable, dst: Writable): void {
    this.src = src;
    this.dst = dst;
    src.on('data', (b: Buffer) => {
      if (!this.push(b)) src.pause();
    });
    src.once('end', () => this.push(null));
    src.once('error', () => this.push(null));
    dst.on('error', () => undefined);
    if (!this.wantRead) src.pause(); // adding 'data' started the flow; _read resumes it on demand
    for (const go of this.waiting.splice(0)) go();
  }

  fail(): void {
    this.failed = true;
    this.push(null);
    for (const go of this.waiting.splice(0)) go();
  }

  override _read(): void {
    if (this.src) this.src.resume();
    else this.wantRead = true;
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (this.failed) return cb();
    if (!this.dst) return void this.waiting.push(() => this._write(chunk, _enc, cb));
    if (this.dst.destroyed || this.dst.writableEnded) return cb(); // the far side is gone: drop, like a closed socket
    this.dst.write(chunk, () => cb());
  }

  override _final(cb: (err?: Error | null) => void): void {
    if (this.failed) return cb();
    if (!this.dst) return void this.waiting.push(() => this._final(cb));
    this.dst.end();
    cb();
  }

  override _destroy(err: Error | null, cb: (err: Error | null) => void): void {
    // A relay that ran to its end both ways needs nothing stopped; anything else is an abort.
    if (!(this.readableEnded && this.writableFinished)) this.onAbort();
    cb(err);
  }
}

/** Splits the helper's attach output, [id 1|2][u32 BE length][payload]…, into stdout and stderr with backpressure. */
class FrameDemuxer extends Writable {
  private readonly header = Buffer.alloc(5);
  private have = 0;
  private remaining = 0;
  private target: PassThrough | undefined;

  constructor(private readonly out: PassThrough, private readonly err: PassThrough) {
    super();
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    let off = 0;
    let full: PassThrough | undefined;
    while (off < chunk.length) {
      if (this.remaining === 0 && this.have < 5) {
        const n = chunk.copy(this.header, this.have, off, off + 5 - this.have);
        this.have += n;
        off += n;
        if (this.have < 5) break;
        const id = this.header[0];
        const len = this.header.readUInt32BE(1);
        if ((id !== 1 && id !== 2) || len > MAX_FRAME) return cb(new Error(`bad frame from the attach helper (stream ${id}, ${len} bytes)`));
        this.target = id === 1 ? this.out : this.err;
        this.remaining = len;
        if (len === 0) this.have = 0;
        continue;
      }
      const n = Math.min(this.remaining, chunk.length - off);
      const t = this.target;
      if (t && !t.destroyed && !t.write(chunk.subarray(off, off + n))) full = t;
      off += n;
      this.remaining -= n;
      if (this.remaining === 0) this.have = 0;
    }
    if (!full) return cb();
    const go = (): void => {
      full.off('drain', go).off('close', go);
      cb();
    };
    full.on('drain', go).on('close', go);
  }

  override _final(cb: (err?: Error | null) => void): void {
    this.out.end();
    this.err.end();
    cb();
  }
}

const live = new Map<ChildProcess, () => void>();
let exitHook = false;

/** Remembers a child until it exits; if berth exits first (even by process.exit), `onBerthExit` stops it. Only
 *  synchronous work can happen then. A SIGKILLed berth runs no hook: helpers have their parent-death signal. */
function track<T extends ChildProcess>(child: T, onBerthExit: () => void): T {
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const stop of live.values()) stop();
    });
  }
  live.set(child, onBerthExit);
  child.once('exit', () => live.delete(child));
  child.once('error', () => live.delete(child));
  return child;
}

/** For helpers: SIGTERM, so a tty-exec helper still kills its process on the way out. */
const termHelper = (child: ChildProcess) => (): void => void child.kill('SIGTERM');

/** SIGTERM (the helper cleans up: kills an exec'd process, removes its socket), SIGKILL if it lingers. */
function stopHelper(child: ChildProcess): void {
  if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return;
  child.kill('SIGTERM');
  const t = setTimeout(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  }, KILL_GRACE_MS);
  t.unref();
  child.once('exit', () => clearTimeout(t));
}

/** Waits for the child's exit and for the given streams to end (a bounded while after the exit); resolves with
 *  the spawn error, if spawning failed. */
function exited(child: ChildProcess, streams: Readable[]): Promise<Error | undefined> {
  return new Promise((resolve) => {
    child.once('error', (err) => resolve(err));
    child.once('exit', () => {
      const open = streams.filter((s) => !s.readableEnded && !s.destroyed);
      if (open.length === 0) return resolve(undefined);
      let left = open.length;
      const timer = setTimeout(() => resolve(undefined), OUTPUT_GRACE_MS);
      for (const s of open) {
        s.once('close', () => {
          if (--left === 0) {
            clearTimeout(timer);
            resolve(undefined);
          }
        });
      }
    });
  });
}

function readPidFile(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

function tryKill(target: number): void {
  try {
    process.kill(target, 'SIGKILL');
  } catch {
    // ESRCH: already gone
  }
}

async function helperReady(): Promise<void> {
  try {
    await fs.access(streamHelperPath(), fsc.X_OK);
  } catch {
    throw failedPrecondition(`stream helper ${streamHelperPath()} is missing: run native/build.sh`);
  }
}

function checkExec(opts: ExecOptions): void {
  if (typeof opts.id !== 'string' || !ID.test(opts.id)) throw invalidArgument(`exec: invalid container id "${String(opts.id).slice(0, 80)}"`);
  for (const [what, p] of [['runtime path', opts.runtimePath], ['runtime root', opts.root]] as const) {
    if (typeof p !== 'string' || !path.isAbsolute(p) || p.includes('\0')) throw invalidArgument(`exec in ${opts.id}: ${what} must be an absolute path`);
  }
  const proc = opts.process as { args?: unknown } | null;
  if (proc === null || typeof proc !== 'object' || Array.isArray(proc)) throw invalidArgument(`exec in ${opts.id}: process must be an object`);
  const args = proc.args;
  if (!Array.isArray(args) || args.length === 0 || args.some((a) => typeof a !== 'string' || a.includes('\0'))) {
    throw invalidArgument(`exec in ${opts.id}: process.args must be non-empty strings without NUL`);
  }
}

function checkDim(n: number | undefined): number {
  if (n === undefined || !Number.isInteger(n) || n < 0 || n > 65535) throw invalidArgument(`terminal size ${String(n)} is not an integer from 0 to 65535`);
  return n;
}

/** The reason in a helper's stderr: the runtime's own error if it gave one, else the helper's last line. */
function helperMessage(text: string): string {
  const lines = text.split('\n');
  const own = lines.filter((l) => l.startsWith(HELPER_PREFIX)).map((l) => l.slice(HELPER_PREFIX.length).trim());
  const runtime = parseRuntimeError(lines.filter((l) => !l.startsWith(HELPER_PREFIX)).join('\n'));
  return runtime || own.at(-1) || 'the stream helper exited without saying why';
}

function runtimeError(id: string, msg: string): BerthError {
  const code: ErrorCode = /container does not exist/.test(msg)
    ? 'NOT_FOUND'
    : /not running|stopped container|cannot exec|is paused/i.test(msg) ? 'FAILED_PRECONDITION' : 'INTERNAL';
  return new BerthError(code, `exec in ${id}: ${msg}`);
}

async function writeFifo(file: string, line: string): Promise<void> {
  // Non-blocking: with no conmon reading, open fails (ENXIO) instead of hanging; never follow a planted link.
  const fh = await fs.open(file, fsc.O_WRONLY | fsc.O_NONBLOCK | fsc.O_NOFOLLOW);
  try {
    await fh.write(line);
  } finally {
    await fh.close();
  }
}

function connect(host: string, port: number): Promise<net.Socket | Error> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, allowHalfOpen: true }); // the far end's FIN must not end our side
    const fail = (err: Error): void => {
      s.destroy();
      resolve(err);
    };
    s.once('error', fail);
    s.once('connect', () => {
      s.off('error', fail);
      resolve(s);
    });
  });
}

function reasonOf(err: Error): string {
  const code = errnoCode(err);
  return code === 'ECONNREFUSED' ? 'Connection refused' : code === 'ETIMEDOUT' ? 'Connection timed out' : err.message;
}
