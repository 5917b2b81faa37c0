import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, linkSync, mkdirSync, mkdtempSync, readFileSync, rmdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { BerthError } from '../../src/common/errors';
import type { ImageConfigDoc } from '../../src/image/manifest';
import type { ContainerConfig__Output } from '../../src/server/generated/runtime/v1/ContainerConfig';
import type { LinuxContainerResources__Output } from '../../src/server/generated/runtime/v1/LinuxContainerResources';
import type { LinuxContainerSecurityContext__Output } from '../../src/server/generated/runtime/v1/LinuxContainerSecurityContext';
import type { Mount__Output } from '../../src/server/generated/runtime/v1/Mount';
import type { NamespaceMode__Output } from '../../src/server/generated/runtime/v1/NamespaceMode';
import type { PodSandboxConfig__Output } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import type { OciSpec } from '../../src/runtime/oci-spec';
import { Annotations, buildContainerSpec, type ContainerSpecInput, DEFAULT_PATH } from '../../src/runtime/spec';
import { findMount, parseMountInfo, sortMounts } from '../../src/runtime/spec-mounts';
import { ALL_CAPABILITIES, DEFAULT_MASKED_PATHS, DEFAULT_READONLY_PATHS, hostCapabilities } from '../../src/runtime/spec-security';

const DEFAULT_CAPS = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_MKNOD', 'CAP_NET_RAW', 'CAP_SETGID', 'CAP_SETUID',
  'CAP_SETFCAP', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_SYS_CHROOT', 'CAP_KILL', 'CAP_AUDIT_WRITE',
];

let tmp: string;
beforeEach(() => {
  tmp = mkdtempSync(join(tmpdir(), 'berth-spec-'));
});
afterEach(() => rmSync(tmp, { recursive: true, force: true }));

function securityContext(o: Partial<LinuxContainerSecurityContext__Output> = {}): LinuxContainerSecurityContext__Output {
  return {
    capabilities: null, privileged: false, namespace_options: null, selinux_options: null, run_as_user: null,
    run_as_username: '', readonly_rootfs: false, supplemental_groups: [], apparmor_profile: '', seccomp_profile_path: '',
    no_new_privs: false, run_as_group: null, masked_paths: [], readonly_paths: [], seccomp: null, apparmor: null,
    supplemental_groups_policy: 'Merge', ...o,
  };
}

function resources(o: Partial<LinuxContainerResources__Output> = {}): LinuxContainerResources__Output {
  return {
    cpu_period: '', cpu_quota: '', cpu_shares: '', memory_limit_in_bytes: '', oom_score_adj: '', cpuset_cpus: '',
    cpuset_mems: '', hugepage_limits: [], unified: {}, memory_swap_limit_in_bytes: '', ...o,
  };
}

function mount(o: Partial<Mount__Output>): Mount__Output {
  return {
    container_path: '', host_path: '', readonly: false, selinux_relabel: false, propagation: 'PROPAGATION_PRIVATE',
    uidMappings: [], gidMappings: [], recursive_read_only: false, image: null, image_sub_path: '', ...o,
  };
}

function containerConfig(o: Partial<ContainerConfig__Output> = {}, sc?: Partial<LinuxContainerSecurityContext__Output>): ContainerConfig__Output {
  return {
    metadata: { name: 'app', attempt: 0 },
    image: { image: 'busybox:latest', annotations: {}, user_specified_image: '', runtime_handler: '', image_ref: '' },
    command: [], args: [], working_dir: '', envs: [], mounts: [], devices: [], labels: {}, annotations: {},
    log_path: '', stdin: false, stdin_once: false, tty: false,
    linux: { resources: null, security_context: securityContext(sc) },
    windows: null, CDI_devices: [], stop_signal: 'RUNTIME_DEFAULT', ...o,
  };
}

