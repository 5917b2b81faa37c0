// The CRI stats and metrics RPCs through the real daemon: busybox containers under runc in pods on a CNI bridge of
// the test's own (so a pod has an eth0 that traffic from the host reaches), in a cgroup parent of the test's own.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { removeCgroup } from '../../src/runtime/cgroups';
import type { ContainerConfig } from '../../src/server/generated/runtime/v1/ContainerConfig';
import type { ContainerStats__Output } from '../../src/server/generated/runtime/v1/ContainerStats';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import type { PodSandboxStats__Output } from '../../src/server/generated/runtime/v1/PodSandboxStats';
import { buildImage, busyboxLayer } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';
import { CriClient } from '../helpers/cri-client';
import { startDaemon, TestDaemon } from '../helpers/daemon';

const tag = randomBytes(3).toString('hex');
const bridge = `bst${tag}`;
// pod-network.test.ts takes 10.200-249.x; this file 10.150-199.x.
const subnet = `10.${150 + (parseInt(tag.slice(0, 2), 16) % 50)}.${parseInt(tag.slice(2, 4), 16)}`;
const cgroupParent = `/berth-stats-rpc-${tag}`;
const MiB = 1024n * 1024n;
/** Created-but-not-started containers for the Stream-vs-List comparison (the 500 objects). */
const BULK = 500;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const big = (v: { value: string } | null | undefined): bigint => BigInt(v?.value ?? -1);

async function collect<T>(stream: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const msg of stream) out.push(msg);
  return out;
}

async function waitFor<T>(fn: () => Promise<T | undefined>, ms: number, every = 200): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(every);
  }
}

