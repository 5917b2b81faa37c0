import {
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  readlinkSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { BerthError } from '../../src/common/errors';
import { ExtractLimits, extractLayer } from '../../src/storage/extract';
import { lgetxattr, llistxattr } from '../../native/fs';
import { MNT_DETACH, mountOverlay, umount2 } from '../../native/mount';
import { LayerEntry, packTar } from '../fixtures/oci-image';

const LIMITS: ExtractLimits = { maxBytes: 1 << 30, maxEntries: 100_000 };
let tmp: string;
let dest: string;
let outside: string;
const mounted: string[] = [];

beforeEach(() => {
  // Every case has a sibling "outside" dir: nothing may ever be written there, or next to dest.
  tmp = mkdtempSync(join(tmpdir(), 'berth-extract-'));
  dest = join(tmp, 'dest');
  outside = join(tmp, 'outside');
  mkdirSync(dest);
  mkdirSync(outside);
  writeFileSync(join(outside, 'secret'), 'secret');
});
afterEach(() => {
  for (const t of mounted.splice(0)) umount2(t, MNT_DETACH);
  rmSync(tmp, { recursive: true, force: true });
});

const openFds = (): string[] => readdirSync('/proc/self/fd').sort();
/** fds opened since `before` and still open (other code may close fds meanwhile, so not an equality). */
const leaked = (before: string[]): string[] => openFds().filter((fd) => !before.includes(fd));
const at = (p: string): string => join(dest, p);

async function extract(entries: LayerEntry[] | Buffer, limits = LIMITS, into = dest): Promise<{ entries: number; bytes: number }> {
  const bytes = Buffer.isBuffer(entries) ? entries : await packTar(entries);
  return extractLayer(Readable.from([bytes]), into, limits);
}

async function failure(p: Promise<unknown>): Promise<BerthError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(BerthError);
  return err as BerthError;
}

/** Asserts the layer is refused with exactly this error, leaving no fd open and nothing outside dest. */
async function refused(entries: LayerEntry[] | Buffer, message: string | RegExp, code = 'INVALID_ARGUMENT'): Promise<void> {
  rmSync(dest, { recursive: true, force: true }); // the caller removes a refused layer's directory
  mkdirSync(dest);
  const before = openFds();
  const err = await failure(extract(entries));
  expect(err.code).toBe(code);
  if (typeof message === 'string') expect(err.message).toBe(message);
  else expect(err.message).toMatch(message);
  expect(leaked(before)).toEqual([]);
  expect(readdirSync(tmp).sort()).toEqual(['dest', 'outside']);
  expect(readdirSync(outside)).toEqual(['secret']);
  expect(statSync(join(outside, 'secret')).nlink).toBe(1);
}

/** One raw ustar header block (for hand-made PAX records and lazily generated bodies). */
function ustar(name: string, size: number, typeflag: string, mode = 0o644): Buffer {
  const h = Buffer.alloc(512);
  h.write(name, 0, 100);
  h.write(`${mode.toString(8).padStart(7, '0')}\0`, 100);
  h.write('0000000\0', 108);
  h.write('0000000\0', 116);
  h.write(`${size.toString(8).padStart(11, '0')}\0`, 124);
  h.write('14500000000\0', 136);
  h.write(typeflag, 156);
  h.write('ustar\0', 257);
  h.write('00', 263);
  h.fill(' ', 148, 156);
  let sum = 0;
  for (const b of h) sum += b;
  h.write(`${sum.toString(8).padStart(6, '0')}\0 `, 148);
  return h;
}
const padded = (b: Buffer): Buffer => Buffer.concat([b, Buffer.alloc((512 - (b.length % 512)) % 512)]);

function paxRecord(key: string, value: Buffer): Buffer {
  const body = Buffer.concat([Buffer.from(` ${key}=`), value, Buffer.from('\n')]);
  let len = body.length + 1;
  while (String(len).length + body.length !== len) len = String(len).length + body.length;
  return Buffer.concat([Buffer.from(String(len)), body]);
}