function podConfig(net: NamespaceMode__Output = 'POD', ipc: NamespaceMode__Output = 'POD', privileged = false): PodSandboxConfig__Output {
  return {
    metadata: { name: 'pod', uid: 'uid-1', namespace: 'default', attempt: 0 },
    hostname: 'pod-host', log_directory: '', dns_config: null, port_mappings: [], labels: {}, annotations: {},
    linux: {
      cgroup_parent: '', sysctls: {}, overhead: null, resources: null,
      security_context: {
        namespace_options: { network: net, pid: 'CONTAINER', ipc, target_id: '', userns_options: null },
        selinux_options: null, run_as_user: null, readonly_rootfs: false, supplemental_groups: [], privileged,
        seccomp_profile_path: '', run_as_group: null, seccomp: null, apparmor: null, supplemental_groups_policy: 'Merge',
      },
    },
    windows: null,
  };
}

function imageConfig(c: ImageConfigDoc['config'] = {}): ImageConfigDoc {
  return { architecture: 'amd64', os: 'linux', config: c, rootfs: { type: 'layers', diff_ids: [] }, history: [] };
}

function input(o: Partial<ContainerSpecInput> = {}): ContainerSpecInput {
  return {
    containerId: 'c0ffee',
    podId: 'beef',
    config: containerConfig({ command: ['/bin/true'] }),
    sandbox: {
      config: podConfig(),
      hostname: 'pod-host',
      namespacePaths: { net: '/run/berth/ns/net/beef', ipc: '/run/berth/ns/ipc/beef', uts: '/run/berth/ns/uts/beef' },
      resolvConfPath: '/run/berth/pods/beef/resolv.conf',
      hostsPath: '/run/berth/pods/beef/hosts',
      hostnamePath: '/run/berth/pods/beef/hostname',
      shmPath: '/run/berth/pods/beef/shm',
      cgroupParent: '/berth/pod-beef',
    },
    image: { config: imageConfig() },
    rootfs: '/var/lib/berth/c0ffee/merged',
    user: { uid: 0, gid: 0, additionalGids: [0], username: 'root', home: '/root' },
    defaultCapabilities: DEFAULT_CAPS,
    hostCapabilities: [...ALL_CAPABILITIES],
    oomScoreAdjFloor: 0,
    ...o,
  };
}

function thrown(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (e) {
    if (e instanceof BerthError) return e;
    throw e;
  }
  throw new Error('expected a throw');
}

const withSc = (sc: Partial<LinuxContainerSecurityContext__Output>, o: Partial<ContainerConfig__Output> = {}): ContainerSpecInput =>
  input({ config: containerConfig({ command: ['/bin/true'], ...o }, sc) });

describe('process.args', () => {
  const cases: [string, string[], string[], string[] | undefined, string[] | undefined, string[]][] = [
    ['image only', [], [], ['/ep'], ['cmd'], ['/ep', 'cmd']],
    ['args replace Cmd', [], ['a'], ['/ep'], ['cmd'], ['/ep', 'a']],
    ['command replaces Entrypoint and drops Cmd', ['/c'], [], ['/ep'], ['cmd'], ['/c']],
    ['command + args', ['/c'], ['a', 'b'], ['/ep'], ['cmd'], ['/c', 'a', 'b']],
    ['Cmd alone', [], [], undefined, ['/bin/sh'], ['/bin/sh']],
    ['args alone', [], ['/bin/echo', 'x'], undefined, undefined, ['/bin/echo', 'x']],
  ];
  test.each(cases)('%s', (_name, command, args, Entrypoint, Cmd, want) => {
    const spec = buildContainerSpec(input({
      config: containerConfig({ command, args }),
      image: { config: imageConfig({ Entrypoint, Cmd }) },
    }));
    expect(spec.process.args).toEqual(want);
  });
  test('nothing at all is INVALID_ARGUMENT', () => {
    const err = thrown(() => buildContainerSpec(input({ config: containerConfig() })));
    expect(err.code).toBe('INVALID_ARGUMENT');
    expect(err.message).toMatch(/no command specified/);
  });
});

