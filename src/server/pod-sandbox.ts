// The pod sandbox RPC family: RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox,
// StreamPodSandboxes. Each handler validates, calls the sandbox manager and maps the result.
import { invalidArgument } from '../common/errors';
import { nowNs } from '../common/time';
import type { SandboxRecord } from '../runtime/sandbox-manager';
import type { ListPodSandboxRequest__Output } from './generated/runtime/v1/ListPodSandboxRequest';
import type { ListPodSandboxResponse } from './generated/runtime/v1/ListPodSandboxResponse';
import type { PodSandbox } from './generated/runtime/v1/PodSandbox';
import type { PodSandboxFilter__Output } from './generated/runtime/v1/PodSandboxFilter';
import type { PodSandboxStatus } from './generated/runtime/v1/PodSandboxStatus';
import type { PodSandboxStatusRequest__Output } from './generated/runtime/v1/PodSandboxStatusRequest';
import type { PodSandboxStatusResponse } from './generated/runtime/v1/PodSandboxStatusResponse';
import type { RemovePodSandboxRequest__Output } from './generated/runtime/v1/RemovePodSandboxRequest';
import type { RemovePodSandboxResponse } from './generated/runtime/v1/RemovePodSandboxResponse';
import type { RunPodSandboxRequest__Output } from './generated/runtime/v1/RunPodSandboxRequest';
import type { RunPodSandboxResponse } from './generated/runtime/v1/RunPodSandboxResponse';
import type { StopPodSandboxRequest__Output } from './generated/runtime/v1/StopPodSandboxRequest';
import type { StopPodSandboxResponse } from './generated/runtime/v1/StopPodSandboxResponse';
import type { StreamPodSandboxesRequest__Output } from './generated/runtime/v1/StreamPodSandboxesRequest';
import type { StreamPodSandboxesResponse } from './generated/runtime/v1/StreamPodSandboxesResponse';
import type { ServerContext } from './context';
import { matchesLabels, required, sendInBatches } from './request';
import { loadCri } from './proto';
import type { StreamHandler, UnaryHandler } from './rpc';
import { WireCache } from './wire-cache';


export function runPodSandbox(s: ServerContext): UnaryHandler<RunPodSandboxRequest__Output, RunPodSandboxResponse> {
  return async (req) => {
    if (!req.config) throw invalidArgument('config is required');
    const pod = await s.sandboxes.run(req.config, req.runtime_handler);
    return { pod_sandbox_id: pod.id };
  };
}

export function stopPodSandbox(s: ServerContext): UnaryHandler<StopPodSandboxRequest__Output, StopPodSandboxResponse> {
  return async (req) => {
    await s.sandboxes.stop(required(req.pod_sandbox_id, 'pod_sandbox_id'));
    return {};
  };
}

export function removePodSandbox(s: ServerContext): UnaryHandler<RemovePodSandboxRequest__Output, RemovePodSandboxResponse> {
  return async (req) => {
    await s.sandboxes.remove(required(req.pod_sandbox_id, 'pod_sandbox_id'));
    return {};
  };
}

export function podSandboxStatus(s: ServerContext): UnaryHandler<PodSandboxStatusRequest__Output, PodSandboxStatusResponse> {
  return async (req) => {
    const pod = s.sandboxes.get(required(req.pod_sandbox_id, 'pod_sandbox_id'));
    const info: Record<string, string> = {};
    if (req.verbose) {
      info['info'] = JSON.stringify({ pid: pod.pausePid ?? 0, namespaces: pod.namespaces, cgroupParent: pod.cgroupParent, runtimeHandler: pod.runtimeHandler, config: pod.config });
    }
    return { status: podSandboxStatusOf(pod), info, containers_statuses: [], timestamp: nowNs().toString() };
  };
}

/** A pod's PodSandboxStatus as PodSandboxStatus answers it (GetContainerEvents carries the same). */
export function podSandboxStatusOf(pod: SandboxRecord): PodSandboxStatus {
  const opts = pod.config.linux?.security_context?.namespace_options;
  const [ip, ...more] = pod.ips;
  return {
    ...summary(pod),
    network: { ip: ip ?? '', additional_ips: more.map((x) => ({ ip: x })) },
    linux: { namespaces: { options: { network: opts?.network ?? 'POD', pid: opts?.pid ?? 'CONTAINER', ipc: opts?.ipc ?? 'POD', target_id: opts?.target_id ?? '' } } },
  };
}

function summary(pod: SandboxRecord): PodSandbox {
  return {
    id: pod.id,
    metadata: pod.config.metadata,
    state: pod.state,
    created_at: pod.createdAtNs,
    labels: pod.config.labels,
    annotations: pod.config.annotations,
    runtime_handler: pod.runtimeHandler,
  };
}

const listWire = new WireCache<SandboxRecord>((p) => loadCri().runtime.v1.RuntimeService.service.ListPodSandbox.responseSerialize({ items: [summary(p)] }));

function listed(s: ServerContext, filter: PodSandboxFilter__Output | null): PodSandbox[] {
  return listedRecords(s, filter).map(summary);
}

function listedRecords(s: ServerContext, filter: PodSandboxFilter__Output | null): SandboxRecord[] {
  let pods = s.sandboxes.list();
  if (filter?.id) pods = pods.filter((p) => p.id.startsWith(filter.id));
  if (filter?.state) pods = pods.filter((p) => p.state === filter.state?.state);
  const selector = filter?.label_selector ?? {};
  return pods.filter((p) => matchesLabels(p.config.labels, selector));
}

export function listPodSandbox(s: ServerContext): UnaryHandler<ListPodSandboxRequest__Output, ListPodSandboxResponse> {
  return async (req) => listWire.list(listedRecords(s, req.filter));
}

export function streamPodSandboxes(s: ServerContext): StreamHandler<StreamPodSandboxesRequest__Output, StreamPodSandboxesResponse> {
  return async (req, _ctx, send) => {
    await sendInBatches(listed(s, req.filter), (pod_sandboxes) => ({ pod_sandboxes }), send);
  };
}
