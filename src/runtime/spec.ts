// CRI CreateContainer → the OCI runtime spec (config.json) runc/crun run. Behaviour follows CRI-O and containerd's
// CRI plugin; the security, mount and resource parts live in spec-security.ts, spec-mounts.ts, spec-resources.ts.
// Synchronous on purpose: the only I/O is a few stats and small procfs/profile reads.
import { posix } from 'node:path';
import { invalidArgument } from '../common/errors';
import type { ImageConfigDoc } from '../image/manifest';
import type { ContainerConfig__Output } from '../server/generated/runtime/v1/ContainerConfig';
import type { NamespaceMode__Output } from '../server/generated/runtime/v1/NamespaceMode';
import type { PodSandboxConfig__Output } from '../server/generated/runtime/v1/PodSandboxConfig';
import { OCI_VERSION, type OciNamespace, type OciProcess, type OciSpec } from './oci-spec';
import { buildMounts } from './spec-mounts';
import { buildDevices, buildResources, DEFAULT_DEVICE_RULES, hostDevices } from './spec-resources';
import { buildCapabilities, buildProcMasks, clampOomScoreAdj, selectSeccomp } from './spec-security';
import type { ResolvedUser } from './users';

export interface SandboxNamespacePaths {
  net?: string;
  ipc?: string;
  uts?: string;
  /** The pod's pid namespace (pid mode POD), or the target container's (pid mode TARGET). */
  pid?: string;
}

export interface SandboxSpecInfo {
  config: PodSandboxConfig__Output;
  hostname: string;
  namespacePaths: SandboxNamespacePaths;
  resolvConfPath?: string;
  hostsPath?: string;
  hostnamePath?: string;
  shmPath?: string;
  /** Absolute cgroupfs path of the pod, e.g. /berth/pod-<id>. */
  cgroupParent: string;
}

export interface ContainerSpecInput {
  containerId: string;
  podId: string;
  config: ContainerConfig__Output;
  sandbox: SandboxSpecInfo;
  image: { config: ImageConfigDoc };
  /** Absolute path of the container's merged rootfs. */
  rootfs: string;
  user: ResolvedUser;
  /** A seccomp profile (Docker or OCI format) the caller already loaded; wins over the security context's choice. */
  seccompProfile?: object;
  defaultCapabilities: string[];
  /** What privileged and add "ALL" grant, and the limit of any set; default: berth's own bounding set. */
  hostCapabilities?: string[];
  pidsLimit?: number;
  /** Lowest oom_score_adj the container may get; default: berth's own (it cannot lower it). */
  oomScoreAdjFloor?: number;
}

export const DEFAULT_PATH = 'PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';
const MAX_ENVS = 16384;

/** Annotation keys berth sets (containerd's names, which tools such as gVisor and Kata read). */
export const Annotations = {
  containerType: 'io.kubernetes.cri.container-type',
  containerName: 'io.kubernetes.cri.container-name',
  sandboxId: 'io.kubernetes.cri.sandbox-id',
  sandboxName: 'io.kubernetes.cri.sandbox-name',
  sandboxNamespace: 'io.kubernetes.cri.sandbox-namespace',
  sandboxUid: 'io.kubernetes.cri.sandbox-uid',
  imageName: 'io.kubernetes.cri.image-name',
} as const;

function noNul(values: readonly string[], field: string): string[] {
  values.forEach((v, i) => {
    if (v.includes('\0')) throw invalidArgument(`${field}[${i}]: contains a NUL byte`);
  });
  return [...values];
}

/** CRI command replaces ENTRYPOINT and args replace CMD; a command without args drops the image's CMD. */
export function mergeArgs(config: ContainerConfig__Output, image: ImageConfigDoc): string[] {
  const command = noNul(config.command, 'command');
  const args = noNul(config.args, 'args');
  const result = command.length
    ? [...command, ...args]
    : [...(image.config.Entrypoint ?? []), ...(args.length ? args : (image.config.Cmd ?? []))];
  if (result.length === 0) throw invalidArgument('no command specified: neither the container config nor the image has one');
  return result;
}

