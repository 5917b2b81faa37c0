// Pods on a real CNI bridge network through the daemon (bridge + host-local + portmap from /usr/lib/cni), on a
// bridge and subnet of the test's own.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { removeCgroup } from '../../src/runtime/cgroups';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import { CriClient } from '../helpers/cri-client';
import { startDaemon, TestDaemon } from '../helpers/daemon';

const tag = randomBytes(3).toString('hex');
const bridge = `bpn${tag}`;
const subnet = `10.${200 + (parseInt(tag.slice(0, 2), 16) % 50)}.${parseInt(tag.slice(2, 4), 16)}`;
const cgroupParent = `/berth-net-${tag}`;

function pod(name: string, hostNetwork = false): PodSandboxConfig {
  return {
    metadata: { name, namespace: 'net', uid: `uid-${name}`, attempt: 0 },
    hostname: hostNetwork ? '' : name,
    linux: hostNetwork ? { security_context: { namespace_options: { network: 'NODE' } } } : {},
  };
}

function links(): string {
  return execFileSync('ip', ['-o', 'link'], { encoding: 'utf8' });
}

describe('pod networking through CNI', () => {
  let d: TestDaemon;
  let c: CriClient;
  let ipamDir: string;

  beforeAll(async () => {
    d = await startDaemon({ cni: false, toml: `[runtime]\ncgroup_parent = "${cgroupParent}"\n` });
    c = d.client();
    ipamDir = path.join(d.dir, 'ipam');
  });

  afterAll(async () => {
    await d?.stop();
    d?.cleanup();
    try {
      execFileSync('ip', ['link', 'del', bridge], { stdio: 'ignore' });
    } catch {
      // not there: fine
    }
    await removeCgroup(cgroupParent);
  });

  it('refuses a pod that needs a network until a config exists; host-network pods still run', async () => {
    await expect(c.runtime.RunPodSandbox({ config: pod('early') })).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    const host = await c.runtime.RunPodSandbox({ config: pod('hostnet', true) });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: host.pod_sandbox_id });
  });

  it('gives a pod an IP from host-local, and releases it on stop without leaving a veth', async () => {
    fs.writeFileSync(
      path.join(d.cniConfDir, '10-test.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: `net-${tag}`,
        plugins: [
          { type: 'bridge', bridge, isGateway: true, ipam: { type: 'host-local', dataDir: ipamDir, ranges: [[{ subnet: `${subnet}.0/24` }]] } },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      }),
    );
    // the watcher picks the config up without a restart
    const deadline = Date.now() + 5000;
    for (;;) {
      const st = await c.runtime.Status({});
      if (st.status?.conditions.find((x) => x.type === 'NetworkReady')?.status) break;
      if (Date.now() > deadline) throw new Error('NetworkReady did not turn true');
      await new Promise((r) => setTimeout(r, 100));
    }
    const linksBefore = links().split('\n').length;
    const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({ config: pod('web') });
    const ip = (await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.network?.ip ?? '';
    expect(ip.startsWith(`${subnet}.`)).toBe(true);
    const netns = path.join(d.stateDir, 'pods', id, 'ns', 'net');
    expect(execFileSync('nsenter', [`--net=${netns}`, 'ip', '-o', '-4', 'addr', 'show', 'eth0'], { encoding: 'utf8' })).toContain(ip);
    // the host reaches the pod through the bridge
    execFileSync('busybox', ['ping', '-c', '1', '-W', '2', ip], { stdio: 'ignore' });
    await c.runtime.StopPodSandbox({ pod_sandbox_id: id });
    expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.network?.ip).toBe('');
    const reservations = fs.readdirSync(path.join(ipamDir, `net-${tag}`)).filter((f) => /^\d+\./.test(f));
    expect(reservations).toEqual([]);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
    // only the bridge itself stays
    expect(links().split('\n').length).toBeLessThanOrEqual(linksBefore + 1);
    const metrics = await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^berth_cni_operation_duration_seconds_count\{op="ADD",plugin="bridge"\} 1$/m);
    expect(metrics).toMatch(/^berth_cni_operation_duration_seconds_count\{op="DEL",plugin="portmap"\} [1-9]/m);
  });
});
