// Pod namespaces: pinned net/ipc/uts files, sysctls applied inside them only, the pause pid-namespace holder, and
// clean removal (no mount, file or process left), also after a failure half-way.
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../src/common/package-root';
import { statfs } from '../../native/fs';
import { MNT_DETACH, MS_BIND, MS_SHARED, mount, umount2 } from '../../native/mount';
import {
  applySysctls,
  createPodNamespaces,
  NamespacePaths,
  PodNamespaces,
  pausePath,
  podNsPath,
  podNsServerPid,
  removePodNamespaces,
  startPause,
  stopPause,
  stopPodNsServer,
} from '../../src/runtime/namespaces';
import { rejection } from '../helpers/rejection';
import { until } from '../helpers/until';

const NSFS_MAGIC = 0x6e736673;
const ALL = { net: true, ipc: true, uts: true };

function sh(file: string, args: string[]): string {
  return execFileSync(file, args, { encoding: 'utf8', env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' } }).trim();
}
const nsenter = (args: string[]): string => sh('/usr/bin/nsenter', args);
const hostSysctl = (file: string): string => fs.readFileSync(`/proc/sys/${file}`, 'utf8').trim();
const nsInode = (file: string): number => fs.statSync(file).ino;
const alive = (pid: number): boolean => {
  try {
    return !/^\S+ \(.*\) [ZX]/s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

/** Mount points at or under `dir` (mountinfo field 5, octal escapes undone). */
function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((line) => (line.split(' ')[4] ?? '').replace(/\\([0-7]{3})/g, (_m, o: string) => String.fromCharCode(parseInt(o, 8))))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`));
}

/** Live `berth-pod-ns --serve` processes that this test process started. */
/** Live children of `pid` (zombies excluded). */
function childrenOf(pid: number): number[] {
  const text = fs.existsSync(`/proc/${pid}/task/${pid}/children`) ? fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8') : '';
  return text.split(' ').filter((p) => p !== '').map(Number).filter((p) => alive(p));
}

function podNsServers(): number[] {
  return fs.readdirSync('/proc').filter((n) => /^\d+$/.test(n)).map(Number).filter((pid) => {
    try {
      const ppid = Number((fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ')[1]);
      return ppid === process.pid && alive(pid) && fs.readlinkSync(`/proc/${pid}/exe`) === podNsPath() &&
        fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8') === `${podNsPath()}\0--serve\0`;
    } catch {
      return false; // gone meanwhile
    }
  });
}

describe('pod namespaces', () => {
  let tmp: string;
  const pauses: number[] = [];

  beforeAll(() => {
    sh(path.join(packageRoot(), 'native', 'build.sh'), []); // idempotent: no-op when pause is current
  });

  afterAll(async () => {
    await stopPodNsServer(); // unref'd, so jest would not wait for it; but no process may outlive the tests
    expect(podNsServers()).toEqual([]);
  });

  beforeEach(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-ns-'));
  });

  afterEach(async () => {
    for (const pid of pauses.splice(0)) await stopPause(pid);
    // Innermost first, so a pin under a test's tmpfs goes before the tmpfs.
    for (const mp of mountsUnder(tmp).reverse()) umount2(mp, MNT_DETACH);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const podDir = (id: string): string => path.join(tmp, 'pods', id, 'ns');

  it('pins net, ipc and uts as nsfs files, sets the hostname and brings loopback up', async () => {
    const ns = await createPodNamespaces(podDir('a'), ALL, 'pod-a');
    expect(ns).toEqual({ dir: podDir('a'), net: `${podDir('a')}/net`, ipc: `${podDir('a')}/ipc`, uts: `${podDir('a')}/uts` });
    for (const kind of ['net', 'ipc', 'uts'] as const) {
      const file = ns[kind] ?? '';
      expect(statfs(file).type).toBe(NSFS_MAGIC);
      expect(nsInode(file)).not.toBe(nsInode(`/proc/self/ns/${kind}`));
    }
    const links = nsenter([`--net=${ns.net}`, '--', '/usr/sbin/ip', '-o', 'link']).split('\n');
    expect(links).toHaveLength(1);
    expect(links[0]).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/);
    expect(nsenter([`--uts=${ns.uts}`, '--', '/usr/bin/hostname'])).toBe('pod-a');
    expect(sh('/usr/bin/hostname', [])).not.toBe('pod-a');
  });

  it('gives two pods distinct namespaces, and makes only the kinds asked for', async () => {
    const a = await createPodNamespaces(podDir('a'), ALL, 'a');
    const b = await createPodNamespaces(podDir('b'), { net: true, ipc: false, uts: false }, 'ignored-without-uts');
    expect(nsInode(a.net ?? '')).not.toBe(nsInode(b.net ?? ''));
    expect(b).toEqual({ dir: podDir('b'), net: `${podDir('b')}/net` });
    expect(fs.readdirSync(podDir('b'))).toEqual(['net']);
  });

  it('works when the parent mount is shared, and removal reaches its peers', async () => {
    // systemd hosts mount / shared; a peer bind stands in for another mount namespace's copy.
    const shared = path.join(tmp, 'shared');
    const peer = path.join(tmp, 'peer');
    fs.mkdirSync(shared);
    fs.mkdirSync(peer);
    mount('tmpfs', shared, 'tmpfs', 0, 'mode=0755');
    mount(null, shared, null, MS_SHARED);
    mount(shared, peer, null, MS_BIND);
    const dir = path.join(shared, 'pods', 'p', 'ns');
    const ns = await createPodNamespaces(dir, ALL, 'shared-pod');
    expect(nsenter([`--uts=${ns.uts}`, '--', '/usr/bin/hostname'])).toBe('shared-pod');
    expect(mountsUnder(path.join(peer, 'pods'))).toHaveLength(3); // propagated to the peer
    await removePodNamespaces(dir);
    expect(mountsUnder(path.join(shared, 'pods'))).toEqual([]);
    expect(mountsUnder(path.join(peer, 'pods'))).toEqual([]);
  });

  it('applies namespaced sysctls inside the pod only', async () => {
    const ns = await createPodNamespaces(podDir('s'), ALL, 's');
    const hostPort = hostSysctl('net/ipv4/ip_unprivileged_port_start');
    const hostShm = hostSysctl('kernel/shm_rmid_forced');
    const hostPing = hostSysctl('net/ipv4/ping_group_range');
    await applySysctls(ns, {
      'net.ipv4.ip_unprivileged_port_start': '0',
      'kernel.shm_rmid_forced': '1',
      'net/ipv4/ping_group_range': '0 2147483647', // slash form, value with a space
    });
    const read = (file: string): string =>
      nsenter([`--net=${ns.net}`, `--ipc=${ns.ipc}`, '--', '/bin/cat', `/proc/sys/${file}`]);
    expect(read('net/ipv4/ip_unprivileged_port_start')).toBe('0');
    expect(read('kernel/shm_rmid_forced')).toBe('1');
    expect(read('net/ipv4/ping_group_range').split(/\s+/)).toEqual(['0', '2147483647']);
    expect(hostSysctl('net/ipv4/ip_unprivileged_port_start')).toBe(hostPort);
    expect(hostSysctl('kernel/shm_rmid_forced')).toBe(hostShm);
    expect(hostSysctl('net/ipv4/ping_group_range')).toBe(hostPing);
  });

  it('refuses sysctls that are not namespaced, injections, and net/ipc ones for host namespaces', async () => {
    const ns = await createPodNamespaces(podDir('r'), ALL, 'r');
    const hostPattern = hostSysctl('kernel/core_pattern');
    const hostShm = hostSysctl('kernel/shm_rmid_forced');
    const refused = async (sysctls: Record<string, string>, nsPaths: NamespacePaths = ns): Promise<string> => {
      const err = await rejection(applySysctls(nsPaths, sysctls));
      expect(err.code).toBe('INVALID_ARGUMENT');
      return err.message;
    };
    expect(await refused({ 'kernel.panic': '1' })).toMatch(/sysctl "kernel.panic" is not namespaced/);
    expect(await refused({ 'vm.swappiness': '1' })).toMatch(/"vm.swappiness" is not namespaced/);
    expect(await refused({ 'kernel.shm_rmid_forced=1+kernel.core_pattern': 'x' })).toMatch(/not a valid name/);
    expect(await refused({ 'kernel.shm_rmid_forced': '1+kernel.core_pattern=x' })).toMatch(/"kernel.shm_rmid_forced" value/);
    expect(await refused({ 'net.ipv4.conf.all.forwarding': '1\nkernel.core_pattern=x' })).toMatch(/"net.ipv4.conf.all.forwarding" value/);
    expect(await refused({ 'kernel.shm_rmid_forced': '1\0' })).toMatch(/value/);
    expect(await refused({ 'net.ipv4/../../kernel/core_pattern': 'x' })).toMatch(/not a valid name/);
    expect(await refused({ 'net/ipv4//kernel/core_pattern': 'x' })).toMatch(/empty or relative/);
    expect(await refused({ 'net.//.kernel.core_pattern': 'x' })).toMatch(/empty or relative/);
    expect(await refused({ 'Net.ipv4.ip_forward': '1' })).toMatch(/not a valid name/);
    // A bad one anywhere in the map stops all of them before anything is written.
    expect(await refused({ 'kernel.shm_rmid_forced': '1', 'kernel.core_pattern': 'x' })).toMatch(/"kernel.core_pattern" is not namespaced/);
    expect(nsenter([`--ipc=${ns.ipc}`, '--', '/bin/cat', '/proc/sys/kernel/shm_rmid_forced'])).toBe('0');
    // Host network / host IPC: those sysctls would land on the host.
    expect(await refused({ 'net.ipv4.ip_unprivileged_port_start': '0' }, { ...ns, net: undefined })).toMatch(
      /"net.ipv4.ip_unprivileged_port_start" needs the pod's own net namespace/,
    );
    expect(await refused({ 'kernel.shm_rmid_forced': '1' }, { ipc: undefined, net: ns.net })).toMatch(/own ipc namespace/);
    // Names the kernel does not know inside the pod (net.core.rmem_max exists only in the host's netns).
    expect(await refused({ 'net.core.rmem_max': '1' })).toMatch(/sysctl "net.core.rmem_max" = "1" was refused/);
    expect(await refused({ 'kernel.shm_rmid_forced': 'yes' })).toMatch(/sysctl "kernel.shm_rmid_forced" = "yes" was refused/);
    expect(hostSysctl('kernel/core_pattern')).toBe(hostPattern);
    expect(hostSysctl('kernel/shm_rmid_forced')).toBe(hostShm);
  });

  it('runs pause as PID 1 of a pinned pid namespace inside the pod, detached, and stops it', async () => {
    const ns = await createPodNamespaces(podDir('p'), ALL, 'p');
    const { pid, pidNsPath } = await startPause(ns, ns.dir);
    pauses.push(pid);
    expect(pidNsPath).toBe(`${ns.dir}/pid`);
    expect(fs.readlinkSync(`/proc/${pid}/exe`)).toBe(pausePath());
    expect(fs.readlinkSync(`/proc/${pid}/ns/pid`)).not.toBe(fs.readlinkSync('/proc/self/ns/pid'));
    expect(statfs(pidNsPath).type).toBe(NSFS_MAGIC);
    expect(fs.readlinkSync(`/proc/${pid}/ns/pid`)).toBe(`pid:[${nsInode(pidNsPath)}]`);
    expect(fs.readFileSync(`/proc/${pid}/status`, 'utf8')).toMatch(new RegExp(`^NSpid:\\s+${pid}\\s+1$`, 'm'));
    for (const kind of ['net', 'ipc', 'uts'] as const) expect(nsInode(`/proc/${pid}/ns/${kind}`)).toBe(nsInode(ns[kind] ?? ''));
    // Own session, so the daemon's signals and terminal never reach it.
    const sid = (p: number | string): string => (fs.readFileSync(`/proc/${p}/stat`, 'utf8').split(') ')[1] ?? '').split(' ')[3] ?? '';
    expect(sid(pid)).not.toBe(sid('self'));

    // A process joined to the pod sees itself as a non-1 pid; its orphan is reaped by pause (no zombie left).
    const inner = nsenter([`--pid=${pidNsPath}`, `--net=${ns.net}`, '--', '/bin/sh', '-c', 'echo $$; (/bin/sleep 0.1 &)']);
    expect(Number(inner)).toBeGreaterThan(1);
    await new Promise((r) => setTimeout(r, 400));
    expect(fs.readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()).toBe('');

    const holder = Number((fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1] ?? '').split(' ')[1]);
    expect(fs.readlinkSync(`/proc/${holder}/exe`)).toBe('/usr/bin/unshare');
    await stopPause(pid);
    expect(alive(pid)).toBe(false);
    expect(alive(holder)).toBe(false);
    await stopPause(pid); // again: gone is fine
    await removePodNamespaces(ns.dir);
    expect(fs.existsSync(ns.dir)).toBe(false);
    expect(mountsUnder(tmp)).toEqual([]);
  });

  it('pause exits on SIGTERM', async () => {
    fs.mkdirSync(podDir('t'), { recursive: true });
    const { pid } = await startPause({}, podDir('t')); // no pod namespaces to join: unshare directly
    pauses.push(pid);
    process.kill(pid, 'SIGTERM');
    for (let i = 0; i < 200 && alive(pid); i++) await new Promise((r) => setTimeout(r, 10));
    expect(alive(pid)).toBe(false);
  });

  it('removes idempotently, leaving no mount, file or dir', async () => {
    const ns = await createPodNamespaces(podDir('x'), ALL, 'x');
    await removePodNamespaces(ns.dir);
    expect(fs.existsSync(ns.dir)).toBe(false);
    expect(mountsUnder(tmp)).toEqual([]);
    await removePodNamespaces(ns.dir);
    await removePodNamespaces(path.join(tmp, 'never-made'));
  });

  it('undoes everything when a step fails half-way', async () => {
    // hostname(1) runs after unshare has bind-mounted all three pins.
    const err = await rejection(createPodNamespaces(podDir('f'), ALL, 'bad_name'));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(/set hostname "bad_name".*hostname: the specified hostname is invalid/);
    expect(mountsUnder(tmp)).toEqual([]);
    expect(fs.readdirSync(tmp)).toEqual([]); // pods/f/ns made by the call, removed by it
  });

  it('refuses to reuse an existing pin and leaves what was there', async () => {
    const dir = podDir('e');
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, 'uts'), 'not ours');
    const err = await rejection(createPodNamespaces(dir, ALL, 'e'));
    expect(err.code).toBe('ALREADY_EXISTS');
    expect(fs.readdirSync(dir)).toEqual(['uts']); // net and ipc made by the call are gone, the dir stays
    expect(fs.readFileSync(path.join(dir, 'uts'), 'utf8')).toBe('not ours');
    expect(mountsUnder(tmp)).toEqual([]);
  });

  it('refuses over-long hostnames up front', async () => {
    const err = await rejection(createPodNamespaces(podDir('l'), ALL, 'a'.repeat(65)));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(fs.existsSync(path.join(tmp, 'pods'))).toBe(false);
  });

  describe('through the berth-pod-ns server', () => {
    it('makes many pods at once, each in its own namespaces', async () => {
      const ids = [...Array(8).keys()].map((i) => `c${i}`);
      const all = await Promise.all(ids.map((id) => createPodNamespaces(podDir(id), ALL, `pod-${id}`)));
      expect(new Set(all.map((ns) => nsInode(ns.net ?? ''))).size).toBe(ids.length);
      expect(new Set(all.map((ns) => nsInode(ns.uts ?? ''))).size).toBe(ids.length);
      expect(new Set(all.map((ns) => nsInode(ns.ipc ?? ''))).size).toBe(ids.length);
      all.forEach((ns, i) => {
        expect(nsenter([`--uts=${ns.uts}`, '--', '/usr/bin/hostname'])).toBe(`pod-${ids[i]}`);
        expect(nsenter([`--net=${ns.net}`, '--', '/usr/sbin/ip', '-o', 'link'])).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/);
      });
      expect(podNsServers()).toEqual([podNsServerPid()]); // not exec'd one by one
      await Promise.all(all.map((ns) => removePodNamespaces(ns.dir)));
      expect(mountsUnder(tmp)).toEqual([]);
    });

    it('refuses a hostname only the C check catches, leaving no pin, and keeps serving', async () => {
      await createPodNamespaces(podDir('ok'), ALL, 'ok');
      const server = podNsServerPid();
      const err = await rejection(createPodNamespaces(podDir('h'), ALL, 'bad_name!'));
      expect(err.code).toBe('INVALID_ARGUMENT');
      expect(err.message).toMatch(/set hostname "bad_name!".*berth-pod-ns failed \(exit 3\): hostname: the specified hostname is invalid$/);
      expect(fs.existsSync(podDir('h'))).toBe(false);
      expect(mountsUnder(path.join(tmp, 'pods', 'h'))).toEqual([]);
      expect(podNsServerPid()).toBe(server);
      await removePodNamespaces(podDir('ok'));
      expect(mountsUnder(tmp)).toEqual([]);
    });

    it('keeps its wire protocol under bad requests: oversize and unknown ones answered, an unreadable id ends it', () => {
      const serve = (input: Buffer): { status: number | null; out: string; err: string } => {
        const r = spawnSync(podNsPath(), ['--serve'], { input, encoding: 'utf8', timeout: 10_000 });
        return { status: r.status, out: r.stdout, err: r.stderr };
      };
      const req = (...fields: string[]): Buffer => Buffer.from(`${fields.join('\0')}\0\0`);
      // Two requests in one write, the first with an unknown kind (usage, code 2), the second oversize (code 2, its
      // rest skipped), then one the server serves as usual: replies in order, ids kept.
      const dir = podDir('proto');
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'uts'), '');
      const many = serve(Buffer.concat([req('1', dir, 'pid'), req('2', dir, 'x'.repeat(10_000)), req('3', dir, 'uts', '--hostname', 'proto')]));
      expect(many.status).toBe(0);
      const lines = many.out.trimEnd().split('\n');
      expect(lines.map((l) => l.split(' ').slice(0, 2).join(' '))).toEqual(['1 2', '2 2', '3 0']);
      expect(lines[0]).toContain('unexpected argument "pid"');
      expect(lines[1]).toContain('larger than 8192 bytes');
      expect(nsenter([`--uts=${path.join(dir, 'uts')}`, '--', '/usr/bin/hostname'])).toBe('proto');
      umount2(path.join(dir, 'uts'), MNT_DETACH);
      // A request without a readable id cannot be answered: the server says why and exits, berth starts another.
      const bad = serve(req('x1', dir, 'uts'));
      expect(bad.status).toBe(1);
      expect(bad.err).toContain('a request without a readable id');
      // End of input inside a request: the same.
      const cut = serve(Buffer.from(`4\0${dir}\0ut`));
      expect(cut.status).toBe(1);
      expect(cut.err).toContain('end of input inside a request');
      expect(mountsUnder(tmp)).toEqual([]);
    });

    it('starts a new server after its server was killed', async () => {
      const first = await createPodNamespaces(podDir('k1'), ALL, 'k1');
      const killed = podNsServerPid() ?? 0;
      expect(killed).toBeGreaterThan(0);
      process.kill(killed, 'SIGKILL');
      // Its exit is seen on the next turns of the event loop; a request sent before that would fail with it.
      await until('berth to notice the server is gone', () => podNsServerPid() !== killed, 5_000, 5);
      const second = await createPodNamespaces(podDir('k2'), ALL, 'k2');
      expect(nsenter([`--uts=${second.uts}`, '--', '/usr/bin/hostname'])).toBe('k2');
      expect(nsInode(second.net ?? '')).not.toBe(nsInode(first.net ?? ''));
      expect(podNsServers()).toEqual([podNsServerPid()]);
      expect(podNsServerPid()).not.toBe(killed);
    });

    it('serves net+ipc+uts from a spare made ahead, replaces it, and survives a spare killed while waiting', async () => {
      await createPodNamespaces(podDir('w0'), ALL, 'w0'); // the server runs
      const server = podNsServerPid() ?? 0;
      const spareOf = (): number[] => childrenOf(server);
      const hostNet = fs.readlinkSync('/proc/self/ns/net');
      const netOf = (pid: number): string => fs.readlinkSync(`/proc/${pid}/ns/net`);
      // Made ahead, before any pod asks: a child of the server in a network namespace of its own (once it unshared).
      const spare = await until('a spare to wait beside the server', () => {
        const kids = spareOf();
        return kids.length === 1 && kids[0] !== undefined && netOf(kids[0]) !== hostNet ? kids[0] : undefined;
      }, 5_000, 5);
      const spareNet = netOf(spare);
      const ns = await createPodNamespaces(podDir('w1'), ALL, 'w1');
      expect(`net:[${nsInode(ns.net ?? '')}]`).toBe(spareNet); // the pod got the spare's
      expect(nsenter([`--uts=${ns.uts}`, '--', '/usr/bin/hostname'])).toBe('w1');
      expect(nsenter([`--net=${ns.net}`, '--', '/usr/sbin/ip', '-o', 'link'])).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/);
      const next = await until('a new spare', () => spareOf().find((p) => p !== spare), 5_000, 5);
      // A spare killed while it waits is dropped: the next pod forks instead and gets its namespaces all the same.
      process.kill(next, 'SIGKILL');
      await until('the spare to die', () => !alive(next) || undefined, 5_000, 5);
      const after = await createPodNamespaces(podDir('w2'), ALL, 'w2');
      expect(nsenter([`--uts=${after.uts}`, '--', '/usr/bin/hostname'])).toBe('w2');
      expect(nsInode(after.net ?? '')).not.toBe(nsInode(ns.net ?? ''));
      // Other sets of namespaces never take the spare.
      const spareBefore = await until('a spare again', () => spareOf()[0], 5_000, 5);
      const utsOnly = await createPodNamespaces(podDir('w3'), { net: false, ipc: false, uts: true }, 'w3');
      expect(nsenter([`--uts=${utsOnly.uts}`, '--', '/usr/bin/hostname'])).toBe('w3');
      expect(spareOf()).toContain(spareBefore);
      await Promise.all([ns, after, utsOnly].map((n) => removePodNamespaces(n.dir)));
      await stopPodNsServer();
      await until('the spare to die with its server', () => !alive(spareBefore) || undefined, 5_000, 5);
    });

    it('keeps one server across many pods, and stopPodNsServer ends it', async () => {
      for (let i = 0; i < 20; i++) {
        const ns = await createPodNamespaces(podDir(`s${i}`), ALL, `s${i}`);
        if (i % 2 === 0) await removePodNamespaces(ns.dir);
      }
      const servers = podNsServers();
      expect(servers).toHaveLength(1);
      expect(servers).toEqual([podNsServerPid()]);
      const pid = servers[0] ?? 0;
      await stopPodNsServer();
      expect(alive(pid)).toBe(false);
      expect(podNsServerPid()).toBeUndefined();
      expect(podNsServers()).toEqual([]);
      await stopPodNsServer(); // again: nothing to stop
      // The next pod starts another.
      const ns = await createPodNamespaces(podDir('after'), ALL, 'after');
      expect(nsenter([`--uts=${ns.uts}`, '--', '/usr/bin/hostname'])).toBe('after');
      expect(podNsServers()).toEqual([podNsServerPid()]);
      expect(podNsServerPid()).not.toBe(pid);
    });
  });

  it('cleans a pause that failed to start', async () => {
    const ns: PodNamespaces = { dir: podDir('z'), net: path.join(tmp, 'no-such-netns') };
    fs.mkdirSync(ns.dir, { recursive: true });
    const err = await rejection(startPause(ns, ns.dir));
    expect(err.message).toMatch(/starting pause in .*nsenter exited/);
    expect(fs.readdirSync(ns.dir)).toEqual([]);
    expect(mountsUnder(tmp)).toEqual([]);
  });
});
