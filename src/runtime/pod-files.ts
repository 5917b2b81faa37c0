// The files every container of a pod bind-mounts: /etc/hostname, /etc/hosts, /etc/resolv.conf.
import fsSync from 'node:fs';
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

export function writePodFiles(dir: string, opts: { hostname: string; hostNetwork: boolean; dns: DnsConfig | null }): PodFiles {
  const files: PodFiles = {
    hostname: path.join(dir, 'hostname'),
    hosts: path.join(dir, 'hosts'),
    resolvConf: path.join(dir, 'resolv.conf'),
  };
  // A few hundred bytes each, written in the calling thread: a thread-pool trip per open/write/close would cost more
  // than the writes (RunPodSandbox waits for them).
  fsSync.writeFileSync(files.hostname, `${opts.hostname}\n`, { mode: 0o644 });
  const hosts = opts.hostNetwork
    ? readOr('/etc/hosts')
    : `127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\nff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n`;
  fsSync.writeFileSync(files.hosts, hosts, { mode: 0o644 });
  fsSync.writeFileSync(files.resolvConf, opts.dns && hasDns(opts.dns) ? resolvConf(opts.dns) : readOr('/etc/resolv.conf'), { mode: 0o644 });
  return files;
}

/** The host's copy of a small config file, or empty when it cannot be read. */
function readOr(file: string): string {
  try {
    return fsSync.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
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
