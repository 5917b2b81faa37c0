// berth's gRPC server against independent client implementations: grpc-go (the kubelet's and crictl's stack) and
// gRPC C-core (python3-grpcio). Each runs as its own process on one connection, driven by test/helpers/interop-client;
// the clients are built by scripts/build-interop.sh. Statuses, deadlines, cancellation, concurrency and messages past
// the HTTP/2 flow-control windows, in both directions.
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { removeCgroup } from '../../src/runtime/cgroups';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import { loadCri } from '../../src/server/proto';
import { startDaemon, TestDaemon } from '../helpers/daemon';
import { interopClientMissing, InteropCallOptions, InteropClient, InteropKind, InteropReply, startInteropClient } from '../helpers/interop-client';

const OK = 0;
const CANCELLED = 1;
const INVALID_ARGUMENT = 3;
const DEADLINE_EXCEEDED = 4;
const NOT_FOUND = 5;
const UNIMPLEMENTED = 12;

/** The parts of a proto-loader MethodDefinition that encode a request and decode its replies. */
interface Method<Req, Res> {
  path: string;
  requestSerialize: (value: Req) => Buffer;
  responseDeserialize: (bytes: Buffer) => Res;
}

const KINDS: InteropKind[] = ['grpc-go', 'grpc-c'];

