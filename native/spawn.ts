// posix_spawn(3) and what goes with it (file actions, attributes, pipe2, waitpid), bound through koffi on first use.
// Why: Node's child_process forks, which copies the page tables (cost grows with RSS) and blocks the event loop;
// glibc's posix_spawn uses clone(CLONE_VM|CLONE_VFORK) and costs the same at any RSS.
// The opaque glibc structs are Buffers of their x86_64 glibc sizes (checked with sizeof against glibc 2.36 headers);
// they are handed to libc by pointer and live as long as the wrapper objects that own them.
import koffi from 'koffi';
import { lazyBindings, syscallError, SyscallError } from './libc';

// <spawn.h> flags (glibc).
export const POSIX_SPAWN_SETSIGDEF = 0x04;
export const POSIX_SPAWN_SETSIGMASK = 0x08;
export const POSIX_SPAWN_SETSID = 0x80;

export const WNOHANG = 1;
const F_DUPFD_CLOEXEC = 1030;

const SIZEOF_FILE_ACTIONS = 80;
const SIZEOF_SPAWNATTR = 336;
const SIZEOF_SIGSET = 128;

type Ptr = Buffer | null;
interface Bindings {
  posix_spawn: (pid: Int32Array, path: string, fa: Ptr, attr: Ptr, argv: (string | null)[], envp: (string | null)[]) => number;
  fa_init: (fa: Buffer) => number;
  fa_destroy: (fa: Buffer) => number;
  fa_adddup2: (fa: Buffer, fd: number, newfd: number) => number;
  fa_addopen: (fa: Buffer, fd: number, path: string, oflag: number, mode: number) => number;
  fa_addchdir_np: (fa: Buffer, path: string) => number;
  fa_addclosefrom_np: (fa: Buffer, from: number) => number;
  attr_init: (attr: Buffer) => number;
  attr_destroy: (attr: Buffer) => number;
  attr_setflags: (attr: Buffer, flags: number) => number;
  attr_setsigmask: (attr: Buffer, set: Buffer) => number;
  attr_setsigdefault: (attr: Buffer, set: Buffer) => number;
  sigemptyset: (set: Buffer) => number;
  sigfillset: (set: Buffer) => number;
  pipe2: (fds: Int32Array, flags: number) => number;
  waitpid: (pid: number, status: Int32Array, options: number) => number;
  fcntl: (fd: number, cmd: number, ...typedArgs: unknown[]) => number;
}

const b = lazyBindings((fn): Bindings => ({
  posix_spawn: fn('int posix_spawn(_Out_ int *pid, const char *path, void *fa, void *attr, const char **argv, const char **envp)'),
  fa_init: fn('int posix_spawn_file_actions_init(void *fa)'),
  fa_destroy: fn('int posix_spawn_file_actions_destroy(void *fa)'),
  fa_adddup2: fn('int posix_spawn_file_actions_adddup2(void *fa, int fd, int newfd)'),
  fa_addopen: fn('int posix_spawn_file_actions_addopen(void *fa, int fd, const char *path, int oflag, uint32_t mode)'),
  fa_addchdir_np: fn('int posix_spawn_file_actions_addchdir_np(void *fa, const char *path)'),
  fa_addclosefrom_np: fn('int posix_spawn_file_actions_addclosefrom_np(void *fa, int from)'),
  attr_init: fn('int posix_spawnattr_init(void *attr)'),
  attr_destroy: fn('int posix_spawnattr_destroy(void *attr)'),
  attr_setflags: fn('int posix_spawnattr_setflags(void *attr, short flags)'),
  attr_setsigmask: fn('int posix_spawnattr_setsigmask(void *attr, const void *set)'),
  attr_setsigdefault: fn('int posix_spawnattr_setsigdefault(void *attr, const void *set)'),
  sigemptyset: fn('int sigemptyset(void *set)'),
  sigfillset: fn('int sigfillset(void *set)'),
  pipe2: fn('int pipe2(_Out_ int *fds, int flags)'),
  waitpid: fn('int waitpid(int pid, _Out_ int *status, int options)'),
  fcntl: fn('int fcntl(int fd, int cmd, ...)'),
}));

/** The posix_spawn* functions return the error number instead of setting errno: make the same error from it. */
function fromReturned(rc: number, syscall: string, detail?: string): SyscallError {
  koffi.errno(rc);
  return syscallError(syscall, detail);
}

function check(rc: number, syscall: string, detail?: string): void {
  if (rc !== 0) throw fromReturned(rc, syscall, detail);
}

/** posix_spawn_file_actions_t: the steps the child takes before exec, in order. Call destroy() when done. */
export class SpawnFileActions {
  readonly buf = Buffer.alloc(SIZEOF_FILE_ACTIONS);
  private live = true;

  constructor() {
    check(b().fa_init(this.buf), 'posix_spawn_file_actions_init');
  }

  /** dup2(fd, newfd) in the child; dup2 clears FD_CLOEXEC on newfd (so fd must differ from newfd). */
  dup2(fd: number, newfd: number): this {
    check(b().fa_adddup2(this.buf, fd, newfd), 'posix_spawn_file_actions_adddup2');
    return this;
  }