describe('hostile paths are refused', () => {
  test('"../evil" and "a/../../evil" climb out of the root', async () => {
    await refused([{ path: '../evil', type: 'file', content: 'x' }], 'layer entry "../evil" escapes the layer root');
    await refused(
      [{ path: 'a', type: 'dir' }, { path: 'a/../../evil', type: 'file' }],
      'layer entry "a/../../evil" escapes the layer root',
    );
    await refused([{ path: '../outside/secret', type: 'file', content: 'pwned' }], /escapes the layer root/);
    expect(readFileSync(join(outside, 'secret'), 'utf8')).toBe('secret');
  });

  test('an absolute name lands inside the root; harmless ".." is cleaned', async () => {
    await extract([
      { path: '/abs/file', type: 'file', content: 'in' },
      { path: './x//y/../z', type: 'file', content: 'z' },
    ]);
    expect(readFileSync(at('abs/file'), 'utf8')).toBe('in');
    expect(readFileSync(at('x/z'), 'utf8')).toBe('z');
    expect(readdirSync(tmp).sort()).toEqual(['dest', 'outside']);
  });

  test('a write through a symlinked parent is refused: etc -> /etc then etc/passwd', async () => {
    const before = readFileSync('/etc/passwd');
    const mtime = statSync('/etc/passwd').mtimeMs;
    await refused(
      [
        { path: 'etc', type: 'symlink', linkname: '/etc' },
        { path: 'etc/passwd', type: 'file', content: 'root::0:0::/:/bin/sh\n' },
      ],
      'layer entry "etc/passwd" passes through a symlink',
    );
    expect(readFileSync('/etc/passwd')).toEqual(before);
    expect(statSync('/etc/passwd').mtimeMs).toBe(mtime);
  });

  test('d -> .. then d/x is refused, deeper links too', async () => {
    await refused(
      [
        { path: 'd', type: 'symlink', linkname: '..' },
        { path: 'd/x', type: 'file', content: 'x' },
      ],
      'layer entry "d/x" passes through a symlink',
    );
    await refused(
      [
        { path: 'a/b', type: 'dir' },
        { path: 'a/b/up', type: 'symlink', linkname: '../../../outside' },
        { path: 'a/b/up/secret', type: 'file', content: 'pwned' },
      ],
      /passes through a symlink/,
    );
    // Replacing a directory by a symlink drops its cached fds: a later child must not land in the old tree.
    await refused(
      [
        { path: 'tree/a/b', type: 'file' },
        { path: 'tree', type: 'symlink', linkname: '../outside' },
        { path: 'tree/a/c', type: 'file' },
      ],
      'layer entry "tree/a/c" passes through a symlink',
    );
    // A missing parent under a symlink is not created through it either.
    await refused(
      [
        { path: 'l', type: 'symlink', linkname: '/tmp' },
        { path: 'l/new/dir/file', type: 'file' },
      ],
      /passes through a symlink/,
    );
  });

  test('hardlinks to ../outside/secret, to a directory or to nothing are refused', async () => {
    await refused(
      [{ path: 'l', type: 'hardlink', linkname: '../outside/secret' }],
      'layer entry "l" (hardlink to "../outside/secret") escapes the layer root',
    );
    await refused(
      [{ path: 'd', type: 'dir' }, { path: 'l', type: 'hardlink', linkname: 'd' }],
      'layer entry "l" is a hardlink to a directory',
    );
    await refused([{ path: 'l', type: 'hardlink', linkname: 'later' }, { path: 'later', type: 'file' }], /not an earlier entry/);
    await refused(
      [{ path: 's', type: 'symlink', linkname: '/etc' }, { path: 'l', type: 'hardlink', linkname: 's/passwd' }],
      /passes through a symlink/,
    );
  });

  test('a hardlink to /etc/passwd resolves inside the root: never the host file', async () => {
    const hostLinks = statSync('/etc/passwd').nlink;
    await refused([{ path: 'l', type: 'hardlink', linkname: '/etc/passwd' }], /does not exist in this layer/);
    await extract([
      { path: 'etc/passwd', type: 'file', content: 'layer' },
      { path: 'l', type: 'hardlink', linkname: '/etc/passwd' },
    ]);
    expect(statSync(at('l')).ino).toBe(statSync(at('etc/passwd')).ino);
    expect(readFileSync(at('l'), 'utf8')).toBe('layer');
    expect(statSync('/etc/passwd').nlink).toBe(hostLinks);
  });

  test('bad whiteouts, over-long names and a non-directory root are refused', async () => {
    await refused([{ path: '.wh...', type: 'file' }], 'layer entry ".wh..." is a whiteout of ".."');
    await refused([{ path: 'a/.wh..', type: 'file' }], 'layer entry "a/.wh.." is a whiteout of "."');
    await refused([{ path: '.wh.', type: 'file' }], 'layer entry ".wh." is a whiteout of ""');
    await refused([{ path: `${'n'.repeat(256)}`, type: 'file' }], /path component longer than 255 bytes/);
    await refused([{ path: `${'d/'.repeat(2100)}f`, type: 'file' }], /name longer than 4096 bytes/);
    await refused([{ path: './', type: 'file' }], 'layer entry "./" replaces the layer root');
  });
});

