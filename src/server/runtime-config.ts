import type { RuntimeConfigRequest__Output } from './generated/runtime/v1/RuntimeConfigRequest';
import type { RuntimeConfigResponse } from './generated/runtime/v1/RuntimeConfigResponse';
import type { ServerContext } from './context';
import type { UnaryHandler } from './rpc';

export function runtimeConfig(s: ServerContext): UnaryHandler<RuntimeConfigRequest__Output, RuntimeConfigResponse> {
  return async () => ({
    linux: { cgroup_driver: s.config().runtime.cgroup_driver === 'systemd' ? 'SYSTEMD' : 'CGROUPFS' },
  });
}
