// Start-up recovery, before berth serves (the containerd / CRI-O model). Checkpoints say what berth created; the
// runtime, conmon's exit files, the mount table, /proc and the cgroup tree say what is really there:
//   1. containers: a created/running one that ended while berth was down gets its exit code and time from conmon's exit
//      file; one the runtime no longer knows, with no exit file, is exited with code 255 ("Unknown"); a live one keeps
//      its state (created → running when it was started just before the crash) and gets its rootfs mounted again; a
//      created one whose StartContainer was cut short is put back to created (its half-made launch undone);
//   2. pods: a ready pod whose namespace pins or /dev/shm are gone (a reboot) or whose pause died becomes not ready;
//   3. orphans, which no checkpoint owns (a RunPodSandbox or CreateContainer killed half-way: both checkpoint last):
//      helper, pause, conmon and runtime processes, runtime containers, network attachments (through the network's
//      hook), mounts, pod dirs, bundles, rootfs dirs, exit files and pod cgroups under berth's cgroup parent go.
// Only berth's own dirs, its cgroup parent and processes of berth's tools that name those dirs are ever touched. One
// object that cannot be reconciled is logged and shown as UNKNOWN (containers) or not ready (pods); start-up goes on.
import { realpathSync } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { MNT_DETACH, UMOUNT_NOFOLLOW, umount2 } from '../../native/mount';
import { errnoCode, errorMessage } from '../common/errors';
import { nowNs } from '../common/time';
import { writeFileAtomic } from '../storage/atomic-file';
import { removeCgroup, cgroupHierarchies } from './cgroups';
import { procStat, run, waitGone } from './process';
import { exitedRecord, type ContainerManager, type ContainerRecord } from './container-manager';
import { pausePath, podNsPath } from './namespaces';
import type { OciRuntime, RuntimeHandler, RuntimeState } from './oci-runtime';
import type { SandboxManager, SandboxRecord } from './sandbox-manager';

export interface RecoveryLog {
  debug(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
  warn(obj: object, msg: string): void;
  error(obj: object, msg: string): void;
}

export interface RecoveryDeps {
  stateDir: string;
  /** <root>/containers: one rootfs dir (upper, work, merged) per container. */
  containersDir: string;
  /** runtime.cgroup_parent: default pod cgroups are <parent>/pod-<id[:12]>. */
  cgroupParent: string;
  conmonPath: string;
  /** Every configured handler; the handlers recorded in checkpoints are added. */
  handlers: RuntimeHandler[];
  runtime: (handler: RuntimeHandler) => OciRuntime;
  sandboxes: SandboxManager;
  containers: ContainerManager;
  /**
   * Pod networking's own reconciliation (CNI DEL of cached attachments of pods no checkpoint owns), called before the
   * orphan pods' network namespaces are unmounted so the plugins still find them.
   */
  releaseOrphanNetworks?: (isKnown: (podId: string) => boolean) => Promise<{ podId: string; network: string; error?: string }[]>;
  /** Ids of checkpoints that could not be read: never treated as orphans. */
  unreadable: { pods: string[]; containers: string[] };
  log: RecoveryLog;
}

export interface RecoveryReport {
  containers: { running: number; created: number; exited: number; exitedWhileDown: number; unknown: number };
  pods: { ready: number; notReady: number; becameNotReady: number };
  removed: { pods: string[]; containers: string[]; cgroups: string[]; processes: number };
  errors: number;
  durationMs: number;
  phasesMs: Record<string, number>;
}

const ID = /^[0-9a-f]{64}$/;
const BOOT_ID = '/proc/sys/kernel/random/boot_id';
const UNSHARE = '/usr/bin/unshare';
const NSENTER = '/usr/bin/nsenter';
const RUNTIME_TIMEOUT_MS = 30_000;
const GONE_WAIT_MS = 5_000;
const EXIT_FILE_WAIT_MS = 2_000;
const CONCURRENCY = 8;

/** Reconciles and cleans up; never throws (a failure is logged and counted in the report). */
export async function recover(deps: RecoveryDeps): Promise<RecoveryReport> {
  const r = new Recovery(deps);
  const started = Date.now();
  try {
    await r.run();
  } catch (err) {
    r.report.errors++;
    deps.log.error({ err: errorMessage(err) }, 'recovery: unexpected failure; serving what was recovered so far');
  }
  r.report.durationMs = Date.now() - started;
  const { containers, pods, removed, errors, durationMs, phasesMs } = r.report;
  deps.log.info(
    { containers, pods, removed: { pods: removed.pods.length, containers: removed.containers.length, cgroups: removed.cgroups.length, processes: removed.processes }, errors, durationMs, phasesMs },
    'recovery done',
  );
  return r.report;
}

interface Proc {
  pid: number;
  pgid: number;
  ppid: number;
  start: string;
  exe: string;
  argv: string[];
}

class Recovery {
  readonly report: RecoveryReport = {
    containers: { running: 0, created: 0, exited: 0, exitedWhileDown: 0, unknown: 0 },
    pods: { ready: 0, notReady: 0, becameNotReady: 0 },
    removed: { pods: [], containers: [], cgroups: [], processes: 0 },
    errors: 0,
    durationMs: 0,
    phasesMs: {},
  };
  private readonly stateDir: string;
  private readonly podsDir: string;
  private readonly bundlesDir: string;
  private readonly rootfsDir: string;
  private readonly exitDir: string;
  private readonly log: RecoveryLog;
  private readonly conmonExe: string;
  private readonly pauseExe: string;
  /** Namespace helpers, which name a pod's dir in their argv: unshare/nsenter (pause holder, sysctls) and berth-pod-ns. */
  private readonly podNsExe: string;
  private readonly handlers: RuntimeHandler[];
  /** Real paths of the runtime binaries and conmon: the only processes that may be killed for naming a bundle. */
  private readonly containerTools: Set<string>;
  private mounts = new Set<string>();
  private procs: Proc[] = [];
  private runtimeLists: { id: string; bundle: string }[][] = [];
  private ownPgid = 0;
  private rebooted = false;
  private readonly cutLaunches: ContainerRecord[] = [];

