// The real berth binary on a temp socket, talked to with a real gRPC client: what a kubelet and crictl see.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import * as grpc from '@grpc/grpc-js';
import { packageVersion } from '../../src/common/package-root';
import { loadCri } from '../../src/server/proto';
import { CriClient } from '../helpers/cri-client';
import { runBerth, startDaemon, TestDaemon } from '../helpers/daemon';

const BRIDGE_CONFLIST = JSON.stringify({
  cniVersion: '1.0.0',
  name: 'berth-test',
  plugins: [{ type: 'bridge', bridge: 'berthtest0', ipam: { type: 'host-local', ranges: [[{ subnet: '10.233.0.0/24' }]] } }],
});

async function metricsText(port: number | undefined): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`);
  expect(res.status).toBe(200);
  return res.text();
}

describe('berth daemon', () => {
  let d: TestDaemon;
  let c: CriClient;

  beforeAll(async () => {
    d = await startDaemon({ cni: false });
    c = d.client();
  });

  afterAll(async () => {
    await d.stop();
    d.cleanup();
  });

  it('answers Version as crictl asks it first', async () => {
    const v = await c.runtime.Version({ version: 'v1' });
    expect(v).toMatchObject({ runtime_name: 'berth', runtime_api_version: 'v1', runtime_version: packageVersion() });
  });

  it('answers ImageFsInfo with usage of the image store and the writable layers', async () => {
    fs.writeFileSync(`${d.root}/image-store/blob`, Buffer.alloc(1 << 20, 1));
    fs.mkdirSync(`${d.root}/containers/c1/upper`, { recursive: true });
    fs.writeFileSync(`${d.root}/containers/c1/upper/f`, 'x');
    const info = await c.image.ImageFsInfo({});
    const img = info.image_filesystems[0];
    const ctr = info.container_filesystems[0];
    expect(img?.fs_id?.mountpoint).toBe(`${d.root}/image-store`);
    expect(BigInt(img?.used_bytes?.value ?? '0')).toBeGreaterThanOrEqual(1n << 20n);
    expect(BigInt(img?.inodes_used?.value ?? '0')).toBeGreaterThanOrEqual(2n);
    expect(ctr?.fs_id?.mountpoint).toBe(`${d.root}/containers`);
    expect(BigInt(ctr?.inodes_used?.value ?? '0')).toBeGreaterThanOrEqual(4n);
    // int64 ns timestamps travel exactly, as decimal strings
    expect(img?.timestamp).toMatch(/^\d{19}$/);
    const ns = BigInt(img?.timestamp ?? '0');
    expect(ns / 1_000_000n).toBeGreaterThan(BigInt(Date.now() - 60_000));
  });

  it('reports NetworkReady false without a CNI config, naming the dir, and true once one appears', async () => {
    let st = await c.runtime.Status({ verbose: false });
    const net = st.status?.conditions.find((x) => x.type === 'NetworkReady');
    expect(net).toMatchObject({ status: false, reason: 'NetworkPluginNotReady' });
    expect(net?.message).toContain(d.cniConfDir);
    expect(st.status?.conditions.find((x) => x.type === 'RuntimeReady')).toMatchObject({ status: true });
    fs.writeFileSync(`${d.cniConfDir}/10-test.conflist`, BRIDGE_CONFLIST);
    st = await c.runtime.Status({ verbose: false });
    expect(st.status?.conditions.find((x) => x.type === 'NetworkReady')).toMatchObject({ status: true });
    fs.rmSync(`${d.cniConfDir}/10-test.conflist`);
  });

  it('returns the effective config as JSON in verbose Status (crictl info)', async () => {
    const st = await c.runtime.Status({ verbose: true });
    const cfg = JSON.parse(st.info['config'] ?? '{}') as { api: { listen: string }; runtime: { default_handler: string } };
    expect(cfg.api.listen).toBe(d.socket);
    expect(cfg.runtime.default_handler).toBe('runc');
    expect(st.runtime_handlers.map((h) => h.name)).toEqual(['', 'crun', 'runc']);
  });

  it('reports the cgroupfs driver', async () => {
    expect(await c.runtime.RuntimeConfig({})).toMatchObject({ linux: { cgroup_driver: 'CGROUPFS' } });
  });

  it('stores the pod CIDR from UpdateRuntimeConfig and refuses a malformed one naming the field', async () => {
    await c.runtime.UpdateRuntimeConfig({ runtime_config: { network_config: { pod_cidr: '10.244.1.0/24,fd00:10:244:1::/64' } } });
    const st = await c.runtime.Status({ verbose: true });
    expect(JSON.parse(st.info['podCidr'] ?? '""')).toBe('10.244.1.0/24,fd00:10:244:1::/64');
    expect(fs.readFileSync(`${d.stateDir}/pod-cidr`, 'utf8').trim()).toBe('10.244.1.0/24,fd00:10:244:1::/64');
    await expect(c.runtime.UpdateRuntimeConfig({ runtime_config: { network_config: { pod_cidr: '10.0.0.0/33' } } })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringContaining('runtime_config.network_config.pod_cidr'),
    });
  });

  it('registers all 41 RPCs; the ones not built yet answer UNIMPLEMENTED naming themselves', async () => {
    const cri = loadCri().runtime.v1;
    const services = [cri.RuntimeService.service, cri.ImageService.service];
    const names = services.flatMap((s) => Object.keys(s));
    expect(names).toHaveLength(41);
    const raw = new grpc.Client(`unix:${d.socket}`, grpc.credentials.createInsecure());
    // Streams that stay open until the client leaves: cancelled after a moment, they must not have said UNIMPLEMENTED.
    const endless = new Set(['GetContainerEvents']);
    const real = new Set([...endless, 'Exec', 'Attach', 'PortForward', 'CreateContainer', 'StartContainer', 'StopContainer', 'RemoveContainer', 'ContainerStatus', 'ListContainers', 'StreamContainers', 'UpdateContainerResources', 'ReopenContainerLog', 'ExecSync', 'RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox', 'PodSandboxStatus', 'ListPodSandbox', 'StreamPodSandboxes', 'Version', 'Status', 'RuntimeConfig', 'UpdateRuntimeConfig', 'ImageFsInfo', 'ListImages', 'StreamImages', 'ImageStatus', 'PullImage', 'RemoveImage', 'UpdatePodSandboxResources', 'CheckpointContainer', 'ContainerStats', 'ListContainerStats', 'StreamContainerStats', 'PodSandboxStats', 'ListPodSandboxStats', 'StreamPodSandboxStats', 'ListMetricDescriptors', 'ListPodSandboxMetrics', 'StreamPodSandboxMetrics']);
    for (const service of services) {
      for (const [name, def] of Object.entries(service)) {
        const err = await new Promise<grpc.ServiceError | null>((resolve) => {
          if (def.responseStream) {
            const stream = raw.makeServerStreamRequest(def.path, def.requestSerialize, def.responseDeserialize, {});
            stream.on('data', () => undefined);
            stream.on('error', (e) => resolve(e as grpc.ServiceError));
            stream.on('end', () => resolve(null));
            if (endless.has(name)) setTimeout(() => stream.cancel(), 300);
          } else {
            raw.makeUnaryRequest(def.path, def.requestSerialize, def.responseDeserialize, {}, (e) => resolve(e));
          }
        });
        if (real.has(name)) {
          // answered for real: success, or a validation error — never UNIMPLEMENTED
          expect(err?.code).not.toBe(grpc.status.UNIMPLEMENTED);
        } else {
          expect({ name, code: err?.code }).toEqual({ name, code: grpc.status.UNIMPLEMENTED });
          expect(err?.details).toContain(name);
        }
      }
    }
    raw.close();
  });

  it('answers an unknown RPC path with UNIMPLEMENTED', async () => {
    const raw = new grpc.Client(`unix:${d.socket}`, grpc.credentials.createInsecure());
    const err = await new Promise<grpc.ServiceError>((resolve) =>
      raw.makeUnaryRequest('/runtime.v1.RuntimeService/NoSuchCall', (b: Buffer) => b, (b: Buffer) => b, Buffer.alloc(0), (e) =>
        resolve(e as grpc.ServiceError),
      ),
    );
    raw.close();
    expect(err.code).toBe(grpc.status.UNIMPLEMENTED);
  });

  it('exports operation metrics and Node process metrics on /metrics', async () => {
    await c.runtime.Version({ version: 'v1' });
    const text = await metricsText(d.metricsPort);
    expect(text).toMatch(/^berth_operations_total\{operation="Version"\} [1-9]\d*$/m);
    expect(text).toMatch(/^berth_operations_total\{operation="ImageFsInfo"\} [1-9]\d*$/m);
    expect(text).toMatch(/^berth_operations_errors_total\{operation="UpdateRuntimeConfig",code="INVALID_ARGUMENT"\} 1$/m);
    expect(text).toMatch(/^berth_operations_latency_seconds_bucket\{le="0.005",operation="Version"\} \d+$/m);
    expect(text).toMatch(/^process_cpu_user_seconds_total \d/m);
    expect(text).toMatch(/^nodejs_heap_size_used_bytes \d/m);
    expect((await fetch(`http://127.0.0.1:${d.metricsPort}/nope`)).status).toBe(404);
  });

  it('answers /info, /config, /pods/<id> and /containers/<id> on the metrics port, and `berth status` prints them', async () => {
    const base = `http://127.0.0.1:${d.metricsPort}`;
    const info = (await (await fetch(`${base}/info`)).json()) as Record<string, unknown>;
    expect(info).toMatchObject({ cgroup_driver: 'cgroupfs', default_handler: 'runc', storage_root: d.root, state_dir: d.stateDir });
    expect(await (await fetch(`${base}/config`)).text()).toContain('[runtime]');
    const pod = (await c.runtime.RunPodSandbox({ config: { metadata: { name: 'intro', namespace: 'default', uid: 'intro-uid', attempt: 0 }, linux: { security_context: { namespace_options: { network: 'NODE' } } } } })).pod_sandbox_id;
    try {
      expect(await (await fetch(`${base}/pods/${pod.slice(0, 12)}`)).json()).toMatchObject({ id: pod, name: 'intro', namespace: 'default', state: 'SANDBOX_READY', containers: [] });
      const missing = await fetch(`${base}/containers/${'0'.repeat(64)}`);
      expect(missing.status).toBe(404);
      expect(await missing.json()).toMatchObject({ error: expect.stringContaining('not found') });
      const flags = ['--config', d.configFile, '--config-dir', d.configDir, '--metrics-address', `127.0.0.1:${d.metricsPort}`];
      const out = await runBerth(['status', ...flags]);
      expect(out.code).toBe(0);
      expect(JSON.parse(out.stdout)).toMatchObject({ cgroup_driver: 'cgroupfs', pods: 1 });
      const podOut = await runBerth(['status', 'pods', pod, ...flags]);
      expect(JSON.parse(podOut.stdout)).toMatchObject({ id: pod });
      expect(await runBerth(['status', 'containers', ...flags])).toMatchObject({ code: 2, stderr: expect.stringContaining('usage: berth status') });
      expect(await runBerth(['status', 'containers', 'f'.repeat(64), ...flags])).toMatchObject({ code: 1, stderr: expect.stringContaining('not found') });
    } finally {
      await c.runtime.RemovePodSandbox({ pod_sandbox_id: pod });
    }
  });

  it('keeps the socket 0660 in a directory others cannot enter', () => {
    expect(fs.statSync(d.socket).mode & 0o777).toBe(0o660);
    expect(fs.statSync(d.stateDir).mode & 0o007).toBe(0);
  });

  it('refuses to start a second daemon on a live socket, with a clear error', async () => {
    await expect(startDaemon({ dir: d.dir })).rejects.toThrow(/another process is serving on .*berth\.sock/);
    // and the first one is unharmed
    expect((await c.runtime.Version({})).runtime_name).toBe('berth');
  });
});

