// spawnFast: child processes through posix_spawn instead of Node's fork-based child_process.spawn. A fork copies the
// page tables (5 ms at the daemon's ~90 MiB RSS, more as it grows) while the event loop waits; posix_spawn's
// clone(CLONE_VM|CLONE_VFORK) costs ~0.25 ms at any RSS. Every lifecycle RPC runs runc/crun, conmon or CNI plugins,
// so this is paid several times per RPC.
//
// FastChild is a drop-in for the part of ChildProcess berth uses: pid, stdio/stdin/stdout/stderr, exitCode,
// signalCode, kill(), ref()/unref(), and the events 'exit' (code, signal), 'close' (code, signal; after 'exit' and
// after every pipe closed) and 'error' (emitted asynchronously when the program cannot be started).
//
// Differences from child_process.spawn, on purpose:
// - the child gets exactly fds 0..n-1 (every other fd is closed in the child, even one someone left without
//   O_CLOEXEC); pipes are real pipes (libuv uses socketpairs), so each has one direction — see StdioSpec;
// - every start failure is an asynchronous 'error' (Node throws for some, e.g. ENOEXEC); like Node, 'close' with
//   (-errno, null) follows it and exitCode is -errno;
// - the children are not libuv's: this module reaps them itself, by pid (a SIGCHLD listener plus a backing-off poll).
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
// From node:timers, not the globals: a test's fake timers must not stop the reaping.
import { clearTimeout, setTimeout } from 'node:timers';
import { O_CLOEXEC } from '../../native/fs';
import {
  decodeWaitStatus,
  dupCloexecAtLeast,
  pipe2,
  POSIX_SPAWN_SETSID,
  POSIX_SPAWN_SETSIGDEF,
  POSIX_SPAWN_SETSIGMASK,
  posixSpawn,
  SpawnAttr,
  SpawnFileActions,
  waitpid,
  WNOHANG,
} from '../../native/spawn';

/**
 * One child fd, by its index in `stdio`:
 * - 'ignore': /dev/null (read-only for fd 0, read-write otherwise, as libuv does);
 * - 'pipe-in': a pipe into the child: the child reads it, we write (a net.Socket, writable only);
 * - 'pipe-out': a pipe out of the child: the child writes it, we read (a net.Socket, readable only);
 * - 'pipe': 'pipe-in' at index 0 (stdin), 'pipe-out' at any other index — Node's usual meaning.
 * The child gets exactly these fds (0..2 are /dev/null when the array is shorter) and no other.
 */
export type StdioSpec = 'pipe' | 'pipe-in' | 'pipe-out' | 'ignore';

export interface SpawnFastOptions<S extends readonly StdioSpec[]> {
  cwd?: string;
  /** The child's whole environment (nothing is inherited); PATH in it is also where a bare `file` is looked up. */
  env: Record<string, string>;
  /** Own session and process group (setsid), like Node's detached. */
  detached?: boolean;
  stdio: S;
}

type StreamOf<T> = T extends 'ignore' ? null : net.Socket;
/** The stream at index I of a stdio tuple (null for 'ignore' or a missing entry). */
type StreamAt<S extends readonly StdioSpec[], I extends number> = `${I}` extends keyof S ? StreamOf<S[`${I}`]> : number extends S['length'] ? net.Socket | null : null;
export type StdioStreams<S extends readonly StdioSpec[]> = { readonly [K in keyof S]: StreamOf<S[K]> };

interface FastChildEvents {
  exit: [code: number | null, signal: NodeJS.Signals | null];
  close: [code: number | null, signal: NodeJS.Signals | null];
  error: [err: Error];
}

/** An error shaped like the one Node's spawn emits: "spawn /x ENOENT", errno negative as libuv's. */
export interface SpawnError extends Error {
  code: string;
  errno: number;
  syscall: string;
  path: string;
  spawnargs: string[];
}

const DEFAULT_PATH = '/bin:/usr/bin'; // glibc execvp's default when PATH is unset

const signalNames = new Map<number, NodeJS.Signals>(
  Object.entries(os.constants.signals).map(([name, n]) => [n, name as NodeJS.Signals]),
);
const errnoNames = new Map<number, string>(Object.entries(os.constants.errno).map(([name, n]) => [n, name]));

export class FastChild<S extends readonly StdioSpec[] = readonly StdioSpec[]> extends EventEmitter<FastChildEvents> {
  pid: number | undefined;
  exitCode: number | null = null;
  signalCode: NodeJS.Signals | null = null;
  killed = false;
  readonly stdio: StdioStreams<S>;

