// The container RPC family: Create/Start/Stop/Remove, Status, List/Stream, UpdateContainerResources,
// ReopenContainerLog, ExecSync. Each handler validates, calls the container manager and maps the result.
import fs from 'node:fs/promises';
import path from 'node:path';
import { deadlineExceeded, invalidArgument } from '../common/errors';
import type { ContainerRecord } from '../runtime/container-manager';
import type { Container } from './generated/runtime/v1/Container';
import type { ContainerFilter__Output } from './generated/runtime/v1/ContainerFilter';
import type { ContainerStatus } from './generated/runtime/v1/ContainerStatus';
import type { ContainerStatusRequest__Output } from './generated/runtime/v1/ContainerStatusRequest';
import type { ContainerStatusResponse } from './generated/runtime/v1/ContainerStatusResponse';
import type { CreateContainerRequest__Output } from './generated/runtime/v1/CreateContainerRequest';
import type { CreateContainerResponse } from './generated/runtime/v1/CreateContainerResponse';
import type { ExecSyncRequest__Output } from './generated/runtime/v1/ExecSyncRequest';
import type { ExecSyncResponse } from './generated/runtime/v1/ExecSyncResponse';
import type { ListContainersRequest__Output } from './generated/runtime/v1/ListContainersRequest';
import type { ListContainersResponse } from './generated/runtime/v1/ListContainersResponse';
import type { RemoveContainerRequest__Output } from './generated/runtime/v1/RemoveContainerRequest';
import type { RemoveContainerResponse } from './generated/runtime/v1/RemoveContainerResponse';
import type { RuntimeServiceDefinition } from './generated/runtime/v1/RuntimeService';
import type { ReopenContainerLogRequest__Output } from './generated/runtime/v1/ReopenContainerLogRequest';
import type { ReopenContainerLogResponse } from './generated/runtime/v1/ReopenContainerLogResponse';
import type { StartContainerRequest__Output } from './generated/runtime/v1/StartContainerRequest';
import type { StartContainerResponse } from './generated/runtime/v1/StartContainerResponse';
import type { StopContainerRequest__Output } from './generated/runtime/v1/StopContainerRequest';
import type { StopContainerResponse } from './generated/runtime/v1/StopContainerResponse';
import type { StreamContainersRequest__Output } from './generated/runtime/v1/StreamContainersRequest';
import type { StreamContainersResponse } from './generated/runtime/v1/StreamContainersResponse';
import type { UpdateContainerResourcesRequest__Output } from './generated/runtime/v1/UpdateContainerResourcesRequest';
import type { UpdateContainerResourcesResponse } from './generated/runtime/v1/UpdateContainerResourcesResponse';
import type { ServerContext } from './context';
import { matchesLabels, required, sendInBatches } from './request';
import { loadCri } from './proto';
import type { StreamHandler, UnaryHandler } from './rpc';
import { WireCache } from './wire-cache';


export function createContainer(s: ServerContext): UnaryHandler<CreateContainerRequest__Output, CreateContainerResponse> {
  return async (req) => {
    required(req.pod_sandbox_id, 'pod_sandbox_id');
    if (!req.config) throw invalidArgument('config is required');
    const c = await s.containers.create(req.pod_sandbox_id, req.config);
    return { container_id: c.id };
  };
}

export function startContainer(s: ServerContext): UnaryHandler<StartContainerRequest__Output, StartContainerResponse> {
  return async (req) => {
    await s.containers.start(required(req.container_id, 'container_id'));
    return {};
  };
}

export function stopContainer(s: ServerContext): UnaryHandler<StopContainerRequest__Output, StopContainerResponse> {
  return async (req) => {
    await s.containers.stop(required(req.container_id, 'container_id'), Number(req.timeout));
    return {};
  };
}

export function removeContainer(s: ServerContext): UnaryHandler<RemoveContainerRequest__Output, RemoveContainerResponse> {
  return async (req) => {
    await s.containers.remove(required(req.container_id, 'container_id'));
    return {};
  };
}

const runtimeService = (): RuntimeServiceDefinition => loadCri().runtime.v1.RuntimeService.service;
const statusWire = new WireCache<ContainerRecord>((c) => runtimeService().ContainerStatus.responseSerialize({ status: containerStatusOf(c), info: {} }));
const listWire = new WireCache<ContainerRecord>((c) => runtimeService().ListContainers.responseSerialize({ containers: [summary(c)] }));

/**
 * Encodes a changed container's Status and List replies ahead of the reads that follow every change (the kubelet's
 * relist asks for the status of each container it sees change). Called after the changing RPC has replied.
 */
export function warmContainerReplies(c: ContainerRecord): void {
  statusWire.get(c);
  listWire.get(c);
}

export function containerStatus(s: ServerContext): UnaryHandler<ContainerStatusRequest__Output, ContainerStatusResponse> {
  return async (req) => {
    const id = required(req.container_id, 'container_id');
    // Synchronously when memory is current (the usual case): no promise to wait through.
    const c = s.containers.knownStatus(id) ?? (await s.containers.status(id));
    if (!req.verbose) return statusWire.reply(c);
    const info: Record<string, string> = {};
    info['info'] = JSON.stringify({ pid: c.pid, sandboxID: c.podId, runtime: c.handler, bundle: c.bundle, user: c.user, runtimeSpec: await runtimeSpec(c) });
    return { status: containerStatusOf(c), info };
  };
}