/** Environment: HOSTNAME, then the image's Env, then the CRI envs, later ones replacing a key in place. */
export function mergeEnv(config: ContainerConfig__Output, image: ImageConfigDoc, hostname: string, user: ResolvedUser): string[] {
  if (config.envs.length > MAX_ENVS) throw invalidArgument(`envs: ${config.envs.length} entries (limit ${MAX_ENVS})`);
  const env = new Map<string, string>();
  const put = (entry: string): void => {
    const eq = entry.indexOf('=');
    env.set(eq < 0 ? entry : entry.slice(0, eq), entry);
  };
  if (hostname) put(`HOSTNAME=${hostname}`);
  (image.config.Env ?? []).forEach(put);
  config.envs.forEach((kv, i) => {
    const value = kv.value.toString('utf8');
    if (!kv.key || kv.key.includes('=') || kv.key.includes('\0') || value.includes('\0')) {
      throw invalidArgument(`envs[${i}]: invalid name ${JSON.stringify(kv.key)} or NUL byte in the value`);
    }
    put(`${kv.key}=${value}`);
  });
  if (!env.has('PATH')) env.set('PATH', DEFAULT_PATH);
  if (!env.has('HOME')) env.set('HOME', `HOME=${user.home}`);
  if (config.tty && !env.has('TERM')) env.set('TERM', 'TERM=xterm');
  return [...env.values()];
}

function workingDir(config: ContainerConfig__Output, image: ImageConfigDoc): string {
  if (config.working_dir) {
    if (!config.working_dir.startsWith('/') || config.working_dir.includes('\0')) {
      throw invalidArgument(`working_dir: must be an absolute path (${JSON.stringify(config.working_dir)})`);
    }
    return posix.normalize(config.working_dir);
  }
  // An image's relative WorkingDir is relative to / (Docker's behaviour); runc wants an absolute cwd.
  return image.config.WorkingDir ? posix.join('/', image.config.WorkingDir) : '/';
}

type Mode = NamespaceMode__Output;

/**
 * Namespaces: network, IPC (and UTS, which follows network as the kubelet's hostNetwork does) join the sandbox's
 * pinned namespaces, or are absent (the host's) for NODE; PID joins the pod's or the TARGET's namespace, is new for
 * CONTAINER, absent for NODE. Mount and cgroup namespaces are always new.
 */
export function buildNamespaces(input: ContainerSpecInput): { namespaces: OciNamespace[]; hostNetwork: boolean; hostIpc: boolean } {
  const podOpts = input.sandbox.config.linux?.security_context?.namespace_options;
  const ctrOpts = input.config.linux?.security_context?.namespace_options;
  const paths = input.sandbox.namespacePaths;
  // network and IPC are the pod's (a container cannot differ); pid is per container.
  const net: Mode = podOpts?.network ?? ctrOpts?.network ?? 'POD';
  const ipc: Mode = podOpts?.ipc ?? ctrOpts?.ipc ?? 'POD';
  const pid: Mode = ctrOpts?.pid ?? podOpts?.pid ?? 'CONTAINER';
  const ns: OciNamespace[] = [{ type: 'mount' }, { type: 'cgroup' }];
  const shared = (type: OciNamespace['type'], mode: Mode, path: string | undefined, field: string): void => {
    if (mode === 'TARGET') throw invalidArgument(`namespace_options.${field}: TARGET is only supported for pid`);
    if (mode === 'NODE') return;
    ns.push(path ? { type, path } : { type });
  };
  shared('network', net, paths.net, 'network');
  shared('ipc', ipc, paths.ipc, 'ipc');
  shared('uts', net, paths.uts, 'network');
  if (pid === 'TARGET') {
    const target = ctrOpts?.target_id ?? '';
    if (!paths.pid) throw invalidArgument(`namespace_options.target_id: no pid namespace for target ${JSON.stringify(target)}`);
    ns.push({ type: 'pid', path: paths.pid });
  } else if (pid === 'POD') {
    ns.push(paths.pid ? { type: 'pid', path: paths.pid } : { type: 'pid' });
  } else if (pid === 'CONTAINER') {
    ns.push({ type: 'pid' });
  }
  return { namespaces: ns, hostNetwork: net === 'NODE', hostIpc: ipc === 'NODE' };
}

