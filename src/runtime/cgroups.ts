// cgroupfs (v1 hierarchies, as on these machines) for what runc does not do itself: putting the pod's pause
// process into the pod cgroup, and removing a pod's cgroup when the pod goes.
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode } from '../common/errors';

const ROOT = '/sys/fs/cgroup';

let controllers: Promise<string[]> | undefined;

/** Mounted hierarchies under /sys/fs/cgroup: the v1 controllers and, on a hybrid host, the cgroup2 mount (runc and
 *  crun make each container's cgroup there too, so removal must walk it). */
export function cgroupHierarchies(): Promise<string[]> {
  controllers ??= (async () => {
    const mounts = await fs.readFile('/proc/self/mountinfo', 'utf8');
    const out = new Set<string>();
    for (const line of mounts.split('\n')) {
      const [left, right] = line.split(' - ');
      if (!left || !(right?.startsWith('cgroup ') || right?.startsWith('cgroup2 '))) continue;
      const mountPoint = left.split(' ')[4];
      if (mountPoint?.startsWith(`${ROOT}/`)) out.add(mountPoint);
    }
    return [...out].sort();
  })();
  return controllers;
}

/** Creates the cgroup in every hierarchy and moves `pid` into it. */
export async function joinCgroup(cgroupPath: string, pid: number): Promise<void> {
  for (const hierarchy of await cgroupHierarchies()) {
    const dir = path.join(hierarchy, cgroupPath);
    await fs.mkdir(dir, { recursive: true });
    // cpuset children start empty; they must inherit before a task can join.
    if (hierarchy.endsWith('/cpuset')) await inheritCpuset(hierarchy, cgroupPath);
    await fs.writeFile(path.join(dir, 'cgroup.procs'), String(pid));
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
  for (const hierarchy of await cgroupHierarchies()) await removeTree(path.join(hierarchy, cgroupPath));
}

async function removeTree(dir: string): Promise<void> {
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
