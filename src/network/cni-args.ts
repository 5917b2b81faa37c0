// What a pod contributes to a CNI call: the CNI_ARGS pairs (K8S_POD_*, the kubelet convention) and the capability
// arguments (portMappings, bandwidth, dns, ipRanges), which reach a plugin as `runtimeConfig` only when its config
// declares the capability. All are computed once at ADD and cached, so DEL gets the very same values (the spec asks
// for DEL parameters equal to ADD's) even after the pod record is gone.
import { isIP } from 'node:net';
import { invalidArgument } from '../common/errors';
import type { PodSandboxConfig__Output } from '../server/generated/runtime/v1/PodSandboxConfig';
import { cidrFamily } from './cni-result';
import { pluginCapabilities } from './cni-config';

/** The parts of a pod sandbox config networking reads. */
export type PodNetConfig = Pick<PodSandboxConfig__Output, 'metadata' | 'port_mappings' | 'annotations' | 'dns_config'>;

export const INGRESS_ANNOTATION = 'kubernetes.io/ingress-bandwidth';
export const EGRESS_ANNOTATION = 'kubernetes.io/egress-bandwidth';
/** The burst the kubelet and CRI-O pass with a rate: effectively unlimited (bits). */
const UNLIMITED_BURST = 2147483647;
const MIN_BANDWIDTH = 1e3; // the kubelet's bounds: 1k .. 1P bits/s
const MAX_BANDWIDTH = 1e15;
const MAX_PORT_MAPPINGS = 1024;

/** CNI_ARGS: IgnoreUnknown first so plugins that know no K8S_* keys accept them. Values must not hold ';' or '='. */
export function cniArgs(podId: string, config: PodNetConfig): [string, string][] {
  const meta = config.metadata;
  const pairs: [string, string][] = [
    ['IgnoreUnknown', '1'],
    ['K8S_POD_NAMESPACE', meta?.namespace ?? ''],
    ['K8S_POD_NAME', meta?.name ?? ''],
    ['K8S_POD_INFRA_CONTAINER_ID', podId],
    ['K8S_POD_UID', meta?.uid ?? ''],
  ];
  for (const [key, value] of pairs) {
    if (/[;=\s\p{Cc}]/u.test(value) || value.length > 1024) {
      throw invalidArgument(`${key} ${JSON.stringify(value)} cannot be passed in CNI_ARGS (no ';', '=', whitespace or control characters)`);
    }
  }
  return pairs;
}

export interface PortMappingArg {
  hostPort: number;
  containerPort: number;
  protocol: string;
  hostIP?: string;
}

export interface BandwidthArg {
  ingressRate?: number;
  ingressBurst?: number;
  egressRate?: number;
  egressBurst?: number;
}

/** Every capability argument berth can supply for this pod; absent keys are not sent at all. */
export function capabilityArgs(config: PodNetConfig, podCidr = ''): Record<string, unknown> {
  const caps: Record<string, unknown> = {};
  const ports = portMappings(config);
  if (ports.length > 0) caps['portMappings'] = ports;
  const bw = bandwidth(config.annotations ?? {});
  if (bw) caps['bandwidth'] = bw;
  const dns = config.dns_config;
  if (dns && (dns.servers.length > 0 || dns.searches.length > 0 || dns.options.length > 0)) {
    caps['dns'] = { servers: [...dns.servers], searches: [...dns.searches], options: [...dns.options] };
  }
  const ranges = ipRanges(podCidr);
  if (ranges.length > 0) caps['ipRanges'] = ranges;
  return caps;
}

/** The `runtimeConfig` for one plugin: the capability args it declares, or undefined when none apply. */
export function runtimeConfigFor(plugin: Record<string, unknown>, caps: Record<string, unknown>): Record<string, unknown> | undefined {
  const rc: Record<string, unknown> = {};
  for (const cap of pluginCapabilities(plugin)) if (caps[cap] !== undefined) rc[cap] = caps[cap];
  return Object.keys(rc).length > 0 ? rc : undefined;
}

