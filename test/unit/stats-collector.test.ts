// The stats collector over a copy of the recorded v2 cgroup files and temp writable layers: what it reads for which
// container, how a vanished or unreadable cgroup leaves only that part out, and the CRI and metrics views of samples.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Limiter } from '../../src/common/limiter';
import { packageRoot } from '../../src/common/package-root';
import type { ContainerRecord } from '../../src/runtime/container-manager';
import type { SandboxRecord } from '../../src/runtime/sandbox-manager';
import { StatsCollector } from '../../src/runtime/stats/collector';
import { countCgroupProcesses } from '../../src/runtime/stats/process-count';
import { METRIC_DESCRIPTORS, podMetricsView } from '../../src/server/pod-metrics';
import { containerStatsView, podStatsView } from '../../src/server/stats-view';

const V2 = path.join(packageRoot(), 'test', 'fixtures', 'cgroup', 'v2');

describe('StatsCollector', () => {
  let dir: string;
  let cgroupRoot: string;
  let containersDir: string;
  const errors: string[] = [];
  let collector: StatsCollector;

  function container(id: string, cgroupsPath: string | undefined, over: Partial<ContainerRecord> = {}): ContainerRecord {
    const bundle = path.join(dir, 'bundles', id);
    fs.mkdirSync(bundle, { recursive: true });
    if (cgroupsPath !== undefined) fs.writeFileSync(path.join(bundle, 'config.json'), JSON.stringify({ linux: { cgroupsPath } }));
    fs.mkdirSync(path.join(containersDir, id, 'upper'), { recursive: true });
    fs.writeFileSync(path.join(containersDir, id, 'upper', 'file'), Buffer.alloc(8192, 1));
    return {
      id, podId: 'pod1', name: `${id}_0`, imageId: 'sha256:x', imageName: 'busybox', handler: { name: 'runc', path: '/usr/bin/runc', root: '/run/runc', type: 'oci' },
      config: { metadata: { name: id, attempt: 0 }, labels: { l: id }, annotations: {} } as unknown as ContainerRecord['config'],
      state: 'CONTAINER_RUNNING', createdAtNs: '1', startedAtNs: '1700000000123456789', finishedAtNs: '0', exitCode: 0, reason: '', message: '',
      pid: 4242, logPath: '', bundle, stopSignal: 'SIGTERM', user: { uid: 0, gid: 0, additionalGids: [] }, resources: null,
      ...over,
    } as ContainerRecord;
  }

  const pod = (cgroupParent: string): SandboxRecord =>
    ({
      id: 'pod1', name: 'p', state: 'SANDBOX_READY', hostNetwork: true, namespaces: {}, cgroupParent,
      config: { metadata: { name: 'p', namespace: 'ns', uid: 'u', attempt: 1 }, labels: {}, annotations: {} },
    }) as unknown as SandboxRecord;

  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-collector-'));
    cgroupRoot = path.join(dir, 'cgroup');
    containersDir = path.join(dir, 'containers');
    fs.cpSync(V2, cgroupRoot, { recursive: true });
    fs.mkdirSync(path.join(cgroupRoot, 'broken'));
    fs.writeFileSync(path.join(cgroupRoot, 'broken', 'memory.current'), 'not a number\n');
    fs.writeFileSync(path.join(cgroupRoot, 'broken', 'memory.stat'), 'anon 1\n');
    fs.writeFileSync(path.join(cgroupRoot, 'broken', 'cpu.stat'), 'usage_usec 1\n');
    errors.length = 0;
    collector = new StatsCollector({ containersDir, cgroup: { root: cgroupRoot, version: 2 }, onError: (what) => errors.push(what) });
  });

  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('reads a running container: cgroup, writable layer, and a rate from the second sample on', async () => {
    const c = container('a', '/berth-pod/ctr');
    const first = await collector.container(c);
    expect(first.cgroup?.cpu.usageCoreNs).toBe(8_734_212_000n);
    expect(first.cgroup?.pids?.current).toBe(7n);
    expect(first.nanoCores).toBeUndefined();
    expect(first.writableLayer?.bytes).toBeGreaterThanOrEqual(8192n);
    expect(first.writableLayer?.inodes).toBe(2n);
    const second = await collector.container(c);
    expect(second.nanoCores).toBe(0n); // same recorded counter, later timestamp

    const view = containerStatsView(second, containersDir);
    expect(view).toMatchObject({
      attributes: { id: 'a', labels: { l: 'a' } },
      cpu: { usage_core_nano_seconds: { value: '8734212000' }, usage_nano_cores: { value: '0' }, timestamp: second.cgroup?.timestampNs.toString() },
      memory: { available_bytes: expect.any(Object), working_set_bytes: expect.any(Object) },
      swap: { swap_usage_bytes: expect.any(Object) },
      writable_layer: { fs_id: { mountpoint: containersDir }, inodes_used: { value: '2' } },
    });

    collector.retain(new Set());
    expect((await collector.container(c)).nanoCores).toBeUndefined(); // forgotten: starts over
  });

  it('leaves out only what it cannot read: a vanished cgroup quietly, an unreadable one with an error report', async () => {
    const samples = await collector.containers([
      container('gone', '/berth-pod/vanished'),
      container('broken', '/broken'),
      container('nospec', undefined),
      container('created', undefined, { pid: 0, state: 'CONTAINER_CREATED' }),
      container('exited', '/berth-pod/ctr', { state: 'CONTAINER_EXITED' }),
      container('ok', '/berth-pod/ctr'),
    ]);
    expect(samples.map((s) => [s.container.id, s.cgroup !== undefined, s.writableLayer !== undefined])).toEqual([
      ['gone', false, true],
      ['broken', false, true],
      ['nospec', false, true],
      ['created', false, true],
      ['exited', false, true],
      ['ok', true, true],
    ]);
    expect(errors).toEqual(['container broken cgroup']);
    const created = containerStatsView(samples[3] as (typeof samples)[number], containersDir);
    expect(Object.keys(created).sort()).toEqual(['attributes', 'writable_layer']);
  });

  it('samples a pod: its cgroup and process count when there, nothing for a host-network pod', async () => {
    const withCgroup = await collector.pod(pod('/berth-pod/ctr'), [container('a', '/berth-pod/ctr')]);
    expect(withCgroup.processCount?.count).toBe(7n);
    expect(withCgroup.network).toBeUndefined();
    const view = podStatsView(withCgroup, containersDir);
    expect(view.linux).toMatchObject({ process: { process_count: { value: '7' } }, memory: expect.any(Object), cpu: expect.any(Object) });
    expect(view.linux?.containers).toHaveLength(1);

    const noCgroup = await collector.pod(pod('/berth-pod/none'), []);
    expect([noCgroup.cgroup, noCgroup.processCount]).toEqual([undefined, undefined]);
    expect(errors).toEqual([]);
  });

  it('gives every metric exactly its descriptor label keys; a container without a cgroup only its fs usage', async () => {
    const sample = await collector.pod(pod('/berth-pod/ctr'), [container('a', '/berth-pod/ctr'), container('c', undefined, { pid: 0, state: 'CONTAINER_CREATED' })]);
    sample.network = { timestampNs: 5n, interfaces: [{ name: 'eth0', rxBytes: 10n, rxErrors: 0n, txBytes: 20n, txErrors: 1n }] };
    const m = podMetricsView(sample);
    const keys = new Map(METRIC_DESCRIPTORS.map((d) => [d.name, d.label_keys ?? []]));
    for (const metric of [...(m.metrics ?? []), ...(m.container_metrics ?? []).flatMap((x) => x.metrics ?? [])]) {
      expect(metric.label_values).toHaveLength(keys.get(metric.name ?? '')?.length ?? -1);
    }
    expect(m.metrics?.find((x) => x.name === 'container_network_transmit_errors_total')).toEqual({
      name: 'container_network_transmit_errors_total', timestamp: '5', metric_type: 'COUNTER',
      label_values: ['pod1', 'k8s_POD_p_ns_u_1', '', 'POD', 'p', 'ns', 'eth0'], value: { value: '1' },
    });
    const [a, created] = m.container_metrics ?? [];
    expect(a?.metrics?.find((x) => x.name === 'container_cpu_usage_seconds_total')).toMatchObject({ value: { value: '8' }, label_values: ['a', 'k8s_a_p_ns_u_1', 'busybox', 'a', 'p', 'ns', 'total'] });
    expect(a?.metrics?.find((x) => x.name === 'container_start_time_seconds')?.value).toEqual({ value: '1700000000' });
    expect(a?.metrics?.find((x) => x.name === 'container_spec_memory_limit_bytes')?.value).toEqual({ value: '134217728' });
    expect(created?.metrics?.map((x) => x.name)).toEqual(['container_fs_usage_bytes']);
  });

  it('counts processes through cgroup.procs across the tree when there is no pids controller', async () => {
    fs.mkdirSync(path.join(cgroupRoot, 'tree', 'child'), { recursive: true });
    fs.writeFileSync(path.join(cgroupRoot, 'tree', 'cgroup.procs'), '1\n2\n');
    fs.writeFileSync(path.join(cgroupRoot, 'tree', 'child', 'cgroup.procs'), '3\n');
    expect(await countCgroupProcesses('/tree', { root: cgroupRoot, version: 2 })).toBe(3n);
    await expect(countCgroupProcesses('/nope', { root: cgroupRoot, version: 2 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });
});

describe('Limiter', () => {
  it('runs at most its size at once, in arrival order, and frees the slot of a task that throws', async () => {
    const limiter = new Limiter(2);
    let active = 0;
    let peak = 0;
    const order: number[] = [];
    const task = (i: number) => async (): Promise<number> => {
      active += 1;
      peak = Math.max(peak, active);
      await new Promise((r) => setTimeout(r, 5));
      active -= 1;
      order.push(i);
      if (i === 1) throw new Error('boom');
      return i;
    };
    const results = await Promise.allSettled([0, 1, 2, 3, 4].map((i) => limiter.run(task(i))));
    expect(peak).toBe(2);
    expect(results.map((r) => r.status)).toEqual(['fulfilled', 'rejected', 'fulfilled', 'fulfilled', 'fulfilled']);
    expect(order).toEqual([0, 1, 2, 3, 4]);
  });
});
