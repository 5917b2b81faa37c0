import { unimplemented } from '../common/errors';

/** The handler for an RPC that a later piece of work fills in: UNIMPLEMENTED, naming the RPC. */
export function notImplemented(rpc: string): () => Promise<never> {
  return () => Promise.reject(unimplemented(`${rpc} is not implemented by berth yet`));
}
