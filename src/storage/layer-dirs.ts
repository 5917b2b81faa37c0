// Directory fds inside one layer root being extracted, resolved with openat2 so that no path ever passes through a
// symlink, and kept open in a small LRU cache: consecutive tar entries mostly share their parent directory.
import { closeSync, fchmodSync } from 'node:fs';
import { errnoCode } from '../common/errors';
import * as n from '../../native/fs';
import { invalid } from './tar-entry';

const CACHE_SIZE = 64;
const IN_ROOT = n.RESOLVE_IN_ROOT | n.RESOLVE_NO_SYMLINKS | n.RESOLVE_NO_MAGICLINKS;
export const DIR = n.O_RDONLY | n.O_DIRECTORY | n.O_CLOEXEC;

export class LayerDirs {
  /** Open directory fds by cleaned path, least recently used first: consecutive entries share parents. */
  private readonly dirs = new Map<string, number>();

  constructor(readonly root: number) {}

  /** An fd for directory `dir` (cleaned, relative to the root), created as needed when `create`. */
  parent(dir: string, what: string, create = true): number {
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

  remember(dir: string, fd: number): void {
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

  /** Closes the fds of `path` and of every directory under it, which is about to be removed. */
  forget(path: string): void {
    for (const [p, fd] of this.dirs) {
      if (p === path || p.startsWith(`${path}/`)) {
        closeSync(fd);
        this.dirs.delete(p);
      }
    }
  }

  close(): void {
    for (const fd of this.dirs.values()) closeSync(fd);
    this.dirs.clear();
    closeSync(this.root);
  }
}

function resolveError(err: unknown, what: string): unknown {
  const code = errnoCode(err);
  if (code === 'ELOOP' || code === 'EXDEV') return invalid(`${what} passes through a symlink`);
  if (code === 'ENOTDIR') return invalid(`${what} has a parent that is not a directory`);
  if (code === 'ENOENT') return invalid(`${what} names a directory that does not exist in this layer`);
  return err;
}