  constructor(private readonly deps: RecoveryDeps) {
    // Mount points and /proc name real paths.
    this.stateDir = real(deps.stateDir);
    this.podsDir = path.join(this.stateDir, 'pods');
    this.bundlesDir = path.join(this.stateDir, 'containers');
    this.rootfsDir = real(deps.containersDir);
    this.exitDir = real(deps.containers.exitDir);
    this.log = deps.log;
    this.conmonExe = real(deps.conmonPath);
    this.pauseExe = real(pausePath());
    this.podNsExe = real(podNsPath());
    const byKey = new Map<string, RuntimeHandler>();
    const recorded = [...deps.sandboxes.list().map((p) => p.handler), ...deps.containers.store.list().map((c) => c.handler)];
    for (const h of [...deps.handlers, ...recorded]) if (h) byKey.set(`${h.path}\0${h.root}`, h);
    this.handlers = [...byKey.values()];
    this.containerTools = new Set([this.conmonExe, ...this.handlers.map((h) => real(h.path))]);
  }

  async run(): Promise<void> {
    let t = Date.now();
    const lap = (phase: string): void => {
      this.report.phasesMs[phase] = Date.now() - t;
      t = Date.now();
    };
    this.ownPgid = (await procStat(process.pid))?.pgid ?? 0;
    this.mounts = new Set(await mountPoints());
    // A state dir that survives a reboot (not on tmpfs) still names pods whose namespaces and processes are gone.
    const bootId = (await fs.readFile(BOOT_ID, 'utf8')).trim();
    const bootIdFile = path.join(this.stateDir, 'boot_id');
    const previousBoot = (await fs.readFile(bootIdFile, 'utf8').catch(() => '')).trim();
    this.rebooted = previousBoot !== '' && previousBoot !== bootId;
    if (this.rebooted) this.log.info({ previousBoot, bootId }, 'recovery: the host rebooted since berth last ran');
    // The scans orphan removal needs run meanwhile (they only read).
    const tools = new Set([...this.containerTools, UNSHARE, NSENTER, this.podNsExe, this.pauseExe]);
    const scan = Promise.all([processTable(tools), this.listRuntimes()]).then((ok) => ({ ok }), (err: unknown) => ({ err }));
    await pool(this.deps.containers.store.list(), CONCURRENCY, (c) => this.reconcileContainer(c));
    lap('containers');
    await pool(this.deps.sandboxes.list(), CONCURRENCY, (p) => this.reconcilePod(p));
    lap('pods');
    const scanned = await scan;
    if ('err' in scanned) throw scanned.err;
    [this.procs, this.runtimeLists] = scanned.ok;
    lap('scan');
    await this.resetLaunches();
    await this.removeOrphanContainers();
    lap('orphanContainers');
    await this.releaseOrphanNetworks();
    lap('orphanNetworks');
    await this.removeOrphanPods();
    lap('orphanPods');
    await this.removeOrphanCgroups();
    lap('orphanCgroups');
    await writeFileAtomic(bootIdFile, `${bootId}\n`, 0o644);
  }

  // ---- checkpointed containers ----

