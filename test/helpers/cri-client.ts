// A small typed CRI client over the real gRPC stack, for tests and benchmarks: every unary RPC as a promise,
// every server-streaming RPC as an async iterable.
import * as grpc from '@grpc/grpc-js';
import { loadCri } from '../../src/server/proto';
import type { ImageServiceClient } from '../../src/server/generated/runtime/v1/ImageService';
import type { RuntimeServiceClient } from '../../src/server/generated/runtime/v1/RuntimeService';

type Unary<C> = {
  [K in keyof C as K extends Capitalize<K & string> ? K : never]: C[K] extends (
    argument: infer Req,
    callback: grpc.requestCallback<infer Res>,
  ) => grpc.ClientUnaryCall
    ? (req: Req, options?: grpc.CallOptions) => Promise<Res>
    : C[K] extends (argument: infer Req, options?: grpc.CallOptions) => grpc.ClientReadableStream<infer Res>
      ? (req: Req, options?: grpc.CallOptions) => AsyncIterable<Res>
      : never;
};

export type RuntimeApi = Unary<RuntimeServiceClient>;
export type ImageApi = Unary<ImageServiceClient>;

export interface CriClient {
  runtime: RuntimeApi;
  image: ImageApi;
  raw: { runtime: RuntimeServiceClient; image: ImageServiceClient };
  close(): void;
}

export function connectCri(socketPath: string): CriClient {
  const cri = loadCri().runtime.v1;
  const target = `unix:${socketPath}`;
  const runtime = new cri.RuntimeService(target, grpc.credentials.createInsecure());
  const image = new cri.ImageService(target, grpc.credentials.createInsecure());
  return {
    runtime: promised<RuntimeApi>(runtime, cri.RuntimeService.service),
    image: promised<ImageApi>(image, cri.ImageService.service),
    raw: { runtime, image },
    close: () => {
      runtime.close();
      image.close();
    },
  };
}

function promised<T>(client: grpc.Client, service: grpc.ServiceDefinition): T {
  const out: Record<string, unknown> = {};
  const methods = client as unknown as Record<string, (...args: unknown[]) => unknown>;
  for (const [name, def] of Object.entries(service)) {
    const method = methods[name];
    if (!method) continue;
    out[name] = def.responseStream
      ? (req: unknown, options: grpc.CallOptions = {}) => method.call(client, req, options) as AsyncIterable<unknown>
      : (req: unknown, options: grpc.CallOptions = {}) =>
          new Promise((resolve, reject) =>
            method.call(client, req, options, (err: grpc.ServiceError | null, res: unknown) => (err ? reject(err) : resolve(res))),
          );
  }
  return out as T;
}
