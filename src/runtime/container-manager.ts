// Containers: CreateContainer builds the rootfs, the OCI spec and the bundle (every step undone if a later one fails);
// StartContainer launches it under conmon (`runtime create`) and starts it, as containerd defers its task to Start,
// so a created container costs no process. StopContainer also deletes the runtime's container once the exit is
// recorded. State is checkpointed per container; exits are read from conmon's exit files, so a container that ended
// while berth was down is reported with its real code and time.
import { randomBytes } from 'node:crypto';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CleanupStack } from '../common/cleanup-stack';
import { BerthError, errorMessage, failedPrecondition, invalidArgument, notFound } from '../common/errors';
import { KeyedMutex } from '../common/keyed-mutex';
import { SingleFlight } from '../common/single-flight';
import { nowNs } from '../common/time';
import type { ImageManager } from '../image/image-manager';
import { parseImageConfig, type ImageConfigDoc } from '../image/image-config';
import type { ContainerConfig__Output } from '../server/generated/runtime/v1/ContainerConfig';
import type { ContainerEventType__Output } from '../server/generated/runtime/v1/ContainerEventType';
import type { LinuxContainerResources__Output } from '../server/generated/runtime/v1/LinuxContainerResources';
import { writeFileAtomic } from '../storage/atomic-file';
import { NameRegistry, ObjectStore } from '../storage/object-store';
import { mountRootfs, removeRootfs, rootfsPaths, unmountRootfs } from '../storage/rootfs';
import { watchExitDir, type ExitWatcher, type ExitWatcherLog } from './exit-watcher';
import type { CreateOptions, ExitStatus, OciRuntime, RuntimeHandler } from './oci-runtime';
import type { OciResources } from './oci-spec';
import type { SandboxRecord } from './sandbox-manager';
import { buildContainerSpec } from './spec';
import { buildResources } from './spec-resources';
import { resolveUser } from './users';

export type ContainerState = 'CONTAINER_CREATED' | 'CONTAINER_RUNNING' | 'CONTAINER_EXITED' | 'CONTAINER_UNKNOWN';

export interface ContainerRecord {
  id: string;
  podId: string;
  name: string;
  config: ContainerConfig__Output;
  imageId: string;
  imageName: string;
  handler: RuntimeHandler;
  state: ContainerState;
  createdAtNs: string;
  startedAtNs: string;
  finishedAtNs: string;
  exitCode: number;
  reason: string;
  message: string;
  /** The container's init pid; 0 while CREATED and not yet launched under conmon. */
  pid: number;
  logPath: string;
  bundle: string;
  stopSignal: string;
  user: { uid: number; gid: number; additionalGids: number[] };
  /** The CRI resources as last applied (created with, or updated to). */
  resources: LinuxContainerResources__Output | null;
}

export interface ContainerDeps {
  stateDir: string;
  containersDir: string;
  checkpointDir: string;
  images: ImageManager;
  pod: (id: string) => SandboxRecord;
  runtime: (handler: RuntimeHandler) => OciRuntime;
  defaultCapabilities: () => string[];
  pidsLimit: () => number;
  /** Takes a directory away now and deletes it in the background (storage/trash.ts); default: delete now. */
  discard?: (dir: string) => Promise<void>;
  /** Told once per container the kernel killed for memory (berth_containers_oom_total). */
  onOomKilled?: (c: ContainerRecord) => void;
  /** Told of each lifecycle transition once it is checkpointed (GetContainerEvents); must not throw. */
  onEvent?: (type: ContainerEventType__Output, c: ContainerRecord) => void;
}

// The kubelet's default set (CRI-O's default_capabilities), documented in the README.
export const DEFAULT_CAPABILITIES = ['CAP_CHOWN', 'CAP_DAC_OVERRIDE', 'CAP_FSETID', 'CAP_FOWNER', 'CAP_SETGID', 'CAP_SETUID', 'CAP_SETPCAP', 'CAP_NET_BIND_SERVICE', 'CAP_KILL'];