  private async reconcileContainer(c: ContainerRecord): Promise<void> {
    if (c.state === 'CONTAINER_EXITED') {
      this.report.containers.exited++;
      return;
    }
    const { containers } = this.deps;
    try {
      const runtime = containers.runtimeOf(c);
      let next = await this.readExit(c);
      if (next.state === 'CONTAINER_EXITED') return this.exitedWhileDown(next, 'container exited while berth was down');
      const st = await runtime.state(c.id);
      if (c.state === 'CONTAINER_CREATED' && !(st && st.status !== 'created' && st.status !== 'unknown')) return await this.reconcileCreated(c, st);
      if (!st) {
        next = exitedRecord(c, undefined, 'the runtime no longer knows this container and conmon recorded no exit code: it ended while berth was down (host reboot?)');
        await containers.recordExit(next);
        return this.exitedWhileDown(next, 'container is gone from the runtime; reported as exited (255)');
      }
      if (st.status === 'stopped') {
        // A live conmon is about to write the exit file; without one, nobody will.
        next = (await this.conmonAlive(c)) ? await this.waitExit(c) : c;
        if (next.state !== 'CONTAINER_EXITED') {
          next = exitedRecord(c, undefined, 'the container has stopped but conmon recorded no exit code (conmon gone?)');
          await containers.recordExit(next);
        }
        return this.exitedWhileDown(next, 'container exited while berth was down');
      }
      if (st.status === 'unknown') throw new Error('the runtime reports its state as unknown');
      const state = st.status === 'created' ? 'CONTAINER_CREATED' : 'CONTAINER_RUNNING';
      next = { ...c, state, pid: st.pid > 0 ? st.pid : c.pid, reason: '', message: '' };
      if (state === 'CONTAINER_RUNNING' && next.startedAtNs === '0') next.startedAtNs = (await startTime(c, st.pid)).toString();
      await this.ensureRootfs(next);
      if (st.pid > 0 && !(await this.conmonAlive(c))) {
        this.log.warn({ id: c.id, pid: st.pid }, 'recovery: the container runs but its conmon is gone; its exit will be reported without a code');
      }
      if (JSON.stringify(next) !== JSON.stringify(c)) {
        await containers.store.put(next);
        this.log.info({ id: c.id, from: c.state, to: next.state, pid: next.pid }, 'recovery: container state updated from the runtime');
      } else {
        this.log.debug({ id: c.id, state: c.state, pid: c.pid }, 'recovery: container is as recorded');
      }
      if (state === 'CONTAINER_RUNNING') this.report.containers.running++;
      else this.report.containers.created++;
    } catch (err) {
      await this.markUnknown(c, err);
    }
  }

  /**
   * A created container the runtime holds as created or not at all. Launched cleanly (runtime created, conmon alive):
   * kept with its pid. After a reboot, which took its pod's namespaces: exited, it can never start. Otherwise whatever a
   * StartContainer cut short may have left is undone after the process scan (resetLaunches) and it stays created.
   */
  private async reconcileCreated(c: ContainerRecord, st: RuntimeState | undefined): Promise<void> {
    const { containers } = this.deps;
    if (this.rebooted) {
      const next = exitedRecord(c, undefined, 'never started: the host rebooted, so its pod is gone; the runtime has no such container and conmon recorded no exit');
      await containers.recordExit(next);
      return this.exitedWhileDown(next, 'a created container did not survive the reboot; reported as exited (255)');
    }
    if (st?.status === 'created' && st.pid > 0 && (await this.conmonAlive(c))) {
      const next = { ...c, pid: st.pid, reason: '', message: '' };
      await this.ensureRootfs(next);
      if (next.pid !== c.pid) await containers.store.put(next);
      this.report.containers.created++;
      return;
    }
    // Even with no trace in the runtime, a conmon may still be running `runtime create`: only the scan can tell.
    this.cutLaunches.push(c);
  }

  private exitedWhileDown(c: ContainerRecord, msg: string): void {
    this.report.containers.exitedWhileDown++;
    this.report.containers.exited++;
    this.log.info({ id: c.id, name: c.name, podId: c.podId, exitCode: c.exitCode, reason: c.reason, finishedAtNs: c.finishedAtNs }, `recovery: ${msg}`);
  }

  /** conmon's exit file, recorded if there is one (code, time, OOM); the container as it now is. */
  private async readExit(c: ContainerRecord): Promise<ContainerRecord> {
    // An UNKNOWN one (an earlier recovery failed on it) is looked at again; refresh only reads for created/running.
    if (c.state !== 'CONTAINER_UNKNOWN') return this.deps.containers.refresh(c);
    const exit = await this.deps.containers.runtimeOf(c).exitStatus(c.id, this.exitDir, c.bundle);
    if (!exit) return c;
    const next = exitedRecord(c, exit);
    await this.deps.containers.recordExit(next);
    return next;
  }

  private async waitExit(c: ContainerRecord): Promise<ContainerRecord> {
    const deadline = Date.now() + EXIT_FILE_WAIT_MS;
    for (;;) {
      const next = await this.readExit(c);
      if (next.state === 'CONTAINER_EXITED' || Date.now() >= deadline) return next;
      await sleep(25);
    }
  }

  /**
   * A live container's rootfs stays mounted on the host (ImageFsInfo and tools look at it there). The container itself
   * runs on its own copy of the mount, so a failure to mount it again is an error to report, not a reason to call the
   * container anything but running.
   */
  private async ensureRootfs(c: ContainerRecord): Promise<void> {
    const merged = path.join(this.rootfsDir, c.id, 'merged');
    if (this.mounts.has(merged)) return;
    try {
      await this.deps.containers.remountRootfs(c);
      this.log.info({ id: c.id, merged }, 'recovery: mounted the rootfs of a live container again');
    } catch (err) {
      this.report.errors++;
      this.log.error({ id: c.id, merged, err: errorMessage(err) }, 'recovery: cannot mount the rootfs of a live container again');
    }
  }

