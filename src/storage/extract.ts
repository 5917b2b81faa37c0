// Unpacks one OCI layer tar into an empty directory: the boundary where hostile image bytes meet the host fs.
// Every path is cleaned lexically, its parent resolved with openat2 inside the layer root refusing all symlinks,
// and the final component touched only through fd-relative calls that never follow it. OCI whiteouts become
// overlayfs ones (0:0 char devices, trusted.overlay.opaque).
import { closeSync, fchmodSync, fchownSync, futimesSync, readdirSync, rmSync, writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { BerthError, errnoCode, errorMessage } from '../common/errors';
import * as n from '../../native/fs';

export interface ExtractLimits {
  /** Total bytes of entry contents (header sizes), the decompression-bomb guard. */
  maxBytes: number;
  maxEntries: number;
}

export interface ExtractResult {
  entries: number;
  bytes: number;
}

type Header = tar.Header;
type EntryStream = tar.ExtractEvents['entry'][1];
interface Meta {
  uid: number;
  gid: number;
  mode: number;
  mtime: number;
  xattrs: [string, Buffer][];
}

const PATH_MAX = 4096;
const NAME_MAX = 255;
const CACHE_SIZE = 64;
const XATTR_PAX = 'SCHILY.xattr.';
const OPAQUE = '.wh..wh..opq';
const IN_ROOT = n.RESOLVE_IN_ROOT | n.RESOLVE_NO_SYMLINKS | n.RESOLVE_NO_MAGICLINKS;
const DIR = n.O_RDONLY | n.O_DIRECTORY | n.O_CLOEXEC;
const NODE_TYPES: Partial<Record<string, number>> = {
  'character-device': n.S_IFCHR,
  'block-device': n.S_IFBLK,
  fifo: n.S_IFIFO,
};

const quote = (s: string): string => JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);
const invalid = (msg: string): BerthError => new BerthError('INVALID_ARGUMENT', msg);

/**
 * Extracts `tar` (uncompressed layer bytes) into the empty directory `dest`. Refuses the whole layer on any hostile
 * entry; the caller removes `dest` on failure. The source is consumed, and destroyed if extraction fails.
 */
export async function extractLayer(
  tar: Readable,
  dest: string,
  limits: ExtractLimits,
  signal?: AbortSignal,
): Promise<ExtractResult> {
  let x: Extractor | undefined;
  try {
    signal?.throwIfAborted();
    // Hardlink checks rely on it: whatever exists under dest was written by this layer.
    if (readdirSync(dest).length > 0) throw new BerthError('FAILED_PRECONDITION', `layer directory ${dest} is not empty`);
    x = new Extractor(n.openat(n.AT_FDCWD, dest, DIR), limits);
    await x.run(tar, signal);
    x.applyDirTimes();
    return { entries: x.entries, bytes: x.bytes };
  } catch (err) {
    tar.destroy();
    throw err;
  } finally {
    x?.close();
  }
}

class Extractor {
  entries = 0;
  bytes = 0;
  /** Open directory fds by cleaned path, least recently used first: consecutive entries share parents. */
  private readonly dirs = new Map<string, number>();
  /** Directory mtimes, applied once their children are written. */
  private readonly dirTimes = new Map<string, number>();

  constructor(
    private readonly root: number,
    private readonly limits: ExtractLimits,
  ) {}