  /** open(path, oflag, mode) in the child, moved to fd. glibc copies the path. */
  open(fd: number, path: string, oflag: number, mode = 0): this {
    check(b().fa_addopen(this.buf, fd, path, oflag, mode), 'posix_spawn_file_actions_addopen', path);
    return this;
  }

  /** chdir(path) in the child (a glibc extension); relative paths in later actions and exec resolve from there. */
  chdir(path: string): this {
    check(b().fa_addchdir_np(this.buf, path), 'posix_spawn_file_actions_addchdir_np', path);
    return this;
  }

  /** Closes every fd >= from in the child (close_range; glibc ≥ 2.34). */
  closeFrom(from: number): this {
    check(b().fa_addclosefrom_np(this.buf, from), 'posix_spawn_file_actions_addclosefrom_np');
    return this;
  }

  destroy(): void {
    if (!this.live) return;
    this.live = false;
    b().fa_destroy(this.buf);
  }
}

/** posix_spawnattr_t. Immutable once built, so one can serve any number of posix_spawn calls. */
export class SpawnAttr {
  readonly buf = Buffer.alloc(SIZEOF_SPAWNATTR);

  /** sigDefault: signals reset to SIG_DFL in the child (with SETSIGDEF); sigMask: the child's mask (with SETSIGMASK). */
  constructor(flags: number, o: { sigDefault?: 'all' | 'none'; sigMask?: 'all' | 'none' } = {}) {
    const f = b();
    check(f.attr_init(this.buf), 'posix_spawnattr_init');
    if (o.sigDefault) check(f.attr_setsigdefault(this.buf, sigset(o.sigDefault)), 'posix_spawnattr_setsigdefault');
    if (o.sigMask) check(f.attr_setsigmask(this.buf, sigset(o.sigMask)), 'posix_spawnattr_setsigmask');
    check(f.attr_setflags(this.buf, flags), 'posix_spawnattr_setflags');
  }

  destroy(): void {
    b().attr_destroy(this.buf);
  }
}

/**
 * A sigset_t holding no signal, or every one: sigfillset leaves out the two glibc keeps for itself (32 and 33), and
 * posix_spawn sets those to SIG_IGN in the child unless they are in the SETSIGDEF set, where an exec'd program would
 * keep them ignored (Node's children have them at SIG_DFL). So 'all' sets bits 1..64 directly.
 */
export function sigset(which: 'all' | 'none'): Buffer {
  const set = Buffer.alloc(SIZEOF_SIGSET);
  const rc = which === 'all' ? b().sigfillset(set) : b().sigemptyset(set);
  if (rc !== 0) throw syscallError(which === 'all' ? 'sigfillset' : 'sigemptyset');
  if (which === 'all') set.fill(0xff, 0, 8); // bit n-1 of the first word is signal n (x86_64, little-endian)
  return set;
}

const pidOut = new Int32Array(1); // reused: calls are synchronous on one thread

/**
 * posix_spawn(3): runs `path` (no PATH search) with exactly `argv` and `envp`; returns the pid. Throws a SyscallError
 * (syscall 'posix_spawn') when the child could not be created or its exec failed (glibc reports exec errors such
 * as ENOENT and EACCES here and reaps that child itself).
 */
export function posixSpawn(path: string, argv: readonly string[], envp: readonly string[], fa: SpawnFileActions | null, attr: SpawnAttr | null): number {
  const rc = b().posix_spawn(pidOut, path, fa?.buf ?? null, attr?.buf ?? null, [...argv, null], [...envp, null]);
  if (rc !== 0) throw fromReturned(rc, 'posix_spawn', path);
  return pidOut[0] ?? 0;
}

const fdsOut = new Int32Array(2);

/** pipe2(2): [read end, write end]. */
export function pipe2(flags: number): [number, number] {
  if (b().pipe2(fdsOut, flags) !== 0) throw syscallError('pipe2');
  return [fdsOut[0] ?? -1, fdsOut[1] ?? -1];
}

/** fcntl(fd, F_DUPFD_CLOEXEC, min): a close-on-exec copy of fd at the lowest free number >= min. */
export function dupCloexecAtLeast(fd: number, min: number): number {
  const nfd = b().fcntl(fd, F_DUPFD_CLOEXEC, 'int', min);
  if (nfd < 0) throw syscallError('fcntl', 'F_DUPFD_CLOEXEC');
  return nfd;
}

const statusOut = new Int32Array(1);

/** waitpid(2) for one pid: { pid: 0 } when it is still running (WNOHANG); status is the raw wait status. */
export function waitpid(pid: number, options: number): { pid: number; status: number } {
  const r = b().waitpid(pid, statusOut, options);
  if (r < 0) throw syscallError('waitpid', String(pid));
  return { pid: r, status: statusOut[0] ?? 0 };
}

/** Decodes a wait status: exit code, or the number of the signal that killed it (stopped/continued: neither). */
export function decodeWaitStatus(status: number): { code: number | null; signal: number | null } {
  const low = status & 0x7f;
  if (low === 0) return { code: (status >> 8) & 0xff, signal: null };
  if (low !== 0x7f) return { code: null, signal: low };
  return { code: null, signal: null };
}