function annotations(input: ContainerSpecInput): Record<string, string> {
  const out: Record<string, string> = {};
  const set = (k: string, v: string): void => {
    Object.defineProperty(out, k, { value: v, enumerable: true, writable: true, configurable: true });
  };
  for (const [k, v] of Object.entries(input.config.annotations)) set(k, v);
  const meta = input.sandbox.config.metadata;
  // berth's own keys last, so a pod's annotations cannot spoof them.
  set(Annotations.containerType, 'container');
  set(Annotations.containerName, input.config.metadata?.name ?? '');
  set(Annotations.sandboxId, input.podId);
  set(Annotations.sandboxName, meta?.name ?? '');
  set(Annotations.sandboxNamespace, meta?.namespace ?? '');
  set(Annotations.sandboxUid, meta?.uid ?? '');
  set(Annotations.imageName, input.config.image?.image ?? '');
  return out;
}

/** Build config.json for a container. Every CRI validation failure is INVALID_ARGUMENT naming the field. */
export function buildContainerSpec(input: ContainerSpecInput): OciSpec {
  const { config, sandbox, user } = input;
  const image = input.image.config;
  const sc = config.linux?.security_context;
  const privileged = sc?.privileged ?? false;
  if (privileged && !sandbox.config.linux?.security_context?.privileged) {
    throw invalidArgument('security_context.privileged: the pod sandbox is not privileged');
  }
  const { namespaces, hostNetwork, hostIpc } = buildNamespaces(input);

  const capabilities = buildCapabilities(input.defaultCapabilities, sc?.capabilities, privileged, input.hostCapabilities);
  const process: OciProcess = {
    terminal: config.tty,
    user: { uid: user.uid, gid: user.gid, additionalGids: [...user.additionalGids] },
    args: mergeArgs(config, image),
    env: mergeEnv(config, image, sandbox.hostname, user),
    cwd: workingDir(config, image),
    capabilities,
    noNewPrivileges: sc?.no_new_privs ?? false,
  };
  const resources = config.linux?.resources;
  if (resources) process.oomScoreAdj = clampOomScoreAdj(resources.oom_score_adj, input.oomScoreAdjFloor);

  const { mounts, rootfsPropagation } = buildMounts({
    files: sandbox,
    criMounts: config.mounts,
    privileged,
    readonlyRootfs: sc?.readonly_rootfs ?? false,
    hostIpc,
  });
  const devices = buildDevices(config.devices);
  const deviceRules = privileged ? [{ allow: true, access: 'rwm' }] : [...DEFAULT_DEVICE_RULES, ...devices.rules];
  if (privileged) {
    // All the host's devices, under the CRI's own entries (which win for the same container path).
    const taken = new Set(devices.devices.map((d) => d.path));
    devices.devices.push(...hostDevices().filter((d) => !taken.has(d.path)));
  }
  const seccomp = selectSeccomp(sc, privileged, capabilities.bounding, input.seccompProfile);
  const masks = buildProcMasks(sc, privileged);

  if (!sandbox.cgroupParent.startsWith('/') || sandbox.cgroupParent.split('/').includes('..')) {
    throw invalidArgument(`cgroup parent: ${JSON.stringify(sandbox.cgroupParent)} is not an absolute cgroupfs path`);
  }
  if (!/^[A-Za-z0-9][A-Za-z0-9_.-]*$/.test(input.containerId)) throw invalidArgument('container id: invalid');
  const spec: OciSpec = {
    ociVersion: OCI_VERSION,
    process,
    root: { path: input.rootfs, readonly: sc?.readonly_rootfs ?? false },
    mounts,
    annotations: annotations(input),
    linux: {
      namespaces,
      resources: buildResources(resources, deviceRules, input.pidsLimit),
      cgroupsPath: posix.join(sandbox.cgroupParent, input.containerId),
      // Pod sysctls are namespaced (net.*, kernel.shm*, …): applied once to the sandbox's namespaces, which every
      // container joins. Re-applying them per container would fail for host-namespace pods and change nothing.
      sysctl: {},
      maskedPaths: masks.maskedPaths,
      readonlyPaths: masks.readonlyPaths,
      devices: devices.devices,
    },
  };
  // runc refuses a hostname without its own UTS namespace: host-network containers keep the node's.
  if (!hostNetwork && sandbox.hostname) spec.hostname = sandbox.hostname;
  if (seccomp) spec.linux.seccomp = seccomp;
  if (rootfsPropagation) spec.linux.rootfsPropagation = rootfsPropagation;
  return spec;
}