describe('entry types and metadata', () => {
  test('setuid survives chown; setgid and sticky dirs; missing parents are created 0755', async () => {
    await extract([
      { path: 'bin/su', type: 'file', uid: 1000, gid: 1000, mode: 0o4755, content: '#!' },
      { path: 'shared', type: 'dir', uid: 0, gid: 50, mode: 0o2775 },
      { path: 'tmp', type: 'dir', mode: 0o1777 },
    ]);
    const su = statSync(at('bin/su'));
    expect([su.uid, su.gid, su.mode & 0o7777]).toEqual([1000, 1000, 0o4755]);
    expect(statSync(at('shared')).mode & 0o7777).toBe(0o2775);
    expect(statSync(at('shared')).gid).toBe(50);
    expect(statSync(at('tmp')).mode & 0o7777).toBe(0o1777);
    const bin = statSync(at('bin'));
    expect([bin.isDirectory(), bin.mode & 0o7777, bin.uid]).toEqual([true, 0o755, 0]);
  });

  test('xattrs from PAX: binary security.capability kept byte for byte; trusted.overlay.* never applied', async () => {
    // cap_setuid+ep as VFS_CAP_REVISION_2: bytes >= 0x80 that a UTF-8 decode would mangle.
    const cap = Buffer.from([1, 0, 0, 2, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
    const pax = Buffer.concat([
      paxRecord('SCHILY.xattr.security.capability', cap),
      paxRecord('SCHILY.xattr.user.note', Buffer.from('héllo')),
      paxRecord('SCHILY.xattr.trusted.overlay.redirect', Buffer.from('/etc')),
      paxRecord('SCHILY.xattr.security.selinux', Buffer.from('system_u:object_r:bin_t:s0')),
    ]);
    const raw = Buffer.concat([
      ustar('PaxHeaders/ping', pax.length, 'x'),
      padded(pax),
      ustar('ping', 2, '0', 0o755),
      padded(Buffer.from('#!')),
      Buffer.alloc(1024),
    ]);
    await extract(raw);
    expect(lgetxattr(at('ping'), 'security.capability')).toEqual(cap);
    expect(lgetxattr(at('ping'), 'user.note').toString()).toBe('héllo');
    expect(llistxattr(at('ping')).sort()).toEqual(['security.capability', 'user.note']);
  });

  test('trusted.overlay.opaque from PAX on a directory is skipped, not applied', async () => {
    await extract([
      { path: 'd', type: 'dir', pax: { 'SCHILY.xattr.trusted.overlay.opaque': 'y', 'SCHILY.xattr.user.ok': '1' } },
    ]);
    expect(llistxattr(at('d'))).toEqual(['user.ok']);
  });

  test('device nodes and FIFOs', async () => {
    await extract([
      { path: 'dev/null', type: 'char', devmajor: 1, devminor: 3, mode: 0o666 },
      { path: 'dev/loop0', type: 'block', devmajor: 7, devminor: 0, mode: 0o660, gid: 6 },
      { path: 'run/fifo', type: 'fifo', mode: 0o620 },
    ]);
    const nul = lstatSync(at('dev/null'));
    expect([nul.isCharacterDevice(), nul.rdev, nul.mode & 0o7777]).toEqual([true, 0x103, 0o666]);
    const loop = lstatSync(at('dev/loop0'));
    expect([loop.isBlockDevice(), loop.rdev, loop.mode & 0o7777, loop.gid]).toEqual([true, 0x700, 0o660, 6]);
    const fifo = lstatSync(at('run/fifo'));
    expect([fifo.isFIFO(), fifo.mode & 0o7777]).toEqual([true, 0o620]);
  });

  test('mtimes of files, symlinks and directories (set after their children)', async () => {
    const t = (y: number): Date => new Date(Date.UTC(y, 0, 1));
    await extract([
      { path: 'd', type: 'dir', mtime: t(2001) },
      { path: 'd/sub', type: 'dir', mtime: t(2002) },
      { path: 'd/sub/f', type: 'file', content: 'x', mtime: t(2003) },
      { path: 'd/link', type: 'symlink', linkname: 'sub/f', mtime: t(2004) },
      { path: 'd/new', type: 'file', mtime: t(2005) },
    ]);
    expect(statSync(at('d')).mtime).toEqual(t(2001));
    expect(statSync(at('d/sub')).mtime).toEqual(t(2002));
    expect(statSync(at('d/sub/f')).mtime).toEqual(t(2003));
    expect(lstatSync(at('d/link')).mtime).toEqual(t(2004));
    expect(readlinkSync(at('d/link'))).toBe('sub/f');
  });

  test('hardlinks share an inode; symlinks keep any target text', async () => {
    await extract([
      { path: 'bin/busybox', type: 'file', mode: 0o755, content: 'bb' },
      { path: 'bin/sh', type: 'hardlink', linkname: 'bin/busybox' },
      { path: 'bin/ls', type: 'hardlink', linkname: './bin//busybox' },
      { path: 'abs', type: 'symlink', linkname: '/etc/shadow' },
      { path: 'up', type: 'symlink', linkname: '../../../../..' },
    ]);
    const bb = statSync(at('bin/busybox'));
    expect(bb.nlink).toBe(3);
    expect(statSync(at('bin/sh')).ino).toBe(bb.ino);
    expect(statSync(at('bin/ls')).ino).toBe(bb.ino);
    expect(readlinkSync(at('abs'))).toBe('/etc/shadow');
    expect(readlinkSync(at('up'))).toBe('../../../../..');
  });

  test('later entries replace earlier ones: file, symlink, directory tree', async () => {
    await extract([
      { path: 'f', type: 'file', content: 'one' },
      { path: 'f', type: 'file', content: 'two' },
      { path: 's', type: 'symlink', linkname: '/etc/hostname' },
      { path: 's', type: 'file', content: 'not through the link' },
      { path: 'tree/a/b', type: 'file', content: 'x' },
      { path: 'tree', type: 'file', content: 'now a file' },
    ]);
    expect(readFileSync(at('f'), 'utf8')).toBe('two');
    expect(lstatSync(at('s')).isFile()).toBe(true);
    expect(readFileSync(at('tree'), 'utf8')).toBe('now a file');
  });

  test('a directory entry replaces a file; a dir over a dir keeps its content', async () => {
    await extract([
      { path: 'x', type: 'file' },
      { path: 'x', type: 'dir' },
      { path: 'x/in', type: 'file' },
      { path: 'd', type: 'dir', mode: 0o700 },
      { path: 'd/keep', type: 'file' },
      { path: 'd', type: 'dir', mode: 0o750 },
    ]);
    expect(readdirSync(at('x'))).toEqual(['in']);
    expect(readdirSync(at('d'))).toEqual(['keep']);
    expect(statSync(at('d')).mode & 0o7777).toBe(0o750);
  });

  test('a file under a non-directory is refused', async () => {
    await refused(
      [{ path: 'file', type: 'file' }, { path: 'file/inner', type: 'file' }],
      'layer entry "file/inner" has a parent that is not a directory',
    );
  });
});

describe('whiteouts become overlayfs whiteouts', () => {
  test('.wh.name -> 0:0 char device, .wh..wh..opq -> trusted.overlay.opaque, aufs metadata skipped', async () => {
    const r = await extract([
      { path: 'etc', type: 'dir' },
      { path: 'etc/.wh.motd', type: 'file' },
      { path: 'var/cache', type: 'dir' },
      { path: 'var/cache/.wh..wh..opq', type: 'file' },
      { path: 'var/cache/fresh', type: 'file' },
      { path: '.wh..wh.plnk', type: 'dir' },
      { path: '.wh..wh.aufs', type: 'file' },
    ]);
    expect(r.entries).toBe(7);
    const wh = lstatSync(at('etc/motd'));
    expect([wh.isCharacterDevice(), wh.rdev]).toEqual([true, 0]);
    expect(lgetxattr(at('var/cache'), 'trusted.overlay.opaque').toString()).toBe('y');
    expect(readdirSync(dest).sort()).toEqual(['etc', 'var']);
    expect(readdirSync(at('var/cache'))).toEqual(['fresh']);
  });

  test('the converted layers stack under overlayfs as OCI means', async () => {
    const lower = join(tmp, 'lower');
    const upper = join(tmp, 'upper');
    const merged = join(tmp, 'merged');
    for (const d of [lower, upper, merged]) mkdirSync(d);
    await extract(
      [
        { path: 'a', type: 'file' },
        { path: 'b', type: 'file' },
        { path: 'd/old', type: 'file' },
      ],
      LIMITS,
      lower,
    );
    await extract(
      [
        { path: '.wh.a', type: 'file' },
        { path: 'd/.wh..wh..opq', type: 'file' },
        { path: 'd/new', type: 'file' },
      ],
      LIMITS,
      upper,
    );
    mountOverlay({ lowers: [upper, lower], target: merged });
    mounted.push(merged);
    expect(readdirSync(merged).sort()).toEqual(['b', 'd']);
    expect(readdirSync(join(merged, 'd'))).toEqual(['new']);
  });
});

describe('limits, corruption and abort', () => {
  test('more entries than maxEntries', async () => {
    const entries = Array.from({ length: 11 }, (_, i): LayerEntry => ({ path: `f${i}`, type: 'file' }));
    expect((await extract(entries.slice(0, 10), { ...LIMITS, maxEntries: 10 })).entries).toBe(10);
    rmSync(dest, { recursive: true });
    mkdirSync(dest);
    await expect(extract(entries, { ...LIMITS, maxEntries: 10 })).rejects.toMatchObject({
      code: 'RESOURCE_EXHAUSTED',
      message: 'layer has more than 10 entries (maxEntries)',
    });
  });

  test('byte totals count across entries', async () => {
    const mib = Buffer.alloc(1 << 20);
    const entries: LayerEntry[] = [1, 2, 3].map((i) => ({ path: `f${i}`, type: 'file', content: mib }));
    const err = await failure(extract(entries, { ...LIMITS, maxBytes: 2.5 * (1 << 20) }));
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect(err.message).toBe('layer content exceeds 2621440 bytes (maxBytes) at entry "f3"');
  });

  test('a lazily generated 1 GiB file stops at its header under maxBytes 64 MiB', async () => {
    const size = 1 << 30;
    let produced = 0;
    async function* zeros(): AsyncGenerator<Buffer> {
      yield ustar('zeros', size, '0');
      const chunk = Buffer.alloc(1 << 20);
      for (let off = 0; off < size; off += chunk.length) {
        produced += chunk.length;
        yield chunk;
      }
    }
    const started = Date.now();
    const before = openFds();
    const err = await failure(extractLayer(Readable.from(zeros()), dest, { maxBytes: 64 << 20, maxEntries: 10 }));
    expect(err).toMatchObject({ code: 'RESOURCE_EXHAUSTED', message: expect.stringContaining('(maxBytes)') });
    expect(Date.now() - started).toBeLessThan(2000);
    expect(produced).toBeLessThan(64 << 20);
    expect(leaked(before)).toEqual([]);
  });

  test('a truncated tar, a corrupt header and a source closed early are DATA_LOSS', async () => {
    const full = await packTar([{ path: 'big', type: 'file', content: Buffer.alloc(10_000, 1) }]);
    await refused(full.subarray(0, 3000), 'layer tar is truncated or corrupt: Unexpected end of data', 'DATA_LOSS');
    const corrupt = Buffer.from(full);
    corrupt.fill(0x41, 0, 100);
    corrupt.fill(0x42, 148, 156); // checksum field
    await refused(corrupt, /^layer tar is truncated or corrupt: /, 'DATA_LOSS');

    const source = new PassThrough();
    source.write(full.subarray(0, 2048));
    setTimeout(() => source.destroy(), 20);
    const err = await failure(extractLayer(source, dest, LIMITS));
    expect(err).toMatchObject({ code: 'DATA_LOSS', message: 'layer tar is truncated or corrupt: the stream closed before its end' });
  });

  test('an abort stops a stalled extraction promptly with the signal reason, closing every fd', async () => {
    const full = await packTar([
      { path: 'd/a', type: 'file', content: 'a' },
      { path: 'd/big', type: 'file', content: Buffer.alloc(1 << 20) },
    ]);
    const source = new PassThrough();
    source.write(full.subarray(0, 200_000)); // then nothing more arrives
    const before = openFds();
    const ac = new AbortController();
    const reason = new Error('pull cancelled');
    setTimeout(() => ac.abort(reason), 50);
    const started = Date.now();
    await expect(extractLayer(source, dest, LIMITS, ac.signal)).rejects.toBe(reason);
    expect(Date.now() - started).toBeLessThan(1000);
    expect(source.destroyed).toBe(true);
    expect(leaked(before)).toEqual([]);
    await expect(extractLayer(Readable.from([full]), dest, LIMITS, ac.signal)).rejects.toBe(reason);
  });

  test('a non-empty destination is refused', async () => {
    writeFileSync(at('stale'), '');
    await expect(extract([{ path: 'f', type: 'file' }])).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
  });

  test('counts entries and bytes; no fd left open', async () => {
    const before = openFds();
    const r = await extract([
      { path: 'a', type: 'dir' },
      { path: 'a/f', type: 'file', content: 'hello' },
      { path: 'a/g', type: 'file', content: 'world!' },
    ]);
    expect(r).toEqual({ entries: 3, bytes: 11 });
    expect(leaked(before)).toEqual([]);
    expect(existsSync(at('a/g'))).toBe(true);
  });
});