export class ContainerManager {
  readonly store: ObjectStore<ContainerRecord>;
  private readonly names = new NameRegistry('container');
  private readonly locks = new KeyedMutex();
  private readonly exits = new SingleFlight<ContainerRecord>();
  /** The exit dir's mtime (ms) when every live container was last checked for an exit (-1 = check). */
  private checkedExits = -1;
  /** Per container: the exit dir's mtime at which its exit file was last found absent. */
  private readonly noExitAt = new Map<string, number>();
  /** The exit dir, held open: fstat skips the path walk of a stat on every Status. */
  private exitDirFd = -1;
  /** The exit watch is up and every exit from before it was looked for: memory knows every exit conmon wrote. */
  private exitsWatched = false;
  /** Bumped whenever the watch stops or restarts, so a look-around finishing late trusts no stale watch. */
  private watchGeneration = 0;
  private readonly imageConfigs = new Map<string, ImageConfigDoc>();
  /** Containers whose exit was reported (a STOPPED event): a container exits once, whoever notices it. */
  private readonly exitReported = new Set<string>();
  /** Containers inside start(), and those of them whose exit file appeared meanwhile (looked at once started). */
  private readonly starting = new Set<string>();
  private readonly exitsWhileStarting = new Set<string>();
  /** conmon's exit files, one per container id (read by recovery too). */
  readonly exitDir: string;

  constructor(private readonly deps: ContainerDeps) {
    this.store = new ObjectStore<ContainerRecord>(deps.checkpointDir, 'container');
    this.exitDir = path.join(deps.stateDir, 'exits');
  }

  async init(): Promise<{ unreadable: { id: string; error: string }[] }> {
    await fs.mkdir(this.exitDir, { recursive: true, mode: 0o700 });
    this.exitDirFd = fsSync.openSync(this.exitDir, fsSync.constants.O_RDONLY | fsSync.constants.O_DIRECTORY);
    const result = await this.store.init();
    for (const c of this.store.list()) this.names.reserve(`${c.podId}/${c.name}`, c.id);
    return result;
  }

