// A pod's process count where the pids controller is missing (its pids.current is the cheap answer): the processes
// listed in cgroup.procs across the pod's cgroup and every cgroup below it.
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errnoCode, errorMessage } from '../../common/errors';
import { cgroupV1Mount } from '../cgroups';
import { detectCgroupVersion, ReadCgroupStatsOptions } from './cgroup-stats';

const DEFAULT_ROOT = '/sys/fs/cgroup';

/** Processes in the cgroup tree at `cgroupPath` (relative to the hierarchy roots); NOT_FOUND if it is not there. */
export async function countCgroupProcesses(cgroupPath: string, opts: ReadCgroupStatsOptions = {}): Promise<bigint> {
  const root = opts.root ?? DEFAULT_ROOT;
  const rel = cgroupPath.split('/').filter((p) => p !== '' && p !== '.');
  if (rel.length === 0 || rel.includes('..')) throw new BerthError('INVALID_ARGUMENT', `bad cgroup path ${JSON.stringify(cgroupPath)}`);
  const version = opts.version ?? (await detectCgroupVersion(root));
  // Any v1 hierarchy lists every task of the tree; memory is there wherever stats are read at all.
  const base = version === 2 ? root : ((opts.root === undefined ? await cgroupV1Mount('memory') : undefined) ?? path.join(root, 'memory'));
  const top = path.join(base, ...rel);
  const count = await countTree(top);
  if (count === undefined) throw new BerthError('NOT_FOUND', `cgroup ${cgroupPath} does not exist`);
  return count;
}

/** undefined when `dir` is gone (a child removed mid-walk simply counts as empty). */
async function countTree(dir: string): Promise<bigint | undefined> {
  let entries;
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return undefined;
    throw new BerthError('INTERNAL', `reading ${dir}: ${errorMessage(err)}`, { cause: err });
  }
  let total = 0n;
  for (const e of entries) {
    if (e.isDirectory()) total += (await countTree(path.join(dir, e.name))) ?? 0n;
  }
  try {
    const procs = await fs.readFile(path.join(dir, 'cgroup.procs'), 'utf8');
    for (const line of procs.split('\n')) if (line.trim() !== '') total += 1n;
  } catch (err) {
    if (errnoCode(err) !== 'ENOENT') throw new BerthError('INTERNAL', `reading ${dir}/cgroup.procs: ${errorMessage(err)}`, { cause: err });
  }
  return total;
}
