// runtime.v1.RuntimeService: every RPC named here, so the compiler catches one that is missing or mistyped.
import type { RuntimeServiceHandlers } from './generated/runtime/v1/RuntimeService';
import type { ServerContext } from './context';
import { checkpointContainer } from './checkpoint-container';
import { getContainerEvents } from './container-events';
import { containerStatus, createContainer, execSync, listContainers, removeContainer, reopenContainerLog, startContainer, stopContainer, streamContainers, updateContainerResources } from './container';
import { listMetricDescriptors, listPodSandboxMetrics, streamPodSandboxMetrics } from './pod-metrics';
import { listPodSandbox, podSandboxStatus, removePodSandbox, runPodSandbox, stopPodSandbox, streamPodSandboxes } from './pod-sandbox';
import type { ServiceImpl } from './rpc';
import { runtimeConfig } from './runtime-config';
import { containerStats, listContainerStats, listPodSandboxStats, podSandboxStats, statsCollector, streamContainerStats, streamPodSandboxStats } from './stats';
import { status } from './status';
import { attach, exec, portForward } from './stream-rpcs';
import { updatePodSandboxResources } from './update-pod-sandbox-resources';
import { updateRuntimeConfig } from './update-runtime-config';
import { version } from './version';

export function runtimeService(s: ServerContext): ServiceImpl<RuntimeServiceHandlers> {
  const stats = statsCollector(s);
  return {
    Version: version(s),
    Status: status(s),
    RuntimeConfig: runtimeConfig(s),
    UpdateRuntimeConfig: updateRuntimeConfig(s),
    RunPodSandbox: runPodSandbox(s),
    StopPodSandbox: stopPodSandbox(s),
    RemovePodSandbox: removePodSandbox(s),
    PodSandboxStatus: podSandboxStatus(s),
    ListPodSandbox: listPodSandbox(s),
    StreamPodSandboxes: streamPodSandboxes(s),
    CreateContainer: createContainer(s),
    StartContainer: startContainer(s),
    StopContainer: stopContainer(s),
    RemoveContainer: removeContainer(s),
    ListContainers: listContainers(s),
    StreamContainers: streamContainers(s),
    ContainerStatus: containerStatus(s),
    UpdateContainerResources: updateContainerResources(s),
    ReopenContainerLog: reopenContainerLog(s),
    ExecSync: execSync(s),
    Exec: exec(s),
    Attach: attach(s),
    PortForward: portForward(s),
    ContainerStats: containerStats(s, stats),
    ListContainerStats: listContainerStats(s, stats),
    StreamContainerStats: streamContainerStats(s, stats),
    PodSandboxStats: podSandboxStats(s, stats),
    ListPodSandboxStats: listPodSandboxStats(s, stats),
    StreamPodSandboxStats: streamPodSandboxStats(s, stats),
    CheckpointContainer: checkpointContainer(s),
    GetContainerEvents: getContainerEvents(s),
    ListMetricDescriptors: listMetricDescriptors(),
    ListPodSandboxMetrics: listPodSandboxMetrics(s, stats),
    StreamPodSandboxMetrics: streamPodSandboxMetrics(s, stats),
    UpdatePodSandboxResources: updatePodSandboxResources(s),
  };
}
