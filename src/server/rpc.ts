// The one wrapper around every RPC: request id, a log line per call, metrics, and error → gRPC status mapping.
// Handlers are plain async functions over the generated message types; the compiler checks that a service's
// handler map names every RPC with the right request and response types.
import { randomBytes } from 'node:crypto';
import type * as grpc from '@grpc/grpc-js';
import { status as Status } from '@grpc/grpc-js';
import type { GrpcCall, GrpcHandler } from './h2/grpc-server';
import { errorMessage, invalidArgument } from '../common/errors';
import { toGrpcFailure } from './grpc-status';
import { Logger } from './log';
import { Metrics } from './metrics';

export interface CallContext {
  readonly operation: string;
  readonly requestId: string;
  readonly log: Logger;
  /** Aborted when the client cancels or its deadline passes. */
  readonly signal: AbortSignal;
}

/** A reply already in wire form (see wire-cache.ts): handed to the transport as it is, not serialised again. */
export class Encoded<T> {
  declare private readonly reply?: T; // ties the bytes to the reply type they encode
  constructor(readonly bytes: Buffer) {}
}

export type UnaryHandler<Req, Res> = (req: Req, ctx: CallContext) => Promise<Res | Encoded<Res>>;
export type StreamHandler<Req, Res> = (req: Req, ctx: CallContext, send: (msg: Res) => Promise<void>) => Promise<void>;

type ImplOf<F> = F extends (call: grpc.ServerWritableStream<infer Req, infer Res>) => void
  ? StreamHandler<Req, Res>
  : F extends (call: grpc.ServerUnaryCall<infer Req, unknown>, callback: grpc.sendUnaryData<infer Res>) => void
    ? UnaryHandler<Req, Res>
    : never;

/** The handler map for a generated `…ServiceHandlers` interface (its index signature dropped). */
export type ServiceImpl<H> = { [K in keyof H as string extends K ? never : K]: ImplOf<H[K]> };

// Reads log at debug; everything else changes state and logs at info.
const READ_OPERATIONS = new Set([
  'Version', 'Status', 'RuntimeConfig', 'PodSandboxStatus', 'ListPodSandbox', 'StreamPodSandboxes', 'ContainerStatus',
  'ListContainers', 'StreamContainers', 'ContainerStats', 'ListContainerStats', 'StreamContainerStats', 'PodSandboxStats',
  'ListPodSandboxStats', 'StreamPodSandboxStats', 'ListMetricDescriptors', 'ListPodSandboxMetrics',
  'StreamPodSandboxMetrics', 'GetContainerEvents', 'ListImages', 'StreamImages', 'ImageStatus', 'ImageFsInfo',
]);

export function isReadOperation(operation: string): boolean {
  return READ_OPERATIONS.has(operation);
}

// A request that protobuf cannot decode reaches the handler as this marker, so it fails as INVALID_ARGUMENT
// through the wrapper.
const MALFORMED = Symbol('malformed request');
interface Malformed { [MALFORMED]: string }
function isMalformed(value: unknown): value is Malformed {
  return typeof value === 'object' && value !== null && MALFORMED in value;
}

export interface RpcDeps {
  log: Logger;
  metrics: Metrics;
}

/** A service's handlers keyed by gRPC path ("/runtime.v1.RuntimeService/Version"), for the transport. */
export function bindService<H>(definition: grpc.ServiceDefinition, impl: ServiceImpl<H>, deps: RpcDeps): Map<string, GrpcHandler> {
  const handlers = new Map<string, GrpcHandler>();
  const table = impl as unknown as Record<string, (...args: never[]) => Promise<unknown>>;
  for (const [name, method] of Object.entries(definition)) {
    const codec: Codec = {
      decode: (bytes) => {
        try {
          return method.requestDeserialize(bytes) as unknown;
        } catch (err) {
          return { [MALFORMED]: errorMessage(err) };
        }
      },
      encode: (value) => (value instanceof Encoded ? value.bytes : method.responseSerialize(value)),
    };
    const fn = table[name];
    if (!fn) throw new Error(`service has no handler for ${name}`);
    handlers.set(method.path, method.responseStream
      ? streaming(name, fn as unknown as StreamHandler<unknown, unknown>, codec, deps)
      : unary(name, fn as unknown as UnaryHandler<unknown, unknown>, codec, deps));
  }
  return handlers;
}

interface Codec {
  decode(bytes: Buffer): unknown;
  encode(value: unknown): Buffer;
}

