// Mounts of a container's OCI spec: the runtime's defaults (/proc, /dev, /sys, …), the sandbox's files (/etc/hosts,
// /etc/resolv.conf, /etc/hostname, /dev/shm) and the CRI's bind mounts, sorted so that parents precede children.
import { mkdirSync, readFileSync, realpathSync, statSync } from 'node:fs';
import { posix } from 'node:path';
import { errnoCode, errorMessage, invalidArgument } from '../common/errors';
import type { Mount__Output } from '../server/generated/runtime/v1/Mount';
import type { OciMount, RootfsPropagation } from './oci-spec';

export interface SandboxFiles {
  resolvConfPath?: string;
  hostsPath?: string;
  hostnamePath?: string;
  /** The pod's /dev/shm (a tmpfs berth mounted); empty → a private tmpfs, or the host's /dev/shm with host IPC. */
  shmPath?: string;
}

export interface MountOptions {
  files: SandboxFiles;
  criMounts: readonly Mount__Output[];
  privileged: boolean;
  readonlyRootfs: boolean;
  hostIpc: boolean;
  /** mountinfo text for the propagation check (tests inject one); default /proc/self/mountinfo. */
  mountinfo?: string;
}

export const MAX_MOUNTS = 1024;

/** Has `p` a `..` component, or a NUL byte? Checked before normalising, which would hide the former. */
const unsafePath = (p: string): boolean => p.includes('\0') || p.split('/').includes('..');

/** Number of components of a mount destination: "/a//b/" → 2. */
const depth = (p: string): number => p.split('/').filter((s) => s !== '').length;

/** Stable sort by depth: a parent always precedes its children, and mounts at the same depth keep their order. */
export function sortMounts(mounts: OciMount[]): OciMount[] {
  return mounts
    .map((m, i) => ({ m, i, d: depth(m.destination) }))
    .sort((a, b) => a.d - b.d || a.i - b.i)
    .map((x) => x.m);
}

