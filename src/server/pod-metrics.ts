// ListMetricDescriptors, ListPodSandboxMetrics and StreamPodSandboxMetrics: cadvisor-named metrics the kubelet serves
// on /metrics/cadvisor when it takes pod and container stats from the runtime (PodAndContainerStatsFromCRI). The
// kubelet builds one Prometheus descriptor per MetricDescriptor (label_keys = variable labels) and drops any metric
// whose label_values do not match them one for one, so every value here carries exactly its descriptor's keys.
// The metric set and labels are documented in docs/metrics-rpcs.md.
import type { ContainerRecord } from '../runtime/container-manager';
import type { SandboxRecord } from '../runtime/sandbox-manager';
import type { ContainerSample, PodSample, StatsCollector } from '../runtime/stats/collector';
import type { NetInterfaceStats } from '../runtime/stats/net-stats';
import type { ContainerMetrics } from './generated/runtime/v1/ContainerMetrics';
import type { ListMetricDescriptorsRequest__Output } from './generated/runtime/v1/ListMetricDescriptorsRequest';
import type { ListMetricDescriptorsResponse } from './generated/runtime/v1/ListMetricDescriptorsResponse';
import type { ListPodSandboxMetricsRequest__Output } from './generated/runtime/v1/ListPodSandboxMetricsRequest';
import type { ListPodSandboxMetricsResponse } from './generated/runtime/v1/ListPodSandboxMetricsResponse';
import type { Metric } from './generated/runtime/v1/Metric';
import type { MetricDescriptor } from './generated/runtime/v1/MetricDescriptor';
import type { PodSandboxMetrics } from './generated/runtime/v1/PodSandboxMetrics';
import type { StreamPodSandboxMetricsRequest__Output } from './generated/runtime/v1/StreamPodSandboxMetricsRequest';
import type { StreamPodSandboxMetricsResponse } from './generated/runtime/v1/StreamPodSandboxMetricsResponse';
import type { ServerContext } from './context';
import type { StreamHandler, UnaryHandler } from './rpc';
import { containersByPod, forgetRemoved, streamCollected } from './stats';

/** cadvisor's own labels (id, name, image) plus the three the kubelet's cadvisor labels add and its e2e tests key
 *  on (container, pod, namespace). */
export const BASE_LABEL_KEYS = ['id', 'name', 'image', 'container', 'pod', 'namespace'] as const;

const NS_PER_S = 1_000_000_000n;

interface Value {
  value: bigint;
  timestampNs: bigint;
  /** Values of the descriptor's extra keys, in order. */
  extra?: string[];
}

interface MetricDef<S> {
  name: string;
  help: string;
  type: 'COUNTER' | 'GAUGE';
  extraKeys?: string[];
  /** The metric's values in this sample; none when the sample lacks the data (e.g. a container with no cgroup). */
  values(s: S): Value[];
}

type CgroupOf = NonNullable<ContainerSample['cgroup']>;

/** A value of a container with a cgroup sample (so: running), or none without one. */
function fromCgroup(read: (cg: CgroupOf, s: ContainerSample) => bigint | undefined, extra?: string[]): (s: ContainerSample) => Value[] {
  return (s) => {
    const value = s.cgroup && read(s.cgroup, s);
    return s.cgroup && value !== undefined ? [{ value, timestampNs: s.cgroup.timestampNs, ...(extra && { extra }) }] : [];
  };
}

const CONTAINER_METRICS: MetricDef<ContainerSample>[] = [
  {
    name: 'container_cpu_usage_seconds_total',
    help: 'Cumulative cpu time consumed in seconds.',
    type: 'COUNTER',
    extraKeys: ['cpu'],
    // Whole seconds: the CRI carries integers only (CRI-O truncates the same way).
    values: fromCgroup((cg) => cg.cpu.usageCoreNs / NS_PER_S, ['total']),
  },
  { name: 'container_memory_usage_bytes', help: 'Current memory usage in bytes, including all memory regardless of when it was accessed', type: 'GAUGE', values: fromCgroup((cg) => cg.memory.usageBytes) },
  { name: 'container_memory_working_set_bytes', help: 'Current working set in bytes.', type: 'GAUGE', values: fromCgroup((cg) => cg.memory.workingSetBytes) },
  { name: 'container_memory_rss', help: 'Size of RSS in bytes.', type: 'GAUGE', values: fromCgroup((cg) => cg.memory.rssBytes) },
  { name: 'container_memory_swap', help: 'Container swap usage in bytes.', type: 'GAUGE', values: fromCgroup((cg) => cg.swap?.usageBytes) },
  {
    name: 'container_memory_failures_total',
    help: 'Cumulative count of memory allocation failures.',
    type: 'COUNTER',
    extraKeys: ['failure_type', 'scope'],
    // A container's cgroup has no children, so its own and its hierarchy's counts are the same numbers.
    values: (s) => (['container', 'hierarchy'] as const).flatMap((scope) => [
      ...fromCgroup((cg) => cg.memory.pageFaults, ['pgfault', scope])(s),
      ...fromCgroup((cg) => cg.memory.majorPageFaults, ['pgmajfault', scope])(s),
    ]),
  },
  // 0 = unlimited, as cadvisor reports it.
  { name: 'container_spec_memory_limit_bytes', help: 'Memory limit for the container.', type: 'GAUGE', values: fromCgroup((cg) => cg.memory.limitBytes ?? 0n) },
  { name: 'container_processes', help: 'Number of processes running inside the container.', type: 'GAUGE', values: fromCgroup((cg) => cg.pids?.current) },
  {
    name: 'container_fs_usage_bytes',
    help: 'Number of bytes that are consumed by the container on this filesystem.',
    type: 'GAUGE',
    values: (s) => (s.writableLayer ? [{ value: s.writableLayer.bytes, timestampNs: s.writableLayer.timestampNs }] : []),
  },
  { name: 'container_last_seen', help: 'Last time a container was seen by the exporter', type: 'GAUGE', values: fromCgroup((cg) => cg.timestampNs / NS_PER_S) },
  {
    name: 'container_start_time_seconds',
    help: 'Start time of the container since unix epoch in seconds.',
    type: 'GAUGE',
    values: fromCgroup((_cg, s) => BigInt(s.container.startedAtNs) / NS_PER_S),
  },
];