describe('berth daemon lifecycle', () => {
  it('replaces a stale socket after a crash and keeps the pod CIDR', async () => {
    const d1 = await startDaemon({ metrics: false });
    try {
      await d1.client().runtime.UpdateRuntimeConfig({ runtime_config: { network_config: { pod_cidr: '10.1.0.0/16' } } });
      expect(await d1.stop('SIGKILL')).toBe('SIGKILL');
      expect(fs.existsSync(d1.socket)).toBe(true); // the crash left it behind
      const d2 = await startDaemon({ dir: d1.dir });
      const st = await d2.client().runtime.Status({ verbose: true });
      expect(JSON.parse(st.info['podCidr'] ?? '""')).toBe('10.1.0.0/16');
      expect(await d2.stop()).toBe(0);
    } finally {
      d1.cleanup();
    }
  });

  it('exits 0 on SIGTERM after finishing the call in flight, and removes its socket', async () => {
    const d = await startDaemon({ metrics: false });
    try {
      // enough files that ImageFsInfo is still walking when the signal lands
      for (let i = 0; i < 200; i++) {
        const sub = `${d.root}/image-store/d${i}`;
        fs.mkdirSync(sub);
        for (let j = 0; j < 50; j++) fs.writeFileSync(`${sub}/f${j}`, '');
      }
      const c = d.client();
      await c.runtime.Version({});
      const inFlight = c.image.ImageFsInfo({});
      await new Promise((r) => setTimeout(r, 5));
      d.process.kill('SIGTERM');
      const info = await inFlight;
      expect(BigInt(info.image_filesystems[0]?.inodes_used?.value ?? '0')).toBeGreaterThan(10_000n);
      expect(await d.exited).toBe(0);
      expect(fs.existsSync(d.socket)).toBe(false);
    } finally {
      await d.stop();
      d.cleanup();
    }
  });

  it('sends READY=1 to NOTIFY_SOCKET once serving', async () => {
    const dir = fs.mkdtempSync('/tmp/berth-notify-');
    const receiver = spawn('python3', ['-c', [
      'import socket,sys',
      's=socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)',
      `s.bind("${dir}/notify")`,
      'print("bound", flush=True)',
      's.settimeout(30)',
      'print(s.recv(256).decode(), flush=True)',
    ].join('\n')]);
    let out = '';
    receiver.stdout.setEncoding('utf8').on('data', (x: string) => (out += x));
    // Listened for before the daemon starts: the receiver may get READY=1 and exit before startDaemon returns.
    const received = new Promise<void>((resolve) => receiver.once('exit', () => resolve()));
    while (!out.includes('bound')) await new Promise((r) => setTimeout(r, 20));
    const d = await startDaemon({ metrics: false, env: { NOTIFY_SOCKET: `${dir}/notify` } });
    try {
      await received;
      expect(out).toContain('READY=1');
    } finally {
      await d.stop();
      d.cleanup();
      receiver.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('reloads live options on SIGHUP, names the ones needing a restart, and survives a broken file', async () => {
    const d = await startDaemon();
    try {
      const c = d.client();
      fs.writeFileSync(`${d.configDir}/50-reload.toml`, 'log_level = "warn"\n[metrics]\naddress = "127.0.0.1:1"\n');
      d.process.kill('SIGHUP');
      await waitFor(() => d.logs().includes('need a restart'));
      expect(d.logs()).toMatch(/"applied":\["log_level"\]/);
      expect(d.logs()).toMatch(/"options":\["metrics.address"\]/);
      const st = await c.runtime.Status({ verbose: true });
      const cfg = JSON.parse(st.info['config'] ?? '{}') as { log_level: string; metrics: { address: string } };
      expect(cfg.log_level).toBe('warn');
      expect(cfg.metrics.address).toBe('127.0.0.1:0'); // the running value, not the file's
      fs.writeFileSync(`${d.configDir}/60-broken.toml`, 'log_level = \n');
      d.process.kill('SIGHUP');
      await waitFor(() => d.logs().includes('reload failed'));
      expect((await c.runtime.Version({})).runtime_name).toBe('berth');
    } finally {
      await d.stop();
      d.cleanup();
    }
  });
});

async function waitFor(cond: () => boolean, ms = 10000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}