describe('process', () => {
  test('env: image then CRI overriding by key, PATH/HOSTNAME/HOME defaults', () => {
    const spec = buildContainerSpec(input({
      config: containerConfig({
        command: ['/x'],
        envs: [{ key: 'A', value: Buffer.from('cri') }, { key: 'C', value: Buffer.from('3=3') }],
      }),
      image: { config: imageConfig({ Env: ['A=image', 'B=2'] }) },
    }));
    expect(spec.process.env).toEqual(['HOSTNAME=pod-host', 'A=cri', 'B=2', 'C=3=3', DEFAULT_PATH, 'HOME=/root']);
  });
  test('env: image PATH kept; a bad CRI key refused', () => {
    const spec = buildContainerSpec(input({ image: { config: imageConfig({ Env: ['PATH=/opt/bin'] }) } }));
    expect(spec.process.env).toContain('PATH=/opt/bin');
    expect(spec.process.env).not.toContain(DEFAULT_PATH);
    const err = thrown(() => buildContainerSpec(input({
      config: containerConfig({ command: ['/x'], envs: [{ key: 'A=B', value: Buffer.from('') }] }),
    })));
    expect(err.message).toMatch(/^envs\[0\]/);
  });
  test('cwd, terminal, user, no_new_privs, oom_score_adj clamp', () => {
    const base = buildContainerSpec(input({ image: { config: imageConfig({ WorkingDir: 'app' }) } }));
    expect(base.process.cwd).toBe('/app');
    const spec = buildContainerSpec(input({
      config: {
        ...containerConfig({ command: ['/x'], working_dir: '/work', tty: true }, { no_new_privs: true }),
        linux: { resources: resources({ oom_score_adj: '-997' }), security_context: securityContext({ no_new_privs: true }) },
      },
      user: { uid: 1000, gid: 100, additionalGids: [100, 27], home: '/home/u' },
      oomScoreAdjFloor: -500,
    }));
    expect(spec.process.cwd).toBe('/work');
    expect(spec.process.terminal).toBe(true);
    expect(spec.process.env).toContain('TERM=xterm');
    expect(spec.process.user).toEqual({ uid: 1000, gid: 100, additionalGids: [100, 27] });
    expect(spec.process.noNewPrivileges).toBe(true);
    expect(spec.process.oomScoreAdj).toBe(-500);
    expect(thrown(() => buildContainerSpec(withSc({}, { working_dir: 'rel' }))).message).toMatch(/^working_dir/);
  });
});

describe('capabilities', () => {
  const caps = (sc: Partial<LinuxContainerSecurityContext__Output>): string[] =>
    buildContainerSpec(withSc(sc)).process.capabilities?.bounding ?? [];
  const cap = (add: string[], drop: string[]): Partial<LinuxContainerSecurityContext__Output> => ({
    capabilities: { add_capabilities: add, drop_capabilities: drop, add_ambient_capabilities: [] },
  });

  test('defaults, add (with or without CAP_), drop', () => {
    expect(caps({})).toEqual(DEFAULT_CAPS);
    const got = caps(cap(['NET_ADMIN', 'cap_sys_time'], ['KILL', 'CAP_CHOWN']));
    expect(got).toEqual(expect.arrayContaining(['CAP_NET_ADMIN', 'CAP_SYS_TIME']));
    expect(got).not.toContain('CAP_KILL');
    expect(got).not.toContain('CAP_CHOWN');
  });
  test('drop ALL then add; add ALL minus one; unknown refused', () => {
    expect(caps(cap(['NET_BIND_SERVICE'], ['ALL']))).toEqual(['CAP_NET_BIND_SERVICE']);
    const all = caps(cap(['ALL'], ['SYS_ADMIN']));
    expect(all).toHaveLength(ALL_CAPABILITIES.length - 1);
    expect(all).not.toContain('CAP_SYS_ADMIN');
    expect(thrown(() => caps(cap(['BOGUS'], []))).message).toMatch(/add_capabilities\[0\]: unknown capability "BOGUS"/);
  });
  test('never more than the host holds: the default host set is berth\'s bounding set', () => {
    const host = hostCapabilities();
    const bnd = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1] ?? '0';
    expect(host).toHaveLength([...BigInt(`0x${bnd}`).toString(2)].filter((b) => b === '1').length);
    const limited = buildContainerSpec({ ...withSc(cap(['SYS_RESOURCE', 'SYS_ADMIN'], [])), hostCapabilities: ['CAP_SYS_ADMIN', 'CAP_KILL'] });
    expect(limited.process.capabilities?.bounding).toEqual(['CAP_KILL', 'CAP_SYS_ADMIN']);
  });
  test('ambient capabilities must be in the set', () => {
    const amb = (a: string[]): OciSpec => buildContainerSpec(withSc({
      capabilities: { add_capabilities: [], drop_capabilities: [], add_ambient_capabilities: a },
    }));
    expect(amb(['NET_BIND_SERVICE']).process.capabilities).toMatchObject({ ambient: ['CAP_NET_BIND_SERVICE'], inheritable: ['CAP_NET_BIND_SERVICE'] });
    expect(thrown(() => amb(['SYS_ADMIN'])).message).toMatch(/add_ambient_capabilities\[0\]/);
  });
  test('inheritable and ambient stay empty', () => {
    const c = buildContainerSpec(input()).process.capabilities;
    expect(c?.inheritable).toEqual([]);
    expect(c?.ambient).toEqual([]);
    expect(c?.effective).toEqual(c?.bounding);
  });
});

