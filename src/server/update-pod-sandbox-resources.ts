// UpdatePodSandboxResources: the kubelet's pod-level resources (plus overhead) applied to the pod cgroup.
import type { UpdatePodSandboxResourcesRequest__Output } from './generated/runtime/v1/UpdatePodSandboxResourcesRequest';
import type { UpdatePodSandboxResourcesResponse } from './generated/runtime/v1/UpdatePodSandboxResourcesResponse';
import type { ServerContext } from './context';
import { required } from './request';
import type { UnaryHandler } from './rpc';

export function updatePodSandboxResources(s: ServerContext): UnaryHandler<UpdatePodSandboxResourcesRequest__Output, UpdatePodSandboxResourcesResponse> {
  return async (req) => {
    await s.sandboxes.updateResources(required(req.pod_sandbox_id, 'pod_sandbox_id'), req.resources, req.overhead);
    return {};
  };
}
