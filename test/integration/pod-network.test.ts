// Pods on a real CNI bridge network through the daemon (bridge + host-local + portmap from /usr/lib/cni), on a
// bridge, subnet and host-local dataDir of the test's own. afterAll removes whatever a failure left: pods through the
// CRI (so CNI DEL runs), then any iptables line of this network, veths, the bridge and mounts under the test dir.
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { removeCgroup } from '../../src/runtime/cgroups';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import { CriClient } from '../helpers/cri-client';
import { startDaemon, TestDaemon } from '../helpers/daemon';
import { cniChains, host, HOSTPORT_PREFIX, ipamReservations, iptablesLines, networkLine, purgeIptables, readdirOr, sh, vethsOn } from '../helpers/host-net';

const tag = randomBytes(3).toString('hex');
const bridge = `bpn${tag}`;
const second = ((n) => (n === 233 ? 234 : n))(200 + randomInt(55)); // 10.233.x.0/24: the daemon test's and the benchmark's
const subnet = `10.${second}.${randomInt(256)}`;
const network = `net-${tag}`;
const cgroupParent = `/berth-net-${tag}`;
const CYCLES = 50;
/** Every pod id the tests created: afterAll's iptables purge looks for these. */
const seenIds: string[] = [];

const ok = (file: string, args: string[]): boolean => host(file, args).ok;

function pod(name: string, hostNetwork = false): PodSandboxConfig {
  return {
    metadata: { name, namespace: 'net', uid: `uid-${name}`, attempt: 0 },
    hostname: hostNetwork ? '' : name,
    linux: hostNetwork ? { security_context: { namespace_options: { network: 'NODE' } } } : {},
  };
}

/** Lines of one pod: its id (rule comments), its chains, or its address (not a longer one it prefixes). */
function podLine(id: string, ip: string): (line: string) => boolean {
  const addr = new RegExp(`\\b${ip.replace(/\./g, '\\.')}(?![0-9])`);
  const needles = [id, ...cniChains(network, id)];
  return (line) => needles.some((n) => line.includes(n)) || (ip !== '' && addr.test(line));
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .map((l) => (l.split(' ')[4] ?? '').replace(/\\040/g, ' '))
    .filter((mp) => mp === dir || mp.startsWith(`${dir}/`))
    .sort((a, b) => b.length - a.length);
}