  async create(podId: string, config: ContainerConfig__Output): Promise<ContainerRecord> {
    const meta = config.metadata;
    if (!meta?.name) throw invalidArgument('config.metadata.name is required');
    const imageName = config.image?.image ?? '';
    if (imageName === '') throw invalidArgument('config.image.image is required');
    const pod = this.deps.pod(podId);
    if (pod.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${pod.id} is not ready`);
    const image = this.deps.images.resolve(imageName);
    if (!image) throw notFound(`image "${imageName}" not found; pull it first`);
    const id = randomBytes(32).toString('hex');
    const name = `${meta.name}_${meta.attempt}`;
    const bundle = path.join(this.deps.stateDir, 'containers', id);
    const paths = rootfsPaths(this.deps.containersDir, id);
    const handler = pod.handler;
    this.deps.runtime(handler); // an unusable handler fails the create, not the start
    const undo = new CleanupStack();
    try {
      this.names.reserve(`${pod.id}/${name}`, id);
      undo.push('release the container name', () => this.names.release(`${pod.id}/${name}`, id));
      await fs.mkdir(bundle, { recursive: true, mode: 0o700 });
      undo.push('remove the bundle', () => fs.rm(bundle, { recursive: true, force: true }));
      const rootfs = await mountRootfs(this.deps.images.layers, image.layers.map((l) => l.chainId), paths);
      undo.push('remove the rootfs', () => removeRootfs(paths));
      const imageConfig = await this.imageConfig(image.id);
      const sc = config.linux?.security_context;
      const user = await resolveUser(rootfs, {
        ...(sc?.run_as_user ? { runAsUser: BigInt(sc.run_as_user.value) } : {}),
        ...(sc?.run_as_group ? { runAsGroup: BigInt(sc.run_as_group.value) } : {}),
        ...(sc?.run_as_username ? { runAsUsername: sc.run_as_username } : {}),
        imageUser: imageConfig.config.User ?? '',
        supplementalGroups: (sc?.supplemental_groups ?? []).map(Number),
      });
      const spec = buildContainerSpec({
        containerId: id,
        podId: pod.id,
        config,
        sandbox: {
          config: pod.config,
          hostname: pod.hostname,
          namespacePaths: pod.namespaces,
          resolvConfPath: pod.files.resolvConf,
          hostsPath: pod.files.hosts,
          hostnamePath: pod.files.hostname,
          shmPath: pod.files.shm,
          cgroupParent: pod.cgroupParent,
        },
        image: { config: imageConfig },
        rootfs,
        user,
        defaultCapabilities: this.deps.defaultCapabilities(),
        pidsLimit: this.deps.pidsLimit(),
      });
      // Not fsynced: the checkpoint written last is what makes the container; after a power cut its pod is gone.
      await writeFileAtomic(path.join(bundle, 'config.json'), JSON.stringify(spec), 0o600, { durable: false });
      const logPath = pod.config.log_directory && config.log_path ? path.join(pod.config.log_directory, config.log_path) : path.join(bundle, 'console.log');
      await fs.mkdir(path.dirname(logPath), { recursive: true });
      const record: ContainerRecord = {
        id, podId: pod.id, name, config, imageId: image.id, imageName, handler, state: 'CONTAINER_CREATED',
        createdAtNs: nowNs().toString(), startedAtNs: '0', finishedAtNs: '0', exitCode: 0, reason: '', message: '',
        pid: 0, logPath, bundle, stopSignal: imageConfig.config.StopSignal ?? 'SIGTERM',
        user: { uid: user.uid, gid: user.gid, additionalGids: user.additionalGids },
        resources: config.linux?.resources ?? null,
      };
      await this.store.put(record);
      this.deps.onEvent?.('CONTAINER_CREATED_EVENT', record);
      return record;
    } catch (err) {
      const failures = await undo.unwind();
      const detail = failures.length > 0 ? ` (and cleanup failed: ${failures.map((f) => `${f.what}: ${errorMessage(f.err)}`).join('; ')})` : '';
      if (err instanceof BerthError) throw new BerthError(err.code, `CreateContainer ${name}: ${err.message}${detail}`);
      throw new BerthError('INTERNAL', `CreateContainer ${name}: ${errorMessage(err)}${detail}`);
    }
  }

  async start(idOrPrefix: string): Promise<void> {
    const c = this.store.resolve(idOrPrefix);
    await this.locks.with(c.id, async () => {
      let current = this.store.resolve(c.id);
      if (current.state !== 'CONTAINER_CREATED') throw failedPrecondition(`container ${c.id} is ${current.state}, not created`);
      const runtime = this.deps.runtime(current.handler);
      let startedAtNs: string;
      this.starting.add(current.id);
      try {
        // pid > 0: launched by a start that recovery found cut short after `runtime create`.
        if (current.pid === 0) current = { ...current, pid: (await runtime.create(this.launchOptions(current))).pid };
        // Taken before the start: a short-lived process may have exited by the time start returns.
        startedAtNs = nowNs().toString();
        // Its exit can only come after this: until the exit dir changes, Status need not look for its exit file.
        const { stamp, settled } = this.exitDirStamp();
        if (settled) this.noExitAt.set(current.id, stamp);
        await runtime.start(current.id);
      } catch (err) {
        // As containerd does: the kubelet sees an exited container (StartError) and applies the restart policy.
        await runtime.delete(current.id, true).catch(() => undefined);
        const message = err instanceof BerthError ? err.message : errorMessage(err);
        this.starting.delete(current.id);
        this.exitsWhileStarting.delete(current.id);
        await this.recordExit({ ...current, state: 'CONTAINER_EXITED', exitCode: 128, reason: 'StartError', message, finishedAtNs: nowNs().toString() });
        throw err;
      }
      const started: ContainerRecord = { ...current, state: 'CONTAINER_RUNNING', startedAtNs };
      try {
        await this.store.put(started);
      } finally {
        this.starting.delete(current.id);
      }
      this.deps.onEvent?.('CONTAINER_STARTED_EVENT', started);
      // An exit file seen before the record said running (a short-lived process) was skipped: read it now.
      if (this.exitsWhileStarting.delete(current.id)) this.refresh(started).catch(() => undefined);
    });
  }

  /** An image's parsed config: content-addressed, so a parse per image id serves every container made from it. */
  private async imageConfig(imageId: string): Promise<ImageConfigDoc> {
    let parsed = this.imageConfigs.get(imageId);
    if (!parsed) {
      parsed = parseImageConfig(await this.deps.images.blobs.get(imageId));
      if (this.imageConfigs.size >= 256) this.imageConfigs.clear();
      this.imageConfigs.set(imageId, parsed);
    }
    return parsed;
  }

  private discard(dir: string): Promise<void> {
    return this.deps.discard ? this.deps.discard(dir) : fs.rm(dir, { recursive: true, force: true });
  }

  private launchOptions(c: ContainerRecord): CreateOptions {
    const { stdin, stdin_once: stdinOnce, tty } = c.config;
    return { id: c.id, bundle: c.bundle, logPath: c.logPath, exitDir: this.exitDir, persistDir: c.bundle, stdin, stdinOnce, tty };
  }

  /** Stops with the image's stop signal, then SIGKILL after `timeoutSeconds`; stopping a stopped one is fine. */
  async stop(idOrPrefix: string, timeoutSeconds: number): Promise<void> {
    const c = this.store.resolve(idOrPrefix);
    await this.locks.with(c.id, async () => {
      const current = await this.refresh(this.store.resolve(c.id));
      if (current.state === 'CONTAINER_EXITED') return;
      const runtime = this.deps.runtime(current.handler);
      if (current.state === 'CONTAINER_UNKNOWN') return this.stopUnknown(current, runtime);
      // Never launched: nothing runs, and it stays created (containerd does the same).
      if (current.state === 'CONTAINER_CREATED' && current.pid === 0) return;
      if (current.state === 'CONTAINER_CREATED') await runtime.kill(current.id, 'SIGKILL').catch(() => undefined);
      else await runtime.stop(current.id, current.stopSignal, Math.max(0, timeoutSeconds) * 1000);
      await this.waitExitRecorded(current);
      // The exit (and any OOM kill) is recorded: the runtime's container and cgroup have nothing more to tell.
      if (this.store.resolve(c.id).state === 'CONTAINER_EXITED') await runtime.delete(current.id, true);
    });
  }

  /** A container recovery could not reconcile: kill whatever the runtime still runs, then record the exit as known. */
  private async stopUnknown(c: ContainerRecord, runtime: OciRuntime): Promise<void> {
    const st = await runtime.state(c.id);
    if (st && st.status !== 'stopped') await runtime.stop(c.id, 'SIGKILL', 0);
    let exit: ExitStatus | undefined;
    // conmon (if it still runs) writes the exit file just after reaping; an unreadable one counts as none.
    for (const deadline = Date.now() + (st ? 2000 : 0); ; await new Promise((r) => setTimeout(r, 25))) {
      exit = await runtime.exitStatus(c.id, this.exitDir, c.bundle).catch(() => undefined);
      if (exit || Date.now() >= deadline) break;
    }
    await this.recordExit(exitedRecord(c, exit, exit ? '' : 'stopped while its state was unknown; no exit code was recorded'));
  }

  private async waitExitRecorded(c: ContainerRecord): Promise<void> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const next = await this.refresh(this.store.resolve(c.id));
      if (next.state === 'CONTAINER_EXITED' || Date.now() > deadline) return;
      await new Promise((r) => setTimeout(r, 25));
    }
  }

  async remove(idOrPrefix: string): Promise<void> {
    const c = this.store.lookup(idOrPrefix);
    if (!c) return;
    if (c.state !== 'CONTAINER_EXITED') await this.stop(c.id, 0);
    await this.locks.with(c.id, async () => {
      await this.deps.runtime(c.handler).delete(c.id, true);
      const rootfs = rootfsPaths(this.deps.containersDir, c.id);
      unmountRootfs(rootfs);
      fsSync.rmSync(path.join(this.exitDir, c.id), { force: true });
      await Promise.all([this.discard(rootfs.dir), this.discard(c.bundle)]);
      const last = this.store.lookup(c.id) ?? c;
      await this.store.delete(c.id);
      this.noExitAt.delete(c.id);
      this.exitReported.delete(c.id);
      this.names.release(`${c.podId}/${c.name}`, c.id);
      this.deps.onEvent?.('CONTAINER_DELETED_EVENT', last);
    });
  }

  /** The container with its exit read from conmon's exit file when it has ended. */
  async status(idOrPrefix: string): Promise<ContainerRecord> {
    return this.knownStatus(idOrPrefix) ?? this.checkedStatus(idOrPrefix);
  }

  /**
   * The record when memory is known to be current, without waiting: a container that has ended, or one whose exit
   * file was last found absent at the exit dir's current state. The kubelet asks for one container at a time, so
   * remembering that per container makes a repeated Status one fstat and no read. Undefined: use status().
   */
  knownStatus(idOrPrefix: string): ContainerRecord | undefined {
    const c = this.store.resolve(idOrPrefix);
    if ((c.state !== 'CONTAINER_RUNNING' && c.state !== 'CONTAINER_CREATED') || this.exitsWatched) return c;
    const { stamp, settled } = this.exitDirStamp();
    return settled && (stamp === this.checkedExits || stamp === this.noExitAt.get(c.id)) ? c : undefined;
  }

  private async checkedStatus(idOrPrefix: string): Promise<ContainerRecord> {
    const c = this.store.resolve(idOrPrefix);
    const { stamp, settled } = this.exitDirStamp();
    const next = await this.refresh(c);
    if (settled && (next.state === 'CONTAINER_RUNNING' || next.state === 'CONTAINER_CREATED')) this.noExitAt.set(c.id, stamp);
    return next;
  }

  async list(): Promise<ContainerRecord[]> {
    if (!this.exitsMayHaveChanged()) return this.store.list();
    // One unreadable exit file must not fail the whole listing: that container shows as last recorded.
    return Promise.all(this.store.list().map((c) => this.refresh(c).catch(() => c)));
  }

  /**
   * conmon writes an exit file into the exit dir, which changes the dir's mtime; while the mtime stays what every
   * created or running container was last checked against, no exit can be new, and Status/List answer from memory
   * (one stat instead of a read per container). A change within the last moment may share the mtime's tick, so a
   * recent mtime is never trusted.
   */
  private exitsMayHaveChanged(): boolean {
    if (this.exitsWatched) return false;
    const { stamp, settled } = this.exitDirStamp();
    if (settled && stamp === this.checkedExits) return false;
    // Only a caller that checks every container may record the stamp, and it does so before its reads: an exit
    // landing during them changes the mtime again.
    this.checkedExits = settled ? stamp : -1;
    return true;
  }

  // A synchronous fstat: one syscall costs microseconds, less than a trip through the thread pool. The mtime in ms
  // (a double, sub-microsecond steps) tells changes apart: a trusted stamp is 100 ms old, so any later change to the
  // dir moves it by more than the clock's tick.
  private exitDirStamp(): { stamp: number; settled: boolean } {
    const st = this.exitDirFd >= 0 ? fsSync.fstatSync(this.exitDirFd) : fsSync.statSync(this.exitDir);
    return { stamp: st.mtimeMs, settled: Date.now() - st.mtimeMs > 100 };
  }

  inPod(podId: string): ContainerRecord[] {
    return this.store.list().filter((c) => c.podId === podId);
  }

  async stopAll(podId: string): Promise<void> {
    await Promise.all(this.inPod(podId).map((c) => this.stop(c.id, 0)));
  }

  async removeAll(podId: string): Promise<void> {
    await Promise.all(this.inPod(podId).map((c) => this.remove(c.id)));
  }

  /** The image id a container uses, for RemoveImage. */
  userOf(imageId: string): string | undefined {
    return this.store.list().find((c) => c.imageId === imageId)?.id;
  }

  execSync(idOrPrefix: string, cmd: string[], timeoutSeconds: number): ReturnType<OciRuntime['execSync']> {
    const c = this.store.resolve(idOrPrefix);
    if (cmd.length === 0) throw invalidArgument('cmd is required');
    if (c.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${c.id} is not running`);
    // The CRI's 0 means no timeout; a bound still applies so a stuck exec cannot pin resources forever.
    const timeoutMs = timeoutSeconds > 0 ? timeoutSeconds * 1000 : 24 * 3600 * 1000;
    return this.deps.runtime(c.handler).execSync(c.id, cmd, { timeoutMs, maxOutputBytes: 16 * 1024 * 1024 });
  }

