import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '../../src/common/errors';
import { parseGroup, parsePasswd, resolveUser, type UserSpec } from '../../src/runtime/users';

const PASSWD = [
  'root:x:0:0:root:/root:/bin/sh',
  '# a comment',
  'garbage line without fields',
  'bad:x:notanumber:1::/:/bin/sh',
  'app:x:1000:1000:App:/home/app:/bin/sh',
  'svc:x:2000:50::/srv:/bin/false',
  '',
].join('\n');
const GROUP = [
  'root:x:0:',
  'wheel:x:10:root,app',
  'staff:x:50:svc, app',
  'app:x:1000:',
  'broken',
  '',
].join('\n');

let tmp: string;
let root: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'berth-users-'));
  root = join(tmp, 'rootfs');
  mkdirSync(join(root, 'etc'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), PASSWD);
  writeFileSync(join(root, 'etc/group'), GROUP);
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

const spec = (o: Partial<UserSpec>): UserSpec => ({ imageUser: '', supplementalGroups: [], ...o });

async function rejected(p: Promise<unknown>): Promise<BerthError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof BerthError) return e;
    throw e;
  }
  throw new Error('expected a rejection');
}

describe('parsing', () => {
  test('malformed lines are skipped', () => {
    expect(parsePasswd(PASSWD).map((p) => p.name)).toEqual(['root', 'app', 'svc']);
    expect(parseGroup(GROUP).find((g) => g.name === 'staff')?.members).toEqual(['svc', 'app']);
  });
});

describe('image USER', () => {
  test('empty is root', async () => {
    expect(await resolveUser(root, spec({}))).toEqual({ uid: 0, gid: 0, additionalGids: [0, 10], username: 'root', home: '/root' });
  });
  test('a name', async () => {
    expect(await resolveUser(root, spec({ imageUser: 'app' }))).toEqual({
      uid: 1000, gid: 1000, additionalGids: [1000, 10, 50], username: 'app', home: '/home/app',
    });
  });
  test('a uid in passwd, and one that is not', async () => {
    expect(await resolveUser(root, spec({ imageUser: '2000' }))).toMatchObject({ uid: 2000, gid: 50, username: 'svc', home: '/srv' });
    expect(await resolveUser(root, spec({ imageUser: '4242' }))).toEqual({ uid: 4242, gid: 0, additionalGids: [0], home: '/' });
  });
  test('name:group, uid:gid, name:gid', async () => {
    expect(await resolveUser(root, spec({ imageUser: 'app:staff' }))).toMatchObject({ uid: 1000, gid: 50, additionalGids: [50, 10] });
    expect(await resolveUser(root, spec({ imageUser: '2000:3000' }))).toMatchObject({ uid: 2000, gid: 3000 });
    expect(await resolveUser(root, spec({ imageUser: 'svc:7' }))).toMatchObject({ uid: 2000, gid: 7 });
  });
  test('unknown user or group is INVALID_ARGUMENT', async () => {
    const e = await rejected(resolveUser(root, spec({ imageUser: 'ghost' })));
    expect(e.code).toBe('INVALID_ARGUMENT');
    expect(e.message).toMatch(/^user "ghost" not found in the image's \/etc\/passwd/);
    expect((await rejected(resolveUser(root, spec({ imageUser: 'app:nogroup' })))).message).toMatch(/group "nogroup" not found/);
  });
});

describe('CRI overrides', () => {
  test('run_as_user wins over the image user; run_as_group over the gid', async () => {
    expect(await resolveUser(root, spec({ imageUser: 'app', runAsUser: 2000n }))).toMatchObject({ uid: 2000, gid: 50, username: 'svc' });
    expect(await resolveUser(root, spec({ imageUser: 'app', runAsUser: 0, runAsGroup: 5 }))).toMatchObject({ uid: 0, gid: 5, additionalGids: [5, 10] });
    expect((await rejected(resolveUser(root, spec({ runAsUser: -1n })))).message).toMatch(/^run_as_user/);
  });
  test('run_as_username', async () => {
    expect(await resolveUser(root, spec({ imageUser: 'root', runAsUsername: 'app' }))).toMatchObject({ uid: 1000, gid: 1000 });
    expect((await rejected(resolveUser(root, spec({ runAsUsername: 'nobody' })))).message).toMatch(/user "nobody" not found/);
  });
  test('supplemental groups are added and deduplicated; Strict ignores /etc/group', async () => {
    expect((await resolveUser(root, spec({ imageUser: 'app', supplementalGroups: [10, 99, 99] }))).additionalGids).toEqual([1000, 10, 50, 99]);
    expect((await resolveUser(root, spec({ imageUser: 'app', supplementalGroups: [99], strictGroups: true }))).additionalGids).toEqual([1000, 99]);
  });
});

describe('hostile rootfs', () => {
  test('no /etc/passwd: numeric users still work', async () => {
    rmSync(join(root, 'etc'), { recursive: true });
    expect(await resolveUser(root, spec({ imageUser: '1234:5' }))).toEqual({ uid: 1234, gid: 5, additionalGids: [5], home: '/' });
  });
  test('etc/passwd -> /etc/passwd never reads the host file', async () => {
    rmSync(join(root, 'etc/passwd'));
    symlinkSync('/etc/passwd', join(root, 'etc/passwd'));
    // The host has "daemon" (uid 1); inside the root the link points at itself.
    expect((await rejected(resolveUser(root, spec({ imageUser: 'daemon' })))).message).toMatch(/user "daemon" not found/);
    mkdirSync(join(root, 'inner'));
    writeFileSync(join(root, 'inner/passwd'), 'daemon:x:4242:4242::/in:/bin/sh\n');
    rmSync(join(root, 'etc/passwd'));
    symlinkSync('/inner/passwd', join(root, 'etc/passwd'));
    expect(await resolveUser(root, spec({ imageUser: 'daemon' }))).toMatchObject({ uid: 4242, home: '/in' });
  });
  test('etc -> / resolves inside the rootfs', async () => {
    rmSync(join(root, 'etc'), { recursive: true });
    symlinkSync('/', join(root, 'etc'));
    writeFileSync(join(root, 'passwd'), 'daemon:x:4343:4343::/x:/bin/sh\n');
    expect(await resolveUser(root, spec({ imageUser: 'daemon' }))).toMatchObject({ uid: 4343, gid: 4343 });
  });
  test('a FIFO or an oversized file is refused without blocking', async () => {
    rmSync(join(root, 'etc/group'));
    execFileSync('mkfifo', [join(root, 'etc/group')]);
    expect((await rejected(resolveUser(root, spec({})))).message).toMatch(/\/etc\/group: not a regular file/);
    rmSync(join(root, 'etc/group'));
    writeFileSync(join(root, 'etc/passwd'), Buffer.alloc(1024 * 1024 + 1, 'a'));
    expect((await rejected(resolveUser(root, spec({})))).message).toMatch(/\/etc\/passwd: larger than/);
  });
});
