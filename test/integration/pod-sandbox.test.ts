// Pod sandboxes through the real daemon: namespaces, pod files, /dev/shm, sysctls, pause, stop/remove, rollback.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { removeCgroup } from '../../src/runtime/cgroups';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import { CriClient } from '../helpers/cri-client';
import { startDaemon, TestDaemon } from '../helpers/daemon';

const cgroupParent = `/berth-test-${randomBytes(4).toString('hex')}`;

function podConfig(name: string, extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
  return {
    metadata: { name, namespace: 'default', uid: `uid-${name}`, attempt: 0 },
    hostname: name,
    log_directory: '',
    labels: { app: name, tier: 'test' },
    annotations: { note: 'x' },
    ...extra,
  };
}

function mountsUnder(dir: string): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(dir));
}

function inNetns(file: string, ...cmd: string[]): string {
  return execFileSync('nsenter', [`--net=${file}`, '--', ...cmd], { encoding: 'utf8' });
}

describe('pod sandboxes', () => {
  let d: TestDaemon;
  let c: CriClient;

  beforeAll(async () => {
    d = await startDaemon({ toml: `[runtime]\ncgroup_parent = "${cgroupParent}"\n` });
    c = d.client();
  });

  afterAll(async () => {
    await d?.stop();
    expect(mountsUnder(d.dir)).toEqual([]);
    d?.cleanup();
    await removeCgroup(cgroupParent);
  });

  it('runs a pod with its own namespaces, files, shm, sysctls and a pause process; stops and removes it', async () => {
    const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({
      config: podConfig('web', {
        dns_config: { servers: ['10.96.0.10'], searches: ['default.svc.cluster.local', 'svc.cluster.local'], options: ['ndots:5'] },
        linux: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' }, security_context: { namespace_options: { pid: 'POD' } } },
      }),
    });
    expect(id).toMatch(/^[a-f0-9]{64}$/);
    const st = await c.runtime.PodSandboxStatus({ pod_sandbox_id: id, verbose: true });
    expect(st.status).toMatchObject({ id, state: 'SANDBOX_READY', labels: { app: 'web', tier: 'test' }, runtime_handler: 'runc' });
    expect(st.status?.linux?.namespaces?.options?.pid).toBe('POD');
    const podDir = path.join(d.stateDir, 'pods', id);
    expect(fs.readFileSync(path.join(podDir, 'resolv.conf'), 'utf8')).toBe('search default.svc.cluster.local svc.cluster.local\nnameserver 10.96.0.10\noptions ndots:5\n');
    expect(fs.readFileSync(path.join(podDir, 'hostname'), 'utf8')).toBe('web\n');
    const netns = path.join(podDir, 'ns', 'net');
    expect(inNetns(netns, 'cat', '/proc/sys/net/ipv4/ip_unprivileged_port_start').trim()).toBe('0');
    expect(inNetns(netns, 'ip', '-o', 'link')).toMatch(/^1: lo: <LOOPBACK,UP,LOWER_UP>/);
    expect(execFileSync('nsenter', [`--uts=${path.join(podDir, 'ns', 'uts')}`, 'hostname'], { encoding: 'utf8' }).trim()).toBe('web');
    expect(mountsUnder(podDir)).toEqual(expect.arrayContaining([path.join(podDir, 'shm')]));
    const pid = (JSON.parse(st.info['info'] ?? '{}') as { pid: number }).pid;
    expect(pid).toBeGreaterThan(0);
    expect(fs.readFileSync(`/sys/fs/cgroup/memory${cgroupParent}/pod-${id.slice(0, 12)}/pause/cgroup.procs`, 'utf8').trim()).toBe(String(pid));

    await c.runtime.StopPodSandbox({ pod_sandbox_id: id });
    await c.runtime.StopPodSandbox({ pod_sandbox_id: id }); // idempotent
    expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.state).toBe('SANDBOX_NOTREADY');
    expect(fs.existsSync(`/proc/${pid}`)).toBe(false);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id }); // idempotent
    expect(fs.existsSync(podDir)).toBe(false);
    expect(mountsUnder(podDir)).toEqual([]);
    await expect(c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  });

  it('lists pods with id-prefix, state and label filters', async () => {
    const a = (await c.runtime.RunPodSandbox({ config: podConfig('list-a') })).pod_sandbox_id;
    const b = (await c.runtime.RunPodSandbox({ config: podConfig('list-b') })).pod_sandbox_id;
    await c.runtime.StopPodSandbox({ pod_sandbox_id: b });
    const ids = async (filter: object): Promise<string[]> => (await c.runtime.ListPodSandbox({ filter })).items.map((p) => p.id).sort();
    expect(await ids({})).toEqual([a, b].sort());
    expect(await ids({ id: a.slice(0, 10) })).toEqual([a]);
    expect(await ids({ state: { state: 'SANDBOX_READY' } })).toEqual([a]);
    expect(await ids({ label_selector: { app: 'list-b' } })).toEqual([b]);
    const streamed: string[] = [];
    for await (const batch of c.runtime.StreamPodSandboxes({})) streamed.push(...batch.pod_sandboxes.map((p) => p.id));
    expect(streamed.sort()).toEqual([a, b].sort());
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: a.slice(0, 12) });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: b });
  });

  it('runs a host-network pod without a network namespace', async () => {
    const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({
      config: podConfig('hostnet', { linux: { security_context: { namespace_options: { network: 'NODE', ipc: 'NODE', pid: 'NODE' } } } }),
    });
    const podDir = path.join(d.stateDir, 'pods', id);
    expect(fs.existsSync(path.join(podDir, 'ns', 'net'))).toBe(false);
    expect(fs.existsSync(path.join(podDir, 'shm'))).toBe(false);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
  });

  it('applies UpdatePodSandboxResources (resources plus overhead) to the pod cgroup', async () => {
    const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({ config: podConfig('sized', { linux: { security_context: { namespace_options: { network: 'NODE' } } } }) });
    const pod = `${cgroupParent}/pod-${id.slice(0, 12)}`;
    const MiB = 1024 * 1024;
    await c.runtime.UpdatePodSandboxResources({
      pod_sandbox_id: id,
      resources: { cpu_shares: '512', cpu_period: '100000', cpu_quota: '50000', memory_limit_in_bytes: String(200 * MiB) },
      overhead: { cpu_shares: '64', cpu_period: '100000', cpu_quota: '10000', memory_limit_in_bytes: String(56 * MiB) },
    });
    const read = (controller: string, file: string): string => fs.readFileSync(`/sys/fs/cgroup/${controller}${pod}/${file}`, 'utf8').trim();
    expect([read('cpu', 'cpu.shares'), read('cpu', 'cpu.cfs_quota_us'), read('cpu', 'cpu.cfs_period_us')]).toEqual(['576', '60000', '100000']);
    expect(read('memory', 'memory.limit_in_bytes')).toBe(String(256 * MiB));
    await expect(c.runtime.UpdatePodSandboxResources({ pod_sandbox_id: id, resources: { cpuset_cpus: 'zero' } })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('cpuset_cpus') });
    await expect(c.runtime.UpdatePodSandboxResources({ pod_sandbox_id: 'f'.repeat(64), resources: {} })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
    expect(fs.existsSync(`/sys/fs/cgroup/memory${pod}`)).toBe(false);
  });

  it('refuses bad requests clearly and leaves nothing behind', async () => {
    const before = fs.readdirSync(path.join(d.stateDir, 'pods'));
    await expect(c.runtime.RunPodSandbox({ config: { ...podConfig('x'), metadata: { namespace: 'default', uid: 'u' } } })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringContaining('config.metadata.name'),
    });
    await expect(c.runtime.RunPodSandbox({ config: podConfig('h'), runtime_handler: 'nope' })).rejects.toMatchObject({
      code: grpc.status.NOT_FOUND,
      details: expect.stringContaining('runtime handler "nope"'),
    });
    await expect(c.runtime.RunPodSandbox({ config: podConfig('sysctl', { linux: { sysctls: { 'kernel.panic': '1' } } }) })).rejects.toMatchObject({
      code: grpc.status.INVALID_ARGUMENT,
      details: expect.stringContaining('kernel.panic'),
    });
    expect(fs.readdirSync(path.join(d.stateDir, 'pods'))).toEqual(before);
    expect(mountsUnder(path.join(d.stateDir, 'pods'))).toEqual([]);
    // the failed pod's name was released: the same name runs now
    const ok = await c.runtime.RunPodSandbox({ config: podConfig('sysctl') });
    await expect(c.runtime.RunPodSandbox({ config: podConfig('sysctl') })).rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: ok.pod_sandbox_id });
  });

  it('keeps pods across a daemon restart', async () => {
    const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({ config: podConfig('survivor') });
    expect(await d.stop()).toBe(0);
    d = await startDaemon({ dir: d.dir });
    c = d.client();
    expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.state).toBe('SANDBOX_READY');
    await expect(c.runtime.RunPodSandbox({ config: podConfig('survivor') })).rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
  });
});
