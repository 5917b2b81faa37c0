// Pod-level resources (UpdatePodSandboxResources) written straight into the pod's cgroup: runc applies container
// resources itself, but a pod cgroup has no runtime container behind it. v1 controllers here, v2 files on a pure
// cgroup2 host; only what the request sets is written.
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errorMessage } from '../common/errors';
import { cgroupV1Mount, ensureCgroup } from './cgroups';
import type { OciResources } from './oci-spec';
import { detectCgroupVersion } from './stats/cgroup-stats';

interface Write {
  /** v1 controller, or 'unified' for a v2 file. */
  controller: string;
  file: string;
  value: string;
}

export async function applyCgroupResources(cgroupPath: string, res: OciResources, root = '/sys/fs/cgroup'): Promise<void> {
  const v2 = (await detectCgroupVersion(root)) === 2;
  const writes = v2 ? v2Writes(res) : v1Writes(res);
  if (writes.length === 0) return;
  await ensureCgroup(cgroupPath);
  const write = async (w: Write): Promise<void> => {
    const base = w.controller === 'unified' ? root : await cgroupV1Mount(w.controller);
    if (!base) throw new BerthError('FAILED_PRECONDITION', `cgroup ${cgroupPath}: no ${w.controller} hierarchy is mounted for ${w.file}`);
    await fs.writeFile(path.join(base, cgroupPath, w.file), w.value);
  };
  for (const [i, w] of writes.entries()) {
    try {
      await write(w);
    } catch (err) {
      // v1 keeps memsw >= memory at every moment: lowering the memory limit below the current memsw limit works,
      // raising it above needs the memsw limit raised first.
      const memsw = writes[i + 1];
      if (err instanceof BerthError || w.file !== 'memory.limit_in_bytes' || memsw?.file !== 'memory.memsw.limit_in_bytes') throw wrap(cgroupPath, w, err);
      await write(memsw).catch((e: unknown) => Promise.reject(wrap(cgroupPath, memsw, e)));
      await write(w).catch((e: unknown) => Promise.reject(wrap(cgroupPath, w, e)));
    }
  }
}

function wrap(cgroupPath: string, w: Write, err: unknown): BerthError {
  if (err instanceof BerthError) return err;
  return new BerthError('INVALID_ARGUMENT', `cgroup ${cgroupPath}: writing ${w.value} to ${w.file}: ${errorMessage(err)}`);
}

export function v1Writes(res: OciResources): Write[] {
  const out: Write[] = [];
  const { cpu, memory } = res;
  if (cpu?.shares) out.push({ controller: 'cpu', file: 'cpu.shares', value: String(cpu.shares) });
  if (cpu?.period) out.push({ controller: 'cpu', file: 'cpu.cfs_period_us', value: String(cpu.period) });
  if (cpu?.quota) out.push({ controller: 'cpu', file: 'cpu.cfs_quota_us', value: String(cpu.quota) });
  if (cpu?.cpus) out.push({ controller: 'cpuset', file: 'cpuset.cpus', value: cpu.cpus });
  if (cpu?.mems) out.push({ controller: 'cpuset', file: 'cpuset.mems', value: cpu.mems });
  if (memory?.limit) out.push({ controller: 'memory', file: 'memory.limit_in_bytes', value: String(memory.limit) });
  if (memory?.limit && memory.swap) out.push({ controller: 'memory', file: 'memory.memsw.limit_in_bytes', value: String(memory.swap) });
  if (res.pids?.limit) out.push({ controller: 'pids', file: 'pids.max', value: String(res.pids.limit) });
  for (const h of res.hugepageLimits ?? []) out.push({ controller: 'hugetlb', file: `hugetlb.${h.pageSize}.limit_in_bytes`, value: String(h.limit) });
  return out;
}

export function v2Writes(res: OciResources): Write[] {
  const out: Write[] = [];
  const { cpu, memory } = res;
  const w = (file: string, value: string): number => out.push({ controller: 'unified', file, value });
  // The conversion runc and crun use from v1 shares (2..262144) to v2 weight (1..10000).
  if (cpu?.shares) w('cpu.weight', String(Math.floor(1 + ((cpu.shares - 2) * 9999) / 262142)));
  if (cpu?.quota || cpu?.period) w('cpu.max', `${cpu.quota && cpu.quota > 0 ? cpu.quota : 'max'} ${cpu.period ?? 100000}`);
  if (cpu?.cpus) w('cpuset.cpus', cpu.cpus);
  if (cpu?.mems) w('cpuset.mems', cpu.mems);
  if (memory?.limit) w('memory.max', String(memory.limit));
  if (memory?.limit && memory.swap) w('memory.swap.max', String(Math.max(0, memory.swap - memory.limit)));
  if (res.pids?.limit) w('pids.max', String(res.pids.limit));
  for (const h of res.hugepageLimits ?? []) w(`hugetlb.${h.pageSize}.max`, String(h.limit));
  for (const [k, v] of Object.entries(res.unified ?? {})) w(k, v);
  return out;
}

/** A pod's cgroup gets its containers' resources plus the pod overhead (what the kubelet's pod-level limit is). */
export function addOverhead(res: OciResources, overhead: OciResources): OciResources {
  const sum = (a?: number, b?: number): number | undefined => (a && b ? a + b : a || undefined);
  const out: OciResources = { ...res, cpu: { ...res.cpu }, memory: { ...res.memory } };
  if (out.cpu) {
    out.cpu.shares = sum(res.cpu?.shares, overhead.cpu?.shares);
    // Quotas add up only over the same period.
    if (res.cpu?.quota && overhead.cpu?.quota && (res.cpu.period ?? 100000) === (overhead.cpu.period ?? 100000)) out.cpu.quota = res.cpu.quota + overhead.cpu.quota;
  }
  if (out.memory) {
    out.memory.limit = sum(res.memory?.limit, overhead.memory?.limit);
    out.memory.swap = sum(res.memory?.swap, overhead.memory?.swap);
  }
  return out;
}
