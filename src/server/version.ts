import type { VersionRequest__Output } from './generated/runtime/v1/VersionRequest';
import type { VersionResponse } from './generated/runtime/v1/VersionResponse';
import type { ServerContext } from './context';
import type { UnaryHandler } from './rpc';

export const RUNTIME_NAME = 'berth';
export const RUNTIME_API_VERSION = 'v1';

export function version(s: ServerContext): UnaryHandler<VersionRequest__Output, VersionResponse> {
  return async () => ({
    // `version` is the kubelet's CRI version; the CRI asks runtimes to answer with the API version they speak.
    version: '0.1.0',
    runtime_name: RUNTIME_NAME,
    runtime_version: s.version,
    runtime_api_version: RUNTIME_API_VERSION,
  });
}
