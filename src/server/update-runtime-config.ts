import path from 'node:path';
import { isIP } from 'node:net';
import { invalidArgument } from '../common/errors';
import { writeFileAtomic } from '../storage/atomic-file';
import type { UpdateRuntimeConfigRequest__Output } from './generated/runtime/v1/UpdateRuntimeConfigRequest';
import type { UpdateRuntimeConfigResponse } from './generated/runtime/v1/UpdateRuntimeConfigResponse';
import type { ServerContext } from './context';
import type { UnaryHandler } from './rpc';

export const POD_CIDR_FILE = 'pod-cidr';

/** Stores the node's pod CIDR (one, or an IPv4,IPv6 pair) for the network plugins; kept across restarts. */
export function updateRuntimeConfig(s: ServerContext): UnaryHandler<UpdateRuntimeConfigRequest__Output, UpdateRuntimeConfigResponse> {
  return async (req) => {
    const podCidr = req.runtime_config?.network_config?.pod_cidr ?? '';
    // The kubelet sends an empty CIDR when it has none yet; that changes nothing.
    if (podCidr === '') return {};
    const parts = podCidr.split(',');
    if (parts.length > 2) throw invalidArgument(`runtime_config.network_config.pod_cidr: "${podCidr}" has more than two CIDRs`);
    for (const part of parts) {
      if (!isCidr(part)) throw invalidArgument(`runtime_config.network_config.pod_cidr: "${part}" is not a CIDR`);
    }
    if (podCidr !== s.runtimeState.podCidr) {
      await writeFileAtomic(path.join(s.config().state_dir, POD_CIDR_FILE), `${podCidr}\n`);
      s.runtimeState.podCidr = podCidr;
      s.log.info({ podCidr }, 'pod CIDR updated');
    }
    return {};
  };
}

export function isCidr(text: string): boolean {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) return false;
  const family = isIP(m[1] as string);
  const bits = Number(m[2]);
  return (family === 4 && bits <= 32) || (family === 6 && bits <= 128);
}