describe('CRI stats and metrics RPCs', () => {
  let reg: Registry;
  let d: TestDaemon;
  let c: CriClient;
  let image: string;
  let podId: string;
  let podIp: string;
  let burner: string;
  let idle: string;
  let created: string;
  let layerBefore: bigint;
  let wroteLayerAt: number;

  const podConfig = (name: string): PodSandboxConfig => ({
    metadata: { name, namespace: 'stats', uid: `uid-${name}-${tag}`, attempt: 0 },
    hostname: name,
    labels: { app: name },
  });
  const ctr = (name: string, extra: Partial<ContainerConfig> = {}): ContainerConfig => ({
    metadata: { name, attempt: 0 },
    image: { image },
    labels: { role: name },
    ...extra,
  });
  const containerStats = async (id: string): Promise<ContainerStats__Output> => {
    const st = (await c.runtime.ContainerStats({ container_id: id })).stats;
    if (!st) throw new Error('no stats');
    return st;
  };
  const podStats = async (id: string): Promise<PodSandboxStats__Output> => {
    const st = (await c.runtime.PodSandboxStats({ pod_sandbox_id: id })).stats;
    if (!st) throw new Error('no stats');
    return st;
  };
  const exec = async (id: string, cmd: string[]): Promise<void> => {
    const res = await c.runtime.ExecSync({ container_id: id, cmd, timeout: 30 });
    if (res.exit_code !== 0) throw new Error(`${cmd.join(' ')}: exit ${res.exit_code}: ${Buffer.from(res.stderr).toString()}`);
  };
  const ping = (): void => {
    execFileSync('busybox', ['ping', '-c', '3', '-s', '1000', '-W', '2', podIp], { stdio: 'ignore' });
  };

  beforeAll(async () => {
    reg = await startRegistry();
    await reg.push('stats/busybox', 'v1', buildImage({ layers: [await busyboxLayer()], config: { Cmd: ['/bin/sh'] } }));
    image = `${reg.host}/stats/busybox:v1`;
    d = await startDaemon({ cni: false, toml: `[runtime]\ncgroup_parent = "${cgroupParent}"\n` });
    c = d.client();
    fs.writeFileSync(
      path.join(d.cniConfDir, '10-stats.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: `stats-${tag}`,
        plugins: [{ type: 'bridge', bridge, isGateway: true, ipam: { type: 'host-local', dataDir: path.join(d.dir, 'ipam'), ranges: [[{ subnet: `${subnet}.0/24` }]] } }],
      }),
    );
    await waitFor(async () => ((await c.runtime.Status({})).status?.conditions.find((x) => x.type === 'NetworkReady')?.status ? true : undefined), 5000, 100);
    await c.image.PullImage({ image: { image } });

    podId = (await c.runtime.RunPodSandbox({ config: podConfig('busy') })).pod_sandbox_id;
    podIp = (await c.runtime.PodSandboxStatus({ pod_sandbox_id: podId })).status?.network?.ip ?? '';
    const make = async (cfg: ContainerConfig, start: boolean): Promise<string> => {
      const { container_id: id } = await c.runtime.CreateContainer({ pod_sandbox_id: podId, config: cfg, sandbox_config: podConfig('busy') });
      if (start) await c.runtime.StartContainer({ container_id: id });
      return id;
    };
    [burner, idle, created] = await Promise.all([
      make(ctr('burner', { command: ['/bin/sh', '-c', 'while :; do :; done'] }), true),
      make(ctr('idle', { command: ['/bin/sleep', '100000'] }), true),
      make(ctr('created', { command: ['/bin/sleep', '100000'] }), false),
    ]);
    // The writable layer's usage is cached for up to 30 s: measure it once before the write, and let the last test
    // wait for a fresh measurement.
    layerBefore = big((await containerStats(idle)).writable_layer?.used_bytes);
    await exec(idle, ['/bin/busybox', 'dd', 'if=/dev/zero', 'of=/five-mib', 'bs=1M', 'count=5']);
    wroteLayerAt = Date.now();
  });

  afterAll(async () => {
    if (c) {
      const pods = (await c.runtime.ListPodSandbox({}).catch(() => ({ items: [] }))).items;
      await Promise.all(pods.map((p) => c.runtime.RemovePodSandbox({ pod_sandbox_id: p.id }).catch(() => undefined)));
    }
    await d?.stop();
    d?.cleanup();
    await reg?.stop();
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {
      // never made
    }
    await removeCgroup(cgroupParent);
  });

  it('shows a CPU burner using CPU: the counter grows and the rate appears from the second sample', async () => {
    const first = await containerStats(burner);
    await sleep(1000);
    const second = await containerStats(burner);
    expect(second.attributes).toMatchObject({ id: burner, metadata: { name: 'burner' }, labels: { role: 'burner' } });
    expect(big(second.cpu?.usage_core_nano_seconds)).toBeGreaterThan(big(first.cpu?.usage_core_nano_seconds));
    expect(big(second.cpu?.usage_nano_cores)).toBeGreaterThan(0n);
    // int64 ns timestamps, exact, on CLOCK_REALTIME
    const nowNs = BigInt(Date.now()) * 1_000_000n;
    const ts = BigInt(second.cpu?.timestamp ?? '0');
    expect(ts).toBeGreaterThan(BigInt(first.cpu?.timestamp ?? '0'));
    expect(ts > nowNs - 60_000_000_000n && ts < nowNs + 60_000_000_000n).toBe(true);
    expect(big(second.memory?.working_set_bytes)).toBeGreaterThan(0n);
    expect(second.writable_layer?.fs_id?.mountpoint).toBe(path.join(d.root, 'containers'));
  });

  it('shows the working set grow when a container fills 40 MiB of the pod /dev/shm', async () => {
    const before = big((await containerStats(idle)).memory?.working_set_bytes);
    await exec(idle, ['/bin/busybox', 'dd', 'if=/dev/zero', 'of=/dev/shm/fill', 'bs=1M', 'count=40']);
    const after = await containerStats(idle);
    expect(big(after.memory?.working_set_bytes)).toBeGreaterThanOrEqual(before + 35n * MiB);
    expect(big(after.memory?.usage_bytes)).toBeGreaterThanOrEqual(big(after.memory?.working_set_bytes));
    // the pod cgroup holds its containers'
    expect(big((await podStats(podId)).linux?.memory?.working_set_bytes)).toBeGreaterThanOrEqual(40n * MiB);
  });

  it('reports pod CPU, processes and eth0 counters that grow with traffic to the pod IP', async () => {
    const before = await podStats(podId);
    ping();
    const after = await podStats(podId);
    expect(after.attributes).toMatchObject({ id: podId, metadata: { name: 'busy', namespace: 'stats' }, labels: { app: 'busy' } });
    const eth0 = (s: PodSandboxStats__Output) => s.linux?.network?.interfaces.find((i) => i.name === 'eth0');
    expect(after.linux?.network?.default_interface?.name).toBe('eth0');
    expect(after.linux?.network?.interfaces.map((i) => i.name)).not.toContain('lo');
    expect(big(eth0(after)?.rx_bytes)).toBeGreaterThanOrEqual(big(eth0(before)?.rx_bytes) + 3000n);
    expect(big(eth0(after)?.tx_bytes)).toBeGreaterThanOrEqual(big(eth0(before)?.tx_bytes) + 3000n);
    expect(big(after.linux?.process?.process_count)).toBeGreaterThanOrEqual(2n); // the burner's sh and idle's sleep
    expect(big(after.linux?.cpu?.usage_core_nano_seconds)).toBeGreaterThan(big(before.linux?.cpu?.usage_core_nano_seconds));
    expect(big(after.linux?.cpu?.usage_nano_cores)).toBeGreaterThan(0n);
    expect(after.linux?.containers.map((x) => x.attributes?.id).sort()).toEqual([burner, idle, created].sort());
  });

  it('answers for a container that is not running, filters ListContainerStats, and says NOT_FOUND for unknown ids', async () => {
    const st = await containerStats(created);
    expect(st.attributes?.id).toBe(created);
    expect([st.cpu, st.memory]).toEqual([null, null]);
    expect(st.writable_layer?.used_bytes).toBeTruthy();

    const ids = async (filter: object): Promise<string[]> =>
      (await c.runtime.ListContainerStats({ filter })).stats.map((x) => x.attributes?.id ?? '').sort();
    expect(await ids({ id: burner.slice(0, 12) })).toEqual([burner]);
    expect(await ids({ pod_sandbox_id: podId })).toEqual([burner, idle, created].sort());
    expect(await ids({ pod_sandbox_id: podId.slice(0, 12), label_selector: { role: 'idle' } })).toEqual([idle]);
    expect(await ids({ label_selector: { role: 'nope' } })).toEqual([]);
    expect(await ids({ id: 'f'.repeat(64) })).toEqual([]);
    expect((await c.runtime.ListPodSandboxStats({ filter: { label_selector: { app: 'busy' } } })).stats.map((x) => x.attributes?.id)).toEqual([podId]);
    expect((await c.runtime.ListPodSandboxStats({ filter: { id: podId.slice(0, 10) } })).stats).toHaveLength(1);

    await expect(c.runtime.ContainerStats({ container_id: 'f'.repeat(64) })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(c.runtime.PodSandboxStats({ pod_sandbox_id: 'f'.repeat(64) })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(c.runtime.ContainerStats({ container_id: '' })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
  });

  it(`streams the same ${BULK} container stats as List, in batches of at most 100`, async () => {
    const bulkPod = (await c.runtime.RunPodSandbox({ config: podConfig('bulk') })).pod_sandbox_id;
    const started = Date.now();
    const names = Array.from({ length: BULK }, (_, i) => `bulk-${i}`);
    for (let i = 0; i < names.length; i += 10) {
      await Promise.all(
        names.slice(i, i + 10).map((name) =>
          c.runtime.CreateContainer({ pod_sandbox_id: bulkPod, config: ctr(name, { command: ['/bin/sleep', '1'] }), sandbox_config: podConfig('bulk') }),
        ),
      );
    }
    const createMs = Date.now() - started;
    expect(createMs).toBeLessThan(60_000);

    const listed = (await c.runtime.ListContainerStats({ filter: { pod_sandbox_id: bulkPod } })).stats;
    const streamed = await collect(c.runtime.StreamContainerStats({ filter: { pod_sandbox_id: bulkPod } }));
    expect(streamed.length).toBe(Math.ceil(BULK / 100));
    for (const msg of streamed) expect(msg.container_stats.length).toBeLessThanOrEqual(100);
    const streamedIds = streamed.flatMap((m) => m.container_stats.map((x) => x.attributes?.id)).sort();
    expect(streamedIds).toHaveLength(BULK);
    expect(streamedIds).toEqual(listed.map((x) => x.attributes?.id).sort());

    // Unfiltered: every container of both pods, either way.
    const all = (await c.runtime.ListContainerStats({})).stats.map((x) => x.attributes?.id).sort();
    const allStreamed = (await collect(c.runtime.StreamContainerStats({}))).flatMap((m) => m.container_stats.map((x) => x.attributes?.id)).sort();
    expect(all).toHaveLength(BULK + 3);
    expect(allStreamed).toEqual(all);

    // Pods: the same set both ways; the bulk pod's eth0 read through nsenter (nothing in it runs).
    const pods = (await c.runtime.ListPodSandboxStats({})).stats;
    const podsStreamed = (await collect(c.runtime.StreamPodSandboxStats({}))).flatMap((m) => m.pod_sandbox_stats);
    expect(podsStreamed.map((p) => p.attributes?.id).sort()).toEqual(pods.map((p) => p.attributes?.id).sort());
    const bulk = pods.find((p) => p.attributes?.id === bulkPod);
    expect(bulk?.linux?.containers).toHaveLength(BULK);
    expect(bulk?.linux?.network?.interfaces.map((i) => i.name)).toContain('eth0');
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: bulkPod });
  }, 120_000);

  it('lists metric descriptors and pod metrics whose labels match them and whose values move', async () => {
    const descriptors = (await c.runtime.ListMetricDescriptors({})).descriptors;
    const byName = new Map(descriptors.map((x) => [x.name, x]));
    for (const name of [
      'container_cpu_usage_seconds_total', 'container_memory_usage_bytes', 'container_memory_working_set_bytes', 'container_memory_rss',
      'container_spec_memory_limit_bytes', 'container_network_receive_bytes_total', 'container_network_transmit_bytes_total',
      'container_network_receive_errors_total', 'container_network_transmit_errors_total', 'container_fs_usage_bytes', 'container_processes',
    ]) {
      expect(byName.get(name)?.label_keys.slice(0, 6)).toEqual(['id', 'name', 'image', 'container', 'pod', 'namespace']);
    }
    expect(byName.get('container_network_receive_bytes_total')?.label_keys[6]).toBe('interface');

    type Sample = { value: bigint; labels: string[]; type: string };
    const snapshot = async (): Promise<Map<string, Sample>> => {
      const out = new Map<string, Sample>();
      const pods = (await c.runtime.ListPodSandboxMetrics({})).pod_metrics;
      const mine = pods.find((p) => p.pod_sandbox_id === podId);
      expect(mine?.container_metrics.map((x) => x.container_id).sort()).toEqual([burner, idle].sort()); // running ones only
      for (const p of pods) {
        for (const m of [...p.metrics, ...p.container_metrics.flatMap((x) => x.metrics)]) {
          // The kubelet drops a metric whose labels do not match its descriptor one for one.
          expect(m.label_values).toHaveLength(byName.get(m.name)?.label_keys.length ?? -1);
          if (p.pod_sandbox_id === podId) out.set(`${m.name}|${m.label_values.join('|')}`, { value: big(m.value), labels: m.label_values, type: m.metric_type });
        }
      }
      return out;
    };
    const rx = `container_network_receive_bytes_total|${podId}|k8s_POD_busy_stats_uid-busy-${tag}_0||POD|busy|stats|eth0`;
    const cpu = `container_cpu_usage_seconds_total|${burner}|k8s_burner_busy_stats_uid-busy-${tag}_0|${image}|burner|busy|stats|total`;
    const before = await snapshot();
    expect(before.get(rx)?.type).toBe('COUNTER');
    expect(before.get(`container_memory_working_set_bytes|${idle}|k8s_idle_busy_stats_uid-busy-${tag}_0|${image}|idle|busy|stats`)?.value).toBeGreaterThanOrEqual(40n * MiB);
    expect(before.get(`container_processes|${burner}|k8s_burner_busy_stats_uid-busy-${tag}_0|${image}|burner|busy|stats`)?.value).toBe(1n);
    ping();
    const after = await snapshot();
    expect(after.get(rx)?.value).toBeGreaterThan(before.get(rx)?.value ?? 0n);
    // Whole CPU seconds: the burner adds one within a few seconds.
    const start = before.get(cpu)?.value ?? -1n;
    await waitFor(async () => ((await snapshot()).get(cpu)?.value ?? 0n) > start || undefined, 10_000, 500);

    const streamed = (await collect(c.runtime.StreamPodSandboxMetrics({}))).flatMap((m) => m.pod_sandbox_metrics);
    const listed = (await c.runtime.ListPodSandboxMetrics({})).pod_metrics;
    expect(streamed.map((p) => p.pod_sandbox_id).sort()).toEqual(listed.map((p) => p.pod_sandbox_id).sort());
    const names = (ps: typeof listed): string[] => [...new Set(ps.flatMap((p) => [...p.metrics, ...p.container_metrics.flatMap((x) => x.metrics)].map((m) => m.name)))].sort();
    expect(names(streamed)).toEqual(names(listed));
  });

  it('shows the writable layer grow by the 5 MiB file once the cached usage is refreshed', async () => {
    const grown = await waitFor(
      async () => {
        const used = big((await containerStats(idle)).writable_layer?.used_bytes);
        return used >= layerBefore + 5n * MiB ? used : undefined;
      },
      Math.max(0, wroteLayerAt + 40_000 - Date.now()),
      1000,
    );
    expect(grown).toBeGreaterThanOrEqual(layerBefore + 5n * MiB);
    expect(big((await containerStats(idle)).writable_layer?.inodes_used)).toBeGreaterThan(1n);
    // Containers and pods came and went under the reads: none of that is a read failure worth a warning.
    expect(d.logs()).not.toContain('stats: reading');
  }, 60_000);
});
