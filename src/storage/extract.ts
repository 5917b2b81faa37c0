// Unpacks one OCI layer tar into an empty directory: the boundary where hostile image bytes meet the host fs.
// Every path is cleaned lexically, its parent resolved with openat2 inside the layer root refusing all symlinks,
// and the final component touched only through fd-relative calls that never follow it. OCI whiteouts become
// overlayfs ones (0:0 char devices, trusted.overlay.opaque).
import { closeSync, fchmodSync, fchownSync, futimesSync, readdirSync, rmSync } from 'node:fs';
import type { Readable } from 'node:stream';
import * as tar from 'tar-stream';
import { BerthError, errnoCode, errorMessage } from '../common/errors';
import * as n from '../../native/fs';
import { DIR, LayerDirs } from './layer-dirs';
import {
  cleanPath, EntryStream, Header, invalid, keepBinaryPax, meta, Meta, PATH_MAX, pump, quote, setXattrs,
} from './tar-entry';

export interface ExtractLimits {
  /** Total bytes of entry contents (header sizes), the decompression-bomb guard. */
  maxBytes: number;
  maxEntries: number;
}

export interface ExtractResult {
  entries: number;
  bytes: number;
}

const OPAQUE = '.wh..wh..opq';
const NODE_TYPES: Partial<Record<string, number>> = {
  'character-device': n.S_IFCHR,
  'block-device': n.S_IFBLK,
  fifo: n.S_IFIFO,
};

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
  private readonly dirs: LayerDirs;
  /** Directory mtimes, applied once their children are written. */
  private readonly dirTimes = new Map<string, number>();

  constructor(
    root: number,
    private readonly limits: ExtractLimits,
  ) {
    this.dirs = new LayerDirs(root);
  }

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
      const pfd = this.dirs.parent(dir, what);
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
    const pfd = this.dirs.parent(dir, what);
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
    let fd = this.dirs.root;
    if (path !== '') {
      const pfd = this.dirs.parent(dir, what);
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
      this.dirs.remember(path, fd); // likely the next entries' parent
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
    const tpfd = this.dirs.parent(tslash < 0 ? '' : target.slice(0, tslash), `${what} (hardlink target)`, false);
    const tbase = target.slice(tslash + 1);
    const pfd = this.dirs.parent(dir, what);
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
    const pfd = this.dirs.parent(dir, what);
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
      this.dirs.forget(path);
      for (const p of this.dirTimes.keys()) if (p === path || p.startsWith(`${path}/`)) this.dirTimes.delete(p);
      // Only this layer writes here, and rm lstat()s before descending: nothing under dest is followed.
      rmSync(`/proc/self/fd/${pfd}/${base}`, { recursive: true, force: true });
    }
  }

  applyDirTimes(): void {
    for (const [path, mtime] of this.dirTimes) {
      if (path === '') {
        futimesSync(this.dirs.root, mtime, mtime);
        continue;
      }
      const slash = path.lastIndexOf('/');
      const pfd = this.dirs.parent(slash < 0 ? '' : path.slice(0, slash), `layer entry ${quote(path)}`, false);
      n.utimensat(pfd, path.slice(slash + 1), mtime, mtime, n.AT_SYMLINK_NOFOLLOW);
    }
  }

  close(): void {
    this.dirs.close();
  }
}

function corrupt(detail: string, cause?: unknown): BerthError {
  return new BerthError('DATA_LOSS', `layer tar is truncated or corrupt: ${detail}`, { cause });
}
