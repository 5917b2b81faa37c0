// fd-relative file system calls Node lacks (openat2, *at, xattrs, statfs), bound once through koffi on first use.
// Every wrapper throws a Node-style error (code, errno, syscall) from errno; fds returned are plain ints that
// Node's fs.*Sync(fd) calls accept, and the caller closes them (fs.closeSync).
import { constants as fsc } from 'node:fs';
import { lazyBindings, syscallError } from './libc';

// open(2) flags: Node's constants are right for this architecture; O_PATH and O_CLOEXEC are the same on
// x86_64 and aarch64 but Node does not export them.
export const O_RDONLY = fsc.O_RDONLY;
export const O_WRONLY = fsc.O_WRONLY;
export const O_RDWR = fsc.O_RDWR;
export const O_CREAT = fsc.O_CREAT;
export const O_EXCL = fsc.O_EXCL;
export const O_TRUNC = fsc.O_TRUNC;
export const O_DIRECTORY = fsc.O_DIRECTORY;
export const O_NOFOLLOW = fsc.O_NOFOLLOW;
export const O_CLOEXEC = 0o2000000;
export const O_PATH = 0o10000000;

export const AT_FDCWD = -100;
export const AT_SYMLINK_NOFOLLOW = 0x100;
export const AT_REMOVEDIR = 0x200;
export const AT_SYMLINK_FOLLOW = 0x400;
export const AT_EMPTY_PATH = 0x1000;

// openat2(2) resolve flags.
export const RESOLVE_NO_XDEV = 0x01;
export const RESOLVE_NO_MAGICLINKS = 0x02;
export const RESOLVE_NO_SYMLINKS = 0x04;
export const RESOLVE_BENEATH = 0x08;
export const RESOLVE_IN_ROOT = 0x10;

export const S_IFIFO = 0o010000;
export const S_IFCHR = 0o020000;
export const S_IFBLK = 0o060000;

export const XATTR_CREATE = 1;
export const XATTR_REPLACE = 2;

// Syscall numbers from the generic table (≥ 424), identical on x86_64 and aarch64.
const SYS_OPENAT2 = 437;
const OPEN_HOW_SIZE = 24;

export interface StatFs {
  type: number;
  bsize: number;
  blocks: number;
  bfree: number;
  bavail: number;
  files: number;
  ffree: number;
}

type Str = string | null;
interface Bindings {
  syscall: (nr: number, ...typedArgs: unknown[]) => number;
  openat: (dirfd: number, path: string, flags: number, mode: number) => number;
  mkdirat: (dirfd: number, path: string, mode: number) => number;
  mknodat: (dirfd: number, path: string, mode: number, dev: bigint) => number;
  symlinkat: (target: string, dirfd: number, path: string) => number;
  linkat: (olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags: number) => number;
  unlinkat: (dirfd: number, path: string, flags: number) => number;
  fchownat: (dirfd: number, path: string, uid: number, gid: number, flags: number) => number;
  fchmodat: (dirfd: number, path: string, mode: number, flags: number) => number;
  utimensat: (dirfd: number, path: Str, times: Buffer, flags: number) => number;
  fsetxattr: (fd: number, name: string, value: Buffer, size: number, flags: number) => number;
  lsetxattr: (path: string, name: string, value: Buffer, size: number, flags: number) => number;
  lgetxattr: (path: string, name: string, value: Buffer | null, size: number) => number;
  llistxattr: (path: string, list: Buffer | null, size: number) => number;
  statfs: (path: string, buf: Buffer) => number;
}

// openat's mode is variadic in glibc; on x86_64 and aarch64 Linux a fixed trailing argument is passed the same way.
const b = lazyBindings((fn): Bindings => ({
  syscall: fn('long syscall(long, ...)'),
  openat: fn('int openat(int, const char *, int, uint32_t)'),
  mkdirat: fn('int mkdirat(int, const char *, uint32_t)'),
  mknodat: fn('int mknodat(int, const char *, uint32_t, uint64_t)'),
  symlinkat: fn('int symlinkat(const char *, int, const char *)'),
  linkat: fn('int linkat(int, const char *, int, const char *, int)'),
  unlinkat: fn('int unlinkat(int, const char *, int)'),
  fchownat: fn('int fchownat(int, const char *, uint32_t, uint32_t, int)'),
  fchmodat: fn('int fchmodat(int, const char *, uint32_t, int)'),
  utimensat: fn('int utimensat(int, const char *, const void *, int)'),
  fsetxattr: fn('int fsetxattr(int, const char *, const void *, size_t, int)'),
  lsetxattr: fn('int lsetxattr(const char *, const char *, const void *, size_t, int)'),
  lgetxattr: fn('long lgetxattr(const char *, const char *, void *, size_t)'),
  llistxattr: fn('long llistxattr(const char *, void *, size_t)'),
  statfs: fn('int statfs(const char *, void *)'),
}));

function check(rc: number, syscall: string, detail: string): number {
  if (rc < 0) throw syscallError(syscall, detail);
  return rc;
}

/** The raw variadic syscall(2); pass each argument as a koffi type then a value, e.g. `'long', fd, 'str', path`. */
export function rawSyscall(nr: number, ...typedArgs: unknown[]): number {
  return b().syscall(nr, ...typedArgs);
}

const how = Buffer.alloc(OPEN_HOW_SIZE); // reused: calls are synchronous on one thread