  private exited = false;
  private refed = true;
  /** 'close' needs the exit (or the start failure) plus a 'close' from each stream. */
  private closesNeeded = 1;
  private readonly inputs: net.Socket[] = [];

  /** @internal — made by spawnFast */
  constructor(streams: (net.Socket | null)[], inputs: boolean[]) {
    super();
    this.stdio = streams as unknown as StdioStreams<S>;
    streams.forEach((s, i) => {
      if (!s) return;
      this.closesNeeded++;
      s.once('close', () => this.maybeClose());
      if (inputs[i]) this.inputs.push(s);
    });
  }

  get stdin(): StreamAt<S, 0> {
    return (this.stdio[0] ?? null) as StreamAt<S, 0>;
  }

  get stdout(): StreamAt<S, 1> {
    return (this.stdio[1] ?? null) as StreamAt<S, 1>;
  }

  get stderr(): StreamAt<S, 2> {
    return (this.stdio[2] ?? null) as StreamAt<S, 2>;
  }

  /** Sends a signal (default SIGTERM); false when the child is already reaped or gone. Never signals a reaped pid. */
  kill(signal: NodeJS.Signals | number = 'SIGTERM'): boolean {
    if (this.pid === undefined || this.exited) return false;
    try {
      process.kill(this.pid, signal);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
      throw err;
    }
    this.killed = true;
    return true;
  }

  /** Lets the event loop exit while this child runs (its pipes still count, as with Node). */
  unref(): void {
    this.refed = false;
    schedule();
  }

  ref(): void {
    this.refed = true;
    schedule();
  }

  /** @internal */
  get keepsAlive(): boolean {
    return this.refed;
  }

  /** @internal — the start failed: 'error' then 'close', asynchronously, like Node. */
  failed(err: SpawnError): void {
    this.exited = true;
    this.exitCode = err.errno;
    process.nextTick(() => {
      this.emit('error', err);
      this.maybeClose();
    });
  }

  /** @internal — reaped: record the status now, tell listeners on the next tick. */
  reaped(code: number | null, signal: NodeJS.Signals | null): void {
    this.exited = true;
    this.exitCode = code;
    this.signalCode = signal;
    process.nextTick(() => {
      this.emit('exit', code, signal);
      // As Node: input pipes are useless now; output pipes nobody reads are drained so 'close' can come.
      for (const s of this.inputs) s.destroy();
      for (const s of this.stdio as readonly (net.Socket | null)[]) if (s?.readable && s.readableFlowing === null) s.resume();
      this.maybeClose();
    });
  }

  private maybeClose(): void {
    if (--this.closesNeeded === 0) this.emit('close', this.exitCode, this.signalCode);
  }
}

/**
 * Starts `file` (a bare name is looked up in env.PATH) with argv [file, ...args]; see StdioSpec for the fds. Throws
 * only for invalid arguments (a NUL byte); failures to start come as an 'error' event.
 */
