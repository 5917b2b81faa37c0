// Collector samples → CRI stats messages. Counters are bigint inside and decimal strings on the wire (UInt64Value
// and int64 timestamps alike), so nothing passes through a lossy number. A part the sample lacks is left out of the
// message, as containerd does for a container without a running task (the kubelet reads absent as "no data").
import type { CgroupStats } from '../runtime/stats/cgroup-stats';
import type { ContainerSample, PodSample } from '../runtime/stats/collector';
import type { NetInterfaceStats } from '../runtime/stats/net-stats';
import type { ContainerStats } from './generated/runtime/v1/ContainerStats';
import type { CpuUsage } from './generated/runtime/v1/CpuUsage';
import type { MemoryUsage } from './generated/runtime/v1/MemoryUsage';
import type { NetworkInterfaceUsage } from './generated/runtime/v1/NetworkInterfaceUsage';
import type { NetworkUsage } from './generated/runtime/v1/NetworkUsage';
import type { PodSandboxStats } from './generated/runtime/v1/PodSandboxStats';
import type { SwapUsage } from './generated/runtime/v1/SwapUsage';
import type { UInt64Value } from './generated/runtime/v1/UInt64Value';

/** The kubelet's default interface name (network.DefaultInterfaceName). */
const DEFAULT_INTERFACE = 'eth0';

const u64 = (n: bigint): UInt64Value => ({ value: n.toString() });

export function cpuUsage(cg: CgroupStats, nanoCores: bigint | undefined): CpuUsage {
  return {
    timestamp: cg.timestampNs.toString(),
    usage_core_nano_seconds: u64(cg.cpu.usageCoreNs),
    ...(nanoCores !== undefined && { usage_nano_cores: u64(nanoCores) }),
  };
}

export function memoryUsage(cg: CgroupStats): MemoryUsage {
  const m = cg.memory;
  return {
    timestamp: cg.timestampNs.toString(),
    working_set_bytes: u64(m.workingSetBytes),
    usage_bytes: u64(m.usageBytes),
    rss_bytes: u64(m.rssBytes),
    page_faults: u64(m.pageFaults),
    major_page_faults: u64(m.majorPageFaults),
    ...(m.availableBytes !== undefined && { available_bytes: u64(m.availableBytes) }),
  };
}

function swapUsage(cg: CgroupStats): SwapUsage | undefined {
  if (!cg.swap) return undefined;
  return {
    timestamp: cg.timestampNs.toString(),
    swap_usage_bytes: u64(cg.swap.usageBytes),
    ...(cg.swap.availableBytes !== undefined && { swap_available_bytes: u64(cg.swap.availableBytes) }),
  };
}

/** `fsMountpoint` identifies the filesystem of the writable layers: the same path ImageFsInfo reports for them. */
export function containerStatsView(s: ContainerSample, fsMountpoint: string): ContainerStats {
  const c = s.container;
  const out: ContainerStats = {
    attributes: { id: c.id, metadata: c.config.metadata, labels: c.config.labels, annotations: c.config.annotations },
  };
  if (s.cgroup) {
    out.cpu = cpuUsage(s.cgroup, s.nanoCores);
    out.memory = memoryUsage(s.cgroup);
    const swap = swapUsage(s.cgroup);
    if (swap) out.swap = swap;
  }
  if (s.writableLayer) {
    out.writable_layer = {
      timestamp: s.writableLayer.timestampNs.toString(),
      fs_id: { mountpoint: fsMountpoint },
      used_bytes: u64(s.writableLayer.bytes),
      inodes_used: u64(s.writableLayer.inodes),
    };
  }
  return out;
}

function interfaceUsage(i: NetInterfaceStats): NetworkInterfaceUsage {
  return { name: i.name, rx_bytes: u64(i.rxBytes), rx_errors: u64(i.rxErrors), tx_bytes: u64(i.txBytes), tx_errors: u64(i.txErrors) };
}

/** Every interface but lo in `interfaces`; the default one (eth0, else the first) also as default_interface. */
function networkUsage(net: NonNullable<PodSample['network']>): NetworkUsage {
  const interfaces = net.interfaces.map(interfaceUsage);
  const def = interfaces.find((i) => i.name === DEFAULT_INTERFACE) ?? interfaces[0];
  return { timestamp: net.timestampNs.toString(), interfaces, ...(def && { default_interface: def }) };
}

export function podStatsView(s: PodSample, fsMountpoint: string): PodSandboxStats {
  const p = s.pod;
  const linux: NonNullable<PodSandboxStats['linux']> = { containers: s.containers.map((c) => containerStatsView(c, fsMountpoint)) };
  if (s.cgroup) {
    linux.cpu = cpuUsage(s.cgroup, s.nanoCores);
    linux.memory = memoryUsage(s.cgroup);
  }
  if (s.processCount) linux.process = { timestamp: s.processCount.timestampNs.toString(), process_count: u64(s.processCount.count) };
  if (s.network) linux.network = networkUsage(s.network);
  return {
    attributes: { id: p.id, metadata: p.config.metadata, labels: p.config.labels, annotations: p.config.annotations },
    linux,
  };
}
