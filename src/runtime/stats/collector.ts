// Samples for the CRI stats and metrics RPCs: each container's cgroup (CPU, memory, swap, pids) and writable layer,
// each pod's cgroup, process count and network. Reads run concurrently but at most `concurrency` at once, and a read
// that fails (most often: the container ended and its cgroup went between listing and reading) leaves its part of the
// sample out instead of failing the whole answer.
import fs from 'node:fs/promises';
import path from 'node:path';
import { errnoCode, isBerthError } from '../../common/errors';
import { Limiter } from '../../common/limiter';
import { nowNs } from '../../common/time';
import { DiskUsage, diskUsage } from '../../storage/disk-usage';
import { rootfsPaths } from '../../storage/rootfs';
import type { ContainerRecord } from '../container-manager';
import type { SandboxRecord } from '../sandbox-manager';
import { CgroupStats, readCgroupStats, ReadCgroupStatsOptions } from './cgroup-stats';
import { CpuRate } from './cpu-rate';
import { NetInterfaceStats, readPodNetStats } from './net-stats';
import { countCgroupProcesses } from './process-count';
import { UsageCache } from './usage-cache';

export interface LayerUsage {
  bytes: bigint;
  inodes: bigint;
  /** When the walk that measured it started. */
  timestampNs: bigint;
}

export interface ContainerSample {
  container: ContainerRecord;
  /** Absent when the container has no cgroup to read: never launched, exited, or gone mid-read. */
  cgroup?: CgroupStats;
  /** CPU rate since this container's previous sample; absent on the first. */
  nanoCores?: bigint;
  /** The writable (upper) layer; absent only if measuring it failed. */
  writableLayer?: LayerUsage;
}

export interface PodSample {
  pod: SandboxRecord;
  /** The pod cgroup (cgroupParent), which holds every container's cgroup and the pause process's. */
  cgroup?: CgroupStats;
  nanoCores?: bigint;
  processCount?: { count: bigint; timestampNs: bigint };
  /** Absent for host-network and not-ready pods (and if the read failed); interfaces exclude lo. */
  network?: { interfaces: NetInterfaceStats[]; timestampNs: bigint };
  containers: ContainerSample[];
}

export interface StatsCollectorOptions {
  /** Where the containers' writable layers live (the storage layout's containers dir). */
  containersDir: string;
  /** Reads in flight at once. Default 8: each cgroup read is itself ~9 file reads on libuv's 4 threads. */
  concurrency?: number;
  /** For tests: where the cgroup hierarchies are. */
  cgroup?: ReadCgroupStatsOptions;
  /** Told of a read that failed for another reason than its object going away; the sample leaves that part out. */
  onError?: (what: string, err: unknown) => void;
}

export class StatsCollector {
  private readonly limiter: Limiter;
  private readonly rates = new CpuRate();
  /** Pod and container ids sampled (CpuRate cannot list its keys), so retain() can forget removed ones. */
  private readonly seen = new Set<string>();
  /** A container's cgroup path, read once from its bundle's config.json (it never changes). */
  private readonly cgroupPaths = new Map<string, string>();
  /** Walk start times of the usage results, keyed by the result object the walk returned. */
  private readonly walkedAt = new WeakMap<DiskUsage, bigint>();
  private readonly usage: UsageCache;

  constructor(private readonly opts: StatsCollectorOptions) {
    this.limiter = new Limiter(opts.concurrency ?? 8);
    this.usage = new UsageCache({ measure: (dir) => this.walk(dir) });
  }

  async container(c: ContainerRecord): Promise<ContainerSample> {
    this.seen.add(c.id);
    const [cgroup, writableLayer] = await Promise.all([this.containerCgroup(c), this.writableLayer(c.id)]);
    const sample: ContainerSample = { container: c };
    if (cgroup) {
      sample.cgroup = cgroup;
      const rate = this.rate(c.id, cgroup);
      if (rate !== undefined) sample.nanoCores = rate;
    }
    if (writableLayer) sample.writableLayer = writableLayer;
    return sample;
  }

  containers(list: ContainerRecord[]): Promise<ContainerSample[]> {
    return Promise.all(list.map((c) => this.container(c)));
  }