function defaultMounts(o: MountOptions): OciMount[] {
  const ro = o.privileged ? [] : ['ro'];
  const fileMode = o.readonlyRootfs ? 'ro' : 'rw';
  const mounts: OciMount[] = [
    { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
    // A private tmpfs even when privileged (the host's devices are then listed in linux.devices): binding the
    // host's /dev would make runc create mount points such as /dev/termination-log in the host's /dev.
    { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
    {
      destination: '/dev/pts',
      type: 'devpts',
      source: 'devpts',
      options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620', 'gid=5'],
    },
    // With host IPC this mounts the host IPC namespace's mqueue instance (root may; hosts often have no /dev/mqueue).
    { destination: '/dev/mqueue', type: 'mqueue', source: 'mqueue', options: ['nosuid', 'noexec', 'nodev'] },
    { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', ...ro] },
    { destination: '/sys/fs/cgroup', type: 'cgroup', source: 'cgroup', options: ['nosuid', 'noexec', 'nodev', 'relatime', ...ro] },
  ];
  const shm = o.files.shmPath || (o.hostIpc ? '/dev/shm' : '');
  mounts.push(
    shm
      ? { destination: '/dev/shm', type: 'bind', source: shm, options: ['rbind', 'rprivate', 'nosuid', 'noexec', 'nodev'] }
      : { destination: '/dev/shm', type: 'tmpfs', source: 'shm', options: ['nosuid', 'noexec', 'nodev', 'mode=1777', 'size=65536k'] },
  );
  const files: [string, string | undefined][] = [
    ['/etc/hosts', o.files.hostsPath],
    ['/etc/resolv.conf', o.files.resolvConfPath],
    ['/etc/hostname', o.files.hostnamePath],
  ];
  for (const [destination, source] of files) {
    if (source) mounts.push({ destination, type: 'bind', source, options: ['rbind', 'rprivate', fileMode] });
  }
  if (o.readonlyRootfs) mounts.push(...readonlyRootfsTmpfs());
  return mounts;
}

/**
 * CRI-O's writable scratch dirs for a read-only rootfs: tmpfs on /run, /tmp and /var/tmp, each seeded with the image's
 * contents of that dir (`tmpcopyup`, which runc and crun both implement). A CRI mount at the same path replaces one.
 */
export function readonlyRootfsTmpfs(): OciMount[] {
  return [
    ['/run', 'mode=0755'],
    ['/tmp', 'mode=1777'],
    ['/var/tmp', 'mode=1777'],
  ].map(([destination = '', mode = '']) => ({
    destination,
    type: 'tmpfs',
    source: 'tmpfs',
    options: ['rw', 'noexec', 'nosuid', 'nodev', 'tmpcopyup', mode],
  }));
}

export interface MountInfoEntry {
  mountPoint: string;
  shared: boolean;
  slave: boolean;
}

const unescape = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

/** Parse proc(5) mountinfo: field 5 is the mount point, optional fields (shared:N, master:N) run up to "-". */
export function parseMountInfo(text: string): MountInfoEntry[] {
  const out: MountInfoEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    const sep = f.indexOf('-');
    if (f.length < 7 || sep < 6 || f[4] === undefined) continue;
    const optional = f.slice(6, sep);
    out.push({
      mountPoint: unescape(f[4]),
      shared: optional.some((x) => x.startsWith('shared:')),
      slave: optional.some((x) => x.startsWith('master:')),
    });
  }
  return out;
}

/** The mount holding `path` (already resolved): the longest mount point prefix, the topmost when stacked. */
export function findMount(entries: MountInfoEntry[], path: string): MountInfoEntry | undefined {
  let best: MountInfoEntry | undefined;
  for (const e of entries) {
    const mp = e.mountPoint;
    const under = mp === '/' || path === mp || path.startsWith(`${mp}/`);
    if (under && (!best || mp.length >= best.mountPoint.length)) best = e;
  }
  return best;
}

const PROPAGATION: Record<string, 'rprivate' | 'rslave' | 'rshared'> = {
  PROPAGATION_PRIVATE: 'rprivate',
  PROPAGATION_HOST_TO_CONTAINER: 'rslave',
  PROPAGATION_BIDIRECTIONAL: 'rshared',
};

/** Make sure the host path exists (CRI-O and the kubelet's hostPath DirectoryOrCreate expect a missing one created). */
function ensureHostPath(hostPath: string, field: string): void {
  try {
    statSync(hostPath);
    return;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw invalidArgument(`${field}: ${hostPath}: ${errorMessage(err)}`);
  }
  try {
    mkdirSync(hostPath, { recursive: true, mode: 0o755 });
  } catch (err) {
    throw invalidArgument(`${field}: cannot create ${hostPath}: ${errorMessage(err)}`);
  }
}

/** Container mounts plus the rootfs propagation their propagation modes need. */
export function buildMounts(o: MountOptions): { mounts: OciMount[]; rootfsPropagation?: RootfsPropagation } {
  if (o.criMounts.length > MAX_MOUNTS) throw invalidArgument(`mounts: ${o.criMounts.length} entries (limit ${MAX_MOUNTS})`);
  let mountinfo: MountInfoEntry[] | undefined;
  let rootfsPropagation: RootfsPropagation | undefined;
  const seen = new Set<string>();
  const cri: OciMount[] = o.criMounts.map((m, i) => {
    const at = `mounts[${i}]`;
    const dst = m.container_path;
    if (!dst || !dst.startsWith('/') || unsafePath(dst)) {
      throw invalidArgument(`${at}.container_path: must be absolute, without ".." (${JSON.stringify(dst)})`);
    }
    const destination = posix.normalize(dst).replace(/(.)\/+$/, '$1');
    if (destination === '/') throw invalidArgument(`${at}.container_path: cannot mount over /`);
    if (seen.has(destination)) throw invalidArgument(`${at}.container_path: duplicate mount destination ${destination}`);
    seen.add(destination);
    const src = m.host_path;
    if (!src || !src.startsWith('/') || src.includes('\0')) {
      throw invalidArgument(`${at}.host_path: must be an absolute path (${JSON.stringify(src)})`);
    }
    const source = posix.normalize(src);
    if (m.image?.image) throw invalidArgument(`${at}.image: image volumes are not supported`);
    if (m.uidMappings.length || m.gidMappings.length) throw invalidArgument(`${at}: id-mapped mounts are not supported`);
    if (m.recursive_read_only) throw invalidArgument(`${at}.recursive_read_only: not supported by this runtime`);
    // selinux_relabel is ignored: SELinux is not enabled on these hosts.
    const propagation = PROPAGATION[m.propagation];
    if (!propagation) throw invalidArgument(`${at}.propagation: unknown ${JSON.stringify(m.propagation)}`);
    ensureHostPath(source, `${at}.host_path`);

    if (propagation !== 'rprivate') {
      // Like CRI-O: propagation into the container needs the host side to receive events itself.
      mountinfo ??= parseMountInfo(o.mountinfo ?? readFileSync('/proc/self/mountinfo', 'utf8'));
      let real: string;
      try {
        real = realpathSync(source);
      } catch (err) {
        throw invalidArgument(`${at}.host_path: ${source}: ${errorMessage(err)}`);
      }
      const mnt = findMount(mountinfo, real);
      const mp = mnt?.mountPoint ?? '/';
      if (propagation === 'rshared') {
        if (!mnt?.shared) throw invalidArgument(`${at}: path ${JSON.stringify(source)} is mounted on ${JSON.stringify(mp)} but it is not a shared mount`);
        rootfsPropagation = 'rshared';
      } else {
        if (!mnt?.shared && !mnt?.slave) {
          throw invalidArgument(`${at}: path ${JSON.stringify(source)} is mounted on ${JSON.stringify(mp)} but it is not a shared or slave mount`);
        }
        rootfsPropagation ??= 'rslave';
      }
    }
    return { destination, type: 'bind', source, options: ['rbind', propagation, m.readonly ? 'ro' : 'rw'] };
  });
  // A CRI mount replaces the default at the same destination (the kubelet brings its own /etc/hosts).
  const defaults = defaultMounts(o).filter((d) => !seen.has(d.destination));
  const result: { mounts: OciMount[]; rootfsPropagation?: RootfsPropagation } = { mounts: sortMounts([...defaults, ...cri]) };
  if (rootfsPropagation) result.rootfsPropagation = rootfsPropagation;
  return result;
}
