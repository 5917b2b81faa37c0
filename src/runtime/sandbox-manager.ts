// Pod sandboxes: namespaces pinned by a child process, the pod's files and /dev/shm, an optional pause process
// holding a pod-level PID namespace, and a checkpoint per pod. Every step of a run is undone if a later one fails.
import { randomBytes } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { mount, umount2, MNT_DETACH, MS_NODEV, MS_NOEXEC, MS_NOSUID } from '../../native/mount';
import { CleanupStack } from '../common/cleanup-stack';
import { BerthError, errnoCode, errorMessage, invalidArgument } from '../common/errors';
import { KeyedMutex } from '../common/keyed-mutex';
import { nowNs } from '../common/time';
import type { PodSandboxConfig__Output } from '../server/generated/runtime/v1/PodSandboxConfig';
import { NameRegistry, ObjectStore } from '../storage/object-store';
import type { LinuxContainerResources__Output } from '../server/generated/runtime/v1/LinuxContainerResources';
import { addOverhead, applyCgroupResources } from './cgroup-resources';
import { removeCgroup, joinCgroup } from './cgroups';
import { buildResources } from './spec-resources';
import { applySysctls, createPodNamespaces, removePodNamespaces, startPause, stopPause } from './namespaces';
import type { RuntimeHandler } from './oci-runtime';
import { writePodFiles } from './pod-files';

export type SandboxState = 'SANDBOX_READY' | 'SANDBOX_NOTREADY';

export interface SandboxRecord {
  id: string;
  name: string;
  /** The CRI config as the kubelet sent it (labels, annotations, DNS, ports, linux options). */
  config: PodSandboxConfig__Output;
  runtimeHandler: string;
  /** The handler as resolved when the pod ran: its containers use the same binary and state root. */
  handler: RuntimeHandler;
  state: SandboxState;
  createdAtNs: string;
  dir: string;
  hostname: string;
  hostNetwork: boolean;
  hostIpc: boolean;
  hostPid: boolean;
  namespaces: { net?: string; ipc?: string; uts?: string; pid?: string };
  pausePid?: number;
  cgroupParent: string;
  files: { hostname: string; hosts: string; resolvConf: string; shm: string };
  ips: string[];
}

/** Hook for pod networking (CNI): set up after the namespaces exist, torn down on stop. */
export interface PodNetwork {
  /** `persist` records the pod with its addresses, written alongside the network's own record of them. */
  setUp(pod: SandboxRecord, persist: (ips: string[]) => Promise<void>): Promise<string[]>;
  tearDown(pod: SandboxRecord): Promise<void>;
}

export interface SandboxDeps {
  stateDir: string;
  checkpointDir: string;
  cgroupParent: () => string;
  /** The configured handler a pod asks for ("" = default); throws for an unknown one. */
  handlerFor: (requested: string) => RuntimeHandler;
  network?: PodNetwork;
  /** Takes a directory away now and deletes it in the background (storage/trash.ts); default: delete now. */
  discard?: (dir: string) => Promise<void>;
}

/** What a pod needs of its containers when it stops or goes. */
export interface PodContainers {
  stopAll(podId: string): Promise<void>;
  removeAll(podId: string): Promise<void>;
}

const SHM_SIZE = 'size=65536k';

export class SandboxManager {
  readonly store: ObjectStore<SandboxRecord>;
  private readonly names = new NameRegistry('pod sandbox');
  private readonly locks = new KeyedMutex();
  /** Set once the container manager exists (it needs this manager first). */
  containers: PodContainers | undefined;

  constructor(private readonly deps: SandboxDeps) {
    this.store = new ObjectStore<SandboxRecord>(deps.checkpointDir, 'pod sandbox');
  }

  async init(): Promise<{ unreadable: { id: string; error: string }[] }> {
    const result = await this.store.init();
    for (const pod of this.store.list()) this.names.reserve(pod.name, pod.id);
    return result;
  }