describe('privileged', () => {
  test('all caps, nothing masked, host devices, rw /sys, no seccomp, every device allowed', () => {
    const base = input();
    const spec = buildContainerSpec({
      ...base,
      config: containerConfig({ command: ['/x'] }, { privileged: true, seccomp: { profile_type: 'RuntimeDefault', localhost_ref: '' } }),
      sandbox: { ...base.sandbox, config: podConfig('POD', 'POD', true) },
    });
    expect(spec.process.capabilities?.bounding).toEqual(ALL_CAPABILITIES);
    expect(spec.linux.maskedPaths).toEqual([]);
    expect(spec.linux.readonlyPaths).toEqual([]);
    expect(spec.linux.seccomp).toBeUndefined();
    expect(spec.mounts.find((m) => m.destination === '/dev')).toMatchObject({ type: 'tmpfs' });
    expect(spec.linux.devices).toContainEqual(expect.objectContaining({ path: '/dev/null', type: 'c', major: 1, minor: 3 }));
    expect(spec.linux.devices?.map((d) => d.path)).not.toContain('/dev/console');
    expect(spec.mounts.find((m) => m.destination === '/sys')?.options).not.toContain('ro');
    expect(spec.linux.resources?.devices).toEqual([{ allow: true, access: 'rwm' }]);
  });
  test('a privileged container needs a privileged sandbox', () => {
    expect(thrown(() => buildContainerSpec(withSc({ privileged: true }))).message).toMatch(/not privileged/);
  });
});

describe('rootfs and masks', () => {
  test('readonly rootfs makes root and the sandbox files ro', () => {
    const spec = buildContainerSpec(withSc({ readonly_rootfs: true }));
    expect(spec.root).toEqual({ path: '/var/lib/berth/c0ffee/merged', readonly: true });
    expect(spec.mounts.find((m) => m.destination === '/etc/hosts')?.options).toContain('ro');
  });
  test("readonly rootfs gets CRI-O's tmpfs on /run, /tmp and /var/tmp, seeded from the image; a CRI mount replaces one", () => {
    const tmpfs = (spec: OciSpec): OciSpec['mounts'] => spec.mounts.filter((m) => m.type === 'tmpfs' && ['/run', '/tmp', '/var/tmp'].includes(m.destination));
    const ro = buildContainerSpec(withSc({ readonly_rootfs: true }));
    expect(tmpfs(ro)).toEqual([
      { destination: '/run', type: 'tmpfs', source: 'tmpfs', options: ['rw', 'noexec', 'nosuid', 'nodev', 'tmpcopyup', 'mode=0755'] },
      { destination: '/tmp', type: 'tmpfs', source: 'tmpfs', options: ['rw', 'noexec', 'nosuid', 'nodev', 'tmpcopyup', 'mode=1777'] },
      { destination: '/var/tmp', type: 'tmpfs', source: 'tmpfs', options: ['rw', 'noexec', 'nosuid', 'nodev', 'tmpcopyup', 'mode=1777'] },
    ]);
    expect(tmpfs(buildContainerSpec(input()))).toEqual([]);
    const own = buildContainerSpec(withSc({ readonly_rootfs: true }, { mounts: [mount({ container_path: '/tmp/', host_path: tmp })] }));
    expect(tmpfs(own).map((m) => m.destination)).toEqual(['/run', '/var/tmp']);
    expect(own.mounts.filter((m) => m.destination === '/tmp')).toEqual([{ destination: '/tmp', type: 'bind', source: tmp, options: ['rbind', 'rprivate', 'rw'] }]);
  });
  test('default masks, given masks', () => {
    const def = buildContainerSpec(input());
    expect(def.linux.maskedPaths).toEqual(DEFAULT_MASKED_PATHS);
    expect(def.linux.readonlyPaths).toEqual(DEFAULT_READONLY_PATHS);
    const given = buildContainerSpec(withSc({ masked_paths: ['/proc/kcore'], readonly_paths: ['/proc/sys'] }));
    expect(given.linux.maskedPaths).toEqual(['/proc/kcore']);
    expect(given.linux.readonlyPaths).toEqual(['/proc/sys']);
  });
});

