// cgroup v1: each controller is its own hierarchy, so the files come from three directories.
import type { CgroupStats, SwapStats } from './cgroup-stats';
import { CgroupFiles, floorZero, parseCounter, parseFlatKeyed, readFiles, required, workingSet } from './cgroup-files';

const CPUACCT_FILES = ['cpuacct.usage'] as const;
const MEMORY_FILES = [
  'memory.usage_in_bytes',
  'memory.stat',
  'memory.limit_in_bytes',
  'memory.memsw.usage_in_bytes',
  'memory.memsw.limit_in_bytes',
] as const;
const PIDS_FILES = ['pids.current'] as const;

export type CgroupV1File = (typeof CPUACCT_FILES)[number] | (typeof MEMORY_FILES)[number] | (typeof PIDS_FILES)[number];
export type CgroupV1Files = CgroupFiles<CgroupV1File>;

/** "No limit" is PAGE_COUNTER_MAX pages (9223372036854771712 with 4 KiB pages, less with larger ones); no real
 *  limit comes near 2^62 bytes. */
const V1_UNLIMITED = 1n << 62n;

const limitOf = (file: string, text: string | undefined): bigint | undefined => {
  if (text === undefined) return undefined;
  const n = parseCounter(file, text);
  return n >= V1_UNLIMITED ? undefined : n;
};

/** Pure: the sample from the files' contents. cpuacct.usage, memory.usage_in_bytes and memory.stat are required. */
export function parseCgroupV1(files: CgroupV1Files, timestampNs: bigint): CgroupStats {
  const usageCoreNs = parseCounter('cpuacct.usage', required('cpuacct.usage', files['cpuacct.usage']));
  const usage = parseCounter('memory.usage_in_bytes', required('memory.usage_in_bytes', files['memory.usage_in_bytes']));
  const stat = parseFlatKeyed('memory.stat', required('memory.stat', files['memory.stat']));
  // total_* include the descendants (a pod's cgroup holds its containers'); the plain keys are this level only.
  const get = (key: string): bigint => stat.get(`total_${key}`) ?? stat.get(key) ?? 0n;
  const ws = workingSet(usage, get('inactive_file'));
  const limit = limitOf('memory.limit_in_bytes', files['memory.limit_in_bytes']);

  const out: CgroupStats = {
    timestampNs,
    cpu: { usageCoreNs },
    memory: {
      usageBytes: usage,
      workingSetBytes: ws,
      rssBytes: get('rss'),
      pageFaults: get('pgfault'),
      majorPageFaults: get('pgmajfault'),
      ...(limit !== undefined && { limitBytes: limit, availableBytes: floorZero(limit - ws) }),
    },
  };
  const memswText = files['memory.memsw.usage_in_bytes'];
  if (memswText !== undefined) {
    // memsw counts memory + swap; the two files are read a moment apart, hence the floor.
    const swapUsage = floorZero(parseCounter('memory.memsw.usage_in_bytes', memswText) - usage);
    const memswLimit = limitOf('memory.memsw.limit_in_bytes', files['memory.memsw.limit_in_bytes']);
    const swap: SwapStats = { usageBytes: swapUsage };
    // The swap a cgroup may use is what memsw allows beyond the memory limit.
    if (memswLimit !== undefined && limit !== undefined) swap.availableBytes = floorZero(memswLimit - limit - swapUsage);
    out.swap = swap;
  }
  const pids = files['pids.current'];
  if (pids !== undefined) out.pids = { current: parseCounter('pids.current', pids) };
  return out;
}

/** The cgroup's directory in each controller's hierarchy. */
export interface CgroupV1Dirs {
  cpuacct: string;
  memory: string;
  pids: string;
}

export async function readCgroupV1Files(dirs: CgroupV1Dirs): Promise<CgroupV1Files> {
  const [cpuacct, memory, pids] = await Promise.all([
    readFiles(dirs.cpuacct, CPUACCT_FILES),
    readFiles(dirs.memory, MEMORY_FILES),
    readFiles(dirs.pids, PIDS_FILES),
  ]);
  return { ...cpuacct, ...memory, ...pids };
}