  private async conmonAlive(c: ContainerRecord): Promise<boolean> {
    const pid = Number.parseInt(await fs.readFile(path.join(c.bundle, 'conmon.pid'), 'utf8').catch(() => ''), 10);
    if (!(pid > 1)) return false;
    const exe = await exeOf(pid);
    const argv = exe === this.conmonExe ? await argvOf(pid) : [];
    return argv.includes(c.id);
  }

  private async markUnknown(c: ContainerRecord, err: unknown): Promise<void> {
    this.report.errors++;
    this.report.containers.unknown++;
    const message = `recovery could not reconcile this container: ${errorMessage(err)}`;
    this.log.error({ id: c.id, name: c.name, podId: c.podId, err: errorMessage(err) }, 'recovery: container state is unknown');
    try {
      await this.deps.containers.store.put({ ...c, state: 'CONTAINER_UNKNOWN', reason: 'Unknown', message });
    } catch (putErr) {
      this.log.error({ id: c.id, err: errorMessage(putErr) }, 'recovery: cannot checkpoint the unknown state');
    }
  }

  // ---- checkpointed pods ----

  private async reconcilePod(pod: SandboxRecord): Promise<void> {
    if (pod.state !== 'SANDBOX_READY') {
      this.report.pods.notReady++;
      return;
    }
    let problems: string[];
    try {
      problems = await this.podProblems(pod);
    } catch (err) {
      this.report.errors++;
      problems = [`cannot check the pod: ${errorMessage(err)}`];
      this.log.error({ id: pod.id, err: errorMessage(err) }, 'recovery: cannot check a ready pod; marking it not ready');
    }
    if (problems.length === 0) {
      this.report.pods.ready++;
      this.log.debug({ id: pod.id, name: pod.name }, 'recovery: pod is ready as recorded');
      return;
    }
    this.report.pods.notReady++;
    this.report.pods.becameNotReady++;
    const next: SandboxRecord = { ...pod, state: 'SANDBOX_NOTREADY', ips: [] };
    delete next.pausePid;
    try {
      await this.deps.sandboxes.store.put(next);
      this.log.info({ id: pod.id, name: pod.name, problems }, 'recovery: pod is no longer ready');
    } catch (err) {
      this.report.errors++;
      this.log.error({ id: pod.id, err: errorMessage(err) }, 'recovery: cannot checkpoint a pod as not ready');
    }
  }

  private async podProblems(pod: SandboxRecord): Promise<string[]> {
    const problems: string[] = this.rebooted ? ['the host rebooted'] : [];
    for (const kind of ['net', 'ipc', 'uts', 'pid'] as const) {
      const pin = pod.namespaces[kind];
      if (pin !== undefined && !this.mounts.has(pin)) problems.push(`the ${kind} namespace pin ${pin} is not mounted`);
    }
    if (!pod.hostIpc && !this.mounts.has(pod.files.shm)) problems.push(`${pod.files.shm} is not mounted`);
    if (pod.pausePid !== undefined) {
      const pid = pod.pausePid;
      const [exe, ns, pin] = await Promise.all([
        exeOf(pid),
        fs.readlink(`/proc/${pid}/ns/pid`).catch(() => undefined),
        pod.namespaces.pid !== undefined ? fs.stat(pod.namespaces.pid).catch(() => undefined) : undefined,
      ]);
      if (exe !== this.pauseExe || pin === undefined || ns !== `pid:[${pin.ino}]`) problems.push(`pause (pid ${pid}) is not running`);
    }
    return problems;
  }

  // ---- orphans ----

  private ownedContainers(): Set<string> {
    return new Set([...this.deps.containers.store.list().map((c) => c.id), ...this.deps.unreadable.containers]);
  }

  private ownedPods(): Set<string> {
    return new Set([...this.deps.sandboxes.list().map((p) => p.id), ...this.deps.unreadable.pods]);
  }