describe.each(KINDS)('%s client against berth', (kind) => {
  const cri = loadCri().runtime.v1;
  const rt = cri.RuntimeService.service;
  const im = cri.ImageService.service;
  const tag = randomBytes(4).toString('hex');
  const cgroupParent = `/berth-interop-${kind}-${tag}`;
  let d: TestDaemon;
  let client: InteropClient;

  beforeAll(async () => {
    // The clients come from the install step (scripts/build-interop.sh), not from the test.
    const missing = interopClientMissing(kind);
    if (missing) throw new Error(missing);
    d = await startDaemon({ toml: `[runtime]\ncgroup_parent = "${cgroupParent}"\n` });
    client = startInteropClient(kind, d.socket);
  });

  afterAll(async () => {
    await client?.close();
    if (d) {
      // Whatever a failed test left: every pod goes, through berth's own grpc-js client.
      const c = d.client();
      const pods = await c.runtime.ListPodSandbox({}).catch(() => ({ items: [] }));
      for (const p of pods.items) await c.runtime.RemovePodSandbox({ pod_sandbox_id: p.id }).catch(() => undefined);
      await d.stop();
      d.cleanup();
    }
    await removeCgroup(cgroupParent);
  });

  function call<Req, Res>(m: Method<Req, Res>, req: NoInfer<Req>, opts?: InteropCallOptions): Promise<InteropReply> {
    return client.call(m.path, m.requestSerialize(req), opts);
  }

  /** A unary call that must succeed: its one reply, decoded. */
  async function unary<Req, Res>(m: Method<Req, Res>, req: NoInfer<Req>, opts?: InteropCallOptions): Promise<Res> {
    const r = await call(m, req, opts);
    if (r.code !== OK) throw new Error(`${m.path} failed through ${kind}: code ${r.code}: ${r.message}`);
    expect(r.responses).toHaveLength(1);
    return m.responseDeserialize(r.responses[0] ?? Buffer.alloc(0));
  }

  async function expectHealthy(): Promise<void> {
    expect(await unary(rt.Version, { version: 'v1' })).toMatchObject({ runtime_name: 'berth' });
  }

  it('Version: the reply decodes with every field', async () => {
    const v = await unary(rt.Version, { version: 'v1' });
    expect(v).toEqual({ version: '0.1.0', runtime_name: 'berth', runtime_version: expect.any(String), runtime_api_version: 'v1' });
    expect(v.runtime_version).not.toBe('');
  });

  it('Status: the runtime is ready', async () => {
    const st = await unary(rt.Status, { verbose: false });
    expect(st.status?.conditions.find((x) => x.type === 'RuntimeReady')).toMatchObject({ status: true });
  });

  it('List calls on a fresh daemon answer empty lists', async () => {
    expect((await unary(rt.ListPodSandbox, {})).items).toEqual([]);
    expect((await unary(rt.ListContainers, {})).containers).toEqual([]);
    expect((await unary(rt.ListContainerStats, {})).stats).toEqual([]);
    expect((await unary(im.ListImages, {})).images).toEqual([]);
  });

  it('an unknown container or pod is NOT_FOUND, with a message that names it', async () => {
    const ctr = `interop-no-such-ctr-${tag}`;
    const r = await call(rt.ContainerStatus, { container_id: ctr, verbose: false });
    expect(r).toMatchObject({ code: NOT_FOUND, responses: [] });
    expect(r.message).toContain(ctr);
    const pod = `interop-no-such-pod-${tag}`;
    const p = await call(rt.PodSandboxStatus, { pod_sandbox_id: pod, verbose: false });
    expect(p).toMatchObject({ code: NOT_FOUND, responses: [] });
    expect(p.message).toContain(pod);
  });

  it('a request body protobuf cannot decode is INVALID_ARGUMENT', async () => {
    // Fixed bytes, not random ones (which may well decode): a truncated length varint on field 1, and an unknown
    // field with wire type 7. Not a truncated string nor a bad wire type on a known field: protobufjs accepts both.
    for (const body of [Buffer.from([0x0a, 0x80]), Buffer.from([0x3f, 0x00, 0x00])]) {
      expect(() => rt.ContainerStatus.requestDeserialize(body)).toThrow();
      const r = await client.call(rt.ContainerStatus.path, body);
      expect(r).toMatchObject({ code: INVALID_ARGUMENT, responses: [] });
      expect(r.message).toMatch(/malformed ContainerStatus request/);
    }
    await expectHealthy();
  });

  it('an unknown method or service is UNIMPLEMENTED', async () => {
    for (const method of ['/runtime.v1.RuntimeService/NoSuch', '/runtime.v1.NoSuchService/Version']) {
      const r = await client.call(method, Buffer.alloc(0));
      expect(r).toMatchObject({ code: UNIMPLEMENTED, responses: [] });
    }
    await expectHealthy();
  });

  it('64 concurrent Version calls on the one connection all succeed', async () => {
    const replies = await Promise.all(Array.from({ length: 64 }, () => unary(rt.Version, { version: 'v1' })));
    expect(replies.map((v) => v.runtime_name)).toEqual(Array<string>(64).fill('berth'));
  });

  it('GetContainerEvents cancelled by the client ends CANCELLED, and the daemon stays healthy', async () => {
    const r = await call(rt.GetContainerEvents, {}, { stream: true, cancelAfterMs: 200, timeoutMs: 0 });
    expect(r).toMatchObject({ code: CANCELLED, responses: [] });
    await expectHealthy();
  });

  it('deadlines: an endless stream and a hung unary call end DEADLINE_EXCEEDED, and the daemon stays healthy', async () => {
    // GetContainerEvents never ends by itself, so its deadline always passes first.
    const s = await call(rt.GetContainerEvents, {}, { stream: true, timeoutMs: 300 });
    expect(s).toMatchObject({ code: DEADLINE_EXCEEDED, responses: [] });

    // A "registry" on loopback that accepts and never answers: PullImage waits on it far longer (the 30 s registry
    // timeout) than the call's deadline, so the deadline is what ends the call, whatever the machine's speed.
    const sockets = new Set<net.Socket>();
    const silent = net.createServer((sock) => {
      sockets.add(sock);
      sock.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
    try {
      const { port } = silent.address() as net.AddressInfo;
      const u = await call(im.PullImage, { image: { image: `127.0.0.1:${port}/interop/hang:v1` } }, { timeoutMs: 500 });
      expect(u).toMatchObject({ code: DEADLINE_EXCEEDED, responses: [] });
    } finally {
      for (const sock of sockets) sock.destroy();
      await new Promise<void>((resolve) => silent.close(() => resolve()));
    }
    await expectHealthy();
  });

  it('UpdateRuntimeConfig and RuntimeConfig', async () => {
    expect(await unary(rt.UpdateRuntimeConfig, { runtime_config: { network_config: { pod_cidr: '10.88.0.0/16' } } })).toEqual({});
    expect(await unary(rt.RuntimeConfig, {})).toMatchObject({ linux: { cgroup_driver: 'CGROUPFS' } });
  });

  it('requests and replies past the flow-control windows: pods with 200 KiB of annotations', async () => {
    // Kubernetes caps an object's annotations at 256 KiB; 200 KiB a pod makes each RunPodSandbox request, each
    // PodSandboxStatus reply and the ListPodSandbox reply (over 1 MiB) larger than HTTP/2's initial 64 KiB windows.
    const big = (i: number): string => `${i}:`.padEnd(200 * 1024, String.fromCharCode(97 + i));
    const configs: PodSandboxConfig[] = Array.from({ length: 6 }, (_, i) => ({
      metadata: { name: `interop-${i}`, namespace: 'default', uid: `interop-${tag}-${i}`, attempt: 0 },
      hostname: `interop-${i}`,
      log_directory: '',
      labels: { app: 'interop', index: String(i) },
      annotations: { 'interop/big': big(i), 'interop/kind': kind },
    }));
    const ids: string[] = [];
    for (const config of configs) {
      const { pod_sandbox_id } = await unary(rt.RunPodSandbox, { config }, { timeoutMs: 30_000 });
      expect(pod_sandbox_id).toMatch(/^[0-9a-f]{64}$/);
      ids.push(pod_sandbox_id);
    }

    const list = await call(rt.ListPodSandbox, { filter: { label_selector: { app: 'interop' } } });
    expect(list.code).toBe(OK);
    expect(list.responses[0]?.length).toBeGreaterThan(6 * 200 * 1024);
    const items = rt.ListPodSandbox.responseDeserialize(list.responses[0] ?? Buffer.alloc(0)).items;
    expect(items.map((p) => p.id).sort()).toEqual([...ids].sort());
    for (const p of items) expect(p.annotations['interop/big']).toBe(big(Number(p.labels['index'])));

    const st = await unary(rt.PodSandboxStatus, { pod_sandbox_id: ids[2] ?? '', verbose: true });
    expect(st.status).toMatchObject({ id: ids[2], state: 'SANDBOX_READY', annotations: { 'interop/big': big(2), 'interop/kind': kind } });

    // A finite server stream carrying the same state ends OK after its last message.
    const stream = await call(rt.StreamPodSandboxes, {}, { stream: true });
    expect(stream.code).toBe(OK);
    const streamed = stream.responses.flatMap((b) => rt.StreamPodSandboxes.responseDeserialize(b).pod_sandboxes);
    expect(streamed.map((p) => p.id).sort()).toEqual([...ids].sort());
    expect(streamed.every((p) => p.annotations['interop/big']?.length === 200 * 1024)).toBe(true);

    // The client cancels once it has what it wants (after the first message, here the only one: 100 pods a batch).
    const first = await call(rt.StreamPodSandboxes, {}, { stream: true, maxMessages: 1 });
    expect(first).toMatchObject({ code: CANCELLED, responses: [expect.any(Buffer)] });
    expect(rt.StreamPodSandboxes.responseDeserialize(first.responses[0] ?? Buffer.alloc(0)).pod_sandboxes).toHaveLength(6);

    // Concurrent large replies share the connection's window.
    const statuses = await Promise.all(ids.map((id) => unary(rt.PodSandboxStatus, { pod_sandbox_id: id, verbose: true })));
    expect(statuses.map((s) => s.status?.annotations['interop/big']?.length)).toEqual(Array<number>(6).fill(200 * 1024));

    for (const id of ids) {
      expect(await unary(rt.StopPodSandbox, { pod_sandbox_id: id }, { timeoutMs: 30_000 })).toEqual({});
      expect(await unary(rt.RemovePodSandbox, { pod_sandbox_id: id }, { timeoutMs: 30_000 })).toEqual({});
    }
    expect((await unary(rt.ListPodSandbox, {})).items).toEqual([]);
  });
});
