// Security parts of a container's OCI spec: capabilities, masked/read-only /proc and /sys paths, the seccomp
// profile and oom_score_adj. Follows containerd's CRI plugin where the CRI leaves behaviour open.
import { readFileSync } from 'node:fs';
import { invalidArgument } from '../common/errors';
import type { Capability__Output } from '../server/generated/runtime/v1/Capability';
import type { LinuxContainerSecurityContext__Output } from '../server/generated/runtime/v1/LinuxContainerSecurityContext';
import type { OciCapabilities, OciSeccomp } from './oci-spec';
import { loadLocalhostSeccomp, parseSeccompProfile, resolveSeccompProfile, runtimeDefaultSeccomp } from './seccomp';

/** The 41 capabilities Linux defines (0 … 40, CAP_CHECKPOINT_RESTORE, since 5.9), in number order. */
export const ALL_CAPABILITIES: readonly string[] = [
  'CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_DAC_READ_SEARCH', 'CAP_FOWNER', 'CAP_FSETID', 'CAP_KILL', 'CAP_SETGID',
  'CAP_SETUID', 'CAP_SETPCAP', 'CAP_LINUX_IMMUTABLE', 'CAP_NET_BIND_SERVICE', 'CAP_NET_BROADCAST', 'CAP_NET_ADMIN',
  'CAP_NET_RAW', 'CAP_IPC_LOCK', 'CAP_IPC_OWNER', 'CAP_SYS_MODULE', 'CAP_SYS_RAWIO', 'CAP_SYS_CHROOT', 'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', 'CAP_SYS_ADMIN', 'CAP_SYS_BOOT', 'CAP_SYS_NICE', 'CAP_SYS_RESOURCE', 'CAP_SYS_TIME',
  'CAP_SYS_TTY_CONFIG', 'CAP_MKNOD', 'CAP_LEASE', 'CAP_AUDIT_WRITE', 'CAP_AUDIT_CONTROL', 'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE', 'CAP_MAC_ADMIN', 'CAP_SYSLOG', 'CAP_WAKE_ALARM', 'CAP_BLOCK_SUSPEND', 'CAP_AUDIT_READ',
  'CAP_PERFMON', 'CAP_BPF', 'CAP_CHECKPOINT_RESTORE',
];

/** The kubelet's DefaultProcMount lists (k8s.io/kubernetes/pkg/securitycontext), also containerd's defaults. */
export const DEFAULT_MASKED_PATHS: readonly string[] = [
  '/proc/asound', '/proc/acpi', '/proc/kcore', '/proc/keys', '/proc/latency_stats', '/proc/timer_list',
  '/proc/timer_stats', '/proc/sched_debug', '/proc/scsi', '/sys/firmware', '/sys/devices/virtual/powercap',
];
export const DEFAULT_READONLY_PATHS: readonly string[] = [
  '/proc/bus', '/proc/fs', '/proc/irq', '/proc/sys', '/proc/sysrq-trigger',
];

let ownBoundingSet: string[] | undefined;

/**
 * The capabilities berth itself may pass on: its bounding set (CapBnd of /proc/self/status). A container cannot
 * hold more — runc fails with "unable to apply caps" — and root here lacks CAP_SYS_RESOURCE.
 */
export function hostCapabilities(): string[] {
  if (!ownBoundingSet) {
    let mask = (1n << BigInt(ALL_CAPABILITIES.length)) - 1n;
    try {
      const hex = /^CapBnd:\s*([0-9a-f]+)$/m.exec(readFileSync('/proc/self/status', 'utf8'))?.[1];
      if (hex) mask = BigInt(`0x${hex}`);
    } catch {
      // no procfs: assume every capability
    }
    ownBoundingSet = ALL_CAPABILITIES.filter((_, bit) => (mask >> BigInt(bit)) & 1n);
  }
  return [...ownBoundingSet];
}

/** "net_admin" / "CAP_NET_ADMIN" → "CAP_NET_ADMIN"; "ALL" stays "ALL"; unknown names are INVALID_ARGUMENT. */
export function normalizeCapability(name: string, field: string, known: ReadonlySet<string>): string {
  const upper = name.trim().toUpperCase();
  if (upper === 'ALL') return 'ALL';
  const cap = upper.startsWith('CAP_') ? upper : `CAP_${upper}`;
  if (!known.has(cap)) throw invalidArgument(`${field}: unknown capability ${JSON.stringify(name)}`);
  return cap;
}

/**
 * containerd's order: add "ALL" grants every capability, drop "ALL" clears the set, then individual adds, then
 * individual drops — so drop ALL + add NET_BIND_SERVICE leaves just that one. Inheritable stays empty
 * (CVE-2022-24769); ambient holds only add_ambient_capabilities, which must also be in the resulting set.
 * `hostCaps` is both what "ALL"/privileged grant and the limit of any set.
 */