describe('mounts', () => {
  const dests = (spec: OciSpec): string[] => spec.mounts.map((m) => m.destination);

  test('defaults and sandbox files', () => {
    const spec = buildContainerSpec(input());
    expect(dests(spec)).toEqual(expect.arrayContaining([
      '/proc', '/dev', '/dev/pts', '/dev/shm', '/dev/mqueue', '/sys', '/sys/fs/cgroup', '/etc/hosts', '/etc/resolv.conf', '/etc/hostname',
    ]));
    expect(spec.mounts.find((m) => m.destination === '/dev/shm')).toMatchObject({ type: 'bind', source: '/run/berth/pods/beef/shm' });
    expect(spec.mounts.find((m) => m.destination === '/sys/fs/cgroup')?.options).toContain('ro');
  });
  test('ro, propagation private, missing source created, parents before children, CRI /etc/hosts wins', () => {
    const missing = join(tmp, 'new/dir');
    const hosts = join(tmp, 'hosts');
    writeFileSync(hosts, '127.0.0.1 x\n');
    const spec = buildContainerSpec(withSc({}, {
      mounts: [
        mount({ container_path: '/data/sub', host_path: tmp, readonly: true }),
        mount({ container_path: '/data', host_path: missing }),
        mount({ container_path: '/etc/hosts', host_path: hosts }),
      ],
    }));
    expect(statSync(missing).isDirectory()).toBe(true);
    const data = spec.mounts.find((m) => m.destination === '/data/sub');
    expect(data).toEqual({ destination: '/data/sub', type: 'bind', source: tmp, options: ['rbind', 'rprivate', 'ro'] });
    const d = dests(spec);
    expect(d.indexOf('/data')).toBeLessThan(d.indexOf('/data/sub'));
    expect(spec.mounts.filter((m) => m.destination === '/etc/hosts')).toEqual([
      { destination: '/etc/hosts', type: 'bind', source: hosts, options: ['rbind', 'rprivate', 'rw'] },
    ]);
    expect(spec.linux.rootfsPropagation).toBeUndefined();
  });
  test('relative or ".." paths are refused', () => {
    const err = (m: Partial<Mount__Output>): string =>
      thrown(() => buildContainerSpec(withSc({}, { mounts: [mount({ host_path: tmp, container_path: '/ok', ...m })] }))).message;
    expect(err({ container_path: 'rel' })).toMatch(/^mounts\[0\]\.container_path: must be absolute/);
    expect(err({ container_path: '/a/../etc' })).toMatch(/^mounts\[0\]\.container_path/);
    expect(err({ host_path: 'rel' })).toMatch(/^mounts\[0\]\.host_path: must be an absolute path/);
  });
  test('propagation needs a shared / slave host mount; the mode maps to rshared / rslave', () => {
    // "/" is shared on most hosts but not all: decide with the same mountinfo the check reads.
    const root = findMount(parseMountInfo(readFileSync('/proc/self/mountinfo', 'utf8')), tmp);
    const bidi = (): OciSpec =>
      buildContainerSpec(withSc({}, { mounts: [mount({ container_path: '/b', host_path: tmp, propagation: 'PROPAGATION_BIDIRECTIONAL' })] }));
    const h2c = (): OciSpec =>
      buildContainerSpec(withSc({}, { mounts: [mount({ container_path: '/b', host_path: tmp, propagation: 'PROPAGATION_HOST_TO_CONTAINER' })] }));
    if (root?.shared) {
      expect(bidi().linux.rootfsPropagation).toBe('rshared');
      expect(bidi().mounts.find((m) => m.destination === '/b')?.options).toEqual(['rbind', 'rshared', 'rw']);
    } else {
      expect(thrown(bidi).message).toMatch(/is not a shared mount/);
    }
    if (root?.shared || root?.slave) expect(h2c().linux.rootfsPropagation).toBe('rslave');
    else expect(thrown(h2c).message).toMatch(new RegExp(`path "${tmp}" is mounted on .* not a shared or slave mount`));
  });
  test('mountinfo parsing and lookup', () => {
    const info = parseMountInfo([
      '22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw',
      '30 22 0:5 / /mnt/priv rw - tmpfs tmpfs rw',
      '31 22 0:6 / /mnt/sl\\040ave rw master:1 - tmpfs tmpfs rw',
    ].join('\n'));
    expect(findMount(info, '/mnt/priv/x')).toMatchObject({ mountPoint: '/mnt/priv', shared: false, slave: false });
    expect(findMount(info, '/mnt/sl ave')).toMatchObject({ slave: true });
    expect(findMount(info, '/mnt/privx')).toMatchObject({ mountPoint: '/', shared: true });
  });
  test('sortMounts is stable by depth', () => {
    const s = sortMounts([{ destination: '/a/b' }, { destination: '/z' }, { destination: '/a' }, { destination: '/y/' }]);
    expect(s.map((m) => m.destination)).toEqual(['/z', '/a', '/y/', '/a/b']);
  });
});