  run(source: Readable, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      if (source.destroyed || source.readableEnded) return reject(corrupt('the stream was already consumed'));
      const ex = tar.extract();
      const binaryPax = keepBinaryPax(ex);
      let failure: unknown;
      let current = Promise.resolve();
      const fail = (err: unknown): void => {
        if (failure !== undefined) return;
        failure = err ?? new Error('extraction failed');
        source.unpipe(ex);
        source.destroy();
        ex.destroy();
      };
      const onAbort = (): void => fail(signal?.reason);
      signal?.addEventListener('abort', onAbort, { once: true });
      ex.on('entry', (h, stream, next) => {
        current = this.entry(h, stream, binaryPax).then(() => {
          if (failure === undefined) next();
        }, fail);
      });
      ex.on('error', (err) => fail(corrupt(errorMessage(err), err)));
      source.on('error', fail);
      source.on('close', () => {
        if (!source.readableEnded) fail(corrupt('the stream closed before its end'));
      });
      ex.on('close', () => {
        signal?.removeEventListener('abort', onAbort);
        // Shared fds are closed after this resolves: let the entry in flight finish first.
        void current.then(() => (failure === undefined ? resolve() : reject(failure as Error)));
      });
      source.pipe(ex); // streamx Writable: write/end/drain like Node's
    });
  }

  private async entry(h: Header, stream: EntryStream, binaryPax: boolean): Promise<void> {
    const type: string | null = h.type; // null for a type tar-stream does not know
    const size = h.size;
    const hasData = size > 0 && type !== 'directory'; // tar-stream feeds (and ends) only these streams
    if (!hasData) stream.resume();
    if (++this.entries > this.limits.maxEntries) {
      throw new BerthError('RESOURCE_EXHAUSTED', `layer has more than ${this.limits.maxEntries} entries (maxEntries)`);
    }
    this.bytes += size;
    if (this.bytes > this.limits.maxBytes) {
      throw new BerthError('RESOURCE_EXHAUSTED', `layer content exceeds ${this.limits.maxBytes} bytes (maxBytes) at entry ${quote(h.name)}`);
    }
    const what = `layer entry ${quote(h.name)}`;
    const path = cleanPath(h.name, what);
    const slash = path.lastIndexOf('/');
    const dir = slash < 0 ? '' : path.slice(0, slash);
    const base = path.slice(slash + 1);
    if (base.startsWith('.wh.')) {
      if (hasData) await pump(stream, -1);
      return this.whiteout(dir, base, what);
    }
    if (path === '' && type !== 'directory') throw invalid(`${what} replaces the layer root`);
    const m = meta(h, what, binaryPax);
    const nodeType = NODE_TYPES[type ?? ''];
    if (type === 'file' || type === 'contiguous-file') {
      const pfd = this.parent(dir, what);
      const fd = this.create(pfd, base, path, () =>
        n.openat(pfd, base, n.O_WRONLY | n.O_CREAT | n.O_EXCL | n.O_NOFOLLOW | n.O_CLOEXEC, 0o600),
      );
      try {
        if (hasData) await pump(stream, fd);
        fchownSync(fd, m.uid, m.gid);
        setXattrs(m, what, (name, value) => n.fsetxattr(fd, name, value));
        fchmodSync(fd, m.mode); // after chown, which clears setuid/setgid
        futimesSync(fd, m.mtime, m.mtime);
      } finally {
        closeSync(fd);
      }
      return;
    }
    if (hasData) await pump(stream, -1);
    if (type === 'directory') return this.directory(dir, base, path, m, what);
    if (type === 'link') return this.hardlink(dir, base, path, h.linkname ?? '', what);
    const pfd = this.parent(dir, what);
    if (type === 'symlink') {
      const target = h.linkname ?? '';
      if (target === '' || target.includes('\0') || Buffer.byteLength(target) >= PATH_MAX) {
        throw invalid(`${what} has an empty or invalid symlink target`);
      }
      this.create(pfd, base, path, () => n.symlinkat(target, pfd, base));
    } else if (nodeType !== undefined) {
      const dev = n.makedev(h.devmajor ?? 0, h.devminor ?? 0);
      this.create(pfd, base, path, () => n.mknodat(pfd, base, nodeType | 0o600, dev));
    } else {
      throw invalid(`${what} has unsupported type ${String(type)}`);
    }
    n.fchownat(pfd, base, m.uid, m.gid, n.AT_SYMLINK_NOFOLLOW);
    setXattrs(m, what, (name, value) => n.lsetxattr(`/proc/self/fd/${pfd}/${base}`, name, value));
    if (nodeType !== undefined) n.fchmodat(pfd, base, m.mode, n.AT_SYMLINK_NOFOLLOW);
    n.utimensat(pfd, base, m.mtime, m.mtime, n.AT_SYMLINK_NOFOLLOW);
  }

  private directory(dir: string, base: string, path: string, m: Meta, what: string): void {
    let fd = this.root;
    if (path !== '') {
      const pfd = this.parent(dir, what);
      try {
        n.mkdirat(pfd, base, 0o700);
      } catch (err) {
        if (errnoCode(err) !== 'EEXIST') throw err;
      }
      try {
        fd = n.openat(pfd, base, DIR | n.O_NOFOLLOW);
      } catch (err) {
        if (errnoCode(err) !== 'ENOTDIR' && errnoCode(err) !== 'ELOOP') throw err;
        this.replace(pfd, base, path); // a directory over a non-directory
        n.mkdirat(pfd, base, 0o700);
        fd = n.openat(pfd, base, DIR | n.O_NOFOLLOW);
      }
      this.remember(path, fd); // likely the next entries' parent
    }
    fchownSync(fd, m.uid, m.gid);
    setXattrs(m, what, (name, value) => n.fsetxattr(fd, name, value));
    fchmodSync(fd, m.mode);
    this.dirTimes.set(path, m.mtime);
  }

  private hardlink(dir: string, base: string, path: string, linkname: string, what: string): void {
    const target = cleanPath(linkname, `${what} (hardlink to ${quote(linkname)})`);
    if (target === '') throw invalid(`${what} is a hardlink to the layer root`);
    if (target === path) return; // a link to itself changes nothing
    if (target.startsWith(`${path}/`)) throw invalid(`${what} is a hardlink into itself`);
    const tslash = target.lastIndexOf('/');
    const tpfd = this.parent(tslash < 0 ? '' : target.slice(0, tslash), `${what} (hardlink target)`, false);
    const tbase = target.slice(tslash + 1);
    const pfd = this.parent(dir, what);
    try {
      this.create(pfd, base, path, () => n.linkat(tpfd, tbase, pfd, base, 0)); // 0: a symlink target is linked itself
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'ENOENT') throw invalid(`${what} links to ${quote(linkname)}, which is not an earlier entry of this layer`);
      if (code === 'EPERM') throw invalid(`${what} is a hardlink to a directory`);
      throw err;
    }
  }

  private whiteout(dir: string, base: string, what: string): void {
    const pfd = this.parent(dir, what);
    if (base === OPAQUE) return n.fsetxattr(pfd, 'trusted.overlay.opaque', Buffer.from('y'));
    if (base.startsWith('.wh..wh.')) return; // other aufs metadata
    const name = base.slice(4);
    if (name === '' || name === '.' || name === '..') throw invalid(`${what} is a whiteout of ${quote(name)}`);
    try {
      n.mknodat(pfd, name, n.S_IFCHR, 0n);
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
      // Content of this same layer wins over its whiteout; a directory still hides the lower one's content.
      let fd: number;
      try {
        fd = n.openat(pfd, name, DIR | n.O_NOFOLLOW);
      } catch {
        return;
      }
      try {
        n.fsetxattr(fd, 'trusted.overlay.opaque', Buffer.from('y'));
      } finally {
        closeSync(fd);
      }
    }
  }

  /** Runs `make`; when the name exists, replaces it (tar semantics) and runs it once more. */
  private create<T>(pfd: number, base: string, path: string, make: () => T): T {
    try {
      return make();
    } catch (err) {
      if (errnoCode(err) !== 'EEXIST') throw err;
    }
    this.replace(pfd, base, path);
    return make();
  }

  private replace(pfd: number, base: string, path: string): void {
    try {
      n.unlinkat(pfd, base);
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return;
      if (errnoCode(err) !== 'EISDIR') throw err;
      for (const [p, fd] of this.dirs) {
        if (p === path || p.startsWith(`${path}/`)) {
          closeSync(fd);
          this.dirs.delete(p);
        }
      }
      for (const p of this.dirTimes.keys()) if (p === path || p.startsWith(`${path}/`)) this.dirTimes.delete(p);
      // Only this layer writes here, and rm lstat()s before descending: nothing under dest is followed.
      rmSync(`/proc/self/fd/${pfd}/${base}`, { recursive: true, force: true });
    }
  }

  /** An fd for directory `dir` (cleaned, relative to the root), created as needed when `create`. */
  private parent(dir: string, what: string, create = true): number {
    if (dir === '') return this.root;
    const hit = this.dirs.get(dir);
    if (hit !== undefined) {
      this.dirs.delete(dir); // refresh its place in the LRU order
      this.dirs.set(dir, hit);
      return hit;
    }
    let fd: number;
    try {
      fd = n.openat2(this.root, dir, DIR, 0, IN_ROOT);
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT' || !create) throw resolveError(err, what);
      fd = this.mkdirs(dir, what);
    }
    this.remember(dir, fd);
    return fd;
  }

  /** Creates missing parents (0755, root-owned) as tar does, one component at a time, never through a symlink. */
  private mkdirs(dir: string, what: string): number {
    let cur = this.root;
    try {
      for (const name of dir.split('/')) {
        let made = true;
        try {
          n.mkdirat(cur, name, 0o755);
        } catch (err) {
          if (errnoCode(err) !== 'EEXIST') throw err;
          made = false;
        }
        let next: number;
        try {
          next = n.openat2(cur, name, DIR | n.O_NOFOLLOW, 0, IN_ROOT);
        } catch (err) {
          throw resolveError(err, what);
        }
        if (cur !== this.root) closeSync(cur);
        cur = next;
        if (made) fchmodSync(cur, 0o755); // whatever the process umask
      }
      return cur;
    } catch (err) {
      if (cur !== this.root) closeSync(cur);
      throw err;
    }
  }

  private remember(dir: string, fd: number): void {
    const old = this.dirs.get(dir);
    if (old !== undefined && old !== fd) closeSync(old);
    this.dirs.delete(dir);
    this.dirs.set(dir, fd);
    if (this.dirs.size > CACHE_SIZE) {
      const [oldest, ofd] = this.dirs.entries().next().value as [string, number];
      this.dirs.delete(oldest);
      closeSync(ofd);
    }
  }

  applyDirTimes(): void {
    for (const [path, mtime] of this.dirTimes) {
      if (path === '') {
        futimesSync(this.root, mtime, mtime);
        continue;
      }
      const slash = path.lastIndexOf('/');
      const pfd = this.parent(slash < 0 ? '' : path.slice(0, slash), `layer entry ${quote(path)}`, false);
      n.utimensat(pfd, path.slice(slash + 1), mtime, mtime, n.AT_SYMLINK_NOFOLLOW);
    }
  }

  close(): void {
    for (const fd of this.dirs.values()) closeSync(fd);
    this.dirs.clear();
    closeSync(this.root);
  }
}

