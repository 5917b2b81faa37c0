// The container and pod stats RPCs: ContainerStats, ListContainerStats, StreamContainerStats, PodSandboxStats,
// ListPodSandboxStats, StreamPodSandboxStats. Every container is reported, as containerd does: a running one with
// CPU, memory and swap from its cgroup, any other (created, exited) with its attributes and writable layer only.
import type { ContainerRecord } from '../runtime/container-manager';
import type { SandboxRecord } from '../runtime/sandbox-manager';
import { StatsCollector } from '../runtime/stats/collector';
import type { ContainerStatsFilter__Output } from './generated/runtime/v1/ContainerStatsFilter';
import type { ContainerStatsRequest__Output } from './generated/runtime/v1/ContainerStatsRequest';
import type { ContainerStatsResponse } from './generated/runtime/v1/ContainerStatsResponse';
import type { ListContainerStatsRequest__Output } from './generated/runtime/v1/ListContainerStatsRequest';
import type { ListContainerStatsResponse } from './generated/runtime/v1/ListContainerStatsResponse';
import type { ListPodSandboxStatsRequest__Output } from './generated/runtime/v1/ListPodSandboxStatsRequest';
import type { ListPodSandboxStatsResponse } from './generated/runtime/v1/ListPodSandboxStatsResponse';
import type { PodSandboxStatsFilter__Output } from './generated/runtime/v1/PodSandboxStatsFilter';
import type { PodSandboxStatsRequest__Output } from './generated/runtime/v1/PodSandboxStatsRequest';
import type { PodSandboxStatsResponse } from './generated/runtime/v1/PodSandboxStatsResponse';
import type { StreamContainerStatsRequest__Output } from './generated/runtime/v1/StreamContainerStatsRequest';
import type { StreamContainerStatsResponse } from './generated/runtime/v1/StreamContainerStatsResponse';
import type { StreamPodSandboxStatsRequest__Output } from './generated/runtime/v1/StreamPodSandboxStatsRequest';
import type { StreamPodSandboxStatsResponse } from './generated/runtime/v1/StreamPodSandboxStatsResponse';
import type { ServerContext } from './context';
import { matchesLabels, required, STREAM_BATCH } from './request';
import type { StreamHandler, UnaryHandler } from './rpc';
import { containerStatsView, podStatsView } from './stats-view';

/** One collector for every stats and metrics handler: the CPU rate needs each object's previous sample. */
export function statsCollector(s: ServerContext): StatsCollector {
  return new StatsCollector({
    containersDir: s.layout.containers,
    onError: (what, err) => s.log.warn({ err }, `stats: reading the ${what} failed; answering without it`),
  });
}

/** Lets the collector forget pods and containers that are gone (their CPU samples, cached paths and usage). */
export function forgetRemoved(s: ServerContext, collector: StatsCollector): void {
  const live = new Set<string>();
  for (const c of s.containers.store.list()) live.add(c.id);
  for (const p of s.sandboxes.list()) live.add(p.id);
  collector.retain(live);
}

/** Collects `items` STREAM_BATCH at a time and sends each batch as it is ready: memory stays bounded, and the
 *  first message leaves before the last object is read. */
export async function streamCollected<T, R, M>(items: T[], collect: (batch: T[]) => Promise<R[]>, wrap: (batch: R[]) => M, send: (msg: M) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += STREAM_BATCH) await send(wrap(await collect(items.slice(i, i + STREAM_BATCH))));
}

async function filteredContainers(s: ServerContext, filter: ContainerStatsFilter__Output | null): Promise<ContainerRecord[]> {
  let items = await s.containers.list();
  if (filter?.id) items = items.filter((c) => c.id.startsWith(filter.id));
  if (filter?.pod_sandbox_id) items = items.filter((c) => c.podId.startsWith(filter.pod_sandbox_id));
  const selector = filter?.label_selector ?? {};
  return items.filter((c) => matchesLabels(c.config.labels, selector));
}

function filteredPods(s: ServerContext, filter: PodSandboxStatsFilter__Output | null): SandboxRecord[] {
  let pods = s.sandboxes.list();
  if (filter?.id) pods = pods.filter((p) => p.id.startsWith(filter.id));
  const selector = filter?.label_selector ?? {};
  return pods.filter((p) => matchesLabels(p.config.labels, selector));
}

/** Each pod's containers, with exits read (ContainerManager.list refreshes them). */
export async function containersByPod(s: ServerContext): Promise<Map<string, ContainerRecord[]>> {
  const byPod = new Map<string, ContainerRecord[]>();
  for (const c of await s.containers.list()) {
    const list = byPod.get(c.podId);
    if (list) list.push(c);
    else byPod.set(c.podId, [c]);
  }
  return byPod;
}

export function containerStats(s: ServerContext, collector: StatsCollector): UnaryHandler<ContainerStatsRequest__Output, ContainerStatsResponse> {
  return async (req) => {
    const c = await s.containers.status(required(req.container_id, 'container_id'));
    forgetRemoved(s, collector);
    return { stats: containerStatsView(await collector.container(c), s.layout.containers) };
  };
}

export function listContainerStats(s: ServerContext, collector: StatsCollector): UnaryHandler<ListContainerStatsRequest__Output, ListContainerStatsResponse> {
  return async (req) => {
    forgetRemoved(s, collector);
    const samples = await collector.containers(await filteredContainers(s, req.filter));
    return { stats: samples.map((x) => containerStatsView(x, s.layout.containers)) };
  };
}

export function streamContainerStats(s: ServerContext, collector: StatsCollector): StreamHandler<StreamContainerStatsRequest__Output, StreamContainerStatsResponse> {
  return async (req, _ctx, send) => {
    forgetRemoved(s, collector);
    await streamCollected(
      await filteredContainers(s, req.filter),
      async (batch) => (await collector.containers(batch)).map((x) => containerStatsView(x, s.layout.containers)),
      (container_stats) => ({ container_stats }),
      send,
    );
  };
}

export function podSandboxStats(s: ServerContext, collector: StatsCollector): UnaryHandler<PodSandboxStatsRequest__Output, PodSandboxStatsResponse> {
  return async (req) => {
    const pod = s.sandboxes.get(required(req.pod_sandbox_id, 'pod_sandbox_id'));
    forgetRemoved(s, collector);
    const containers = (await s.containers.list()).filter((c) => c.podId === pod.id);
    return { stats: podStatsView(await collector.pod(pod, containers), s.layout.containers) };
  };
}

export function listPodSandboxStats(s: ServerContext, collector: StatsCollector): UnaryHandler<ListPodSandboxStatsRequest__Output, ListPodSandboxStatsResponse> {
  return async (req) => {
    forgetRemoved(s, collector);
    const pods = filteredPods(s, req.filter);
    const byPod = await containersByPod(s);
    const samples = await Promise.all(pods.map((p) => collector.pod(p, byPod.get(p.id) ?? [])));
    return { stats: samples.map((x) => podStatsView(x, s.layout.containers)) };
  };
}

export function streamPodSandboxStats(s: ServerContext, collector: StatsCollector): StreamHandler<StreamPodSandboxStatsRequest__Output, StreamPodSandboxStatsResponse> {
  return async (req, _ctx, send) => {
    forgetRemoved(s, collector);
    const pods = filteredPods(s, req.filter);
    const byPod = await containersByPod(s);
    await streamCollected(
      pods,
      async (batch) => (await Promise.all(batch.map((p) => collector.pod(p, byPod.get(p.id) ?? [])))).map((x) => podStatsView(x, s.layout.containers)),
      (pod_sandbox_stats) => ({ pod_sandbox_stats }),
      send,
    );
  };
}