  private async removeOrphanContainers(): Promise<void> {
    const owned = this.ownedContainers();
    const found = new Map<string, { handlers: RuntimeHandler[] }>();
    const add = (id: string, where: string): { handlers: RuntimeHandler[] } | undefined => {
      if (owned.has(id)) return undefined;
      if (!ID.test(id)) {
        this.log.warn({ entry: id, where }, 'recovery: leaving an entry that is not a berth container id alone');
        return undefined;
      }
      let entry = found.get(id);
      if (!entry) found.set(id, (entry = { handlers: [] }));
      return entry;
    };
    for (const [dir, what] of [[this.bundlesDir, 'bundles'], [this.rootfsDir, 'rootfs dirs'], [this.exitDir, 'exit files']] as const) {
      for (const name of await readdirQuiet(dir)) if (!name.startsWith('.')) add(name, what);
    }
    this.handlers.forEach((h, i) => {
      // A shared runtime root may hold other tools' containers: only a bundle in berth's dir makes one berth's.
      for (const c of this.runtimeLists[i] ?? []) if (path.resolve(c.bundle) === path.join(this.bundlesDir, c.id)) add(c.id, `runtime ${h.name}`)?.handlers.push(h);
    });
    for (const p of this.procs) {
      if (!this.containerTools.has(p.exe)) continue;
      for (const id of idsUnder(p.argv, this.bundlesDir)) add(id, `process ${p.pid}`);
    }
    for (const [id, { handlers }] of found) {
      try {
        await this.removeOrphanContainer(id, handlers);
        this.report.removed.containers.push(id);
      } catch (err) {
        this.report.errors++;
        this.log.error({ id, err: errorMessage(err) }, 'recovery: cannot remove an orphan container');
      }
    }
  }

  /** What each handler's runtime root holds (index = this.handlers); a root that cannot be listed is logged. */
  private listRuntimes(): Promise<{ id: string; bundle: string }[][]> {
    return Promise.all(
      this.handlers.map(async (h) => {
        // A configured runtime that is not installed has never created anything.
        if (!(await exists(h.path))) return [];
        try {
          return await runtimeList(h);
        } catch (err) {
          this.report.errors++;
          this.log.error({ handler: h.name, root: h.root, err: errorMessage(err) }, 'recovery: cannot list the runtime containers');
          return [];
        }
      }),
    );
  }

  private async removeOrphanContainer(id: string, handlers: RuntimeHandler[]): Promise<void> {
    const did = await this.undoLaunch(id, handlers);
    for (const dir of [path.join(this.rootfsDir, id), path.join(this.bundlesDir, id)]) {
      if (await exists(dir)) {
        await removeDir(dir);
        did.push(`removed ${dir}`);
      }
    }
    this.log.info({ id, did }, 'recovery: removed an orphan container (no checkpoint: CreateContainer never finished)');
  }

  /**
   * Everything a launch under conmon made for container `id`, gone: its conmon and runtime processes, the runtime's
   * container and state dir, its cgroup, conmon's pid and exit files. The rootfs and bundle stay. What was done.
   */
  private async undoLaunch(id: string, handlers: RuntimeHandler[]): Promise<string[]> {
    const bundle = path.join(this.bundlesDir, id);
    const did: string[] = [];
    // conmon (and a runtime `create` it may still run) first: a dead conmon writes no exit file after our cleanup.
    const procs = this.procs.filter((p) => this.containerTools.has(p.exe) && idsUnder(p.argv, this.bundlesDir).includes(id));
    if (procs.length > 0) {
      await this.kill(procs);
      did.push(`killed ${procs.map((p) => `${path.basename(p.exe)}[${p.pid}]`).join(', ')}`);
    }
    const cgroup = await containerCgroup(bundle, id);
    for (const h of handlers) {
      await this.deps.runtime(h).delete(id, true);
      did.push(`deleted from ${h.name}`);
    }
    // A `create` killed before it wrote state.json leaves a state dir the runtime cannot load: remove it from roots
    // that are berth's own.
    for (const h of this.handlers) {
      const dir = path.join(h.root, id);
      if (isUnder(path.resolve(h.root), this.stateDir) && (await exists(dir))) {
        await fs.rm(dir, { recursive: true, force: true });
        did.push(`removed ${dir}`);
      }
    }
    if (cgroup !== undefined && (await this.removeCgroupTree(cgroup))) did.push(`removed cgroup ${cgroup}`);
    for (const file of [path.join(this.exitDir, id), path.join(bundle, 'conmon.pid'), path.join(bundle, 'container.pid'), path.join(bundle, 'exit'), path.join(bundle, 'oom')]) {
      if (await exists(file)) {
        await fs.rm(file, { force: true });
        did.push(`removed ${file}`);
      }
    }
    return did;
  }

  /** Created containers not cleanly launched (reconcileCreated): whatever a cut-short launch left is undone. */
  private async resetLaunches(): Promise<void> {
    for (const c of this.cutLaunches) {
      try {
        const did = await this.undoLaunch(c.id, [c.handler]);
        const next: ContainerRecord = { ...c, state: 'CONTAINER_CREATED', pid: 0 };
        await this.ensureRootfs(next);
        if (next.pid !== c.pid) await this.deps.containers.store.put(next);
        this.report.containers.created++;
        if (did.length > 0) this.log.info({ id: c.id, did }, 'recovery: undid a launch that StartContainer did not finish; the container is created, ready to start');
      } catch (err) {
        await this.markUnknown(c, err);
      }
    }
  }