/** Network is a pod's, not a container's: reported at the pod level with container="POD", as cadvisor did. */
function network(read: (i: NetInterfaceStats) => bigint): (s: PodSample) => Value[] {
  return ({ network: net }) => (net ? net.interfaces.map((i) => ({ value: read(i), timestampNs: net.timestampNs, extra: [i.name] })) : []);
}

const POD_METRICS: MetricDef<PodSample>[] = [
  { name: 'container_network_receive_bytes_total', help: 'Cumulative count of bytes received', type: 'COUNTER', extraKeys: ['interface'], values: network((i) => i.rxBytes) },
  { name: 'container_network_receive_errors_total', help: 'Cumulative count of errors encountered while receiving', type: 'COUNTER', extraKeys: ['interface'], values: network((i) => i.rxErrors) },
  { name: 'container_network_transmit_bytes_total', help: 'Cumulative count of bytes transmitted', type: 'COUNTER', extraKeys: ['interface'], values: network((i) => i.txBytes) },
  { name: 'container_network_transmit_errors_total', help: 'Cumulative count of errors encountered while transmitting', type: 'COUNTER', extraKeys: ['interface'], values: network((i) => i.txErrors) },
];

export const METRIC_DESCRIPTORS: MetricDescriptor[] = [...CONTAINER_METRICS, ...POD_METRICS].map((m) => ({
  name: m.name,
  help: m.help,
  label_keys: [...BASE_LABEL_KEYS, ...(m.extraKeys ?? [])],
}));

function emit<S>(defs: MetricDef<S>[], sample: S, base: string[]): Metric[] {
  return defs.flatMap((d) =>
    d.values(sample).map((v) => ({
      name: d.name,
      timestamp: v.timestampNs.toString(),
      metric_type: d.type,
      label_values: [...base, ...(v.extra ?? [])],
      value: { value: v.value.toString() },
    })),
  );
}

/** The name cadvisor showed for a kubelet container (dockershim's, as CRI-O names its containers). */
function kubeName(container: string, pod: SandboxRecord): string {
  const m = pod.config.metadata;
  return `k8s_${container}_${m?.name ?? ''}_${m?.namespace ?? ''}_${m?.uid ?? ''}_${m?.attempt ?? 0}`;
}

function podLabels(pod: SandboxRecord): string[] {
  const m = pod.config.metadata;
  return [pod.id, kubeName('POD', pod), '', 'POD', m?.name ?? '', m?.namespace ?? ''];
}

function containerLabels(c: ContainerRecord, pod: SandboxRecord): string[] {
  const m = pod.config.metadata;
  const name = c.config.metadata?.name ?? '';
  return [c.id, kubeName(name, pod), c.imageName, name, m?.name ?? '', m?.namespace ?? ''];
}

export function podMetricsView(s: PodSample): PodSandboxMetrics {
  const container_metrics: ContainerMetrics[] = s.containers.map((c) => ({
    container_id: c.container.id,
    metrics: emit(CONTAINER_METRICS, c, containerLabels(c.container, s.pod)),
  }));
  return { pod_sandbox_id: s.pod.id, metrics: emit(POD_METRICS, s, podLabels(s.pod)), container_metrics };
}

/** Ready pods with their running containers (others have no cgroup to measure; CRI-O skips them too). */
async function readyPods(s: ServerContext): Promise<{ pod: SandboxRecord; containers: ContainerRecord[] }[]> {
  const byPod = await containersByPod(s);
  return s.sandboxes
    .list()
    .filter((p) => p.state === 'SANDBOX_READY')
    .map((pod) => ({ pod, containers: (byPod.get(pod.id) ?? []).filter((c) => c.state === 'CONTAINER_RUNNING') }));
}

export function listMetricDescriptors(): UnaryHandler<ListMetricDescriptorsRequest__Output, ListMetricDescriptorsResponse> {
  return async () => ({ descriptors: METRIC_DESCRIPTORS });
}

export function listPodSandboxMetrics(s: ServerContext, collector: StatsCollector): UnaryHandler<ListPodSandboxMetricsRequest__Output, ListPodSandboxMetricsResponse> {
  return async () => {
    forgetRemoved(s, collector);
    const pods = await readyPods(s);
    const samples = await Promise.all(pods.map((p) => collector.pod(p.pod, p.containers)));
    return { pod_metrics: samples.map(podMetricsView) };
  };
}

export function streamPodSandboxMetrics(s: ServerContext, collector: StatsCollector): StreamHandler<StreamPodSandboxMetricsRequest__Output, StreamPodSandboxMetricsResponse> {
  return async (_req, _ctx, send) => {
    forgetRemoved(s, collector);
    await streamCollected(
      await readyPods(s),
      async (batch) => (await Promise.all(batch.map((p) => collector.pod(p.pod, p.containers)))).map(podMetricsView),
      (pod_sandbox_metrics) => ({ pod_sandbox_metrics }),
      send,
    );
  };
}
