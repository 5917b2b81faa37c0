// cgroup v2: one directory per cgroup, every controller's files side by side.
import type { CgroupStats, SwapStats } from './cgroup-stats';
import { CgroupFiles, floorZero, garbage, parseCounter, parseFlatKeyed, parseMax, readFiles, required, workingSet } from './cgroup-files';

const FILES = [
  'cpu.stat',
  'memory.current',
  'memory.stat',
  'memory.max',
  'memory.swap.current',
  'memory.swap.max',
  'pids.current',
] as const;

export type CgroupV2File = (typeof FILES)[number];
export type CgroupV2Files = CgroupFiles<CgroupV2File>;

/** Pure: the sample from the files' contents. cpu.stat, memory.current and memory.stat are required. */
export function parseCgroupV2(files: CgroupV2Files, timestampNs: bigint): CgroupStats {
  const cpuText = required('cpu.stat', files['cpu.stat']);
  const usageUsec = parseFlatKeyed('cpu.stat', cpuText).get('usage_usec');
  if (usageUsec === undefined) throw garbage('cpu.stat', cpuText);
  const usage = parseCounter('memory.current', required('memory.current', files['memory.current']));
  const stat = parseFlatKeyed('memory.stat', required('memory.stat', files['memory.stat']));
  // v2 memory.stat is hierarchical already.
  const get = (key: string): bigint => stat.get(key) ?? 0n;
  const ws = workingSet(usage, get('inactive_file'));
  const maxText = files['memory.max'];
  const limit = maxText === undefined ? undefined : parseMax('memory.max', maxText);

  const out: CgroupStats = {
    timestampNs,
    cpu: { usageCoreNs: usageUsec * 1000n },
    memory: {
      usageBytes: usage,
      workingSetBytes: ws,
      rssBytes: get('anon'),
      pageFaults: get('pgfault'),
      majorPageFaults: get('pgmajfault'),
      ...(limit !== undefined && { limitBytes: limit, availableBytes: floorZero(limit - ws) }),
    },
  };
  const swapText = files['memory.swap.current'];
  if (swapText !== undefined) {
    const swap: SwapStats = { usageBytes: parseCounter('memory.swap.current', swapText) };
    const swapMaxText = files['memory.swap.max'];
    const swapMax = swapMaxText === undefined ? undefined : parseMax('memory.swap.max', swapMaxText);
    if (swapMax !== undefined) swap.availableBytes = floorZero(swapMax - swap.usageBytes);
    out.swap = swap;
  }
  const pids = files['pids.current'];
  if (pids !== undefined) out.pids = { current: parseCounter('pids.current', pids) };
  return out;
}

export function readCgroupV2Files(dir: string): Promise<CgroupV2Files> {
  return readFiles(dir, FILES);
}