  private async releaseOrphanNetworks(): Promise<void> {
    if (!this.deps.releaseOrphanNetworks) return;
    const owned = this.ownedPods();
    try {
      for (const r of await this.deps.releaseOrphanNetworks((id) => owned.has(id))) {
        if (r.error === undefined) {
          this.log.info({ podId: r.podId, network: r.network }, 'recovery: released the network of an orphan pod');
        } else {
          this.report.errors++;
          this.log.error({ podId: r.podId, network: r.network, err: r.error }, 'recovery: cannot release the network of an orphan pod');
        }
      }
    } catch (err) {
      this.report.errors++;
      this.log.error({ err: errorMessage(err) }, 'recovery: cannot release the networks of orphan pods');
    }
  }

  private async removeOrphanPods(): Promise<void> {
    const owned = this.ownedPods();
    const ids = new Set<string>();
    for (const name of await readdirQuiet(this.podsDir)) {
      if (owned.has(name) || name.startsWith('.')) continue;
      if (ID.test(name)) ids.add(name);
      else this.log.warn({ entry: path.join(this.podsDir, name) }, 'recovery: leaving an entry that is not a berth pod id alone');
    }
    for (const p of this.procs) {
      if (!this.isNsHelper(p)) continue;
      for (const id of idsUnder(p.argv, this.podsDir)) if (!owned.has(id)) ids.add(id);
    }
    for (const id of ids) {
      try {
        await this.removeOrphanPod(id);
        this.report.removed.pods.push(id);
      } catch (err) {
        this.report.errors++;
        this.log.error({ id, err: errorMessage(err) }, 'recovery: cannot remove an orphan pod');
      }
    }
  }

  private isNsHelper(p: Proc): boolean {
    return p.exe === UNSHARE || p.exe === NSENTER || p.exe === this.podNsExe;
  }

  private async removeOrphanPod(id: string): Promise<void> {
    const dir = path.join(this.podsDir, id);
    const did: string[] = [];
    // The namespace helpers and the pause holder (unshare/nsenter naming the pod's pins), and pause itself: a child of
    // the holder, or the init of the pinned pid namespace.
    const holders = this.procs.filter((p) => this.isNsHelper(p) && idsUnder(p.argv, this.podsDir).includes(id));
    const pidPin = path.join(dir, 'ns', 'pid');
    const pinned = this.mounts.has(pidPin) ? await fs.stat(pidPin).then((s) => `pid:[${s.ino}]`, () => undefined) : undefined;
    const pauses: Proc[] = [];
    for (const p of this.procs) {
      if (p.exe !== this.pauseExe) continue;
      if (holders.some((h) => h.pid === p.ppid) || (pinned !== undefined && (await fs.readlink(`/proc/${p.pid}/ns/pid`).catch(() => '')) === pinned)) pauses.push(p);
    }
    // The cgroups pause ran in: a pod with its own cgroup parent has <parent>/pause made by berth.
    const pauseCgroups = new Set<string>();
    for (const p of pauses) for (const cg of await cgroupsOf(p.pid)) if (path.posix.basename(cg) === 'pause') pauseCgroups.add(cg);
    if (holders.length + pauses.length > 0) {
      await this.kill([...holders, ...pauses]);
      did.push(`killed ${[...holders, ...pauses].map((p) => `${path.basename(p.exe)}[${p.pid}]`).join(', ')}`);
    }
    if (await exists(dir)) {
      await removeDir(dir);
      did.push(`unmounted and removed ${dir}`);
    }
    const own = `${this.deps.cgroupParent}/pod-${id.slice(0, 12)}`;
    if (await this.removeCgroupTree(own)) did.push(`removed cgroup ${own}`);
    for (const cg of pauseCgroups) {
      if (isUnder(cg, own)) continue;
      for (const h of await cgroupHierarchies()) {
        await fs.rmdir(path.join(h, cg)).catch((err: unknown) => {
          if (errnoCode(err) !== 'ENOENT') throw err;
        });
      }
      did.push(`removed cgroup ${cg}`);
    }
    this.log.info({ id, did }, 'recovery: removed an orphan pod (no checkpoint: RunPodSandbox never finished)');
  }

  /** Pod cgroups under berth's cgroup parent that no pod owns, and container cgroups in owned ones that no container owns. */
  private async removeOrphanCgroups(): Promise<void> {
    const parent = this.deps.cgroupParent;
    const pods = [...this.ownedPods()];
    const owned = this.ownedContainers();
    const orphans = new Set<string>();
    for (const h of await cgroupHierarchies()) {
      for (const podCg of await readdirQuiet(path.join(h, parent), true)) {
        const m = /^pod-([0-9a-f]{12})$/.exec(podCg);
        if (!m) continue;
        const prefix = m[1] ?? '';
        if (!pods.some((id) => id.startsWith(prefix))) {
          orphans.add(`${parent}/${podCg}`);
          continue;
        }
        for (const child of await readdirQuiet(path.join(h, parent, podCg), true)) {
          if (ID.test(child) && !owned.has(child)) orphans.add(`${parent}/${podCg}/${child}`);
        }
      }
    }
    for (const cg of orphans) {
      try {
        if (await this.removeCgroupTree(cg)) this.log.info({ cgroup: cg }, 'recovery: removed a cgroup no pod or container owns');
      } catch (err) {
        this.report.errors++;
        this.log.error({ cgroup: cg, err: errorMessage(err) }, 'recovery: cannot remove an orphan cgroup');
      }
    }
  }

