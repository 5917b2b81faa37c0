import {
  closeSync,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readSync,
  rmSync,
  statSync,
  statfsSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as n from '../../native/fs';
import { MNT_DETACH, mountOverlay, umount2 } from '../../native/mount';

let tmp: string;
const mounted: string[] = [];

beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'berth-native-'));
});
afterEach(() => {
  // Unmount even when a test failed half-way, or rm would descend into a live overlay.
  for (const target of mounted.splice(0).reverse()) {
    try {
      umount2(target, MNT_DETACH);
    } catch {
      // not mounted
    }
  }
  rmSync(tmp, { recursive: true, force: true });
});

function thrown(fn: () => unknown): Error & { code?: string; syscall?: string } {
  try {
    fn();
  } catch (e) {
    return e as Error & { code?: string };
  }
  throw new Error('expected a throw');
}

const isMounted = (target: string): boolean =>
  readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => l.split(' ')[4] === target);

describe('openat2', () => {
  let root: string;
  let rootfd: number;
  beforeEach(() => {
    root = join(tmp, 'root');
    mkdirSync(join(root, 'etc'), { recursive: true });
    writeFileSync(join(root, 'etc/passwd'), 'inside\n');
    symlinkSync('/etc', join(root, 'link'));
    rootfd = n.openat(n.AT_FDCWD, root, n.O_RDONLY | n.O_DIRECTORY | n.O_CLOEXEC);
  });
  afterEach(() => closeSync(rootfd));

  test('RESOLVE_IN_ROOT resolves an absolute symlink inside the root', () => {
    const fd = n.openat2(rootfd, 'link/passwd', n.O_RDONLY | n.O_CLOEXEC, 0, n.RESOLVE_IN_ROOT);
    try {
      expect(fstatSync(fd).ino).toBe(statSync(join(root, 'etc/passwd')).ino);
      const buf = Buffer.alloc(64);
      expect(buf.toString('utf8', 0, readSync(fd, buf))).toBe('inside\n');
    } finally {
      closeSync(fd);
    }
  });

  test('RESOLVE_NO_SYMLINKS refuses any symlink with ELOOP; RESOLVE_BENEATH refuses ".." with EXDEV', () => {
    const err = thrown(() => n.openat2(rootfd, 'link/passwd', n.O_PATH, 0, n.RESOLVE_IN_ROOT | n.RESOLVE_NO_SYMLINKS));
    expect(err).toMatchObject({ code: 'ELOOP', syscall: 'openat2' });
    expect(thrown(() => n.openat2(rootfd, '../x', n.O_PATH, 0, n.RESOLVE_BENEATH)).code).toBe('EXDEV');
    expect(thrown(() => n.openat2(rootfd, 'missing', n.O_RDONLY, 0, 0)).code).toBe('ENOENT');
  });
});

describe('fd-relative calls', () => {
  test('mknodat with makedev, symlinkat, linkat, unlinkat, fchownat and utimensat without following', () => {
    const dfd = n.openat(n.AT_FDCWD, tmp, n.O_RDONLY | n.O_DIRECTORY);
    try {
      expect(n.makedev(1, 3)).toBe(0x103n);
      expect(n.makedev(259, 0x12345)).toBe(0x12345n & 0xffn | (259n << 8n) | ((0x12345n & ~0xffn) << 12n));
      n.mknodat(dfd, 'null', n.S_IFCHR | 0o600, n.makedev(1, 3));
      const st = statSync(join(tmp, 'null'));
      expect(st.isCharacterDevice()).toBe(true);
      expect(st.rdev).toBe(0x103);
      n.mknodat(dfd, 'fifo', n.S_IFIFO | 0o600);
      expect(lstatSync(join(tmp, 'fifo')).isFIFO()).toBe(true);

      writeFileSync(join(tmp, 'target'), 'x');
      n.symlinkat('target', dfd, 'sym');
      n.fchownat(dfd, 'sym', 1234, 5678, n.AT_SYMLINK_NOFOLLOW);
      n.utimensat(dfd, 'sym', 1000.5, 2000.25, n.AT_SYMLINK_NOFOLLOW);
      const ls = lstatSync(join(tmp, 'sym'));
      expect([ls.uid, ls.gid, ls.mtimeMs]).toEqual([1234, 5678, 2000250]);
      const ts = statSync(join(tmp, 'target'));
      expect([ts.uid, ts.gid]).toEqual([0, 0]);
      expect(ts.mtimeMs).not.toBe(2000250);

      n.linkat(dfd, 'target', dfd, 'hard');
      expect(statSync(join(tmp, 'hard')).ino).toBe(ts.ino);
      n.unlinkat(dfd, 'hard');
      expect(existsSync(join(tmp, 'hard'))).toBe(false);
      expect(thrown(() => n.mkdirat(dfd, 'target', 0o755)).code).toBe('EEXIST');
    } finally {
      closeSync(dfd);
    }
  });

  test('xattrs: set, get, list; a missing one is ENODATA', () => {
    const file = join(tmp, 'f');
    writeFileSync(file, '');
    n.lsetxattr(file, 'user.berth', Buffer.from([0, 0x80, 0xff]));
    n.lsetxattr(file, 'trusted.overlay.opaque', Buffer.from('y'));
    expect(n.lgetxattr(file, 'user.berth')).toEqual(Buffer.from([0, 0x80, 0xff]));
    expect(n.llistxattr(file).sort()).toEqual(['trusted.overlay.opaque', 'user.berth']);
    expect(thrown(() => n.lgetxattr(file, 'user.none')).code).toBe('ENODATA');
  });

  test('statfs matches Node and knows the file system type', () => {
    const ours = n.statfs(tmp);
    const node = statfsSync(tmp);
    expect(ours).toMatchObject({ type: node.type, bsize: node.bsize, blocks: node.blocks, files: node.files });
    expect(ours.bfree).toBeGreaterThanOrEqual(ours.bavail);
    expect(n.statfs('/proc').type).toBe(0x9fa0); // PROC_SUPER_MAGIC
    expect(thrown(() => n.statfs(join(tmp, 'missing'))).code).toBe('ENOENT');
  });
});

