// The files every container of a pod bind-mounts: /etc/hostname, /etc/hosts, /etc/resolv.conf.
import fs from 'node:fs/promises';
import path from 'node:path';
import { invalidArgument } from '../common/errors';

export interface DnsConfig {
  servers: string[];
  searches: string[];
  options: string[];
}

export interface PodFiles {
  hostname: string;
  hosts: string;
  resolvConf: string;
}

// resolv.conf limits glibc honours; more is refused rather than silently dropped.
const MAX_SERVERS = 3;
const MAX_SEARCHES = 32;

export async function writePodFiles(dir: string, opts: { hostname: string; hostNetwork: boolean; dns: DnsConfig | null }): Promise<PodFiles> {
  const files: PodFiles = {
    hostname: path.join(dir, 'hostname'),
    hosts: path.join(dir, 'hosts'),
    resolvConf: path.join(dir, 'resolv.conf'),
  };
  await fs.writeFile(files.hostname, `${opts.hostname}\n`, { mode: 0o644 });
  const hosts = opts.hostNetwork
    ? await fs.readFile('/etc/hosts', 'utf8').catch(() => '')
    : `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`;
  await fs.writeFile(files.hosts, hosts, { mode: 0o644 });
  await fs.writeFile(files.resolvConf, opts.dns && hasDns(opts.dns) ? resolvConf(opts.dns) : await fs.readFile('/etc/resolv.conf', 'utf8').catch(() => ''), { mode: 0o644 });
  return files;
}

function hasDns(dns: DnsConfig): boolean {
  return dns.servers.length + dns.searches.length + dns.options.length > 0;
}

export function resolvConf(dns: DnsConfig): string {
  const token = (field: string, v: string): string => {
    if (!/^[^\s#;]+$/.test(v)) throw invalidArgument(`dns_config.${field}: "${v}" is not a single word`);
    return v;
  };
  if (dns.servers.length > MAX_SERVERS) throw invalidArgument(`dns_config.servers: at most ${MAX_SERVERS} servers`);
  if (dns.searches.length > MAX_SEARCHES) throw invalidArgument(`dns_config.searches: at most ${MAX_SEARCHES} domains`);
  const lines: string[] = [];
  if (dns.searches.length > 0) lines.push(`search ${dns.searches.map((s) => token('searches', s)).join(' ')}`);
  for (const server of dns.servers) lines.push(`nameserver ${token('servers', server)}`);
  if (dns.options.length > 0) lines.push(`options ${dns.options.map((o) => token('options', o)).join(' ')}`);
  return `${lines.join('\n')}\n`;
}