  async updateResources(idOrPrefix: string, resources: LinuxContainerResources__Output): Promise<void> {
    const c = this.store.resolve(idOrPrefix);
    // Device rules are fixed at create; `runc update` takes the rest.
    const oci: OciResources = buildResources(resources, [], this.deps.pidsLimit() || undefined);
    delete oci.devices;
    await this.locks.with(c.id, async () => {
      const current = this.store.resolve(c.id);
      if (current.state === 'CONTAINER_CREATED' && current.pid === 0) await this.updateBundleResources(current, oci);
      else await this.deps.runtime(c.handler).updateResources(c.id, oci);
      await this.store.put({ ...current, resources });
    });
  }

  /** Not launched yet: the new resources go into config.json, which the runtime reads at launch. */
  private async updateBundleResources(c: ContainerRecord, oci: OciResources): Promise<void> {
    const file = path.join(c.bundle, 'config.json');
    const spec = JSON.parse(await fs.readFile(file, 'utf8')) as { linux?: { resources?: OciResources } };
    const linux = (spec.linux ??= {});
    linux.resources = { ...oci, ...(linux.resources?.devices ? { devices: linux.resources.devices } : {}) };
    await writeFileAtomic(file, JSON.stringify(spec));
  }

  async reopenLog(idOrPrefix: string): Promise<void> {
    const c = this.store.resolve(idOrPrefix);
    if (c.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${c.id} is not running`);
    await this.deps.runtime(c.handler).reopenLog(c.id, c.bundle);
  }

  /** The runtime that runs this container (its pod's handler). */
  runtimeOf(c: ContainerRecord): OciRuntime {
    return this.deps.runtime(c.handler);
  }

  /** Mounts the container's rootfs again (recovery: a live container whose host-side mount went away). */
  async remountRootfs(c: ContainerRecord): Promise<void> {
    const image = this.deps.images.resolve(c.imageId);
    if (!image) throw notFound(`image ${c.imageId} of container ${c.id} is not in the store`);
    await mountRootfs(this.deps.images.layers, image.layers.map((l) => l.chainId), rootfsPaths(this.deps.containersDir, c.id));
  }

  /** Reads conmon's exit file for a created or running container and records the exit; the container as it now is. */
  // Overlapping refreshes of one container (Status and List at once, as the kubelet does) share one reading, so an
  // exit is recorded, and an OOM kill counted, once.
  async refresh(c: ContainerRecord): Promise<ContainerRecord> {
    if (c.state !== 'CONTAINER_RUNNING' && c.state !== 'CONTAINER_CREATED') return c;
    return this.exits.run(c.id, async () => {
      const cur = this.store.lookup(c.id) ?? c;
      if (cur.state !== 'CONTAINER_RUNNING' && cur.state !== 'CONTAINER_CREATED') return cur;
      if (cur.pid === 0) return cur; // not launched: no conmon to write an exit file
      const exit = await this.deps.runtime(cur.handler).exitStatus(cur.id, this.exitDir, cur.bundle);
      if (!exit) return cur;
      const next = exitedRecord(cur, exit);
      await this.recordExit(next);
      if (exit.oomKilled) this.deps.onOomKilled?.(next);
      return next;
    }).promise;
  }

  /** Checkpoints an exit (refresh, a failed start, recovery) and reports it, once per container whoever records it. */
  async recordExit(next: ContainerRecord): Promise<void> {
    await this.store.put(next);
    // Checked after the write and without an await in between: of two overlapping writers, exactly one reports.
    if (this.exitReported.has(next.id)) return;
    this.exitReported.add(next.id);
    this.deps.onEvent?.('CONTAINER_STOPPED_EVENT', next);
  }

  /** Notices exits as conmon records them (see exit-watcher.ts), so they are reported without a Status or List. */
  watchExits(log: ExitWatcherLog): ExitWatcher {
    const quietly = (p: Promise<unknown>): void => {
      p.catch((err: unknown) => log.warn({ err: errorMessage(err) }, 'cannot read exit files; Status and List will look again'));
    };
    const seen = (id: string): void => {
      const c = this.store.lookup(id);
      if (this.starting.has(id)) this.exitsWhileStarting.add(id);
      else if (c) quietly(this.refresh(c));
    };
    // Armed: exits from now on are seen as they land; those from before are looked for once, and only then is
    // memory trusted. Lost: every read looks at the exit dir again until the watch is back.
    const armed = (): void => {
      const generation = ++this.watchGeneration;
      const all = Promise.all(this.store.list().map((c) => this.refresh(c)));
      all.then(() => {
        if (generation === this.watchGeneration) this.exitsWatched = true;
      }, () => undefined);
      quietly(all);
    };
    const lost = (): void => {
      this.watchGeneration++;
      this.exitsWatched = false;
    };
    return watchExitDir(this.exitDir, seen, armed, lost, log);
  }
}

/**
 * The record of a container that has ended: code and time from conmon's exit file; without one (the runtime no longer
 * knows the container, e.g. after a reboot) exit code 255, reason "Unknown" and now as the finish time, as CRI-O does.
 */
export function exitedRecord(c: ContainerRecord, exit: ExitStatus | undefined, message = ''): ContainerRecord {
  if (!exit) return { ...c, state: 'CONTAINER_EXITED', exitCode: 255, finishedAtNs: nowNs().toString(), reason: 'Unknown', message };
  const reason = exit.oomKilled ? 'OOMKilled' : exit.exitCode === 0 ? 'Completed' : 'Error';
  return { ...c, state: 'CONTAINER_EXITED', exitCode: exit.exitCode, finishedAtNs: exit.finishedAtNs.toString(), reason, message };
}