function portMappings(config: PodNetConfig): PortMappingArg[] {
  const list = config.port_mappings ?? [];
  if (list.length > MAX_PORT_MAPPINGS) throw invalidArgument(`${list.length} port mappings, at most ${MAX_PORT_MAPPINGS}`);
  const out: PortMappingArg[] = [];
  for (const [i, pm] of list.entries()) {
    if (!pm.host_port || pm.host_port <= 0) continue; // container-only ports need nothing from the network
    const where = `port_mappings[${i}]`;
    if (!Number.isInteger(pm.host_port) || pm.host_port > 65535) throw invalidArgument(`${where}.host_port ${pm.host_port} is not a port`);
    if (!Number.isInteger(pm.container_port) || pm.container_port < 1 || pm.container_port > 65535) {
      throw invalidArgument(`${where}.container_port ${pm.container_port} is not a port`);
    }
    const protocol = String(pm.protocol ?? 'TCP').toLowerCase();
    if (!['tcp', 'udp', 'sctp'].includes(protocol)) throw invalidArgument(`${where}.protocol ${JSON.stringify(pm.protocol)} is not TCP, UDP or SCTP`);
    const hostIp = pm.host_ip ?? '';
    if (hostIp !== '' && isIP(hostIp) === 0) throw invalidArgument(`${where}.host_ip ${JSON.stringify(hostIp)} is not an IP`);
    out.push({ hostPort: pm.host_port, containerPort: pm.container_port, protocol, ...(hostIp !== '' ? { hostIP: hostIp } : {}) });
  }
  return out;
}

function bandwidth(annotations: Record<string, string>): BandwidthArg | undefined {
  const out: BandwidthArg = {};
  const ingress = annotations[INGRESS_ANNOTATION];
  const egress = annotations[EGRESS_ANNOTATION];
  if (ingress !== undefined) {
    out.ingressRate = bandwidthValue(INGRESS_ANNOTATION, ingress);
    out.ingressBurst = UNLIMITED_BURST;
  }
  if (egress !== undefined) {
    out.egressRate = bandwidthValue(EGRESS_ANNOTATION, egress);
    out.egressBurst = UNLIMITED_BURST;
  }
  return Object.keys(out).length > 0 ? out : undefined;
}

function bandwidthValue(name: string, text: string): number {
  let bits: number;
  try {
    bits = parseQuantity(text);
  } catch (err) {
    throw invalidArgument(`annotation ${name}: ${(err as Error).message}`);
  }
  if (bits < MIN_BANDWIDTH || bits > MAX_BANDWIDTH) throw invalidArgument(`annotation ${name}: ${text} is outside 1k..1P bits/s`);
  return bits;
}

const SUFFIX: Record<string, number> = {
  '': 1, m: 1e-3, k: 1e3, M: 1e6, G: 1e9, T: 1e12, P: 1e15, E: 1e18,
  Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, Pi: 2 ** 50, Ei: 2 ** 60,
};

/** A Kubernetes resource quantity ("10M", "1.5Gi", "100k", "2e6") as an integer, rounded up as Quantity.Value() does. */
export function parseQuantity(text: string): number {
  const m = /^\+?(\d+(?:\.\d*)?|\.\d+)(Ki|Mi|Gi|Ti|Pi|Ei|[mkMGTPE]|[eE][+-]?\d{1,3})?$/.exec(text.trim());
  if (!m || text.length > 64) throw new Error(`${JSON.stringify(text)} is not a quantity (like 10M or 1Gi)`);
  const suffix = m[2] ?? '';
  const scale = /^[eE]/.test(suffix) ? 10 ** Number(suffix.slice(1)) : (SUFFIX[suffix] ?? NaN);
  const value = Math.ceil(Number(m[1]) * scale - 1e-9);
  if (!Number.isFinite(value)) throw new Error(`${JSON.stringify(text)} is out of range`);
  return value;
}

/** The pod CIDR(s) from UpdateRuntimeConfig as the ipRanges capability: one range set per family. */
function ipRanges(podCidr: string): { subnet: string }[][] {
  return podCidr
    .split(',')
    .map((c) => c.trim())
    .filter((c) => c !== '' && cidrFamily(c) !== 0)
    .map((subnet) => [{ subnet }]);
}
