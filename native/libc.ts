// koffi bindings to libc for what Node lacks. Loaded lazily so commands that need none of it start fast.
import koffi, { LibraryHandle } from 'koffi';

export interface SyscallError extends Error {
  code: string;
  errno: number;
  syscall: string;
}

let lib: LibraryHandle | undefined;

export function libc(): LibraryHandle {
  lib ??= koffi.load('libc.so.6');
  return lib;
}

/** A module's libc functions, declared together and bound on first use: `const b = lazyBindings((fn) => ({ … }))`. */
export function lazyBindings<T>(declare: (fn: <F>(decl: string) => F) => T): () => T {
  let bound: T | undefined;
  return () => (bound ??= declare(<F>(decl: string): F => libc().func(decl) as unknown as F));
}

const ERRNO_NAMES: Record<number, string> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 6: 'ENXIO', 7: 'E2BIG', 9: 'EBADF', 11: 'EAGAIN',
  12: 'ENOMEM', 13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 18: 'EXDEV', 19: 'ENODEV', 20: 'ENOTDIR',
  21: 'EISDIR', 22: 'EINVAL', 24: 'EMFILE', 26: 'ETXTBSY', 27: 'EFBIG', 28: 'ENOSPC', 30: 'EROFS', 31: 'EMLINK',
  34: 'ERANGE', 36: 'ENAMETOOLONG', 38: 'ENOSYS', 39: 'ENOTEMPTY', 40: 'ELOOP', 61: 'ENODATA', 75: 'EOVERFLOW',
  95: 'EOPNOTSUPP', 111: 'ECONNREFUSED', 116: 'ESTALE', 122: 'EDQUOT',
};

/** An Error shaped like Node's own system errors (code, errno, syscall), from the errno of the call just made. */
export function syscallError(syscall: string, detail?: string): SyscallError {
  const errno = koffi.errno();
  const code = ERRNO_NAMES[errno] ?? `E${errno}`;
  const err = new Error(`${syscall}: ${code}${detail ? ` (${detail})` : ''}`) as SyscallError;
  err.code = code;
  err.errno = errno;
  err.syscall = syscall;
  return err;
}
