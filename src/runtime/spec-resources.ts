// cgroup resources and devices of a container's OCI spec (cgroup v1 semantics: `unified` is ignored).
import { lstatSync, readdirSync, statSync, type BigIntStats } from 'node:fs';
import { posix } from 'node:path';
import { errorMessage, invalidArgument, isBerthError } from '../common/errors';
import type { Device__Output } from '../server/generated/runtime/v1/Device';
import type { LinuxContainerResources__Output } from '../server/generated/runtime/v1/LinuxContainerResources';
import type { OciDevice, OciDeviceRule, OciResources } from './oci-spec';

export const MAX_DEVICES = 4096;

/** runc's default allow-list after "deny all": mknod of anything, and the devices every container gets. */
export const DEFAULT_DEVICE_RULES: readonly OciDeviceRule[] = [
  { allow: false, access: 'rwm' },
  { allow: true, type: 'c', access: 'm' },
  { allow: true, type: 'b', access: 'm' },
  { allow: true, type: 'c', major: 1, minor: 3, access: 'rwm' }, // null
  { allow: true, type: 'c', major: 1, minor: 5, access: 'rwm' }, // zero
  { allow: true, type: 'c', major: 1, minor: 7, access: 'rwm' }, // full
  { allow: true, type: 'c', major: 1, minor: 8, access: 'rwm' }, // random
  { allow: true, type: 'c', major: 1, minor: 9, access: 'rwm' }, // urandom
  { allow: true, type: 'c', major: 5, minor: 0, access: 'rwm' }, // tty
  { allow: true, type: 'c', major: 5, minor: 2, access: 'rwm' }, // ptmx
  { allow: true, type: 'c', major: 136, access: 'rwm' }, // pts/*
  { allow: true, type: 'c', major: 10, minor: 200, access: 'rwm' }, // net/tun
];

/** A CRI int64 (a decimal string; "" is 0) within [min, max], as a JS number. */
export function int64(raw: string, field: string, min: bigint, max: bigint): number {
  if (raw === '') return 0;
  if (!/^-?\d{1,20}$/.test(raw)) throw invalidArgument(`${field}: ${JSON.stringify(raw)} is not an integer`);
  const v = BigInt(raw);
  if (v < min || v > max) throw invalidArgument(`${field}: ${raw} is out of range ${min}..${max}`);
  return Number(v);
}

const MAX_SAFE = BigInt(Number.MAX_SAFE_INTEGER);
const CPUSET = /^\d+(-\d+)?(,\d+(-\d+)?)*$/;

/**
 * cpu and memory from the CRI; swap defaults to the memory limit (no swap, as the kubelet expects) and is ignored
 * without a memory limit (v1 needs memsw ≥ memory). Hugepage limits pass through; pids from berth's config.
 */
export function buildResources(
  res: LinuxContainerResources__Output | null | undefined,
  deviceRules: OciDeviceRule[],
  pidsLimit?: number,
): OciResources {
  const out: OciResources = { devices: deviceRules };
  if (res) {
    const shares = int64(res.cpu_shares, 'resources.cpu_shares', 0n, 262144n);
    const quota = int64(res.cpu_quota, 'resources.cpu_quota', -1n, MAX_SAFE);
    const period = int64(res.cpu_period, 'resources.cpu_period', 0n, 1000000n);
    const cpus = res.cpuset_cpus.trim();
    const mems = res.cpuset_mems.trim();
    if (cpus && !CPUSET.test(cpus)) throw invalidArgument(`resources.cpuset_cpus: ${JSON.stringify(cpus)} is not a cpu list`);
    if (mems && !CPUSET.test(mems)) throw invalidArgument(`resources.cpuset_mems: ${JSON.stringify(mems)} is not a node list`);
    const cpu = {
      ...(shares > 0 && { shares: Math.max(shares, 2) }),
      ...(quota !== 0 && { quota }),
      ...(period > 0 && { period }),
      ...(cpus && { cpus }),
      ...(mems && { mems }),
    };
    if (Object.keys(cpu).length) out.cpu = cpu;

    const limit = int64(res.memory_limit_in_bytes, 'resources.memory_limit_in_bytes', 0n, MAX_SAFE);
    const swap = int64(res.memory_swap_limit_in_bytes, 'resources.memory_swap_limit_in_bytes', -1n, MAX_SAFE);
    if (limit > 0) {
      if (swap > 0 && swap < limit) {
        throw invalidArgument(`resources.memory_swap_limit_in_bytes: ${swap} is below memory_limit_in_bytes ${limit}`);
      }
      out.memory = { limit, swap: swap === 0 ? limit : swap };
    }

    const hugepages = res.hugepage_limits.map((h, i) => {
      if (!/^\d+(KB|MB|GB|TB|PB)$/.test(h.page_size)) {
        throw invalidArgument(`resources.hugepage_limits[${i}].page_size: ${JSON.stringify(h.page_size)} (want e.g. "2MB")`);
      }
      return { pageSize: h.page_size, limit: int64(h.limit, `resources.hugepage_limits[${i}].limit`, 0n, MAX_SAFE) };
    });
    if (hugepages.length) out.hugepageLimits = hugepages;
  }
  if (pidsLimit !== undefined && pidsLimit > 0) out.pids = { limit: pidsLimit };
  return out;
}

