// What a pod contributes to CNI calls (CNI_ARGS, capability args), the per-plugin stdin config, and result parsing.
import { BerthError } from '../../src/common/errors';
import { capabilityArgs, cniArgs, parseQuantity, runtimeConfigFor, type PodNetConfig } from '../../src/network/cni-args';
import { parseNetworkConfig } from '../../src/network/cni-config';
import { pluginConfig } from '../../src/network/cni-ops';
import { parseResult, podIps, type CniResult } from '../../src/network/cni-result';

const ID = 'a'.repeat(64);
const pod = (extra: Partial<PodNetConfig> = {}): PodNetConfig => ({
  metadata: { name: 'web-0', namespace: 'prod', uid: '1b4e28ba-2fa1-11d2-883f-0016d3cca427', attempt: 0 },
  port_mappings: [],
  annotations: {},
  dns_config: null,
  ...extra,
});

describe('CNI_ARGS', () => {
  it('lists IgnoreUnknown and the K8S_POD_* keys the kubelet convention names', () => {
    expect(cniArgs(ID, pod())).toEqual([
      ['IgnoreUnknown', '1'],
      ['K8S_POD_NAMESPACE', 'prod'],
      ['K8S_POD_NAME', 'web-0'],
      ['K8S_POD_INFRA_CONTAINER_ID', ID],
      ['K8S_POD_UID', '1b4e28ba-2fa1-11d2-883f-0016d3cca427'],
    ]);
  });

  it.each([['a;K8S_POD_NAME=evil'], ['a=b'], ['a b'], ['a\nb'], ['x'.repeat(1025)]])('refuses a value that could smuggle keys: %j', (name) => {
    expect(() => cniArgs(ID, pod({ metadata: { name, namespace: 'ns', uid: 'u', attempt: 0 } }))).toThrow(/cannot be passed in CNI_ARGS/);
  });
});