describe('devices', () => {
  test('a CRI device becomes a node and an allow rule after the default deny list', () => {
    const spec = buildContainerSpec(withSc({}, { devices: [{ host_path: '/dev/null', container_path: '/dev/mynull', permissions: 'rw' }] }));
    expect(spec.linux.devices).toEqual([expect.objectContaining({ path: '/dev/mynull', type: 'c', major: 1, minor: 3 })]);
    const rules = spec.linux.resources?.devices ?? [];
    expect(rules[0]).toEqual({ allow: false, access: 'rwm' });
    expect(rules).toContainEqual({ allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' });
    expect(rules[rules.length - 1]).toEqual({ allow: true, type: 'c', major: 1, minor: 3, access: 'rw' });
  });
  test('bad permissions and non-devices are refused', () => {
    expect(thrown(() => buildContainerSpec(withSc({}, { devices: [{ host_path: '/dev/null', container_path: '/dev/n', permissions: 'rx' }] }))).message)
      .toMatch(/^devices\[0\]\.permissions/);
    const file = join(tmp, 'f');
    writeFileSync(file, '');
    expect(thrown(() => buildContainerSpec(withSc({}, { devices: [{ host_path: file, container_path: '/dev/n', permissions: 'r' }] }))).message)
      .toMatch(/not a device/);
  });
});

describe('namespaces', () => {
  const ns = (spec: OciSpec): Record<string, string> =>
    Object.fromEntries(spec.linux.namespaces.map((n) => [n.type, n.path ?? 'new']));
  const withPid = (pid: NamespaceMode__Output, paths: ContainerSpecInput['sandbox']['namespacePaths'], net: NamespaceMode__Output = 'POD'): OciSpec => {
    const base = input();
    return buildContainerSpec({
      ...base,
      config: containerConfig({ command: ['/x'] }, { namespace_options: { network: net, ipc: net, pid, target_id: 'target', userns_options: null } }),
      sandbox: { ...base.sandbox, config: podConfig(net, net), namespacePaths: paths, shmPath: net === 'NODE' ? '' : '/shm' },
    });
  };
  test('POD: join the pod namespaces; pid joins the pod pid namespace', () => {
    const spec = withPid('POD', { net: '/n', ipc: '/i', uts: '/u', pid: '/p' });
    expect(ns(spec)).toEqual({ mount: 'new', cgroup: 'new', network: '/n', ipc: '/i', uts: '/u', pid: '/p' });
    expect(spec.hostname).toBe('pod-host');
  });
  test('CONTAINER pid: a new one', () => {
    expect(ns(withPid('CONTAINER', { net: '/n', ipc: '/i', uts: '/u' })).pid).toBe('new');
  });
  test('NODE: host network, IPC, UTS and pid; no hostname; host /dev/shm', () => {
    const spec = withPid('NODE', {}, 'NODE');
    expect(ns(spec)).toEqual({ mount: 'new', cgroup: 'new' });
    expect(spec.hostname).toBeUndefined();
    expect(spec.mounts.find((m) => m.destination === '/dev/shm')).toMatchObject({ type: 'bind', source: '/dev/shm' });
  });
  test('TARGET: join the target container pid namespace; missing path refused', () => {
    expect(ns(withPid('TARGET', { net: '/n', pid: '/proc/42/ns/pid' })).pid).toBe('/proc/42/ns/pid');
    expect(thrown(() => withPid('TARGET', { net: '/n' })).message).toMatch(/target_id/);
  });
});

describe('resources', () => {
  const res = (r: Partial<LinuxContainerResources__Output>, o: Partial<ContainerSpecInput> = {}): OciSpec => {
    const base = input(o);
    return buildContainerSpec({ ...base, config: { ...base.config, linux: { resources: resources(r), security_context: null } } });
  };
  test('cpu, memory with swap defaulting to the limit, hugepages, pids, cgroups path', () => {
    const spec = res(
      { cpu_shares: '512', cpu_quota: '50000', cpu_period: '100000', cpuset_cpus: '0-1', memory_limit_in_bytes: '67108864',
        hugepage_limits: [{ page_size: '2MB', limit: '0' }] },
      { pidsLimit: 1024 },
    );
    expect(spec.linux.resources?.cpu).toEqual({ shares: 512, quota: 50000, period: 100000, cpus: '0-1' });
    expect(spec.linux.resources?.memory).toEqual({ limit: 67108864, swap: 67108864 });
    expect(spec.linux.resources?.hugepageLimits).toEqual([{ pageSize: '2MB', limit: 0 }]);
    expect(spec.linux.resources?.pids).toEqual({ limit: 1024 });
    expect(spec.linux.cgroupsPath).toBe('/berth/pod-beef/c0ffee');
    expect(spec.linux.sysctl).toEqual({});
  });
  test('explicit swap, and nonsense refused', () => {
    expect(res({ memory_limit_in_bytes: '100', memory_swap_limit_in_bytes: '200' }).linux.resources?.memory).toEqual({ limit: 100, swap: 200 });
    expect(res({}).linux.resources?.memory).toBeUndefined();
    expect(thrown(() => res({ cpu_shares: 'x' })).message).toMatch(/^resources\.cpu_shares/);
    expect(thrown(() => res({ memory_limit_in_bytes: '100', memory_swap_limit_in_bytes: '50' })).message).toMatch(/swap/);
    expect(thrown(() => res({ oom_score_adj: '5000' })).message).toMatch(/oom_score_adj/);
  });
});

describe('seccomp', () => {
  test('RuntimeDefault, Unconfined, unset, legacy path', () => {
    const rd = buildContainerSpec(withSc({ seccomp: { profile_type: 'RuntimeDefault', localhost_ref: '' } }));
    expect(rd.linux.seccomp?.defaultAction).toBe('SCMP_ACT_ERRNO');
    expect(buildContainerSpec(withSc({ seccomp: { profile_type: 'Unconfined', localhost_ref: '' } })).linux.seccomp).toBeUndefined();
    expect(buildContainerSpec(withSc({})).linux.seccomp).toBeUndefined();
    expect(buildContainerSpec(withSc({ seccomp_profile_path: 'runtime/default' })).linux.seccomp).toEqual(rd.linux.seccomp);
  });
  test('Localhost: loaded and resolved; missing or bad JSON is INVALID_ARGUMENT naming the path', () => {
    const file = join(tmp, 'profile.json');
    writeFileSync(file, JSON.stringify({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [
        { names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 },
        { names: ['chroot'], action: 'SCMP_ACT_ERRNO', excludes: { caps: ['CAP_SYS_CHROOT'] } },
      ],
    }));
    const spec = buildContainerSpec(withSc({ seccomp: { profile_type: 'Localhost', localhost_ref: file } }));
    // chroot's rule is dropped: the default set holds CAP_SYS_CHROOT.
    expect(spec.linux.seccomp).toEqual({
      defaultAction: 'SCMP_ACT_ALLOW',
      syscalls: [{ names: ['mkdir'], action: 'SCMP_ACT_ERRNO', errnoRet: 1 }],
    });
    const missing = join(tmp, 'nope.json');
    const e1 = thrown(() => buildContainerSpec(withSc({ seccomp: { profile_type: 'Localhost', localhost_ref: missing } })));
    expect(e1.code).toBe('INVALID_ARGUMENT');
    expect(e1.message).toContain(missing);
    writeFileSync(file, '{nope');
    const e2 = thrown(() => buildContainerSpec(withSc({ seccomp: { profile_type: 'Localhost', localhost_ref: file } })));
    expect(e2.message).toMatch(/invalid JSON/);
    expect(e2.message).toContain(file);
  });
});

describe('annotations', () => {
  test('CRI annotations plus berth keys that cannot be spoofed', () => {
    const spec = buildContainerSpec(input({
      config: containerConfig({ command: ['/x'], annotations: { a: 'b', [Annotations.sandboxId]: 'spoof' } }),
    }));
    expect(spec.annotations).toMatchObject({
      a: 'b',
      [Annotations.containerType]: 'container',
      [Annotations.sandboxId]: 'beef',
      [Annotations.containerName]: 'app',
      [Annotations.sandboxNamespace]: 'default',
    });
  });
});

// ---- end to end: the generated spec under runc ------------------------------------------------------------------

const RUNC = '/usr/sbin/runc';
const canRun = process.getuid?.() === 0 && existsSync(RUNC) && existsSync('/bin/busybox');

(canRun ? describe : describe.skip)('runc with a RuntimeDefault spec', () => {
  const cgroupParent = `/berth-spec-test-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
  const runcRoot = (): string => join(tmp, 'runc-state');

  afterAll(() => {
    // runc removed the container's cgroups; the parent it created in each hierarchy is ours to remove.
    for (const ctrl of ['blkio', 'cpu', 'cpuacct', 'cpuset', 'devices', 'freezer', 'hugetlb', 'memory', 'pids', 'systemd', 'unified']) {
      const dir = join('/sys/fs/cgroup', ctrl, cgroupParent);
      try {
        rmdirSync(dir);
      } catch {
        // not created in this hierarchy
      }
    }
  });

  function run(id: string, script: string, seccomp: boolean): { status: number | null; out: string } {
    const bundle = join(tmp, id);
    const rootfs = join(bundle, 'rootfs');
    mkdirSync(join(rootfs, 'bin'), { recursive: true });
    execFileSync('cp', ['/bin/busybox', join(rootfs, 'bin/busybox')]);
    linkSync(join(rootfs, 'bin/busybox'), join(rootfs, 'bin/sh'));
    const base = input();
    const spec = buildContainerSpec({
      ...base,
      containerId: id,
      config: containerConfig(
        { command: ['/bin/sh', '-c', script] },
        seccomp ? { seccomp: { profile_type: 'RuntimeDefault', localhost_ref: '' } } : {},
      ),
      sandbox: { ...base.sandbox, namespacePaths: {}, resolvConfPath: '', hostsPath: '', hostnamePath: '', shmPath: '', cgroupParent },
      rootfs,
      user: { uid: 0, gid: 0, additionalGids: [0], home: '/' },
    });
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(spec));
    const r = spawnSync(RUNC, ['--root', runcRoot(), 'run', '--bundle', bundle, id], { encoding: 'utf8', timeout: 30000 });
    spawnSync(RUNC, ['--root', runcRoot(), 'delete', '--force', id]);
    return { status: r.status, out: `${r.stdout}${r.stderr}` };
  }

  test('echo works and unshare(CLONE_NEWUSER) is refused only under the profile', () => {
    const ok = run('berth-spec-ok', '/bin/busybox echo hello && /bin/busybox unshare -U /bin/busybox true && echo unshared', false);
    expect(ok.out).toContain('hello');
    expect(ok.out).toContain('unshared');
    const blocked = run('berth-spec-sec', '/bin/busybox echo hello; /bin/busybox unshare -U /bin/busybox true || echo refused', true);
    expect(blocked.out).toContain('hello');
    expect(blocked.out).toContain('refused');
    expect(blocked.out).not.toContain('unshared');
    expect(blocked.status).toBe(0);
  });
});