  async run(config: PodSandboxConfig__Output, runtimeHandler: string): Promise<SandboxRecord> {
    const meta = config.metadata;
    if (!meta) throw invalidArgument('config.metadata is required');
    for (const field of ['name', 'namespace', 'uid'] as const) {
      if (!meta[field]) throw invalidArgument(`config.metadata.${field} is required`);
    }
    const handler = this.deps.handlerFor(runtimeHandler);
    const id = randomBytes(32).toString('hex');
    const name = `${meta.name}_${meta.namespace}_${meta.uid}_${meta.attempt}`;
    const opts = config.linux?.security_context?.namespace_options;
    const hostNetwork = opts?.network === 'NODE';
    const hostIpc = opts?.ipc === 'NODE';
    const hostPid = opts?.pid === 'NODE';
    const hostname = config.hostname || (hostNetwork ? (await fs.readFile('/proc/sys/kernel/hostname', 'utf8')).trim() : meta.name);
    const dir = path.join(this.deps.stateDir, 'pods', id);
    const cgroupParent = config.linux?.cgroup_parent || `${this.deps.cgroupParent()}/pod-${id.slice(0, 12)}`;
    if (!cgroupParent.startsWith('/')) throw invalidArgument(`config.linux.cgroup_parent: "${cgroupParent}" must be an absolute cgroupfs path (cgroup driver is cgroupfs)`);

    const undo = new CleanupStack();
    try {
      this.names.reserve(name, id);
      undo.push('release the pod name', () => this.names.release(name, id));
      // Quick syscalls on local dirs run in the calling thread here and below: a thread-pool trip costs more.
      fsSync.mkdirSync(dir, { recursive: true, mode: 0o711 });
      undo.push('remove the pod directory', () => fs.rm(dir, { recursive: true, force: true }));
      const files = writePodFiles(dir, { hostname, hostNetwork, dns: config.dns_config });
      const ns = await createPodNamespaces(path.join(dir, 'ns'), { net: !hostNetwork, ipc: !hostIpc, uts: !hostNetwork }, hostNetwork ? undefined : hostname);
      undo.push('remove the pod namespaces', () => removePodNamespaces(ns.dir));
      const sysctls = config.linux?.sysctls ?? {};
      if (Object.keys(sysctls).length > 0) await applySysctls(ns, sysctls);
      const shm = hostIpc ? '/dev/shm' : path.join(dir, 'shm');
      if (!hostIpc) {
        fsSync.mkdirSync(shm, { mode: 0o1777 });
        mount('shm', shm, 'tmpfs', MS_NOSUID | MS_NODEV | MS_NOEXEC, `mode=1777,${SHM_SIZE}`);
        undo.push('unmount the pod /dev/shm', () => umount2(shm, MNT_DETACH));
      }
      const record: SandboxRecord = {
        id, name, config, runtimeHandler: handler.name, handler, state: 'SANDBOX_READY', createdAtNs: nowNs().toString(), dir, hostname,
        hostNetwork, hostIpc, hostPid, namespaces: { ...pick(ns) }, cgroupParent, files: { ...files, shm }, ips: [],
      };
      if (opts?.pid === 'POD') {
        const pause = await startPause(ns, path.join(dir, 'ns'));
        undo.push('stop the pause process', () => stopPause(pause.pid));
        await joinCgroup(`${cgroupParent}/pause`, pause.pid);
        undo.push('remove the pod cgroup', () => removeCgroup(cgroupParent));
        record.pausePid = pause.pid;
        record.namespaces.pid = pause.pidNsPath;
      }
      const network = hostNetwork ? undefined : this.deps.network;
      if (network) {
        // The checkpoint is written alongside the network's own record of the addresses (see PodNetwork.setUp).
        undo.push('remove the pod checkpoint', () => this.store.delete(id));
        await network.setUp(record, (ips) => {
          record.ips = ips;
          return this.store.put(record);
        });
        undo.push('tear down the pod network', () => network.tearDown(record));
      } else {
        await this.store.put(record);
      }
      return record;
    } catch (err) {
      const failures = await undo.unwind();
      const detail = failures.length > 0 ? ` (and cleanup failed: ${failures.map((f) => `${f.what}: ${errorMessage(f.err)}`).join('; ')})` : '';
      if (err instanceof BerthError) throw new BerthError(err.code, `RunPodSandbox ${name}: ${err.message}${detail}`);
      throw new BerthError('INTERNAL', `RunPodSandbox ${name}: ${errorMessage(err)}${detail}`);
    }
  }

  /** Stops the pod's containers, its pause process and its network; idempotent. */
  async stop(idOrPrefix: string): Promise<void> {
    const pod = this.store.lookup(idOrPrefix);
    if (!pod) return;
    await this.locks.with(pod.id, async () => {
      await this.containers?.stopAll(pod.id);
      if (pod.pausePid !== undefined) await stopPause(pod.pausePid);
      if (this.deps.network && !pod.hostNetwork) await this.deps.network.tearDown(pod);
      if (pod.state !== 'SANDBOX_NOTREADY' || pod.pausePid !== undefined) {
        const next: SandboxRecord = { ...pod, state: 'SANDBOX_NOTREADY', ips: [] };
        delete next.pausePid;
        await this.store.put(next);
      }
    });
  }

  /** Removes the pod and everything it holds; removing an unknown pod is not an error. */
  async remove(idOrPrefix: string): Promise<void> {
    const pod = this.store.lookup(idOrPrefix);
    if (!pod) return;
    await this.stop(pod.id);
    await this.locks.with(pod.id, async () => {
      await this.containers?.removeAll(pod.id);
      if (!pod.hostIpc) unmountQuietly(pod.files.shm);
      await Promise.all([
        removePodNamespaces(path.join(pod.dir, 'ns')),
        removeCgroup(pod.config.linux?.cgroup_parent ? `${pod.cgroupParent}/pause` : pod.cgroupParent),
      ]);
      await (this.deps.discard ? this.deps.discard(pod.dir) : fs.rm(pod.dir, { recursive: true, force: true }));
      await this.store.delete(pod.id);
      this.names.release(pod.name, pod.id);
    });
  }

  /** UpdatePodSandboxResources: the pod cgroup gets the pod's resources plus its overhead. */
  async updateResources(idOrPrefix: string, resources: LinuxContainerResources__Output | null, overhead: LinuxContainerResources__Output | null): Promise<void> {
    const pod = this.store.resolve(idOrPrefix);
    const oci = addOverhead(buildResources(resources, []), buildResources(overhead, []));
    delete oci.devices;
    await this.locks.with(pod.id, () => applyCgroupResources(pod.cgroupParent, oci));
  }

  get(idOrPrefix: string): SandboxRecord {
    return this.store.resolve(idOrPrefix);
  }

  list(): SandboxRecord[] {
    return this.store.list();
  }
}

function pick(ns: { net?: string; ipc?: string; uts?: string }): { net?: string; ipc?: string; uts?: string } {
  const out: { net?: string; ipc?: string; uts?: string } = {};
  if (ns.net) out.net = ns.net;
  if (ns.ipc) out.ipc = ns.ipc;
  if (ns.uts) out.uts = ns.uts;
  return out;
}

function unmountQuietly(target: string): void {
  try {
    umount2(target, MNT_DETACH);
  } catch (err) {
    if (errnoCode(err) !== 'EINVAL' && errnoCode(err) !== 'ENOENT') throw err;
  }
}