/** openat2(2): open `path` relative to `dirfd` under the RESOLVE_* rules (struct open_how {flags, mode, resolve}). */
export function openat2(dirfd: number, path: string, flags: number, mode: number, resolve: number): number {
  how.writeBigUInt64LE(BigInt(flags), 0);
  how.writeBigUInt64LE(BigInt(mode), 8);
  how.writeBigUInt64LE(BigInt(resolve), 16);
  const fd = b().syscall(SYS_OPENAT2, 'long', dirfd, 'str', path, 'void *', how, 'size_t', OPEN_HOW_SIZE);
  return check(Number(fd), 'openat2', path);
}

export function openat(dirfd: number, path: string, flags: number, mode = 0): number {
  return check(b().openat(dirfd, path, flags, mode), 'openat', path);
}

export function mkdirat(dirfd: number, path: string, mode: number): void {
  check(b().mkdirat(dirfd, path, mode), 'mkdirat', path);
}

/** glibc's makedev(3): the 64-bit dev_t encoding of a major/minor pair. */
export function makedev(major: number, minor: number): bigint {
  const ma = BigInt(major);
  const mi = BigInt(minor);
  return (mi & 0xffn) | ((ma & 0xfffn) << 8n) | ((mi & ~0xffn) << 12n) | ((ma & ~0xfffn) << 32n);
}

/** mknodat(2); `mode` carries the file type (S_IFCHR, S_IFBLK, S_IFIFO) and permission bits (umask applies). */
export function mknodat(dirfd: number, path: string, mode: number, dev: bigint = 0n): void {
  check(b().mknodat(dirfd, path, mode, dev), 'mknodat', path);
}

export function symlinkat(target: string, dirfd: number, path: string): void {
  check(b().symlinkat(target, dirfd, path), 'symlinkat', path);
}

/** linkat(2); without AT_SYMLINK_FOLLOW a symlink `oldpath` is linked itself, never its target. */
export function linkat(olddirfd: number, oldpath: string, newdirfd: number, newpath: string, flags = 0): void {
  check(b().linkat(olddirfd, oldpath, newdirfd, newpath, flags), 'linkat', `${oldpath} -> ${newpath}`);
}

export function unlinkat(dirfd: number, path: string, flags = 0): void {
  check(b().unlinkat(dirfd, path, flags), 'unlinkat', path);
}

/** fchownat(2); with AT_SYMLINK_NOFOLLOW it is lchown relative to a dirfd. */
export function fchownat(dirfd: number, path: string, uid: number, gid: number, flags: number): void {
  check(b().fchownat(dirfd, path, uid, gid, flags), 'fchownat', path);
}

/** fchmodat(3); glibc honours AT_SYMLINK_NOFOLLOW through an O_PATH fd (EOPNOTSUPP on a symlink). */
export function fchmodat(dirfd: number, path: string, mode: number, flags: number): void {
  check(b().fchmodat(dirfd, path, mode, flags), 'fchmodat', path);
}

const times = Buffer.alloc(32); // struct timespec[2] {i64 sec, i64 nsec}

function putTime(seconds: number, offset: number): void {
  const sec = Math.floor(seconds);
  times.writeBigInt64LE(BigInt(sec), offset);
  times.writeBigInt64LE(BigInt(Math.round((seconds - sec) * 1e9)), offset + 8);
}

/** utimensat(2) with times in (fractional) seconds since the epoch. */
export function utimensat(dirfd: number, path: string, atime: number, mtime: number, flags: number): void {
  putTime(atime, 0);
  putTime(mtime, 16);
  check(b().utimensat(dirfd, path, times, flags), 'utimensat', path);
}

export function fsetxattr(fd: number, name: string, value: Buffer, flags = 0): void {
  check(b().fsetxattr(fd, name, value, value.length, flags), 'fsetxattr', name);
}

/** lsetxattr(2): sets on the final component itself, never through a final symlink. */
export function lsetxattr(path: string, name: string, value: Buffer, flags = 0): void {
  check(b().lsetxattr(path, name, value, value.length, flags), 'lsetxattr', `${path} ${name}`);
}

/** lgetxattr(2); throws ENODATA when the attribute is absent. */
export function lgetxattr(path: string, name: string): Buffer {
  const size = check(Number(b().lgetxattr(path, name, null, 0)), 'lgetxattr', `${path} ${name}`);
  const buf = Buffer.alloc(size);
  const got = check(Number(b().lgetxattr(path, name, buf, size)), 'lgetxattr', `${path} ${name}`);
  return buf.subarray(0, got);
}

export function llistxattr(path: string): string[] {
  const size = check(Number(b().llistxattr(path, null, 0)), 'llistxattr', path);
  if (size === 0) return [];
  const buf = Buffer.alloc(size);
  const got = check(Number(b().llistxattr(path, buf, size)), 'llistxattr', path);
  return buf.toString('utf8', 0, got).split('\0').filter((n) => n !== '');
}

/** statfs(2). The 64-bit struct statfs layout (all words 8 bytes) is shared by x86_64 and aarch64. */
export function statfs(path: string): StatFs {
  const buf = Buffer.alloc(120);
  check(b().statfs(path, buf), 'statfs', path);
  const word = (i: number): number => Number(buf.readBigUInt64LE(i * 8));
  return {
    type: word(0),
    bsize: word(1),
    blocks: word(2),
    bfree: word(3),
    bavail: word(4),
    files: word(5),
    ffree: word(6),
  };
}