/** Lexically cleans a tar name ("./a//b/" → "a/b"), refusing one that climbs above the root. */
function cleanPath(raw: string, what: string): string {
  if (raw.includes('\0')) throw invalid(`${what} has a NUL byte in its name`);
  if (Buffer.byteLength(raw) > PATH_MAX) throw invalid(`${what} has a name longer than ${PATH_MAX} bytes`);
  const parts: string[] = [];
  for (const c of raw.split('/')) {
    if (c === '' || c === '.') continue;
    if (c === '..') {
      if (parts.pop() === undefined) throw invalid(`${what} escapes the layer root`);
    } else if (Buffer.byteLength(c) > NAME_MAX) {
      throw invalid(`${what} has a path component longer than ${NAME_MAX} bytes`);
    } else {
      parts.push(c);
    }
  }
  return parts.join('/');
}

function resolveError(err: unknown, what: string): unknown {
  const code = errnoCode(err);
  if (code === 'ELOOP' || code === 'EXDEV') return invalid(`${what} passes through a symlink`);
  if (code === 'ENOTDIR') return invalid(`${what} has a parent that is not a directory`);
  if (code === 'ENOENT') return invalid(`${what} names a directory that does not exist in this layer`);
  return err;
}

function corrupt(detail: string, cause?: unknown): BerthError {
  return new BerthError('DATA_LOSS', `layer tar is truncated or corrupt: ${detail}`, { cause });
}