/** A container's ContainerStatus as ContainerStatus answers it (GetContainerEvents carries the same). */
export function containerStatusOf(c: ContainerRecord): ContainerStatus {
  return {
    id: c.id,
    metadata: c.config.metadata,
    state: c.state,
    created_at: c.createdAtNs,
    started_at: c.startedAtNs,
    finished_at: c.finishedAtNs,
    exit_code: c.exitCode,
    image: { image: c.imageName },
    image_ref: c.imageId,
    image_id: c.imageId,
    reason: c.reason,
    message: c.message,
    labels: c.config.labels,
    annotations: c.config.annotations,
    mounts: c.config.mounts,
    log_path: c.logPath,
    resources: { linux: c.resources },
    user: { linux: { uid: String(c.user.uid), gid: String(c.user.gid), supplemental_groups: c.user.additionalGids.map(String) } },
  };
}

/** The OCI spec the container runs with (crictl inspect shows it, as with CRI-O and containerd); null if unreadable. */
async function runtimeSpec(c: ContainerRecord): Promise<unknown> {
  try {
    return JSON.parse(await fs.readFile(path.join(c.bundle, 'config.json'), 'utf8')) as unknown;
  } catch {
    return null;
  }
}

function summary(c: ContainerRecord): Container {
  return {
    id: c.id,
    pod_sandbox_id: c.podId,
    metadata: c.config.metadata,
    image: { image: c.imageName },
    image_ref: c.imageId,
    image_id: c.imageId,
    state: c.state,
    created_at: c.createdAtNs,
    labels: c.config.labels,
    annotations: c.config.annotations,
  };
}

async function listed(s: ServerContext, filter: ContainerFilter__Output | null): Promise<Container[]> {
  return (await listedRecords(s, filter)).map(summary);
}

async function listedRecords(s: ServerContext, filter: ContainerFilter__Output | null): Promise<ContainerRecord[]> {
  let items = await s.containers.list();
  if (filter?.id) items = items.filter((c) => c.id.startsWith(filter.id));
  if (filter?.pod_sandbox_id) items = items.filter((c) => c.podId.startsWith(filter.pod_sandbox_id));
  if (filter?.state) items = items.filter((c) => c.state === filter.state?.state);
  const selector = filter?.label_selector ?? {};
  return items.filter((c) => matchesLabels(c.config.labels, selector));
}

export function listContainers(s: ServerContext): UnaryHandler<ListContainersRequest__Output, ListContainersResponse> {
  return async (req) => listWire.list(await listedRecords(s, req.filter));
}

export function streamContainers(s: ServerContext): StreamHandler<StreamContainersRequest__Output, StreamContainersResponse> {
  return async (req, _ctx, send) => {
    await sendInBatches(await listed(s, req.filter), (containers) => ({ containers }), send);
  };
}

export function updateContainerResources(s: ServerContext): UnaryHandler<UpdateContainerResourcesRequest__Output, UpdateContainerResourcesResponse> {
  return async (req) => {
    if (!req.linux) throw invalidArgument('linux resources are required');
    await s.containers.updateResources(required(req.container_id, 'container_id'), req.linux);
    return {};
  };
}

export function reopenContainerLog(s: ServerContext): UnaryHandler<ReopenContainerLogRequest__Output, ReopenContainerLogResponse> {
  return async (req) => {
    await s.containers.reopenLog(required(req.container_id, 'container_id'));
    return {};
  };
}

export function execSync(s: ServerContext): UnaryHandler<ExecSyncRequest__Output, ExecSyncResponse> {
  return async (req) => {
    const timeout = Number(req.timeout);
    const res = await s.containers.execSync(required(req.container_id, 'container_id'), req.cmd, timeout);
    // The kubelet reads DEADLINE_EXCEEDED as a probe timeout (exec.NewTimeoutError), as containerd answers; an exit
    // code would count as a plain probe failure. The command was killed before this returns.
    if (res.timedOut) throw deadlineExceeded(`ExecSync in ${req.container_id}: command timed out after ${timeout > 0 ? `${timeout} s` : 'the exec time limit'}`);
    const [stdout, stderr] = fitOutput(res.stdout, res.stderr, s.config().api.max_message_bytes - RESPONSE_OVERHEAD);
    return { stdout, stderr, exit_code: res.exitCode };
  };
}

/** Room for the framing of an ExecSyncResponse (field tags, lengths, exit code) below the message size limit. */
export const RESPONSE_OVERHEAD = 1024;

/**
 * Trims stdout and stderr so that both fit in one gRPC message of `budget` bytes: each stream is capped at 16 MiB
 * already, but both together (or a full 16 MiB one plus framing) would exceed the 16 MiB the kubelet and berth
 * accept, and the whole call would fail with RESOURCE_EXHAUSTED. The smaller stream stays whole when it can; the
 * larger one keeps its beginning.
 */
export function fitOutput(stdout: Buffer, stderr: Buffer, budget: number): [Buffer, Buffer] {
  const room = Math.max(0, budget);
  if (stdout.length + stderr.length <= room) return [stdout, stderr];
  const half = Math.floor(room / 2);
  if (stdout.length <= half) return [stdout, stderr.subarray(0, room - stdout.length)];
  if (stderr.length <= half) return [stdout.subarray(0, room - stderr.length), stderr];
  return [stdout.subarray(0, half), stderr.subarray(0, room - half)];
}