export function spawnFast<const S extends readonly StdioSpec[]>(file: string, args: readonly string[], options: SpawnFastOptions<S>): FastChild<S> {
  const argv = [file, ...args];
  const envp = Object.entries(options.env).map(([k, v]) => `${k}=${v}`);
  for (const s of [...argv, ...envp, options.cwd ?? '']) {
    if (s.includes('\0')) throw new TypeError(`spawnFast ${file}: arguments, environment and cwd must not contain NUL bytes`);
  }
  // fds 0..2 are always open in the child (/dev/null when not given): a program that finds one closed would have
  // its next open() land on it.
  const n = Math.max(options.stdio.length, 3);
  const inputs = options.stdio.map((spec, i) => spec === 'pipe-in' || (spec === 'pipe' && i === 0));
  listen();

  const parentEnds: (number | null)[] = [];
  const childEnds: (number | null)[] = [];
  let fa: SpawnFileActions | undefined;
  let pid: number | undefined;
  let failure: SpawnError | undefined;
  try {
    options.stdio.forEach((spec, i) => {
      if (spec === 'ignore') {
        parentEnds.push(null);
        childEnds.push(null);
        return;
      }
      // O_CLOEXEC: no other child (ours or libuv's, spawned meanwhile) may inherit these.
      const [r, w] = pipe2(O_CLOEXEC);
      parentEnds.push(inputs[i] ? w : r);
      childEnds.push(inputs[i] ? r : w);
      // A child end numbered below n could be overwritten by another entry's dup2 (possible only when the parent
      // has some of fds 0..n-1 closed): move it out of the way.
      const fd = inputs[i] ? r : w;
      if (fd < n) {
        childEnds[i] = dupCloexecAtLeast(fd, n);
        fs.closeSync(fd);
      }
    });
    fa = new SpawnFileActions();
    if (options.cwd !== undefined) fa.chdir(options.cwd);
    for (let i = 0; i < n; i++) {
      const fd = childEnds[i] ?? null;
      if (fd === null) fa.open(i, '/dev/null', i === 0 ? fs.constants.O_RDONLY : fs.constants.O_RDWR);
      else fa.dup2(fd, i); // dup2 clears O_CLOEXEC on the child's copy
    }
    fa.closeFrom(n);
    const target = resolveFile(file, options.env, options.cwd);
    if (typeof target === 'number') throw Object.assign(new Error(), { errno: target });
    const at = attr(options.detached === true);
    try {
      pid = posixSpawn(target, argv, envp, fa, at);
    } catch (err) {
      // As execvp (which Node's spawn uses): a file the kernel cannot exec is taken for a shell script.
      if ((err as { errno?: unknown }).errno !== os.constants.errno.ENOEXEC) throw err;
      pid = posixSpawn('/bin/sh', ['/bin/sh', target, ...args], envp, fa, at);
    }
  } catch (err) {
    failure = spawnError(err, file, args);
  } finally {
    fa?.destroy();
    for (const fd of childEnds) if (fd !== null) fs.closeSync(fd);
  }

  // Streams exist even when the start failed (pipes closed at once), so callers attach listeners the same way.
  const streams = options.stdio.map((spec, i): net.Socket | null => {
    if (spec === 'ignore') return null;
    const fd = parentEnds[i];
    const input = inputs[i] === true;
    if (fd === undefined || fd === null) {
      const placeholder = new net.Socket({ readable: !input, writable: input });
      placeholder.destroy();
      return placeholder;
    }
    const s = new net.Socket({ fd, readable: !input, writable: input });
    if (failure) s.destroy();
    return s;
  });
  const child = new FastChild<S>(streams, inputs);
  if (failure || pid === undefined) {
    child.failed(failure ?? spawnError(new Error('no pid'), file, args));
    return child;
  }
  child.pid = pid;
  track(pid, child);
  return child;
}

/** The path to exec: `file` itself when it has a slash, else the first executable regular file in env.PATH (as
 *  execvp, relative PATH entries from the child's cwd); an errno when there is none. */
function resolveFile(file: string, env: Record<string, string>, cwd: string | undefined): string | number {
  if (file.includes('/')) return file;
  if (file === '') return os.constants.errno.ENOENT;
  let existing: string | undefined;
  for (const dir of (env['PATH'] ?? DEFAULT_PATH).split(':')) {
    const candidate = path.resolve(cwd ?? process.cwd(), dir, file);
    try {
      const st = fs.statSync(candidate);
      if (!st.isFile()) continue;
      existing ??= candidate;
      fs.accessSync(candidate, fs.constants.X_OK);
      return candidate;
    } catch {
      // not there or not executable: go on, like execvp
    }
  }
  // Only non-executable files: let posix_spawn report EACCES for the first.
  return existing ?? os.constants.errno.ENOENT;
}

function spawnError(cause: unknown, file: string, args: readonly string[]): SpawnError {
  const raw = (cause as { errno?: unknown }).errno;
  const errno = typeof raw === 'number' && raw > 0 ? raw : os.constants.errno.EINVAL;
  const code = errnoNames.get(errno) ?? `E${errno}`;
  const err = new Error(`spawn ${file} ${code}`) as SpawnError;
  err.errno = -errno;
  err.code = code;
  err.syscall = `spawn ${file}`;
  err.path = file;
  err.spawnargs = [...args];
  return err;
}

// Two attribute sets, built once: every signal back to SIG_DFL (Node ignores SIGPIPE, and glibc would pass that on)
// and an empty mask; the detached one adds setsid.
const attrs = new Map<boolean, SpawnAttr>();
function attr(detached: boolean): SpawnAttr {
  let a = attrs.get(detached);
  if (!a) {
    const flags = POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK | (detached ? POSIX_SPAWN_SETSID : 0);
    a = new SpawnAttr(flags, { sigDefault: 'all', sigMask: 'none' });
    attrs.set(detached, a);
  }
  return a;
}

