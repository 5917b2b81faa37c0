import type { StatusRequest__Output } from './generated/runtime/v1/StatusRequest';
import type { StatusResponse } from './generated/runtime/v1/StatusResponse';
import type { RuntimeCondition } from './generated/runtime/v1/RuntimeCondition';
import { findNetworkConfig } from '../network/cni-config';
import { probeRuntimeBinary } from '../runtime/runtime-probe';
import { configToJSON } from './config';
import type { ServerContext } from './context';
import type { UnaryHandler } from './rpc';

export function status(s: ServerContext): UnaryHandler<StatusRequest__Output, StatusResponse> {
  return async (req) => {
    const cfg = s.config();
    const handler = cfg.runtime.handlers[cfg.runtime.default_handler];
    const [runtime, network] = await Promise.all([
      handler
        ? probeRuntimeBinary(handler.path)
        : Promise.resolve({ ok: false as const, reason: 'RuntimeHandlerMissing', message: `no runtime handler "${cfg.runtime.default_handler}"` }),
      findNetworkConfig(cfg.network.cni_conf_dir, cfg.network.default_network),
    ]);
    const conditions: RuntimeCondition[] = [
      runtime.ok
        ? { type: 'RuntimeReady', status: true, reason: '', message: '' }
        : { type: 'RuntimeReady', status: false, reason: runtime.reason, message: runtime.message },
      network.ok
        ? { type: 'NetworkReady', status: true, reason: '', message: '' }
        : { type: 'NetworkReady', status: false, reason: 'NetworkPluginNotReady', message: `Network plugin returns error: ${network.message}` },
    ];
    const info: Record<string, string> = {};
    if (req.verbose) {
      info['config'] = JSON.stringify(configToJSON(cfg));
      info['runtimeVersion'] = JSON.stringify(runtime.ok ? runtime.version : null);
      info['network'] = JSON.stringify(network.ok ? { file: network.network.file, name: network.network.name } : null);
      info['podCidr'] = JSON.stringify(s.runtimeState.podCidr);
    }
    return {
      status: { conditions },
      info,
      // The default handler is also listed under the empty name, which is how a pod asks for it.
      runtime_handlers: ['', ...Object.keys(cfg.runtime.handlers).sort()].map((name) => ({
        name,
        features: { recursive_read_only_mounts: false, user_namespaces: false },
      })),
    };
  };
}