// A random per-process prefix and a counter: unique across restarts, and no crypto call per request.
const ID_PREFIX = randomBytes(3).toString('hex');
let requestCount = 0;

function nextRequestId(): string {
  requestCount = (requestCount + 1) % 0x1000000;
  return `${ID_PREFIX}${requestCount.toString(16).padStart(6, '0')}`;
}

/** The call's id, logger and abort signal are made on first use: most reads (Status, List) need none of them. */
class LazyCallContext implements CallContext {
  private id: string | undefined;
  private logger: Logger | undefined;
  private aborter: AbortController | undefined;

  constructor(
    readonly operation: string,
    private readonly call: GrpcCall,
    private readonly parentLog: Logger,
  ) {}

  get requestId(): string {
    return (this.id ??= nextRequestId());
  }

  get log(): Logger {
    return (this.logger ??= this.parentLog.child({ op: this.operation, rid: this.requestId }));
  }

  get signal(): AbortSignal {
    if (!this.aborter) {
      const aborter = (this.aborter = new AbortController());
      const abort = (): void => aborter.abort(new Error(`${this.operation} cancelled by the client`));
      if (this.call.cancelled) abort();
      else this.call.onCancel(abort);
    }
    return this.aborter.signal;
  }
}

/** A failed call's status, as the transport sends it. */
class RpcFailure extends Error {
  constructor(readonly code: number, readonly details: string) {
    super(details);
  }
}

/** An operation's metrics, with its label resolved once (a labelled lookup hashes the labels on every call). */
interface OperationMetrics {
  count(): void;
  observe(seconds: number): void;
  read: boolean;
}

function operationMetrics(operation: string, deps: RpcDeps): OperationMetrics {
  const counter = deps.metrics.operations.labels({ operation });
  const latency = deps.metrics.operationLatency.labels({ operation });
  return { count: () => counter.inc(), observe: (seconds) => latency.observe(seconds), read: isReadOperation(operation) };
}

async function run<T>(ctx: CallContext, deps: RpcDeps, op: OperationMetrics, request: unknown, body: () => Promise<T>): Promise<T> {
  const started = performance.now();
  op.count();
  let ms = 0;
  try {
    if (isMalformed(request)) throw invalidArgument(`malformed ${ctx.operation} request: ${request[MALFORMED]}`);
    const result = await body();
    ms = performance.now() - started;
    // A read at the usual info level logs nothing: do not even make the call's child logger for it.
    if (!op.read) ctx.log.info({ ms }, 'ok');
    else if (deps.log.isLevelEnabled('debug')) ctx.log.debug({ ms }, 'ok');
    return result;
  } catch (err) {
    ms = performance.now() - started;
    const failure = toGrpcFailure(err);
    deps.metrics.operationErrors.inc({ operation: ctx.operation, code: failure.codeName });
    ctx.log.error({ ms, code: failure.codeName, err }, failure.unexpected ? 'failed unexpectedly' : 'failed');
    throw new RpcFailure(failure.code, failure.details);
  } finally {
    op.observe(ms / 1000);
  }
}

function fail(call: GrpcCall, err: unknown): void {
  if (err instanceof RpcFailure) call.finish(err.code, err.details);
  else call.finish(Status.INTERNAL, `internal error: ${errorMessage(err)}`);
}

function unary(name: string, fn: UnaryHandler<unknown, unknown>, codec: Codec, deps: RpcDeps): GrpcHandler {
  const op = operationMetrics(name, deps);
  return (bytes, call) => {
    const ctx = new LazyCallContext(name, call, deps.log);
    const request = codec.decode(bytes);
    run(ctx, deps, op, request, () => fn(request, ctx)).then(
      (res) => call.reply(codec.encode(res)),
      (err: unknown) => fail(call, err),
    ).catch((err: unknown) => fail(call, err)); // a reply protobuf cannot encode
  };
}

function streaming(name: string, fn: StreamHandler<unknown, unknown>, codec: Codec, deps: RpcDeps): GrpcHandler {
  const op = operationMetrics(name, deps);
  return (bytes, call) => {
    const ctx = new LazyCallContext(name, call, deps.log);
    const request = codec.decode(bytes);
    // The transport's promise waits while the client is slow, so the producer slows instead of buffering.
    const send = (msg: unknown): Promise<void> => call.send(codec.encode(msg));
    run(ctx, deps, op, request, () => fn(request, ctx, send)).then(
      () => call.finish(Status.OK, ''),
      (err: unknown) => {
        if (!call.cancelled) fail(call, err);
      },
    );
  };
}