  /** Kills every process in the cgroup tree (it is berth's and owned by nothing), then removes it; false if absent. */
  private async removeCgroupTree(cg: string): Promise<boolean> {
    const hierarchies = await cgroupHierarchies();
    if (!(await anyExists(hierarchies.map((h) => path.join(h, cg))))) return false;
    const deadline = Date.now() + GONE_WAIT_MS;
    for (;;) {
      const pids = new Set<number>();
      for (const h of hierarchies) for (const pid of await procsIn(path.join(h, cg))) pids.add(pid);
      const procs: Proc[] = [];
      for (const pid of pids) {
        const st = await procStat(pid);
        if (st) procs.push({ pid, pgid: 0, ppid: 0, start: st.start, exe: '', argv: [] });
      }
      if (procs.length > 0) await this.kill(procs);
      try {
        await removeCgroup(cg);
        this.report.removed.cgroups.push(cg);
        return true;
      } catch (err) {
        // EBUSY while the killed tasks leave the cgroup.
        if (errnoCode(err) !== 'EBUSY' || Date.now() > deadline) throw err;
        await sleep(50);
      }
    }
  }

  /** SIGKILL to each process (and to its process group when it leads one that is not berth's), then waits for them. */
  private async kill(procs: Proc[]): Promise<void> {
    for (const p of procs) {
      if (p.pgid === p.pid && p.pgid > 1 && p.pgid !== this.ownPgid) signal(-p.pgid);
      signal(p.pid);
    }
    this.report.removed.processes += procs.length;
    const left = await Promise.all(procs.map(async (p) => ((await waitGone(p.pid, p.start, GONE_WAIT_MS)) ? undefined : p.pid)));
    const stuck = left.filter((x) => x !== undefined);
    if (stuck.length > 0) throw new Error(`processes ${stuck.join(', ')} survived SIGKILL for ${GONE_WAIT_MS} ms`);
  }
}

// ---- helpers ----

function real(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return path.resolve(p);
  }
}

function isUnder(p: string, dir: string): boolean {
  return p === dir || p.startsWith(`${dir}/`);
}

/** Berth ids named by argv items that are paths in `dir` (`<dir>/<id>` or below, also as `--opt=<path>`). */
function idsUnder(argv: string[], dir: string): string[] {
  const out = new Set<string>();
  for (const a of argv) {
    const at = a.indexOf(`${dir}/`);
    if (at < 0 || (at > 0 && a[at - 1] !== '=' && a[at - 1] !== ':')) continue;
    const id = a.slice(at + dir.length + 1).split('/')[0] ?? '';
    if (ID.test(id)) out.add(id);
  }
  return [...out];
}

async function readdirQuiet(dir: string, dirsOnly = false): Promise<string[]> {
  try {
    const entries = await fs.readdir(dir, { withFileTypes: true });
    return entries.filter((e) => !dirsOnly || e.isDirectory()).map((e) => e.name);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return [];
    throw err;
  }
}

async function exists(p: string): Promise<boolean> {
  return fs.lstat(p).then(() => true, () => false);
}

async function anyExists(paths: string[]): Promise<boolean> {
  return (await Promise.all(paths.map(exists))).some(Boolean);
}

const unescapeMount = (s: string): string => s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));

async function mountPoints(): Promise<string[]> {
  const text = await fs.readFile('/proc/self/mountinfo', 'utf8');
  return text.split('\n').flatMap((line) => {
    const mp = line.split(' ')[4];
    return mp === undefined ? [] : [unescapeMount(mp)];
  });
}

/** Unmounts everything at or below `dir` (deepest first, stacked mounts too), then removes it. A mount that stays makes
 *  it an error: removing through a mount would delete what it shows. */
async function removeDir(dir: string): Promise<void> {
  for (let pass = 0; ; pass++) {
    const under = (await mountPoints()).filter((m) => isUnder(m, dir)).sort((a, b) => b.length - a.length);
    if (under.length === 0) break;
    if (pass >= 8) throw new Error(`mounts under ${dir} stay after unmounting: ${under.slice(0, 5).join(', ')}`);
    for (const m of under) {
      try {
        umount2(m, MNT_DETACH | UMOUNT_NOFOLLOW);
      } catch (err) {
        const code = errnoCode(err);
        if (code !== 'EINVAL' && code !== 'ENOENT') throw err;
      }
    }
  }
  await fs.rm(dir, { recursive: true, force: true });
}

async function exeOf(pid: number): Promise<string | undefined> {
  const exe = await fs.readlink(`/proc/${pid}/exe`).catch(() => undefined);
  return exe?.replace(/ \(deleted\)$/, '');
}