const validId = (id: number): boolean => Number.isInteger(id) && id >= 0 && id < 0xffffffff;

function meta(h: Header, what: string, binaryPax: boolean): Meta {
  const pax = (typeof h.pax === 'object' && h.pax !== null ? h.pax : {}) as Record<string, string>;
  const uid = pax['uid'] !== undefined ? Number(pax['uid']) : (h.uid ?? 0);
  const gid = pax['gid'] !== undefined ? Number(pax['gid']) : (h.gid ?? 0);
  if (!validId(uid) || !validId(gid)) throw invalid(`${what} has an invalid owner ${uid}:${gid}`);
  const paxTime = Number(pax['mtime']);
  const headerTime = h.mtime.getTime() / 1000;
  const mtime = Number.isFinite(paxTime) ? paxTime : Number.isFinite(headerTime) ? headerTime : 0;
  const xattrs: [string, Buffer][] = [];
  for (const [key, value] of Object.entries(pax)) {
    if (!key.startsWith(XATTR_PAX)) continue;
    const name = key.slice(XATTR_PAX.length);
    // An image must not fake overlay metadata (opaque, redirect, metacopy); other namespaces are skipped.
    const allowed =
      (name.startsWith('user.') && !name.startsWith('user.overlay.')) ||
      (name.startsWith('trusted.') && !name.startsWith('trusted.overlay.')) ||
      name === 'security.capability';
    if (allowed) xattrs.push([name, Buffer.from(value, binaryPax ? 'latin1' : 'utf8')]);
  }
  return { uid, gid, mode: (h.mode ?? 0o644) & 0o7777, mtime, xattrs };
}