describe('capability args', () => {
  it('maps host ports (only host_port > 0) with lower-case protocols and optional host IPs', () => {
    const caps = capabilityArgs(
      pod({
        port_mappings: [
          { protocol: 'TCP', container_port: 80, host_port: 8080, host_ip: '' },
          { protocol: 'UDP', container_port: 53, host_port: 5353, host_ip: '10.0.0.1' },
          { protocol: 'SCTP', container_port: 9, host_port: 9009, host_ip: 'fd00::1' },
          { protocol: 'TCP', container_port: 443, host_port: 0, host_ip: '' },
        ],
      }),
    );
    expect(caps).toEqual({
      portMappings: [
        { hostPort: 8080, containerPort: 80, protocol: 'tcp' },
        { hostPort: 5353, containerPort: 53, protocol: 'udp', hostIP: '10.0.0.1' },
        { hostPort: 9009, containerPort: 9, protocol: 'sctp', hostIP: 'fd00::1' },
      ],
    });
  });

  it.each([
    [{ protocol: 'TCP' as const, container_port: 0, host_port: 80, host_ip: '' }, 'container_port 0'],
    [{ protocol: 'TCP' as const, container_port: 80, host_port: 70000, host_ip: '' }, 'host_port 70000'],
    [{ protocol: 'TCP' as const, container_port: 80, host_port: 80, host_ip: 'localhost' }, 'host_ip "localhost"'],
  ])('refuses a bad port mapping %j', (pm, message) => {
    expect(() => capabilityArgs(pod({ port_mappings: [pm] }))).toThrow(message);
  });

  it('turns the kubelet bandwidth annotations into bits/s with an unlimited burst', () => {
    const caps = capabilityArgs(pod({ annotations: { 'kubernetes.io/ingress-bandwidth': '10M', 'kubernetes.io/egress-bandwidth': '1Gi', other: 'x' } }));
    expect(caps).toEqual({ bandwidth: { ingressRate: 10_000_000, ingressBurst: 2147483647, egressRate: 2 ** 30, egressBurst: 2147483647 } });
    expect(capabilityArgs(pod({ annotations: { 'kubernetes.io/egress-bandwidth': '100k' } }))).toEqual({ bandwidth: { egressRate: 100_000, egressBurst: 2147483647 } });
  });

  it.each([['fast'], ['10Q'], ['-5M'], ['500'], ['2P']])('refuses the bandwidth annotation %j (not a quantity, or outside 1k..1P)', (value) => {
    const err = (() => {
      try {
        capabilityArgs(pod({ annotations: { 'kubernetes.io/ingress-bandwidth': value } }));
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(err).toBeInstanceOf(BerthError);
    expect((err as BerthError).code).toBe('INVALID_ARGUMENT');
    expect((err as BerthError).message).toContain('kubernetes.io/ingress-bandwidth');
  });

  it('parses Kubernetes quantities, rounding up', () => {
    expect(parseQuantity('10M')).toBe(10_000_000);
    expect(parseQuantity('1.5k')).toBe(1500);
    expect(parseQuantity('1Ki')).toBe(1024);
    expect(parseQuantity('2e6')).toBe(2_000_000);
    expect(parseQuantity('1500m')).toBe(2);
    expect(parseQuantity('.5M')).toBe(500_000);
    expect(() => parseQuantity('1 M')).toThrow('not a quantity');
  });

  it('passes DNS config and the pod CIDR (as ipRanges, one set per family)', () => {
    const caps = capabilityArgs(pod({ dns_config: { servers: ['10.96.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] } }), '10.244.1.0/24,fd00:1::/64');
    expect(caps).toEqual({
      dns: { servers: ['10.96.0.10'], searches: ['svc.cluster.local'], options: ['ndots:5'] },
      ipRanges: [[{ subnet: '10.244.1.0/24' }], [{ subnet: 'fd00:1::/64' }]],
    });
    expect(capabilityArgs(pod({ dns_config: { servers: [], searches: [], options: [] } }))).toEqual({});
  });

  it('gives a plugin only the capabilities it declares', () => {
    const caps = { portMappings: [{ hostPort: 1, containerPort: 1, protocol: 'tcp' }], dns: { servers: [] } };
    expect(runtimeConfigFor({ type: 'portmap', capabilities: { portMappings: true, bandwidth: true } }, caps)).toEqual({ portMappings: caps.portMappings });
    expect(runtimeConfigFor({ type: 'bridge' }, caps)).toBeUndefined();
    expect(runtimeConfigFor({ type: 'x', capabilities: { dns: false } }, caps)).toBeUndefined();
  });
});

describe('plugin stdin config', () => {
  const network = parseNetworkConfig(
    {
      cniVersion: '1.0.0',
      name: 'net1',
      plugins: [
        { type: 'bridge', name: 'ignored', cniVersion: '0.1.0', prevResult: { stale: true }, runtimeConfig: { stale: true } },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    'x.conflist',
  );
  const prev: CniResult = { cniVersion: '1.0.0', ips: [{ address: '10.1.0.2/24' }] };
  const caps = { portMappings: [{ hostPort: 80, containerPort: 8080, protocol: 'tcp' }] };

  it('inserts the list name and version, and prevResult / runtimeConfig only when there are some', () => {
    const [bridge, portmap] = network.plugins as [Record<string, unknown>, Record<string, unknown>];
    expect(pluginConfig(network, bridge, null, caps)).toEqual({ type: 'bridge', name: 'net1', cniVersion: '1.0.0' });
    expect(pluginConfig(network, portmap, prev, caps)).toEqual({
      type: 'portmap',
      capabilities: { portMappings: true },
      name: 'net1',
      cniVersion: '1.0.0',
      prevResult: prev,
      runtimeConfig: { portMappings: caps.portMappings },
    });
  });
});

describe('CNI results', () => {
  const bridgeResult = {
    cniVersion: '1.0.0',
    interfaces: [{ name: 'cni0', mac: 'aa:bb:cc:dd:ee:ff' }, { name: 'veth1', mac: 'aa:bb:cc:dd:ee:01' }, { name: 'eth0', mac: 'aa:bb:cc:dd:ee:02', sandbox: '/run/netns/x' }],
    ips: [
      { interface: 2, address: 'fd00::5/64', gateway: 'fd00::1' },
      { interface: 2, address: '10.88.0.5/16', gateway: '10.88.0.1' },
      { interface: 0, address: '10.88.0.1/16' },
    ],
    routes: [{ dst: '0.0.0.0/0' }],
    dns: {},
  };

  it('returns the sandbox addresses, IPv4 first, without prefix', () => {
    expect(podIps(parseResult(bridgeResult, 'bridge'))).toEqual(['10.88.0.5', 'fd00::5']);
    // 0.3.x results (with ips[].version) and results that name no interfaces.
    expect(podIps(parseResult({ cniVersion: '0.3.1', ips: [{ version: '4', address: '192.168.1.9/24' }] }, 'ptp'))).toEqual(['192.168.1.9']);
  });

  it.each([
    [undefined, 'no output'],
    [[], 'not a JSON object'],
    [{ ips: [] }, 'missing "cniVersion"'],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1' }] }, 'ips[0].address is not an address/prefix'],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/33' }] }, 'ips[0].address'],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/24', interface: 3 }], interfaces: [{ name: 'a' }] }, 'ips[0].interface 3'],
    [{ cniVersion: '1.0.0', ips: [{ address: '10.0.0.1/24', gateway: 'x' }] }, 'ips[0].gateway'],
    [{ cniVersion: '1.0.0', interfaces: [{ mac: 'x' }] }, 'interfaces[0] has no "name"'],
    [{ cniVersion: '1.0.0', routes: [{ dst: 'default' }] }, 'routes[0].dst'],
    [{ cniVersion: '1.0.0', ips: {} }, '"ips" is not a list'],
  ])('rejects the result %j', (raw, message) => {
    expect(() => parseResult(raw, 'fake')).toThrow(`CNI plugin fake (ADD) returned an invalid result: ${message}`);
  });
});