async function argvOf(pid: number): Promise<string[]> {
  const raw = await fs.readFile(`/proc/${pid}/cmdline`, 'utf8').catch(() => '');
  return raw.split('\0').filter((a, i, all) => a !== '' || i < all.length - 1);
}

/** The live processes of the given programs, with argv, group and start time. */
async function processTable(exes: Set<string>): Promise<Proc[]> {
  const pids = (await fs.readdir('/proc')).filter((n) => /^\d+$/.test(n)).map(Number);
  const out: Proc[] = [];
  await pool(pids, 32, async (pid) => {
    if (pid === process.pid) return;
    const exe = await exeOf(pid);
    if (exe === undefined || !exes.has(exe)) return;
    const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
    const f = text?.slice(text.lastIndexOf(')') + 2).split(' ');
    if (!f || f[0] === 'Z' || f[0] === 'X') return;
    out.push({ pid, ppid: Number(f[1]), pgid: Number(f[2]), start: f[19] ?? '', exe, argv: await argvOf(pid) });
  });
  return out;
}

/**
 * When a container recorded as created was started (berth died between the runtime's start and the checkpoint). runc
 * and crun delete exec.fifo from the container's state dir at start, so that dir's mtime is the start; failing that,
 * the init process's start (at create) or the create time, whichever is later.
 */
async function startTime(c: ContainerRecord, pid: number): Promise<bigint> {
  const created = BigInt(c.createdAtNs);
  const now = nowNs();
  const mtime = await fs.stat(path.join(c.handler.root, c.id), { bigint: true }).then((s) => s.mtimeNs, () => undefined);
  if (mtime !== undefined && mtime >= created && mtime <= now) return mtime;
  const st = await procStat(pid);
  const btime = /^btime (\d+)$/m.exec(await fs.readFile('/proc/stat', 'utf8').catch(() => ''))?.[1];
  // starttime is in clock ticks (USER_HZ, 100 on Linux).
  const proc = st && btime && /^\d+$/.test(st.start) ? BigInt(btime) * 1_000_000_000n + (BigInt(st.start) * 1_000_000_000n) / 100n : undefined;
  return proc !== undefined && proc > created && proc <= now ? proc : created;
}

/** `<runtime> --root <root> list --format json`: id and bundle of every container in that root. */
async function runtimeList(h: RuntimeHandler): Promise<{ id: string; bundle: string }[]> {
  const r = await run(h.path, ['--root', h.root, 'list', '--format', 'json'], { timeoutMs: RUNTIME_TIMEOUT_MS });
  if (r.timedOut) throw new Error(`${h.path} list did not answer within ${RUNTIME_TIMEOUT_MS} ms`);
  if (r.code !== 0) throw new Error(`${h.path} list: ${r.stderr.toString('utf8').trim() || `exit ${String(r.code ?? r.signal)}`}`);
  const v = JSON.parse(r.stdout.toString('utf8') || 'null') as unknown;
  if (v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${h.path} list: not a JSON array`);
  return v.flatMap((e: unknown) => {
    const o = e as { id?: unknown; bundle?: unknown };
    return typeof o?.id === 'string' && typeof o.bundle === 'string' ? [{ id: o.id, bundle: o.bundle }] : [];
  });
}

/** The container's cgroup as its bundle's config.json names it, if that is a sane absolute path ending in the id. */
async function containerCgroup(bundle: string, id: string): Promise<string | undefined> {
  try {
    const spec = JSON.parse(await fs.readFile(path.join(bundle, 'config.json'), 'utf8')) as { linux?: { cgroupsPath?: unknown } };
    const cg = spec.linux?.cgroupsPath;
    if (typeof cg !== 'string' || !cg.startsWith('/') || path.posix.normalize(cg) !== cg || path.posix.basename(cg) !== id) return undefined;
    return cg;
  } catch {
    return undefined;
  }
}

/** v1 cgroup paths of a process (the named hierarchies; the unified line "0::" is skipped). */
async function cgroupsOf(pid: number): Promise<string[]> {
  const text = await fs.readFile(`/proc/${pid}/cgroup`, 'utf8').catch(() => '');
  const out = new Set<string>();
  for (const line of text.split('\n')) {
    const m = /^\d+:([^:]+):(\/.*)$/.exec(line);
    const p = m?.[2];
    if (p !== undefined && p !== '/' && path.posix.normalize(p) === p) out.add(p);
  }
  return [...out];
}

/** Every pid in a cgroup dir and its descendants. */
async function procsIn(dir: string): Promise<number[]> {
  const out: number[] = [];
  const text = await fs.readFile(path.join(dir, 'cgroup.procs'), 'utf8').catch(() => '');
  for (const s of text.split('\n')) if (/^\d+$/.test(s)) out.push(Number(s));
  for (const child of await readdirQuiet(dir, true)) out.push(...(await procsIn(path.join(dir, child))));
  return out;
}

function signal(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Runs fn over items with at most `limit` at a time; fn handles its own errors. */
async function pool<T>(items: T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}