describe('pod networking through CNI', () => {
  let d: TestDaemon;
  let c: CriClient;
  let ipamDir: string;

  /** host-local's reservations (one file per address) in the test's own dataDir. */
  const reservations = (): string[] => ipamReservations(ipamDir, network);

  /** Writes the bridge + host-local + portmap network (as deploy/cni, on the test's own names) and waits for it. */
  async function useNetwork(): Promise<void> {
    fs.writeFileSync(
      path.join(d.cniConfDir, '10-test.conflist'),
      JSON.stringify({
        cniVersion: '1.0.0',
        name: network,
        plugins: [
          {
            type: 'bridge', bridge, isGateway: true, ipMasq: true, hairpinMode: true,
            ipam: { type: 'host-local', dataDir: ipamDir, routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: `${subnet}.0/24` }]] },
          },
          { type: 'portmap', capabilities: { portMappings: true } },
        ],
      }),
    );
    // the watcher picks the config up without a restart
    const deadline = Date.now() + 5000;
    for (;;) {
      const st = await c.runtime.Status({});
      if (st.status?.conditions.find((x) => x.type === 'NetworkReady')?.status) return;
      if (Date.now() > deadline) throw new Error('NetworkReady did not turn true');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  beforeAll(async () => {
    d = await startDaemon({ cni: false, toml: `[runtime]\ncgroup_parent = "${cgroupParent}"\n` });
    c = d.client();
    ipamDir = path.join(d.dir, 'ipam');
  });

  afterAll(async () => {
    // Each step on its own: one failing must not keep the others from running.
    const steps: [string, () => unknown][] = [
      ['remove pods through the CRI', async () => {
        for (const p of (await c.runtime.ListPodSandbox({}, { deadline: Date.now() + 10_000 })).items) {
          await c.runtime.RemovePodSandbox({ pod_sandbox_id: p.id }, { deadline: Date.now() + 30_000 }).catch(() => undefined);
        }
      }],
      ['stop the daemon', () => d?.stop()],
      ['purge iptables', () => purgeIptables(networkLine({ prefix: subnet, bridge, names: [network], ids: seenIds }))],
      ['delete veths and the bridge', () => {
        for (const v of vethsOn(bridge)) ok('ip', ['link', 'del', v]);
        ok('ip', ['link', 'del', bridge]);
      }],
      ['unmount', () => {
        for (const mp of d ? mountsUnder(d.dir) : []) ok('umount', ['-l', mp]);
      }],
      ['remove the test dir', () => d?.cleanup()],
      ['remove the cgroup', () => removeCgroup(cgroupParent)],
    ];
    const failed: string[] = [];
    for (const [what, step] of steps) {
      try {
        await step();
      } catch (err) {
        failed.push(`${what}: ${err instanceof Error ? err.message : String(err)}`);
      }
    }
    if (failed.length > 0) throw new Error(`cleanup: ${failed.join('; ')}`);
  });

  it('refuses a pod that needs a network until a config exists; host-network pods still run', async () => {
    await expect(c.runtime.RunPodSandbox({ config: pod('early') })).rejects.toMatchObject({ code: grpc.status.UNAVAILABLE });
    const host = await c.runtime.RunPodSandbox({ config: pod('hostnet', true) });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: host.pod_sandbox_id });
  });

  it('gives a pod an IP from host-local, and releases it on stop without leaving a veth', async () => {
    await useNetwork();
    const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({ config: pod('web') });
    seenIds.push(id);
    const ip = (await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.network?.ip ?? '';
    expect(ip.startsWith(`${subnet}.`)).toBe(true);
    const netns = path.join(d.stateDir, 'pods', id, 'ns', 'net');
    expect(sh('nsenter', [`--net=${netns}`, 'ip', '-o', '-4', 'addr', 'show', 'eth0'])).toContain(ip);
    expect(vethsOn(bridge)).toHaveLength(1);
    // the host reaches the pod through the bridge
    sh('busybox', ['ping', '-c', '1', '-W', '2', ip]);
    await c.runtime.StopPodSandbox({ pod_sandbox_id: id });
    expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.network?.ip).toBe('');
    expect(reservations()).toEqual([]);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
    expect(vethsOn(bridge)).toEqual([]);
    const metrics = await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text();
    expect(metrics).toMatch(/^berth_cni_operation_duration_seconds_count\{op="ADD",plugin="bridge"\} 1$/m);
    expect(metrics).toMatch(/^berth_cni_operation_duration_seconds_count\{op="DEL",plugin="portmap"\} [1-9]/m);
  });

  it(`leaves no veth, IP reservation, iptables rule, netns or pod dir after ${CYCLES} pods with a host port`, async () => {
    await useNetwork();
    const hostPort = 20_000 + randomInt(40_000);
    const dport = new RegExp(`--dports? ${hostPort}\\b`);
    const cacheDir = path.join(d.root, 'cni-cache');
    for (let i = 0; i < CYCLES; i++) {
      const config: PodSandboxConfig = { ...pod(`cycle-${i}`), port_mappings: [{ protocol: 'TCP', container_port: 8080, host_port: hostPort }] };
      const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({ config });
      seenIds.push(id);
      const ip = (await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.network?.ip ?? '';
      const podDir = path.join(d.stateDir, 'pods', id);
      const mine = podLine(id, ip);
      // While the pod runs, all that is looked for afterwards is there, so its absence then means something.
      const veths = vethsOn(bridge);
      const rules = iptablesLines(mine);
      expect({
        cycle: i,
        inSubnet: ip.startsWith(`${subnet}.`),
        veths: veths.length,
        reservations: reservations(),
        hostPortJump: rules.some((l) => l.startsWith(`-A ${HOSTPORT_PREFIX}DNAT `) && dport.test(l)),
        dnat: rules.some((l) => l.includes(`--to-destination ${ip}:8080`)),
        masquerade: rules.some((l) => l.startsWith(`-A POSTROUTING -s ${ip}/32 `)),
        netnsPinned: mountsUnder(podDir).includes(path.join(podDir, 'ns', 'net')),
        cached: readdirOr(cacheDir).filter((f) => f.includes(id)).length,
      }).toEqual({
        cycle: i, inSubnet: true, veths: 1, reservations: [ip], hostPortJump: true, dnat: true, masquerade: true, netnsPinned: true, cached: 1,
      });

      await c.runtime.StopPodSandbox({ pod_sandbox_id: id });
      await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
      expect({
        cycle: i,
        veth: ok('ip', ['link', 'show', veths[0] ?? 'none']),
        vethsOnBridge: vethsOn(bridge),
        reservations: reservations(),
        iptables: iptablesLines((l) => mine(l) || (l.includes(HOSTPORT_PREFIX) && dport.test(l))),
        mounts: mountsUnder(podDir),
        podDir: fs.existsSync(podDir),
        cached: readdirOr(cacheDir).filter((f) => f.includes(id)),
      }).toEqual({ cycle: i, veth: false, vethsOnBridge: [], reservations: [], iptables: [], mounts: [], podDir: false, cached: [] });
    }
    expect((await c.runtime.ListPodSandbox({})).items).toEqual([]);
    expect(readdirOr(path.join(d.stateDir, 'pods'))).toEqual([]);
    expect(mountsUnder(path.join(d.stateDir, 'pods'))).toEqual([]);
  }, 170_000);
});