export function buildCapabilities(
  defaults: readonly string[],
  cri: Capability__Output | null | undefined,
  privileged: boolean,
  hostCaps: readonly string[] = hostCapabilities(),
): OciCapabilities {
  const known = new Set([...ALL_CAPABILITIES, ...hostCaps]);
  const held = new Set(hostCaps);
  const norm = (list: readonly string[], field: string): string[] =>
    list.map((c, i) => normalizeCapability(c, `${field}[${i}]`, known));
  let set: string[];
  if (privileged) {
    set = [...hostCaps];
  } else {
    const add = norm(cri?.add_capabilities ?? [], 'capabilities.add_capabilities');
    const drop = norm(cri?.drop_capabilities ?? [], 'capabilities.drop_capabilities');
    const caps = new Set(norm(defaults, 'default capabilities').filter((c) => c !== 'ALL'));
    if (add.includes('ALL')) hostCaps.forEach((c) => caps.add(c));
    if (drop.includes('ALL')) caps.clear();
    add.filter((c) => c !== 'ALL').forEach((c) => caps.add(c));
    drop.filter((c) => c !== 'ALL').forEach((c) => caps.delete(c));
    // A capability berth lacks cannot be granted (runc would fail the create): leave it out, as for "ALL".
    set = [...caps].filter((c) => held.has(c));
  }
  const ambient = norm(cri?.add_ambient_capabilities ?? [], 'capabilities.add_ambient_capabilities');
  ambient.forEach((c, i) => {
    if (c === 'ALL' || !set.includes(c)) {
      throw invalidArgument(`capabilities.add_ambient_capabilities[${i}]: ${c} is not in the container's capability set`);
    }
  });
  return { bounding: [...set], effective: [...set], permitted: [...set], inheritable: [...ambient], ambient };
}

function checkPaths(list: readonly string[], field: string): string[] {
  return list.map((p, i) => {
    if (!p.startsWith('/') || p.includes('\0')) throw invalidArgument(`${field}[${i}]: must be an absolute path`);
    return p;
  });
}

/**
 * The kubelet sends its proc-mount lists in masked_paths/readonly_paths; each list is used as given when non-empty
 * and the default otherwise. The CRI has no field for procMount: Unmasked, and an empty list cannot be told apart
 * from "not set" (crictl), so both get the defaults, as containerd does. Privileged: nothing masked.
 */
export function buildProcMasks(
  sc: LinuxContainerSecurityContext__Output | null | undefined,
  privileged: boolean,
): { maskedPaths: string[]; readonlyPaths: string[] } {
  if (privileged) return { maskedPaths: [], readonlyPaths: [] };
  const masked = sc?.masked_paths ?? [];
  const readonly = sc?.readonly_paths ?? [];
  return {
    maskedPaths: masked.length ? checkPaths(masked, 'security_context.masked_paths') : [...DEFAULT_MASKED_PATHS],
    readonlyPaths: readonly.length ? checkPaths(readonly, 'security_context.readonly_paths') : [...DEFAULT_READONLY_PATHS],
  };
}

/**
 * The seccomp filter: none when privileged; a profile the caller already loaded wins; then the CRI `seccomp`
 * field; then the deprecated `seccomp_profile_path` ("runtime/default", "docker/default", "localhost/<path>",
 * "unconfined"). Unset means unconfined: the kubelet sends RuntimeDefault itself when the cluster defaults to it.
 * Conditional rules are resolved against `caps` (the bounding set, as containerd does).
 */
export function selectSeccomp(
  sc: LinuxContainerSecurityContext__Output | null | undefined,
  privileged: boolean,
  caps: string[],
  preloaded?: object,
): OciSeccomp | undefined {
  if (privileged) return undefined;
  if (preloaded) return resolveSeccompProfile(parseSeccompProfile(preloaded, '(preloaded)'), caps);
  const profile = sc?.seccomp;
  if (profile) {
    switch (profile.profile_type) {
      case 'RuntimeDefault':
        return runtimeDefaultSeccomp(caps);
      case 'Unconfined':
        return undefined;
      case 'Localhost':
        if (!profile.localhost_ref) throw invalidArgument('security_context.seccomp.localhost_ref: required for Localhost');
        return loadLocalhostSeccomp(profile.localhost_ref, caps);
      default:
        throw invalidArgument(`security_context.seccomp.profile_type: unknown ${JSON.stringify(profile.profile_type)}`);
    }
  }
  const legacy = sc?.seccomp_profile_path ?? '';
  if (legacy === '' || legacy === 'unconfined') return undefined;
  if (legacy === 'runtime/default' || legacy === 'docker/default') return runtimeDefaultSeccomp(caps);
  if (legacy.startsWith('localhost/')) return loadLocalhostSeccomp(legacy.slice('localhost/'.length), caps);
  throw invalidArgument(`security_context.seccomp_profile_path: unsupported ${JSON.stringify(legacy)}`);
}

let ownOomScoreAdj: number | undefined;

/** This process's oom_score_adj: children inherit it, and without CAP_SYS_RESOURCE they cannot go below it. */
export function currentOomScoreAdj(): number {
  if (ownOomScoreAdj === undefined) {
    try {
      const v = Number.parseInt(readFileSync('/proc/self/oom_score_adj', 'utf8').trim(), 10);
      ownOomScoreAdj = Number.isFinite(v) ? v : 0;
    } catch {
      ownOomScoreAdj = 0;
    }
  }
  return ownOomScoreAdj;
}

/**
 * oom_score_adj for the container. Requests below berth's own value are raised to it: root here lacks
 * CAP_SYS_RESOURCE, and runc would fail the whole create writing a lower value (containerd's
 * restrict_oom_score_adj does the same). The kubelet's -997 for Guaranteed pods therefore becomes the floor.
 */
export function clampOomScoreAdj(raw: string, floor = currentOomScoreAdj()): number {
  const v = raw === '' ? 0 : Number(raw);
  if (!Number.isInteger(v) || v < -1000 || v > 1000) {
    throw invalidArgument(`resources.oom_score_adj: ${JSON.stringify(raw)} is not an integer in -1000..1000`);
  }
  return Math.max(v, floor);
}