function devType(st: { isCharacterDevice(): boolean; isBlockDevice(): boolean }): 'c' | 'b' | undefined {
  if (st.isCharacterDevice()) return 'c';
  if (st.isBlockDevice()) return 'b';
  return undefined;
}

// glibc's major()/minor() of a 64-bit dev_t.
const major = (rdev: bigint): number => Number(((rdev >> 8n) & 0xfffn) | ((rdev >> 32n) & ~0xfffn));
const minor = (rdev: bigint): number => Number((rdev & 0xffn) | ((rdev >> 12n) & ~0xffn));

// Directories under /dev that are mounts or runtime state, never devices to pass through (as containerd skips them).
const SKIP_DIRS = new Set(['pts', 'shm', 'fd', 'mqueue', '.lxc', '.lxd-mounts', '.udev']);

function collect(hostPath: string, containerPath: string, out: [string, string][], field: string, level = 0): void {
  const st = statSync(hostPath);
  if (devType(st)) {
    out.push([hostPath, containerPath]);
  } else if (st.isDirectory() && level < 8) {
    for (const name of readdirSync(hostPath).sort()) {
      if (SKIP_DIRS.has(name)) continue;
      const child = posix.join(hostPath, name);
      const cst = statSync(child, { throwIfNoEntry: false });
      if (!cst || !(cst.isDirectory() || devType(cst))) continue;
      collect(child, posix.join(containerPath, name), out, field, level + 1);
      if (out.length > MAX_DEVICES) throw invalidArgument(`${field}: more than ${MAX_DEVICES} devices`);
    }
  } else if (level === 0) {
    throw invalidArgument(`${field}: ${hostPath} is not a device or a directory of devices`);
  }
}

/** CRI devices as device nodes to create plus cgroup allow rules; a directory host_path brings its device nodes. */
export function buildDevices(devices: readonly Device__Output[]): { devices: OciDevice[]; rules: OciDeviceRule[] } {
  if (devices.length > MAX_DEVICES) throw invalidArgument(`devices: ${devices.length} entries (limit ${MAX_DEVICES})`);
  const nodes: OciDevice[] = [];
  const rules: OciDeviceRule[] = [];
  devices.forEach((d, i) => {
    const at = `devices[${i}]`;
    if (!d.host_path.startsWith('/') || d.host_path.includes('\0')) {
      throw invalidArgument(`${at}.host_path: must be an absolute path (${JSON.stringify(d.host_path)})`);
    }
    const ctr = d.container_path || d.host_path;
    if (!ctr.startsWith('/') || ctr.includes('\0') || ctr.split('/').includes('..')) {
      throw invalidArgument(`${at}.container_path: must be absolute, without ".." (${JSON.stringify(ctr)})`);
    }
    const access = d.permissions || 'rwm';
    if (!/^[rwm]{1,3}$/.test(access) || new Set(access).size !== access.length) {
      throw invalidArgument(`${at}.permissions: ${JSON.stringify(d.permissions)} (want a subset of "rwm")`);
    }
    const found: [string, string][] = [];
    try {
      collect(posix.normalize(d.host_path), posix.normalize(ctr), found, at);
    } catch (err) {
      if (isBerthError(err)) throw err;
      throw invalidArgument(`${at}.host_path: ${errorMessage(err)}`);
    }
    for (const [host, path] of found) {
      const st = statSync(host, { bigint: true });
      const type = devType(st) ?? 'c';
      const dev = deviceNode(path, type, st);
      nodes.push(dev);
      rules.push({ allow: true, type, major: dev.major, minor: dev.minor, access });
    }
  });
  return { devices: nodes, rules };
}

/** The OCI description of a device node at `path` inside the container, from the host node's stat. */
function deviceNode(path: string, type: OciDevice['type'], st: BigIntStats): OciDevice {
  return { path, type, major: major(st.rdev), minor: minor(st.rdev), fileMode: Number(st.mode & 0o777n), uid: Number(st.uid), gid: Number(st.gid) };
}

/**
 * Every device node under the host's `root` (/dev), for privileged containers: symlinks, the console (the runtime
 * sets that one up) and the mount/state directories are skipped, as runc's and containerd's host device scans do.
 */
export function hostDevices(root = '/dev'): OciDevice[] {
  const out: OciDevice[] = [];
  const walk = (dir: string, level: number): void => {
    let names: string[];
    try {
      names = readdirSync(dir).sort();
    } catch {
      return; // a directory that vanished or cannot be read has no devices for us
    }
    for (const name of names) {
      const p = posix.join(dir, name);
      const st = lstatSync(p, { bigint: true, throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) {
        if (!SKIP_DIRS.has(name) && level < 8) walk(p, level + 1);
        continue;
      }
      const type = devType(st);
      if (!type || (level === 0 && name === 'console')) continue;
      out.push(deviceNode(p, type, st));
      if (out.length >= MAX_DEVICES) return;
    }
  };
  walk(root, 0);
  return out;
}