describe('mountOverlay', () => {
  const dir = (...parts: string[]): string => {
    const p = join(tmp, ...parts);
    mkdirSync(p, { recursive: true });
    return p;
  };
  const mountAt = (opts: Omit<Parameters<typeof mountOverlay>[0], 'target'>): string => {
    const target = dir(`merged-${mounted.length}`);
    mountOverlay({ ...opts, target });
    mounted.push(target);
    return target;
  };

  test('200 lower layers with long paths (over one page of options); lowers[0] is the top', () => {
    const lowers = Array.from({ length: 200 }, (_, i) =>
      dir('layers', `${String(i).padStart(3, '0')}-${'0123456789abcdef'.repeat(4)}`, 'diff'),
    );
    expect(lowers.join(':').length).toBeGreaterThan(4096);
    writeFileSync(join(lowers[199] as string, 'bottom.txt'), 'from the bottom');
    writeFileSync(join(lowers[199] as string, 'both.txt'), 'bottom');
    writeFileSync(join(lowers[0] as string, 'both.txt'), 'top');
    const target = mountAt({ lowers });
    expect(isMounted(target)).toBe(true);
    expect(readFileSync(join(target, 'bottom.txt'), 'utf8')).toBe('from the bottom');
    expect(readFileSync(join(target, 'both.txt'), 'utf8')).toBe('top');
    expect(n.statfs(target).type).toBe(0x794c7630); // OVERLAYFS_SUPER_MAGIC
    umount2(target);
    expect(isMounted(target)).toBe(false);
  });

  test('the classic mount(2) path works for short stacks and refuses one over a page', () => {
    const lowers = [dir('a'), dir('b')];
    writeFileSync(join(tmp, 'b', 'f'), 'b');
    const target = mountAt({ lowers, api: 'mount' });
    expect(readFileSync(join(target, 'f'), 'utf8')).toBe('b');

    const many = Array.from({ length: 60 }, (_, i) => dir('long', `${i}-${'x'.repeat(80)}`));
    const err = thrown(() => mountOverlay({ lowers: many, target: dir('never'), api: 'mount' }));
    expect(err.code).toBe('E2BIG');
    expect(err.message).toMatch(/over mount\(2\)'s 4095-byte limit/);
    expect(isMounted(join(tmp, 'never'))).toBe(false);
  });

  test('whiteout devices and opaque directories in an upper lower hide the lower content', () => {
    const top = dir('top');
    const bottom = dir('bottom');
    writeFileSync(join(bottom, 'gone'), 'x');
    writeFileSync(join(bottom, 'kept'), 'x');
    mkdirSync(join(bottom, 'd'));
    writeFileSync(join(bottom, 'd', 'old'), 'x');
    const tfd = n.openat(n.AT_FDCWD, top, n.O_RDONLY | n.O_DIRECTORY);
    try {
      n.mknodat(tfd, 'gone', n.S_IFCHR, n.makedev(0, 0));
    } finally {
      closeSync(tfd);
    }
    mkdirSync(join(top, 'd'));
    writeFileSync(join(top, 'd', 'new'), 'x');
    n.lsetxattr(join(top, 'd'), 'trusted.overlay.opaque', Buffer.from('y'));
    const target = mountAt({ lowers: [top, bottom] });
    expect(readdirSync(target).sort()).toEqual(['d', 'kept']);
    expect(readdirSync(join(target, 'd'))).toEqual(['new']);
  });

  test('upper and work dirs take writes; readonly refuses them', () => {
    const lower = dir('lower');
    const rw = mountAt({ lowers: [lower], upper: dir('upper'), work: dir('work') });
    writeFileSync(join(rw, 'written'), 'hi');
    expect(readFileSync(join(tmp, 'upper', 'written'), 'utf8')).toBe('hi');

    const ro = mountAt({ lowers: [lower], upper: dir('upper2'), work: dir('work2'), readonly: true });
    expect(thrown(() => writeFileSync(join(ro, 'x'), 'x')).code).toBe('EROFS');
  });

  test('a missing target fails with ENOENT, with either API', () => {
    const lowers = [dir('l1'), dir('l2')];
    expect(thrown(() => mountOverlay({ lowers, target: join(tmp, 'nope') })).code).toBe('ENOENT');
    expect(thrown(() => mountOverlay({ lowers, target: join(tmp, 'nope'), api: 'mount' })).code).toBe('ENOENT');
  });

  test('a bad lower dir is named; a stack the kernel would refuse is refused up front', () => {
    const err = thrown(() => mountOverlay({ lowers: [dir('l'), join(tmp, 'missing')], target: dir('t') }));
    expect(err).toMatchObject({ code: 'ENOENT', syscall: 'fsconfig' });
    expect(err.message).toContain(`lowerdir+=${join(tmp, 'missing')}`);
    expect(thrown(() => mountOverlay({ lowers: [dir('l')], target: dir('t') })).message).toMatch(/at least two lower/);
    expect(thrown(() => mountOverlay({ lowers: [], upper: dir('u'), work: dir('w'), target: dir('t') })).code).toBe('EINVAL');
    expect(isMounted(join(tmp, 't'))).toBe(false);
  });
});
