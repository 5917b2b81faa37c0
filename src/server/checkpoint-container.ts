// CheckpointContainer: CRIU through the OCI runtime into an archive at the requested location (runtime/checkpoint.ts).
import { checkpointContainer as checkpoint } from '../runtime/checkpoint';
import type { CheckpointContainerRequest__Output } from './generated/runtime/v1/CheckpointContainerRequest';
import type { CheckpointContainerResponse } from './generated/runtime/v1/CheckpointContainerResponse';
import type { ServerContext } from './context';
import { required } from './request';
import type { UnaryHandler } from './rpc';

const DEFAULT_TIMEOUT_S = 300n;

export function checkpointContainer(s: ServerContext): UnaryHandler<CheckpointContainerRequest__Output, CheckpointContainerResponse> {
  return async (req) => {
    const c = await s.containers.status(required(req.container_id, 'container_id'));
    const location = required(req.location, 'location');
    const seconds = BigInt(req.timeout || '0') > 0n ? BigInt(req.timeout) : DEFAULT_TIMEOUT_S;
    await checkpoint(c, s.containers.runtimeOf(c), location, Number(seconds > 86_400n ? 86_400n : seconds) * 1000);
    return {};
  };
}
