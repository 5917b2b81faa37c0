// The host's side of a CNI pod network, for the tests and benchmarks that put pods on a bridge of their own: host
// commands, iptables lines (read, matched to one network, purged), the per-pod chains the plugins make, veths on a
// bridge and host-local's reservations.
import { execFileSync, spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';

/** The environment host tools (ip, iptables, nsenter, umount, …) run in: a fixed PATH, whatever the caller's. */
export const HOST_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };

/** Runs a host tool and returns its stdout; throws (its stderr in the message) if it fails. */
export const sh = (file: string, args: string[]): string => execFileSync(file, args, { encoding: 'utf8', env: HOST_ENV, stdio: ['ignore', 'pipe', 'pipe'] });

/** Runs a host tool; never throws. */
export function host(file: string, args: string[]): { ok: boolean; out: string; err: string } {
  const r = spawnSync(file, args, { encoding: 'utf8', env: HOST_ENV });
  return { ok: r.status === 0, out: r.stdout ?? '', err: r.stderr ?? '' };
}

/** The entries of `dir`, or none if it does not exist. */
export const readdirOr = (dir: string): string[] => (fs.existsSync(dir) ? fs.readdirSync(dir) : []);

/** The prefix of portmap's shared chains (CNI-HOSTPORT-DNAT, -SETMARK, -MASQ): made on first use, kept by design. */
export const HOSTPORT_PREFIX = 'CNI-HOSTPORT-';

/** The chains the bridge plugin (ipMasq) and portmap make per (network, container id), as plugins/pkg/utils names them. */
export function cniChains(network: string, id: string): string[] {
  const hash = createHash('sha512').update(network + id).digest('hex');
  return [`CNI-${hash}`.slice(0, 28), `CNI-DN-${hash}`.slice(0, 28)];
}

/**
 * Matches any iptables line of one network: its subnet (`prefix` "10.a.b" of 10.a.b.0/24), its bridge, one of its
 * names, one of the pods' ids or one of the chains the plugins made for those pods on those names.
 */
export function networkLine(net: { prefix: string; bridge: string; names: readonly string[]; ids: readonly string[] }): (line: string) => boolean {
  const needles = [`${net.prefix}.`, net.bridge, ...net.names, ...net.ids];
  for (const name of net.names) for (const id of net.ids) needles.push(...cniChains(name, id));
  return (line) => needles.some((n) => line.includes(n));
}

export type IptablesProg = 'iptables' | 'ip6tables';

export interface IptablesOptions {
  /** The families to look at; both unless told. */
  progs?: readonly IptablesProg[];
  /**
   * What a failing iptables-save means: an error (the default: for a test, no rules read must not pass for no rules
   * left), or no rules at all (best-effort checks and cleanup, as the benchmark's).
   */
  ifSaveFails?: 'throw' | 'empty';
}

const BOTH: readonly IptablesProg[] = ['iptables', 'ip6tables'];

/** What `iptables-save` (or `ip6tables-save`) prints: every table, chain and rule of that family. */
export function iptablesSave(prog: IptablesProg, ifFails: IptablesOptions['ifSaveFails'] = 'throw'): string {
  if (ifFails === 'throw') return sh(`${prog}-save`, []);
  const r = host(`${prog}-save`, []);
  return r.ok ? r.out : '';
}

/** The chain and rule lines (comments left out) that `match`, of both families unless told. */
export function iptablesLines(match: (line: string) => boolean, opts: IptablesOptions = {}): string[] {
  return (opts.progs ?? BOTH).flatMap((prog) => iptablesSave(prog, opts.ifSaveFails).split('\n').filter((l) => !l.startsWith('#') && match(l)));
}

/** Splits an iptables-save rule into argv: spaces separate, double quotes group, a backslash escapes. */
export function iptablesTokens(line: string): string[] {
  const out: string[] = [];
  let cur = '';
  let quoted = false;
  let has = false;
  for (let i = 0; i < line.length; i++) {
    const c = line[i] as string;
    if (c === '\\' && i + 1 < line.length) {
      cur += line[++i];
      has = true;
    } else if (c === '"') {
      quoted = !quoted;
      has = true;
    } else if (c === ' ' && !quoted) {
      if (has) out.push(cur);
      cur = '';
      has = false;
    } else {
      cur += c;
      has = true;
    }
  }
  if (has) out.push(cur);
  return out;
}

/**
 * Deletes the matching rules, then flushes and deletes the matching chains, table by table (waiting for the xtables
 * lock); a rule already gone or a chain still referenced is passed over. Returns how many rules and chains went.
 */
export function purgeIptables(match: (line: string) => boolean, opts: IptablesOptions = {}): number {
  let n = 0;
  for (const prog of opts.progs ?? BOTH) {
    let table = '';
    const chains: [string, string][] = [];
    for (const line of iptablesSave(prog, opts.ifSaveFails).split('\n')) {
      if (line.startsWith('*')) table = line.slice(1);
      else if (line.startsWith('-A ') && match(line)) {
        if (host(prog, ['-w', '-t', table, '-D', ...iptablesTokens(line).slice(1)]).ok) n++;
      } else if (line.startsWith(':') && match(line)) chains.push([table, line.slice(1).split(' ')[0] ?? '']);
    }
    for (const [table, chain] of chains) {
      host(prog, ['-w', '-t', table, '-F', chain]);
      if (host(prog, ['-w', '-t', table, '-X', chain]).ok) n++;
    }
  }
  return n;
}

/** The interfaces (veths) attached to `bridge`; none if it does not exist. */
export function vethsOn(bridge: string): string[] {
  const r = host('ip', ['-o', 'link', 'show', 'master', bridge]);
  if (!r.ok) return [];
  return r.out.split('\n').filter((l) => l.trim() !== '').map((l) => (l.split(': ')[1] ?? '').split('@')[0] ?? '');
}

/** host-local's reservations (one file per address) of `network` in its `dataDir`. */
export function ipamReservations(dataDir: string, network: string): string[] {
  return readdirOr(path.join(dataDir, network)).filter((f) => f !== 'lock' && !f.startsWith('last_reserved_ip'));
}
