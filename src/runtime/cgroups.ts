// cgroupfs (v1 hierarchies, as on these machines) for what runc does not do itself: putting the pod's pause
// process into the pod cgroup, and removing a pod's cgroup when the pod goes.
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../common/errors';

const ROOT = '/sys/fs/cgroup';

interface CgroupMount {
  mountPoint: string;
  version: 1 | 2;
  /** v1 controllers from the super options (`cpu`, `cpuacct`, `name=systemd`, …); empty for cgroup2. */
  controllers: string[];
}

let mounts: Promise<CgroupMount[]> | undefined;

function cgroupMounts(): Promise<CgroupMount[]> {
  mounts ??= (async () => {
    const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
    const out: CgroupMount[] = [];
    for (const line of text.split('\n')) {
      const [left, right] = line.split(' - ');
      if (!left || !(right?.startsWith('cgroup ') || right?.startsWith('cgroup2 '))) continue;
      const mountPoint = left.split(' ')[4];
      if (!mountPoint?.startsWith(`${ROOT}/`)) continue;
      const [fstype, , superOptions = ''] = right.split(' ');
      const version = fstype === 'cgroup2' ? 2 : 1;
      const controllers = version === 1 ? superOptions.split(',').filter((o) => o !== 'rw' && o !== 'ro') : [];
      out.push({ mountPoint, version, controllers });
    }
    return out;
  })();
  return mounts;
}

/** Mounted hierarchies under /sys/fs/cgroup: the v1 controllers and, on a hybrid host, the cgroup2 mount (runc and
 *  crun make each container's cgroup there too, so removal must walk it). */
export async function cgroupHierarchies(): Promise<string[]> {
  return [...new Set((await cgroupMounts()).map((m) => m.mountPoint))].sort();
}

/** The v1 hierarchy holding `controller` (e.g. `cpuacct` → /sys/fs/cgroup/cpu,cpuacct where they are co-mounted). */
export async function cgroupV1Mount(controller: string): Promise<string | undefined> {
  return (await cgroupMounts()).find((m) => m.version === 1 && m.controllers.includes(controller))?.mountPoint;
}

/** Creates the cgroup in every hierarchy and moves `pid` into it. */
export async function joinCgroup(cgroupPath: string, pid: number): Promise<void> {
  await ensureCgroup(cgroupPath);
  for (const hierarchy of await cgroupHierarchies()) await fs.writeFile(path.join(hierarchy, cgroupPath, 'cgroup.procs'), String(pid));
}

/** Creates the cgroup in every hierarchy (no-op where it exists). */
export async function ensureCgroup(cgroupPath: string): Promise<void> {
  for (const hierarchy of await cgroupHierarchies()) {
    await fs.mkdir(path.join(hierarchy, cgroupPath), { recursive: true });
    // cpuset children start empty; they must inherit before a task can join.
    if (hierarchy.endsWith('/cpuset')) await inheritCpuset(hierarchy, cgroupPath);
  }
}

async function inheritCpuset(hierarchy: string, cgroupPath: string): Promise<void> {
  let parent = hierarchy;
  for (const part of cgroupPath.split('/').filter(Boolean)) {
    const dir = path.join(parent, part);
    for (const file of ['cpuset.cpus', 'cpuset.mems']) {
      const own = (await fs.readFile(path.join(dir, file), 'utf8')).trim();
      if (own === '') await fs.writeFile(path.join(dir, file), (await fs.readFile(path.join(parent, file), 'utf8')).trim());
    }
    parent = dir;
  }
}

/** Removes the cgroup (children first) from every hierarchy; missing is fine, one still in use is reported. */
export async function removeCgroup(cgroupPath: string): Promise<void> {
  // The hierarchies are independent: one walk each, all at once (RemovePodSandbox waits for this).
  await Promise.all((await cgroupHierarchies()).map((hierarchy) => removeTree(path.join(hierarchy, cgroupPath))));
}

async function removeTree(dir: string): Promise<void> {
  // Most pod cgroups have no child left (runc removed the containers'): one rmdir, and a walk only when that fails.
  try {
    await fs.rmdir(dir);
    return;
  } catch (err) {
    const code = errnoCode(err);
    if (code === 'ENOENT') return;
    if (code !== 'EBUSY' && code !== 'ENOTEMPTY') throw err;
  }
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) if (e.isDirectory()) await removeTree(path.join(dir, e.name));
  try {
    await fs.rmdir(dir);
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw err;
  }
}
