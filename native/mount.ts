// mount(2), umount2(2) and overlay mounts. Overlay uses the new mount API (fsopen/fsconfig/fsmount/move_mount) so
// each lower layer is its own "lowerdir+" value: mount(2) data is one page, which a long layer stack overflows.
import { readSync, closeSync } from 'node:fs';
import { libc, syscallError, SyscallError } from './libc';
import { AT_FDCWD, rawSyscall } from './fs';

export const MS_RDONLY = 0x1;
export const MS_NOSUID = 0x2;
export const MS_NODEV = 0x4;
export const MS_NOEXEC = 0x8;
export const MS_REMOUNT = 0x20;
export const MS_BIND = 0x1000;
export const MS_MOVE = 0x2000;
export const MS_REC = 0x4000;
export const MS_PRIVATE = 0x40000;
export const MS_SLAVE = 0x80000;
export const MS_SHARED = 0x100000;

export const MNT_FORCE = 0x1;
export const MNT_DETACH = 0x2;
export const MNT_EXPIRE = 0x4;
export const UMOUNT_NOFOLLOW = 0x8;

// New mount API: generic syscall numbers, identical on x86_64 and aarch64.
const SYS_MOVE_MOUNT = 429;
const SYS_FSOPEN = 430;
const SYS_FSCONFIG = 431;
const SYS_FSMOUNT = 432;
const FSOPEN_CLOEXEC = 0x1;
const FSMOUNT_CLOEXEC = 0x1;
const FSCONFIG_SET_STRING = 1;
const FSCONFIG_CMD_CREATE = 6;
const MOUNT_ATTR_RDONLY = 0x1;
const MOVE_MOUNT_F_EMPTY_PATH = 0x4;

/** mount(2) copies at most one page of option data, NUL included. */
const MOUNT_DATA_MAX = 4095;

export interface OverlayOptions {
  /** Lower layers, lowers[0] the TOP-most; at least two when there is no upper (a kernel rule). */
  lowers: string[];
  upper?: string;
  work?: string;
  target: string;
  readonly?: boolean;
  /** 'auto' (default) tries fsconfig first; the others force one mechanism (tests, diagnostics). */
  api?: 'auto' | 'fsconfig' | 'mount';
}

type MountFn = (source: string | null, target: string, fstype: string | null, flags: number, data: string | null) => number;
let mountFn: MountFn | undefined;
let umountFn: ((target: string, flags: number) => number) | undefined;

export function mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null = null): void {
  mountFn ??= libc().func('int mount(const char *, const char *, const char *, unsigned long, const char *)') as unknown as MountFn;
  if (mountFn(source, target, fstype, flags, data) < 0) throw syscallError('mount', target);
}

export function umount2(target: string, flags = 0): void {
  umountFn ??= libc().func('int umount2(const char *, int)') as unknown as (target: string, flags: number) => number;
  if (umountFn(target, flags) < 0) throw syscallError('umount2', target);
}

export function mountOverlay(opts: OverlayOptions): void {
  if ((opts.upper === undefined) !== (opts.work === undefined)) throw codedError('EINVAL', 'overlay upper and work go together');
  if (opts.lowers.length === 0) throw codedError('EINVAL', 'an overlay needs at least one lower dir');
  // The kernel's own EINVAL for this only reaches dmesg.
  if (opts.upper === undefined && opts.lowers.length < 2) {
    throw codedError('EINVAL', 'an overlay without an upper dir needs at least two lower dirs (bind-mount a single one)');
  }
  const api = opts.api ?? 'auto';
  if (api !== 'mount') {
    try {
      mountWithFsconfig(opts);
      return;
    } catch (err) {
      if (api === 'fsconfig' || !(err instanceof NewApiUnavailable)) throw err;
    }
  }
  mountClassic(opts);
}

/** Raised only before anything was mounted, when the kernel lacks fsopen or "lowerdir+" (Linux < 6.8). */
class NewApiUnavailable extends Error {}

