// The RPC wrapper on berth's gRPC server, called by a real grpc-js client: status mapping, malformed input, metrics, logs.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { BerthError, notFound, unimplemented } from '../../src/common/errors';
import { toGrpcFailure } from '../../src/server/grpc-status';
import { createLogger } from '../../src/server/log';
import { Metrics } from '../../src/server/metrics';
import { loadCri } from '../../src/server/proto';
import { bindService, ServiceImpl } from '../../src/server/rpc';
import { GrpcServer } from '../../src/server/h2/grpc-server';
import { WireCache } from '../../src/server/wire-cache';
import type { RuntimeServiceHandlers } from '../../src/server/generated/runtime/v1/RuntimeService';

import { connectCri, CriClient } from '../helpers/cri-client';

const cri = loadCri().runtime.v1;

/** A stand-in handler that fails as a missing RPC would (every CRI RPC is implemented; the wrapper still maps it). */
function notImplemented(rpc: string): () => Promise<never> {
  return () => Promise.reject(unimplemented(`${rpc} is not implemented by berth yet`));
}

function allUnimplemented(): ServiceImpl<RuntimeServiceHandlers> {
  const impl: Record<string, unknown> = {};
  for (const name of Object.keys(cri.RuntimeService.service)) impl[name] = notImplemented(name);
  return impl as ServiceImpl<RuntimeServiceHandlers>;
}

// Records as a store holds them: frozen objects, a new one for each change.
const records = Array.from({ length: 5 }, (_, i) => Object.freeze({
  id: `c${i}`, labels: { app: `a${i}`, 'k8s/x': 'ü' }, created_at: `${1_765_000_000_000_000_000n + BigInt(i)}`,
}));
const pick = (prefix: string): typeof records => records.filter((r) => r.id.startsWith(prefix));
let encodes = 0;
const wire = new WireCache<(typeof records)[number]>((r) => {
  encodes++;
  return cri.RuntimeService.service.ListContainers.responseSerialize({ containers: [{ id: r.id, labels: r.labels, created_at: r.created_at }] });
});