// Reaping. Only by pid, never waitpid(-1): libuv reaps its own children (child_process) by pid too, and each side
// must leave the other's alone. A child stays a zombie until reaped, so its pid cannot be reused under us.
// Two ways in: SIGCHLD (at once), and a per-child poll backing off from 1 ms to SWEEP_MS, for a lost signal and for
// sandboxes whose `process` never emits signals (jest's copy): then a short-lived child is still seen to exit
// within about its own run time. Long-lived children (conmon) share one sweep per SWEEP_MS.
interface Entry {
  child: FastChild;
  delay: number;
  due: number;
}

const FIRST_POLL_MS = 1;
const SWEEP_MS = 1000;
const live = new Map<number, Entry>();
let listening = false;
/** A SIGCHLD has reached the listener: signals work here (not in jest's sandbox), so the poll is only a backstop. */
let signalsArrive = false;
let timer: NodeJS.Timeout | undefined;
let timerDue = Infinity;

function listen(): void {
  if (listening) return;
  listening = true;
  // Node's signal listeners do not keep the loop alive; this one stays installed (cheaper than re-adding it).
  process.on('SIGCHLD', onSigchld);
}

function track(pid: number, child: FastChild): void {
  // Where SIGCHLD arrives, a fast poll would only wake the loop for nothing (the daemon starts tens of conmons a
  // second when pods start): straight to the backstop sweep.
  const delay = signalsArrive ? SWEEP_MS : FIRST_POLL_MS;
  live.set(pid, { child, delay, due: signalsArrive ? (Math.floor(Date.now() / SWEEP_MS) + 1) * SWEEP_MS : Date.now() + delay });
  schedule();
}

function onSigchld(): void {
  if (!signalsArrive) {
    signalsArrive = true;
    for (const e of live.values()) e.delay = SWEEP_MS;
  }
  for (const [pid, e] of live) reap(pid, e);
  schedule();
}

function onTimer(): void {
  timer = undefined;
  timerDue = Infinity;
  const now = Date.now();
  for (const [pid, e] of live) {
    if (e.due > now || reap(pid, e)) continue;
    e.delay = Math.min(e.delay * 2, SWEEP_MS);
    // At full delay, due on the shared sweep grid so long-lived children cost one timer per SWEEP_MS, not one each.
    e.due = e.delay < SWEEP_MS ? now + e.delay : (Math.floor(now / SWEEP_MS) + 1) * SWEEP_MS;
  }
  schedule();
}

/** waitpid(WNOHANG) for one child; true when it was reaped (and told so). */
function reap(pid: number, e: Entry): boolean {
  let status: { code: number | null; signal: number | null };
  try {
    const r = waitpid(pid, WNOHANG);
    if (r.pid !== pid) return false;
    status = decodeWaitStatus(r.status);
  } catch (err) {
    // ECHILD: reaped by someone else (or SIGCHLD set to SIG_IGN); its status is lost.
    if ((err as NodeJS.ErrnoException).code !== 'ECHILD') return false;
    status = { code: null, signal: null };
  }
  live.delete(pid);
  const signal = status.signal === null ? null : (signalNames.get(status.signal) ?? (`SIG${status.signal}` as NodeJS.Signals));
  e.child.reaped(status.code, signal);
  return true;
}

/** One timer for the earliest due poll; it holds the loop open (as a Node child does) while a ref'd child lives. */
function schedule(): void {
  if (live.size === 0) {
    clearTimeout(timer);
    timer = undefined;
    timerDue = Infinity;
    return;
  }
  let due = Infinity;
  let anyRef = false;
  for (const e of live.values()) {
    due = Math.min(due, e.due);
    anyRef ||= e.child.keepsAlive;
  }
  if (!timer || due < timerDue) {
    clearTimeout(timer);
    timer = setTimeout(onTimer, Math.max(0, due - Date.now()));
    timerDue = due;
  }
  if (anyRef) timer.ref();
  else timer.unref();
}

/** How many children spawnFast started that are not reaped yet (tests, diagnostics). */
export function liveChildren(): number {
  return live.size;
}

/** The backstop poll's current delay for a live child, in ms (tests, diagnostics). */
export function pollDelay(pid: number): number | undefined {
  return live.get(pid)?.delay;
}