function setXattrs(m: Meta, what: string, set: (name: string, value: Buffer) => void): void {
  for (const [name, value] of m.xattrs) {
    try {
      set(name, value);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EOPNOTSUPP' || code === 'EPERM') continue; // e.g. user.* on a symlink: not representable
      if (code === 'EINVAL' || code === 'E2BIG' || code === 'ERANGE') throw invalid(`${what} has an invalid xattr ${name}`);
      throw err;
    }
  }
}

/**
 * Reads an entry's data to its end, writing each chunk to `fd` as it arrives (fd -1: discard). Synchronous writes:
 * one chunk at a time is backpressure enough, and small files cost no thread-pool round trip.
 */
function pump(stream: EntryStream, fd: number): Promise<void> {
  return new Promise((resolve, reject) => {
    let done = false;
    const finish = (err?: Error): void => {
      if (done) return;
      done = true;
      if (err === undefined) resolve();
      else reject(err);
    };
    stream.on('data', (data) => {
      if (done || fd < 0) return;
      const chunk = data as Buffer;
      try {
        for (let off = 0; off < chunk.length; ) off += writeSync(fd, chunk, off);
      } catch (err) {
        finish(err as Error);
      }
    });
    stream.on('end', () => finish());
    stream.on('error', finish);
    stream.on('close', () => done || finish(new Error('layer entry data ended early'))); // 'end' usually came first
  });
}

/**
 * tar-stream decodes PAX values as UTF-8, corrupting binary xattrs (security.capability bytes ≥ 0x80). Re-reads
 * this stream's SCHILY.xattr records as latin1 (byte-preserving). Returns false if tar-stream's internals moved.
 */
function keepBinaryPax(ex: tar.Extract): boolean {
  interface Internals {
    _header: { type?: string | null } | null;
    _pax: Record<string, string> | null;
    _decodeLongHeader?: (buf: Buffer) => void;
  }
  const inner = ex as unknown as Internals;
  const decode = inner._decodeLongHeader;
  if (typeof decode !== 'function') return false;
  inner._decodeLongHeader = function (this: unknown, buf: Buffer): void {
    decode.call(this, buf);
    if (inner._header?.type !== 'pax-header' || !inner._pax) return;
    // Records are "<len> <key>=<value>\n", len counting the whole record in bytes.
    for (let off = 0; off < buf.length; ) {
      const sp = buf.indexOf(0x20, off);
      const len = sp < 0 ? NaN : Number(buf.toString('latin1', off, sp));
      if (!(len > sp - off + 1) || off + len > buf.length) break;
      const record = buf.subarray(sp + 1, off + len - 1);
      const eq = record.indexOf(0x3d);
      const key = eq < 0 ? '' : record.toString('utf8', 0, eq);
      if (key.startsWith(XATTR_PAX)) inner._pax[key] = record.toString('latin1', eq + 1);
      off += len;
    }
  };
  return true;
}
