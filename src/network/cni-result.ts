// The CNI Result (spec 0.3.0 – 1.0.0): checked field by field before berth keeps it (it becomes the next plugin's
// prevResult and the cached result DEL gets), and the pod's IPs taken from it. 0.3.x/0.4.0 results also carry
// `ips[].version`; 1.0.0 dropped it: the address decides the family.
import { isIP } from 'node:net';
import { CniPluginError } from './cni-exec';

export interface CniInterface {
  name: string;
  mac?: string;
  sandbox?: string;
}

export interface CniIpConfig {
  address: string;
  gateway?: string;
  interface?: number;
}

export interface CniResult {
  cniVersion: string;
  interfaces?: CniInterface[];
  ips?: CniIpConfig[];
  routes?: { dst: string; gw?: string }[];
  dns?: { nameservers?: string[]; domain?: string; search?: string[]; options?: string[] };
  [extra: string]: unknown;
}

const MAX_ITEMS = 256;

/** Validates an ADD result from `plugin`; throws a CniPluginError naming the plugin and the bad field. */
export function parseResult(raw: unknown, plugin: string): CniResult {
  const bad = (what: string): CniPluginError =>
    new CniPluginError('INTERNAL', `CNI plugin ${plugin} (ADD) returned an invalid result: ${what}`, plugin);
  if (raw === undefined) throw bad('no output');
  const obj = object(raw);
  if (!obj) throw bad('not a JSON object');
  if (typeof obj['cniVersion'] !== 'string' || obj['cniVersion'] === '') throw bad('missing "cniVersion"');
  const interfaces = optionalList(obj['interfaces'], 'interfaces', bad);
  interfaces?.forEach((v, i) => {
    const it = object(v);
    if (!it || typeof it['name'] !== 'string') throw bad(`interfaces[${i}] has no "name"`);
    for (const f of ['mac', 'sandbox'] as const) {
      if (it[f] !== undefined && typeof it[f] !== 'string') throw bad(`interfaces[${i}].${f} is not a string`);
    }
  });
  optionalList(obj['ips'], 'ips', bad)?.forEach((v, i) => {
    const ip = object(v);
    if (!ip || typeof ip['address'] !== 'string' || cidrFamily(ip['address']) === 0) throw bad(`ips[${i}].address is not an address/prefix`);
    if (ip['gateway'] !== undefined && (typeof ip['gateway'] !== 'string' || isIP(ip['gateway']) === 0)) throw bad(`ips[${i}].gateway is not an IP`);
    const idx = ip['interface'];
    if (idx !== undefined && (typeof idx !== 'number' || !Number.isInteger(idx) || idx < 0 || idx >= (interfaces?.length ?? 0))) {
      throw bad(`ips[${i}].interface ${JSON.stringify(idx)} is not an index into interfaces`);
    }
  });
  optionalList(obj['routes'], 'routes', bad)?.forEach((v, i) => {
    const r = object(v);
    if (!r || typeof r['dst'] !== 'string' || cidrFamily(r['dst']) === 0) throw bad(`routes[${i}].dst is not a CIDR`);
  });
  if (obj['dns'] !== undefined && !object(obj['dns'])) throw bad('"dns" is not an object');
  return obj as CniResult;
}

/**
 * The pod's addresses without prefix length, IPv4 first, then IPv6: those on an interface inside the sandbox (the
 * pod's eth0; the bridge and host veth have none), or all when the result names no interfaces.
 */
export function podIps(result: CniResult | undefined): string[] {
  if (!result?.ips) return [];
  const inSandbox = (i: number | undefined): boolean => {
    if (i === undefined || !result.interfaces) return true;
    const sandbox = result.interfaces[i]?.sandbox;
    return sandbox !== undefined && sandbox !== '';
  };
  // A loopback plugin's 127.0.0.1/::1 is no pod IP.
  const addrs = result.ips
    .filter((ip) => inSandbox(ip.interface))
    .map((ip) => ip.address.split('/')[0] ?? '')
    .filter((a) => !a.startsWith('127.') && a !== '::1');
  const v4 = addrs.filter((a) => isIP(a) === 4);
  const v6 = addrs.filter((a) => isIP(a) === 6);
  return [...new Set([...v4, ...v6])];
}

/** 4 or 6 for "address/prefix" with a prefix in range, else 0. */
export function cidrFamily(text: string): number {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(text);
  if (!m) return 0;
  const family = isIP(m[1] ?? '');
  const bits = Number(m[2]);
  return (family === 4 && bits <= 32) || (family === 6 && bits <= 128) ? family : 0;
}

function object(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

function optionalList(v: unknown, name: string, bad: (what: string) => Error): unknown[] | undefined {
  if (v === undefined || v === null) return undefined;
  if (!Array.isArray(v)) throw bad(`"${name}" is not a list`);
  const items: unknown[] = v;
  if (items.length > MAX_ITEMS) throw bad(`"${name}" has more than ${MAX_ITEMS} entries`);
  return items;
}