function mountWithFsconfig(opts: OverlayOptions): void {
  const fsfd = rawSyscall(SYS_FSOPEN, 'str', 'overlay', 'long', FSOPEN_CLOEXEC);
  if (fsfd < 0) {
    const err = syscallError('fsopen', 'overlay');
    if (err.code === 'ENOSYS') throw new NewApiUnavailable(err.message);
    throw err;
  }
  try {
    const set = (key: string, value: string): void => {
      if (rawSyscall(SYS_FSCONFIG, 'long', fsfd, 'long', FSCONFIG_SET_STRING, 'str', key, 'str', value, 'long', 0) < 0) {
        throw withContextLog(syscallError('fsconfig', `${key}=${value}`), fsfd);
      }
    };
    set('source', 'overlay');
    // Top-most first, as in "lowerdir=top:...:bottom": each "lowerdir+" goes beneath those already given.
    for (let i = 0; i < opts.lowers.length; i++) {
      const lower = opts.lowers[i] as string; // index in range
      try {
        set('lowerdir+', lower);
      } catch (err) {
        // Before 6.8 the first "lowerdir+" fails EINVAL (unknown parameter); a bad path fails mount(2) as well.
        if (i === 0 && (err as SyscallError).code === 'EINVAL') throw new NewApiUnavailable((err as Error).message);
        throw err;
      }
    }
    if (opts.upper !== undefined && opts.work !== undefined) {
      set('upperdir', opts.upper);
      set('workdir', opts.work);
    }
    const created = rawSyscall(SYS_FSCONFIG, 'long', fsfd, 'long', FSCONFIG_CMD_CREATE, 'void *', null, 'void *', null, 'long', 0);
    if (created < 0) throw withContextLog(syscallError('fsconfig', `create overlay on ${opts.target}`), fsfd);
    const mfd = rawSyscall(SYS_FSMOUNT, 'long', fsfd, 'long', FSMOUNT_CLOEXEC, 'long', opts.readonly ? MOUNT_ATTR_RDONLY : 0);
    if (mfd < 0) throw syscallError('fsmount', opts.target);
    try {
      const moved = rawSyscall(SYS_MOVE_MOUNT, 'long', mfd, 'str', '', 'long', AT_FDCWD, 'str', opts.target, 'long', MOVE_MOUNT_F_EMPTY_PATH);
      if (moved < 0) throw syscallError('move_mount', opts.target);
    } finally {
      closeSync(mfd); // once attached the mount stays; unattached, closing the fd discards it
    }
  } finally {
    closeSync(fsfd);
  }
}

/** Appends the fs_context's own messages ("e overlay: ...") to a failed fsconfig's error. */
function withContextLog(err: SyscallError, fsfd: number): SyscallError {
  const buf = Buffer.alloc(1024);
  const lines: string[] = [];
  for (let i = 0; i < 8; i++) {
    let n: number;
    try {
      n = readSync(fsfd, buf, 0, buf.length, null);
    } catch {
      break; // ENODATA: no more messages
    }
    if (n <= 0) break;
    lines.push(buf.toString('utf8', 0, n).trim());
  }
  if (lines.length > 0) err.message += `: ${lines.join('; ')}`;
  return err;
}

function mountClassic(opts: OverlayOptions): void {
  const paths = [...opts.lowers, ...(opts.upper !== undefined ? [opts.upper] : []), ...(opts.work !== undefined ? [opts.work] : [])];
  for (const p of paths) {
    // ':' separates lower dirs and ',' options; refusing beats escaping rules that differ between kernels.
    if (/[:,\\\n]/.test(p)) throw codedError('EINVAL', `overlay path ${JSON.stringify(p)} contains ':', ',' or '\\'`);
  }
  let data = `lowerdir=${opts.lowers.join(':')}`;
  if (opts.upper !== undefined && opts.work !== undefined) data += `,upperdir=${opts.upper},workdir=${opts.work}`;
  const size = Buffer.byteLength(data);
  if (size > MOUNT_DATA_MAX) {
    throw codedError(
      'E2BIG',
      `overlay options for ${opts.target} are ${size} bytes (${opts.lowers.length} lower layers), over mount(2)'s ` +
        `${MOUNT_DATA_MAX}-byte limit, and this kernel lacks fsconfig "lowerdir+" (Linux 6.8+)`,
    );
  }
  mount('overlay', opts.target, 'overlay', opts.readonly ? MS_RDONLY : 0, data);
}

function codedError(code: string, message: string): Error & { code: string } {
  return Object.assign(new Error(message), { code });
}
