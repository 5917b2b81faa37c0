// One cgroup's CPU, memory, swap and pid counters for the CRI stats RPCs, from cgroup v1 (this hybrid host: the v1
// controllers are authoritative, the cgroup2 mount holds none) or a pure cgroup v2 host.
//
// Errors: a cgroup (or a controller file the sample cannot do without) that is not there is NOT_FOUND; a file whose
// text is not what the kernel writes is INTERNAL naming the file. Optional files that are missing leave their field
// out (absent = the host does not expose it).
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError, invalidArgument, isBerthError } from '../../common/errors';
import { nowNs } from '../../common/time';
import { cgroupV1Mount } from '../cgroups';
import { parseCgroupV1, readCgroupV1Files } from './cgroup-v1';
import { parseCgroupV2, readCgroupV2Files } from './cgroup-v2';

const DEFAULT_ROOT = '/sys/fs/cgroup';

export interface MemoryStats {
  usageBytes: bigint;
  /** usage − inactive file cache, floored at 0. */
  workingSetBytes: bigint;
  /** Anonymous memory (v1 total_rss, v2 anon). */
  rssBytes: bigint;
  pageFaults: bigint;
  majorPageFaults: bigint;
  /** limit − working set, floored at 0; absent without a limit. */
  availableBytes?: bigint;
  /** Absent when unlimited. */
  limitBytes?: bigint;
}

export interface SwapStats {
  usageBytes: bigint;
  /** Swap the cgroup may still use; absent without a swap limit. */
  availableBytes?: bigint;
}

export interface CgroupStats {
  /** When the files were read (CLOCK_REALTIME ns). */
  timestampNs: bigint;
  /** Cumulative CPU time of all the cgroup's tasks, ns. */
  cpu: { usageCoreNs: bigint };
  memory: MemoryStats;
  /** Absent when the host has no swap accounting (v1 without memory.memsw.*, v2 without memory.swap.*). */
  swap?: SwapStats;
  /** Absent without the pids controller. */
  pids?: { current: bigint };
}

export type CgroupVersion = 1 | 2;

export interface ReadCgroupStatsOptions {
  /** Where the hierarchies are mounted; v1 controllers are then `<root>/<controller>` (for tests). */
  root?: string;
  /** Skips detection (for tests). */
  version?: CgroupVersion;
}

const versions = new Map<string, Promise<CgroupVersion>>();

/** v2 only on a pure cgroup2 host (cgroup.controllers at the root); a hybrid host's v1 controllers hold the data. */
export function detectCgroupVersion(root: string = DEFAULT_ROOT): Promise<CgroupVersion> {
  let version = versions.get(root);
  if (!version) {
    version = fs.access(path.join(root, 'cgroup.controllers')).then(
      () => 2 as const,
      () => 1 as const,
    );
    versions.set(root, version);
  }
  return version;
}

/** Reads the cgroup at `cgroupPath` (relative to each hierarchy root, e.g. `/berth-xyz/pod1/ctr2`). */
export async function readCgroupStats(cgroupPath: string, opts: ReadCgroupStatsOptions = {}): Promise<CgroupStats> {
  const rel = checkCgroupPath(cgroupPath);
  const root = opts.root ?? DEFAULT_ROOT;
  const version = opts.version ?? (await detectCgroupVersion(root));
  try {
    if (version === 2) {
      const files = await readCgroupV2Files(path.join(root, rel));
      return parseCgroupV2(files, nowNs());
    }
    // The host's mounts (cpuacct may be co-mounted as cpu,cpuacct); an injected root uses <root>/<controller>.
    const dirOf = async (controller: string): Promise<string> =>
      path.join((opts.root === undefined ? await cgroupV1Mount(controller) : undefined) ?? path.join(root, controller), rel);
    const files = await readCgroupV1Files({ cpuacct: await dirOf('cpuacct'), memory: await dirOf('memory'), pids: await dirOf('pids') });
    return parseCgroupV1(files, nowNs());
  } catch (err) {
    if (isBerthError(err)) throw new BerthError(err.code, `cgroup ${cgroupPath} (v${version}): ${err.message}`, { cause: err });
    throw err;
  }
}

/** The path must stay inside every hierarchy. */
function checkCgroupPath(cgroupPath: string): string {
  const parts = cgroupPath.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.length === 0 || parts.includes('..') || cgroupPath.includes('\0')) throw invalidArgument(`bad cgroup path ${JSON.stringify(cgroupPath)}`);
  return parts.join('/');
}
