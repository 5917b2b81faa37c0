// The one wrapper around every RPC: request id, a log line per call, metrics, and error → gRPC status mapping.
// Handlers are plain async functions over the generated message types; the compiler checks that a service's
// handler map names every RPC with the right request and response types.
import { randomBytes } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
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

/** A reply already in wire form (see wire-cache.ts): handed to grpc-js as it is, not serialised again. */
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
// through the wrapper (grpc-js itself would answer INTERNAL).
const MALFORMED = Symbol('malformed request');
interface Malformed { [MALFORMED]: string }
function isMalformed(value: unknown): value is Malformed {
  return typeof value === 'object' && value !== null && MALFORMED in value;
}

export interface RpcDeps {
  log: Logger;
  metrics: Metrics;
}

export function bindService<H>(
  definition: grpc.ServiceDefinition,
  impl: ServiceImpl<H>,
  deps: RpcDeps,
): { definition: grpc.ServiceDefinition; handlers: grpc.UntypedServiceImplementation } {
  const tolerant: Record<string, grpc.MethodDefinition<unknown, unknown>> = {};
  const handlers: grpc.UntypedServiceImplementation = {};
  const table = impl as unknown as Record<string, (...args: never[]) => Promise<unknown>>;
  for (const [name, method] of Object.entries(definition)) {
    tolerant[name] = {
      ...method,
      responseSerialize: (value: unknown): Buffer => (value instanceof Encoded ? value.bytes : method.responseSerialize(value)),
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return method.requestDeserialize(bytes);
        } catch (err) {
          return { [MALFORMED]: errorMessage(err) };
        }
      },
    };
    const fn = table[name];
    if (!fn) throw new Error(`service has no handler for ${name}`);
    handlers[name] = method.responseStream
      ? streaming(name, fn as unknown as StreamHandler<unknown, unknown>, deps)
      : unary(name, fn as unknown as UnaryHandler<unknown, unknown>, deps);
  }
  return { definition: tolerant, handlers };
}

// A random per-process prefix and a counter: unique across restarts, and no crypto call per request.
const ID_PREFIX = randomBytes(3).toString('hex');
let requestCount = 0;

function nextRequestId(): string {
  requestCount = (requestCount + 1) % 0x1000000;
  return `${ID_PREFIX}${requestCount.toString(16).padStart(6, '0')}`;
}

/** The call's logger and abort signal are made on first use: most calls (Status, List) never need the signal. */
class LazyCallContext implements CallContext {
  readonly requestId = nextRequestId();
  private logger: Logger | undefined;
  private aborter: AbortController | undefined;

  constructor(
    readonly operation: string,
    private readonly call: grpc.ServerUnaryCall<unknown, unknown>,
    private readonly parentLog: Logger,
  ) {}

  get log(): Logger {
    return (this.logger ??= this.parentLog.child({ op: this.operation, rid: this.requestId }));
  }

  get signal(): AbortSignal {
    if (!this.aborter) {
      const aborter = (this.aborter = new AbortController());
      const abort = (): void => aborter.abort(new Error(`${this.operation} cancelled by the client`));
      // Cancelled before anyone looked: grpc-js has already emitted 'cancelled' and keeps the flag.
      if (this.call.cancelled) abort();
      else this.call.once('cancelled', abort);
    }
    return this.aborter.signal;
  }
}

function startCall(operation: string, call: grpc.ServerUnaryCall<unknown, unknown>, deps: RpcDeps): CallContext {
  return new LazyCallContext(operation, call, deps.log);
}

async function run<T>(ctx: CallContext, deps: RpcDeps, request: unknown, body: () => Promise<T>): Promise<T> {
  const started = process.hrtime.bigint();
  deps.metrics.operations.inc({ operation: ctx.operation });
  try {
    if (isMalformed(request)) throw invalidArgument(`malformed ${ctx.operation} request: ${request[MALFORMED]}`);
    const result = await body();
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    // A read at the usual info level logs nothing: do not even make the call's child logger for it.
    if (!isReadOperation(ctx.operation)) ctx.log.info({ ms }, 'ok');
    else if (deps.log.isLevelEnabled('debug')) ctx.log.debug({ ms }, 'ok');
    return result;
  } catch (err) {
    const failure = toGrpcFailure(err);
    deps.metrics.operationErrors.inc({ operation: ctx.operation, code: failure.codeName });
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    ctx.log.error({ ms, code: failure.codeName, err }, failure.unexpected ? 'failed unexpectedly' : 'failed');
    throw Object.assign(new Error(failure.details), { code: failure.code, details: failure.details });
  } finally {
    deps.metrics.operationLatency.observe({ operation: ctx.operation }, Number(process.hrtime.bigint() - started) / 1e9);
  }
}

function unary(name: string, fn: UnaryHandler<unknown, unknown>, deps: RpcDeps): grpc.handleUnaryCall<unknown, unknown> {
  return (call, callback) => {
    const ctx = startCall(name, call, deps);
    run(ctx, deps, call.request, () => fn(call.request, ctx)).then(
      (res) => callback(null, res),
      (err: grpc.ServiceError) => callback(err),
    );
  };
}

function streaming(name: string, fn: StreamHandler<unknown, unknown>, deps: RpcDeps): grpc.handleServerStreamingCall<unknown, unknown> {
  return (call) => {
    const ctx = startCall(name, call, deps);
    // Respect backpressure: a slow client slows the producer instead of growing a buffer without bound.
    const send = (msg: unknown): Promise<void> =>
      new Promise((resolve, reject) => {
        if (ctx.signal.aborted) return reject(ctx.signal.reason as Error);
        if (call.write(msg)) return resolve();
        const onDrain = (): void => { ctx.signal.removeEventListener('abort', onAbort); resolve(); };
        const onAbort = (): void => { call.off('drain', onDrain); reject(ctx.signal.reason as Error); };
        call.once('drain', onDrain);
        ctx.signal.addEventListener('abort', onAbort, { once: true });
      });
    run(ctx, deps, call.request, () => fn(call.request, ctx, send)).then(
      () => call.end(),
      (err: grpc.ServiceError) => {
        if (!ctx.signal.aborted) call.emit('error', err);
      },
    );
  };
}