describe('rpc wrapper', () => {
  let dir: string;
  let server: GrpcServer;
  let client: CriClient;
  let metrics: Metrics;
  const lines: Record<string, unknown>[] = [];

  beforeAll(async () => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-rpc-'));
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
        cb();
      },
    });
    const log = createLogger('debug', sink);
    metrics = new Metrics();
    const impl = allUnimplemented();
    impl.Version = async (req) => {
      switch (req.version) {
        case 'missing': throw notFound('pod "x" not found');
        case 'boom': throw new Error('boom');
        case 'string': throw 'a thrown string'; // eslint-disable-line @typescript-eslint/only-throw-error
        case 'precondition': throw new BerthError('FAILED_PRECONDITION', 'not ready');
        default: return { version: '0.1.0', runtime_name: 'test', runtime_version: req.version, runtime_api_version: 'v1' };
      }
    };
    // ListContainers answers from the wire cache, ListPodSandbox (the control) with a plain message.
    impl.ListContainers = async (req) => wire.list(pick(req.filter?.id ?? ''));
    impl.ListPodSandbox = async (req) => ({ items: pick(req.filter?.id ?? '').map((c) => ({ id: c.id, labels: c.labels, created_at: c.created_at })) });
    impl.StreamContainers = async (_req, _ctx, send) => {
      for (let i = 0; i < 3; i++) await send({ containers: [{ id: `c${i}` }] });
    };
    const bound = bindService(cri.RuntimeService.service, impl, { log, metrics });
    server = new GrpcServer(bound, { maxMessageBytes: 1024 * 1024 });
    await server.listen(`${dir}/s.sock`);
    client = connectCri(`${dir}/s.sock`);
  });

  afterAll(() => {
    client.close();
    server.destroy();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('answers a good call and logs it at debug for a read', async () => {
    const res = await client.runtime.Version({ version: 'hello' });
    expect(res.runtime_version).toBe('hello');
    const line = lines.find((l) => l['op'] === 'Version' && l['msg'] === 'ok');
    expect(line).toBeDefined();
    expect(line?.['level']).toBe(20);
    expect(typeof line?.['rid']).toBe('string');
  });

  it.each([
    ['missing', grpc.status.NOT_FOUND, 'pod "x" not found'],
    ['precondition', grpc.status.FAILED_PRECONDITION, 'not ready'],
    ['boom', grpc.status.INTERNAL, 'internal error: boom'],
    ['string', grpc.status.INTERNAL, 'internal error: a thrown string'],
  ])('maps %s to its gRPC status', async (kind, code, details) => {
    await expect(client.runtime.Version({ version: kind })).rejects.toMatchObject({ code, details });
  });

  it('sends pre-encoded replies as they are: a list of cached one-item replies decodes as the whole list', async () => {
    const all = await client.runtime.ListContainers({});
    expect(all.containers.map((c) => [c.id, c.labels, c.created_at])).toEqual(records.map((r) => [r.id, r.labels, r.created_at]));
    const plain = await client.runtime.ListPodSandbox({});
    expect(all.containers.map((c) => c.created_at)).toEqual(plain.items.map((p) => p.created_at)); // int64 exact
    expect((await client.runtime.ListContainers({ filter: { id: 'c3' } })).containers.map((c) => c.id)).toEqual(['c3']);
    expect((await client.runtime.ListContainers({ filter: { id: 'none' } })).containers).toEqual([]);
    // Each record was encoded once, however often it was listed.
    expect(encodes).toBe(records.length);
  });

  it('logs failures at error level with a stack', () => {
    const failed = lines.find((l) => l['op'] === 'Version' && l['msg'] === 'failed unexpectedly');
    expect(failed?.['level']).toBe(50);
    expect(String((failed?.['err'] as { stack?: string } | undefined)?.stack)).toContain('boom');
  });

  it('names the RPC in UNIMPLEMENTED', async () => {
    await expect(client.runtime.RunPodSandbox({})).rejects.toMatchObject({
      code: grpc.status.UNIMPLEMENTED,
      details: expect.stringContaining('RunPodSandbox'),
    });
  });

  it('answers undecodable bytes with INVALID_ARGUMENT, not INTERNAL', async () => {
    const raw = new grpc.Client(`unix:${dir}/s.sock`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      raw.makeUnaryRequest(
        '/runtime.v1.RuntimeService/Version',
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0f]), // field 1 with wire type 7, which does not exist
        (e) => resolve(e as grpc.ServiceError),
      ),
    );
    raw.close();
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/malformed Version request/);
  });

  it('streams every message of a server-streaming RPC', async () => {
    const got: string[] = [];
    for await (const msg of client.runtime.StreamContainers({})) got.push(msg.containers[0]?.id ?? '');
    expect(got).toEqual(['c0', 'c1', 'c2']);
  });

  it('counts operations, errors by code, and latency', async () => {
    const text = await metrics.registry.metrics();
    expect(text).toMatch(/berth_operations_total\{operation="Version"\} [6-9]/);
    expect(text).toMatch(/berth_operations_errors_total\{operation="Version",code="NOT_FOUND"\} 1/);
    expect(text).toMatch(/berth_operations_errors_total\{operation="RunPodSandbox",code="UNIMPLEMENTED"\} 1/);
    expect(text).toMatch(/berth_operations_latency_seconds_count\{operation="Version"\} [6-9]/);
  });

  it('maps every typed error code and nothing else to a non-INTERNAL status', () => {
    expect(toGrpcFailure(new BerthError('DEADLINE_EXCEEDED', 'slow')).code).toBe(grpc.status.DEADLINE_EXCEEDED);
    expect(toGrpcFailure(new BerthError('UNAVAILABLE', 'down')).code).toBe(grpc.status.UNAVAILABLE);
    expect(toGrpcFailure(new BerthError('ALREADY_EXISTS', 'dup')).code).toBe(grpc.status.ALREADY_EXISTS);
    expect(toGrpcFailure(new BerthError('INVALID_ARGUMENT', 'bad')).code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(toGrpcFailure(new TypeError('x'))).toMatchObject({ code: grpc.status.INTERNAL, unexpected: true });
  });
});