  /** The pod with its `containers` (the caller picks them, usually every container of the pod). */
  async pod(pod: SandboxRecord, containers: ContainerRecord[]): Promise<PodSample> {
    this.seen.add(pod.id);
    const [cgroup, network, samples] = await Promise.all([
      this.read(`pod ${pod.id} cgroup`, () => readCgroupStats(pod.cgroupParent, this.opts.cgroup)),
      this.network(pod, containers),
      this.containers(containers),
    ]);
    const sample: PodSample = { pod, containers: samples };
    if (network) sample.network = network;
    if (cgroup) {
      sample.cgroup = cgroup;
      const rate = this.rate(pod.id, cgroup);
      if (rate !== undefined) sample.nanoCores = rate;
      if (cgroup.pids) {
        sample.processCount = { count: cgroup.pids.current, timestampNs: cgroup.timestampNs };
      } else {
        const count = await this.read(`pod ${pod.id} processes`, () => countCgroupProcesses(pod.cgroupParent, this.opts.cgroup));
        if (count !== undefined) sample.processCount = { count, timestampNs: nowNs() };
      }
    }
    return sample;
  }

  /** Forgets what it keeps for ids not in `live` (removed pods and containers). */
  retain(live: ReadonlySet<string>): void {
    for (const id of this.seen) {
      if (live.has(id)) continue;
      this.seen.delete(id);
      this.rates.forget(id);
      this.cgroupPaths.delete(id);
      this.usage.forget(rootfsPaths(this.opts.containersDir, id).upper);
    }
  }

  private rate(id: string, cgroup: CgroupStats): bigint | undefined {
    return this.rates.sample(id, cgroup.cpu.usageCoreNs, cgroup.timestampNs);
  }

  private async containerCgroup(c: ContainerRecord): Promise<CgroupStats | undefined> {
    // pid 0: never launched, so no cgroup; exited: the runtime deleted it at StopContainer.
    if (c.pid <= 0 || c.state === 'CONTAINER_EXITED') return undefined;
    const cgroupPath = await this.cgroupPath(c);
    if (cgroupPath === undefined) return undefined;
    return this.read(`container ${c.id} cgroup`, () => readCgroupStats(cgroupPath, this.opts.cgroup));
  }

  private async cgroupPath(c: ContainerRecord): Promise<string | undefined> {
    const known = this.cgroupPaths.get(c.id);
    if (known !== undefined) return known;
    const cgroupPath = await this.read(`container ${c.id} spec`, async () => {
      const spec = JSON.parse(await fs.readFile(path.join(c.bundle, 'config.json'), 'utf8')) as { linux?: { cgroupsPath?: unknown } };
      const p = spec.linux?.cgroupsPath;
      return typeof p === 'string' && p !== '' ? p : undefined;
    });
    if (cgroupPath !== undefined) this.cgroupPaths.set(c.id, cgroupPath);
    return cgroupPath;
  }

  private async writableLayer(id: string): Promise<LayerUsage | undefined> {
    const usage = await this.read(`container ${id} writable layer`, () => this.usage.get(rootfsPaths(this.opts.containersDir, id).upper));
    if (!usage) return undefined;
    return { bytes: usage.bytes, inodes: usage.inodes, timestampNs: this.walkedAt.get(usage) ?? nowNs() };
  }

  private async walk(dir: string): Promise<DiskUsage> {
    const startedNs = nowNs();
    const usage = await diskUsage(dir);
    this.walkedAt.set(usage, startedNs);
    return usage;
  }

  /** Host-network pods report none: their "network" is the node's, which the kubelet has from the node itself. */
  private async network(pod: SandboxRecord, containers: ContainerRecord[]): Promise<PodSample['network']> {
    const netnsPath = pod.namespaces.net;
    if (pod.hostNetwork || pod.state !== 'SANDBOX_READY' || netnsPath === undefined) return undefined;
    // A process in the pod's netns saves a child process; without one (no pause, nothing running) nsenter reads it.
    const pid = pod.pausePid ?? containers.find((c) => c.state === 'CONTAINER_RUNNING' && c.pid > 0)?.pid;
    const timestampNs = nowNs();
    const stats = await this.read(`pod ${pod.id} network`, () => readPodNetStats({ netnsPath, ...(pid !== undefined && { pid }) }));
    return stats && { interfaces: stats.interfaces, timestampNs };
  }

  /** One bounded read; undefined when it failed (NOT_FOUND silently: the object went away). */
  private async read<T>(what: string, fn: () => Promise<T>): Promise<T | undefined> {
    try {
      return await this.limiter.run(fn);
    } catch (err) {
      if (isBerthError(err) && err.code === 'NOT_FOUND') return undefined;
      if (errnoCode(err) === 'ENOENT') return undefined;
      this.opts.onError?.(what, err);
      return undefined;
    }
  }
}
