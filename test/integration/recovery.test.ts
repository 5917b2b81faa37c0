// Start-up recovery through the real daemon: containers keep running across kill -9 and SIGTERM restarts, one that
// exits while berth is down is reported with its real exit, and a kill -9 in the middle of RunPodSandbox or
// CreateContainer leaves nothing behind once berth is back (mounts, processes, dirs, cgroups, names).
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { removeCgroup } from '../../src/runtime/cgroups';
import type { ContainerConfig } from '../../src/server/generated/runtime/v1/ContainerConfig';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import { buildImage, busyboxLayer } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';
import { CriClient } from '../helpers/cri-client';
import { startDaemon, TestDaemon } from '../helpers/daemon';

const cgroupParent = `/berth-rec-${randomBytes(4).toString('hex')}`;
const ID = /[0-9a-f]{64}/g;

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function waitFor<T>(fn: () => Promise<T | undefined> | T | undefined, ms = 10_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await sleep(50);
  }
}

function mountsUnder(dir: string): string[] {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m === dir || m.startsWith(`${dir}/`));
}

function ls(dir: string): string[] {
  try {
    return fs.readdirSync(dir).filter((n) => !n.startsWith('.'));
  } catch {
    return [];
  }
}

/** Running (not gone, not a zombie). */
function alive(pid: number): boolean {
  const stat = readQuiet(`/proc/${pid}/stat`);
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return stat !== '' && state !== 'Z' && state !== 'X';
}

function readQuiet(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return '';
  }
}

/** Processes whose argv names `dir`, except `exclude` (the daemon itself). */
function processesNaming(dir: string, exclude: number[]): { pid: number; argv: string[] }[] {
  const out: { pid: number; argv: string[] }[] = [];
  for (const n of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(n) || exclude.includes(Number(n))) continue;
    const argv = readQuiet(`/proc/${n}/cmdline`).split('\0').filter(Boolean);
    if (argv.some((a) => a.includes(dir))) out.push({ pid: Number(n), argv });
  }
  return out;
}

/** Relative cgroup dirs below our cgroup parent in the memory hierarchy, with the pids in each. */
function cgroupTree(): { dir: string; pids: number[] }[] {
  const root = `/sys/fs/cgroup/memory${cgroupParent}`;
  const out: { dir: string; pids: number[] }[] = [];
  const walk = (rel: string): void => {
    for (const e of fs.readdirSync(path.join(root, rel), { withFileTypes: true })) {
      if (!e.isDirectory()) continue;
      const child = rel ? `${rel}/${e.name}` : e.name;
      out.push({ dir: child, pids: readQuiet(path.join(root, child, 'cgroup.procs')).split('\n').filter(Boolean).map(Number) });
      walk(child);
    }
  };
  if (fs.existsSync(root)) walk('');
  return out;
}

/** Last resort when a test failed half-way: kill what runs for the test dir or in its cgroups, unmount, remove. */
async function forceCleanup(dir: string): Promise<void> {
  for (const p of processesNaming(dir, [process.pid])) killQuietly(p.pid);
  for (const cg of cgroupTree()) for (const pid of cg.pids) killQuietly(pid);
  await sleep(200);
  for (const m of mountsUnder(dir).sort((a, b) => b.length - a.length)) {
    try {
      execFileSync('umount', ['-l', m]);
    } catch {
      // already gone
    }
  }
  fs.rmSync(dir, { recursive: true, force: true });
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone
  }
}

function summarize(r: RecoveryLine): string {
  const phases = Object.entries(r.phasesMs).filter(([, ms]) => ms >= 20).map(([k, ms]) => `${k} ${ms}`).join(', ');
  return `removed ${r.removed.pods}p/${r.removed.containers}c/${r.removed.cgroups}cg/${r.removed.processes}proc; ${r.durationMs} ms: ${phases}`;
}

interface RecoveryLine {
  containers: Record<string, number>;
  pods: Record<string, number>;
  removed: { pods: number; containers: number; cgroups: number; processes: number };
  errors: number;
  durationMs: number;
  phasesMs: Record<string, number>;
}

describe('start-up recovery', () => {
  let reg: Registry;
  let d: TestDaemon;
  let c: CriClient;
  let image: string;
  let dir: string;
  let logDir: string;
  const restarts: { how: string; serveMs: number; recovery: RecoveryLine }[] = [];

  beforeAll(async () => {
    reg = await startRegistry();
    await reg.push('rec/busybox', 'v1', buildImage({ layers: [await busyboxLayer()], config: { Cmd: ['/bin/sh'] } }));
    image = `${reg.host}/rec/busybox:v1`;
    d = await startDaemon({ toml: `[runtime]\ncgroup_parent = "${cgroupParent}"\n` });
    dir = d.dir;
    logDir = path.join(dir, 'logs');
    c = d.client();
    await c.image.PullImage({ image: { image } });
  }, 60_000);

  afterAll(async () => {
    try {
      if (d && d.process.exitCode === null && d.process.signalCode === null) {
        const cc = d.client();
        for (const p of (await cc.runtime.ListPodSandbox({}).catch(() => ({ items: [] }))).items) {
          await cc.runtime.RemovePodSandbox({ pod_sandbox_id: p.id }).catch(() => undefined);
        }
        for (const x of (await cc.runtime.ListContainers({}).catch(() => ({ containers: [] }))).containers) {
          await cc.runtime.RemoveContainer({ container_id: x.id }).catch(() => undefined);
        }
        await d.stop();
      }
    } finally {
      if (dir) await forceCleanup(dir);
      await removeCgroup(cgroupParent).catch((err: unknown) => console.error(`cannot remove ${cgroupParent}: ${String(err)}`));
      await reg?.stop();
      if (restarts.length > 0) {
        const ms = restarts.map((r) => r.serveMs).sort((a, b) => a - b);
        const rec = restarts.map((r) => r.recovery.durationMs).sort((a, b) => a - b);
        process.stdout.write(
          `\nrecovery: ${restarts.length} restarts; start → serving ${ms[0]}–${ms[ms.length - 1]} ms (median ${ms[Math.floor(ms.length / 2)]}), ` +
            `recovery itself ${rec[0]}–${rec[rec.length - 1]} ms\n`,
        );
      }
    }
  }, 60_000);

  function podConfig(name: string, extra: Partial<PodSandboxConfig> = {}): PodSandboxConfig {
    return { metadata: { name, namespace: 'rec', uid: `uid-${name}`, attempt: 0 }, hostname: name, log_directory: logDir, labels: {}, annotations: {}, ...extra };
  }

  function ctr(name: string, command: string[], extra: Partial<ContainerConfig> = {}): ContainerConfig {
    return { metadata: { name, attempt: 0 }, image: { image }, command, log_path: `${name}.log`, labels: {}, ...extra };
  }

  /** Starts berth again on the same dirs; its "recovery done" log line. */
  async function startAgain(how: string): Promise<RecoveryLine> {
    const t0 = Date.now();
    d = await startDaemon({ dir });
    const serveMs = Date.now() - t0;
    c = d.client();
    const line = d.logs().split('\n').find((l) => l.includes('"recovery done"'));
    if (!line) throw new Error(`no "recovery done" line in the log:\n${d.logs()}`);
    const recovery = JSON.parse(line) as RecoveryLine;
    restarts.push({ how, serveMs, recovery });
    return recovery;
  }

  async function restart(how: 'SIGKILL' | 'SIGTERM'): Promise<RecoveryLine> {
    c.close();
    expect(await d.stop(how)).toBe(how === 'SIGKILL' ? 'SIGKILL' : 0);
    return startAgain(how);
  }

  async function pidOf(id: string): Promise<number> {
    const st = await c.runtime.ContainerStatus({ container_id: id, verbose: true });
    return (JSON.parse(st.info['info'] ?? '{}') as { pid: number }).pid;
  }

  /** Everything on disk, in the mount table, in /proc and in the cgroup tree belongs to a pod or container berth lists. */
  async function assertNothingLeaked(): Promise<void> {
    const pods = new Set((await c.runtime.ListPodSandbox({})).items.map((p) => p.id));
    const ctrs = new Set((await c.runtime.ListContainers({})).containers.map((x) => x.id));
    const known = new Set([...pods, ...ctrs]);
    const state = d.stateDir;
    const notIn = (names: string[], set: Set<string>): string[] => names.filter((n) => !set.has(n));
    expect({
      podDirs: notIn(ls(path.join(state, 'pods')), pods),
      bundles: notIn(ls(path.join(state, 'containers')), ctrs),
      rootfs: notIn(ls(path.join(d.root, 'containers')), ctrs),
      exitFiles: notIn(ls(path.join(state, 'exits')), ctrs),
      runtimeState: notIn(ls(path.join(state, 'runtimes', 'runc')), ctrs),
      podCheckpoints: notIn(ls(path.join(d.root, 'checkpoints', 'pods')).map((n) => n.replace(/\.json$/, '')), pods),
      ctrCheckpoints: notIn(ls(path.join(d.root, 'checkpoints', 'containers')).map((n) => n.replace(/\.json$/, '')), ctrs),
    }).toEqual({ podDirs: [], bundles: [], rootfs: [], exitFiles: [], runtimeState: [], podCheckpoints: [], ctrCheckpoints: [] });
    // Mounts: only a known pod's pins and shm, and a known container's rootfs.
    const strayMounts = mountsUnder(dir).filter((m) => {
      const pod = /\/state\/pods\/([0-9a-f]{64})\/(ns\/(net|ipc|uts|pid)|shm)$/.exec(m);
      const rootfs = /\/root\/containers\/([0-9a-f]{64})\/merged$/.exec(m);
      return !((pod && pods.has(pod[1] ?? '')) || (rootfs && ctrs.has(rootfs[1] ?? '')));
    });
    expect(strayMounts).toEqual([]);
    // Processes (conmon, runc, unshare/nsenter pause holders) naming the test dir name only known ids.
    const strayProcs = processesNaming(dir, [d.process.pid ?? -1, process.pid]).filter((p) => {
      const ids = p.argv.join(' ').match(ID) ?? [];
      return ids.length === 0 || ids.some((id) => !known.has(id));
    });
    expect(strayProcs).toEqual([]);
    // Cgroups: pod-<id12> of a known pod, and below it only pause or a known container; every process sits in one.
    const strayCgroups = cgroupTree().filter(({ dir: cg }) => {
      const [podPart, child, ...rest] = cg.split('/');
      const podOk = [...pods].some((id) => podPart === `pod-${id.slice(0, 12)}`);
      return !podOk || (child !== undefined && child !== 'pause' && !ctrs.has(child)) || rest.length > 0;
    });
    expect(strayCgroups).toEqual([]);
  }

  it('keeps running containers across kill -9 and reports the one that exited while berth was down', async () => {
    const podA = (await c.runtime.RunPodSandbox({ config: podConfig('rec-a', { linux: { security_context: { namespace_options: { pid: 'POD' } } } }) })).pod_sandbox_id;
    const podB = (await c.runtime.RunPodSandbox({ config: podConfig('rec-b') })).pod_sandbox_id;
    const long: string[] = [];
    for (const [pod, name] of [[podA, 'a1'], [podA, 'a2'], [podA, 'a3'], [podB, 'b1'], [podB, 'b2']] as const) {
      const id = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr(name, ['sleep', '100000']) })).container_id;
      await c.runtime.StartContainer({ container_id: id });
      long.push(id);
    }
    const pids = new Map<string, number>();
    for (const id of long) pids.set(id, await pidOf(id));
    const shortId = (await c.runtime.CreateContainer({ pod_sandbox_id: podB, config: ctr('short', ['/bin/sh', '-c', 'sleep 2; exit 7']) })).container_id;
    await c.runtime.StartContainer({ container_id: shortId });
    const shortPid = await pidOf(shortId);

    const killedAtNs = BigInt(Date.now()) * 1_000_000n;
    c.close();
    expect(await d.stop('SIGKILL')).toBe('SIGKILL');
    expect(alive(shortPid)).toBe(true); // it ends while berth is down
    await waitFor(() => (alive(shortPid) ? undefined : true), 10_000);
    for (const pid of pids.values()) expect(alive(pid)).toBe(true);
    // One host-side rootfs mount goes away while berth is down (the container runs on its own copy of it).
    const merged = (id: string): string => path.join(d.root, 'containers', id, 'merged');
    execFileSync('umount', ['-l', merged(long[0] ?? '')]);

    const recovery = await startAgain('SIGKILL');
    expect(recovery).toMatchObject({ containers: { running: 5, exitedWhileDown: 1 }, pods: { ready: 2 }, errors: 0 });

    for (const id of long) {
      const st = (await c.runtime.ContainerStatus({ container_id: id })).status;
      expect(st?.state).toBe('CONTAINER_RUNNING');
      expect(await pidOf(id)).toBe(pids.get(id));
      expect(alive(pids.get(id) ?? 0)).toBe(true);
    }
    expect(long.filter((id) => !mountsUnder(merged(id)).includes(merged(id)))).toEqual([]);
    expect(d.logs()).toContain('mounted the rootfs of a live container again');
    const running = await c.runtime.ListContainers({ filter: { state: { state: 'CONTAINER_RUNNING' } } });
    expect(running.containers.map((x) => x.id).sort()).toEqual([...long].sort());
    const out = await c.runtime.ExecSync({ container_id: long[3] ?? '', cmd: ['/bin/sh', '-c', 'echo still-here; exit 3'], timeout: 10 });
    expect(Buffer.from(out.stdout).toString()).toBe('still-here\n');
    expect(out.exit_code).toBe(3);
    const short = (await c.runtime.ContainerStatus({ container_id: shortId })).status;
    expect(short).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 7, reason: 'Error' });
    expect(BigInt(short?.finished_at ?? 0)).toBeGreaterThan(killedAtNs);
    expect(BigInt(short?.finished_at ?? 0)).toBeLessThan(BigInt(Date.now()) * 1_000_000n);
    for (const pod of [podA, podB]) expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: pod })).status?.state).toBe('SANDBOX_READY');
    // The names are still taken.
    await expect(c.runtime.RunPodSandbox({ config: podConfig('rec-a') })).rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    await expect(c.runtime.CreateContainer({ pod_sandbox_id: podA, config: ctr('a1', ['true']) })).rejects.toMatchObject({ code: grpc.status.ALREADY_EXISTS });
    await assertNothingLeaked();

    for (const id of long) await c.runtime.StopContainer({ container_id: id, timeout: 0 });
    for (const id of long) expect((await c.runtime.ContainerStatus({ container_id: id })).status).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 137 });
    for (const pid of pids.values()) expect(alive(pid)).toBe(false);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: podA });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: podB });
    expect((await c.runtime.ListContainers({})).containers).toEqual([]);
    expect((await c.runtime.ListPodSandbox({})).items).toEqual([]);
    await assertNothingLeaked();
    expect(mountsUnder(dir)).toEqual([]);
    expect(cgroupTree()).toEqual([]);
  });

  it('keeps everything the same across a SIGTERM restart', async () => {
    const pod = (await c.runtime.RunPodSandbox({ config: podConfig('term', { linux: { security_context: { namespace_options: { pid: 'POD' } } } }) })).pod_sandbox_id;
    const runningId = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr('run', ['sleep', '100000']) })).container_id;
    await c.runtime.StartContainer({ container_id: runningId });
    const createdId = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr('created', ['/bin/sh', '-c', 'exit 5']) })).container_id;
    const exitedId = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr('done', ['/bin/sh', '-c', 'exit 0']) })).container_id;
    await c.runtime.StartContainer({ container_id: exitedId });
    await waitFor(async () => ((await c.runtime.ContainerStatus({ container_id: exitedId })).status?.state === 'CONTAINER_EXITED' ? true : undefined));
    const snapshot = async (): Promise<unknown> => ({
      pod: (await c.runtime.PodSandboxStatus({ pod_sandbox_id: pod, verbose: true })),
      containers: await Promise.all([runningId, createdId, exitedId].map((id) => c.runtime.ContainerStatus({ container_id: id, verbose: true }))),
    });
    const strip = (s: unknown): unknown => JSON.parse(JSON.stringify(s, (k, v: unknown) => (k === 'timestamp' ? undefined : v)));
    const before = strip(await snapshot());

    const recovery = await restart('SIGTERM');
    expect(recovery).toMatchObject({ containers: { running: 1, created: 1, exited: 1, exitedWhileDown: 0 }, pods: { ready: 1, becameNotReady: 0 }, errors: 0 });
    expect(recovery.removed).toEqual({ pods: 0, containers: 0, cgroups: 0, processes: 0 });
    expect(strip(await snapshot())).toEqual(before);
    const out = await c.runtime.ExecSync({ container_id: runningId, cmd: ['echo', 'ok'], timeout: 10 });
    expect(Buffer.from(out.stdout).toString()).toBe('ok\n');
    // The created one still starts, and its exit is recorded.
    await c.runtime.StartContainer({ container_id: createdId });
    await waitFor(async () => {
      const st = (await c.runtime.ContainerStatus({ container_id: createdId })).status;
      return st?.state === 'CONTAINER_EXITED' ? st : undefined;
    }).then((st) => expect(st.exit_code).toBe(5));
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: pod });
    await assertNothingLeaked();
    expect(mountsUnder(dir)).toEqual([]);
  });

  it('after a reboot (nothing mounted, nothing running) reports pods not ready and containers exited, and removes them', async () => {
    const pod = (await c.runtime.RunPodSandbox({ config: podConfig('boot', { linux: { security_context: { namespace_options: { pid: 'POD' } } } }) })).pod_sandbox_id;
    // A host-namespace pod has no pins and no pause: only the boot id tells that it did not survive.
    const hostPod = (await c.runtime.RunPodSandbox({ config: podConfig('boot-host', { linux: { security_context: { namespace_options: { network: 'NODE', ipc: 'NODE', pid: 'NODE' } } } }) })).pod_sandbox_id;
    const ids: string[] = [];
    for (const [p, name] of [[pod, 'r1'], [pod, 'r2'], [hostPod, 'h1']] as const) {
      const id = (await c.runtime.CreateContainer({ pod_sandbox_id: p, config: ctr(name, ['sleep', '100000']) })).container_id;
      await c.runtime.StartContainer({ container_id: id });
      ids.push(id);
    }
    const created = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr('never-started', ['true']) })).container_id;
    c.close();
    expect(await d.stop('SIGKILL')).toBe('SIGKILL');
    // The "reboot": conmon first (so no exit file is written), then every process of the pods, then every mount.
    for (const p of processesNaming(dir, [process.pid])) killQuietly(p.pid);
    await sleep(100);
    for (const cg of cgroupTree()) for (const pid of cg.pids) killQuietly(pid);
    await waitFor(() => (cgroupTree().every((cg) => cg.pids.length === 0) ? true : undefined));
    for (const m of mountsUnder(dir).sort((a, b) => b.length - a.length)) execFileSync('umount', ['-l', m]);
    fs.writeFileSync(path.join(d.stateDir, 'boot_id'), '00000000-0000-0000-0000-000000000000\n');
    // A reboot empties /run, where the exit files live; a conmon that outran its kill above may have written one.
    for (const f of fs.readdirSync(path.join(d.stateDir, 'exits'))) fs.rmSync(path.join(d.stateDir, 'exits', f), { force: true });

    const recovery = await startAgain('reboot');
    expect(recovery).toMatchObject({ pods: { becameNotReady: 2, ready: 0 }, containers: { exitedWhileDown: 4, running: 0 }, errors: 0 });
    expect(d.logs()).toContain('the host rebooted since berth last ran');
    for (const p of [pod, hostPod]) expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: p })).status?.state).toBe('SANDBOX_NOTREADY');
    for (const id of [...ids, created]) {
      expect((await c.runtime.ContainerStatus({ container_id: id })).status).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 255, reason: 'Unknown' });
    }
    expect((await c.runtime.ContainerStatus({ container_id: created })).status?.message).toMatch(/conmon|runtime/);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: pod });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: hostPod });
    await assertNothingLeaked();
    expect(mountsUnder(dir)).toEqual([]);
    expect(cgroupTree()).toEqual([]);
  });

  it('shows a container it cannot reconcile as UNKNOWN, looks again on the next start, and keeps the objects of an unreadable checkpoint', async () => {
    const pod = (await c.runtime.RunPodSandbox({ config: podConfig('odd') })).pod_sandbox_id;
    const lost = (await c.runtime.RunPodSandbox({ config: podConfig('lost', { linux: { security_context: { namespace_options: { pid: 'POD' } } } }) })).pod_sandbox_id;
    const lostPause = (JSON.parse((await c.runtime.PodSandboxStatus({ pod_sandbox_id: lost, verbose: true })).info['info'] ?? '{}') as { pid: number }).pid;
    const ids: string[] = [];
    for (const name of ['garbled', 'garbled-then-fixed']) {
      const id = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr(name, ['sleep', '100000']) })).container_id;
      await c.runtime.StartContainer({ container_id: id });
      ids.push(id);
    }
    const [id = '', fixedId = ''] = ids;
    const pid = await pidOf(id);
    const fixedPid = await pidOf(fixedId);
    c.close();
    expect(await d.stop('SIGKILL')).toBe('SIGKILL');
    // Exit files that are not exit codes, and a pod checkpoint cut short.
    for (const x of ids) fs.writeFileSync(path.join(d.stateDir, 'exits', x), 'garbage');
    const lostCheckpoint = path.join(d.root, 'checkpoints', 'pods', `${lost}.json`);
    const saved = fs.readFileSync(lostCheckpoint);
    fs.writeFileSync(lostCheckpoint, '{"truncated');

    expect(await startAgain('SIGKILL')).toMatchObject({ errors: 2, containers: { unknown: 2 }, removed: { pods: 0, containers: 0, cgroups: 0, processes: 0 } });
    expect(d.logs()).toContain('checkpoint unreadable');
    for (const x of ids) {
      const st = (await c.runtime.ContainerStatus({ container_id: x })).status;
      expect(st).toMatchObject({ state: 'CONTAINER_UNKNOWN', reason: 'Unknown', message: expect.stringContaining('recovery could not reconcile') });
    }
    expect((await c.runtime.ListContainers({})).containers.map((x) => x.id)).toEqual(expect.arrayContaining(ids));
    expect(alive(pid) && alive(fixedPid)).toBe(true);
    // The unreadable pod is not served, but nothing of it was taken for an orphan.
    await expect(c.runtime.PodSandboxStatus({ pod_sandbox_id: lost })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    expect(alive(lostPause)).toBe(true);
    expect(mountsUnder(path.join(d.stateDir, 'pods', lost)).length).toBeGreaterThan(0);
    // An unknown container can still be stopped and removed.
    await c.runtime.StopContainer({ container_id: id, timeout: 0 });
    expect((await c.runtime.ContainerStatus({ container_id: id })).status?.state).toBe('CONTAINER_EXITED');
    expect(alive(pid)).toBe(false);
    await c.runtime.RemoveContainer({ container_id: id });

    // Once the files are sound again, the next start reconciles both objects.
    fs.rmSync(path.join(d.stateDir, 'exits', fixedId));
    fs.writeFileSync(lostCheckpoint, saved);
    expect(await restart('SIGTERM')).toMatchObject({ errors: 0, containers: { running: 1, unknown: 0 }, pods: { ready: 2 } });
    expect((await c.runtime.ContainerStatus({ container_id: fixedId })).status).toMatchObject({ state: 'CONTAINER_RUNNING', reason: '', message: '' });
    expect(await pidOf(fixedId)).toBe(fixedPid);
    expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: lost })).status?.state).toBe('SANDBOX_READY');
    await assertNothingLeaked();
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: pod });
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: lost });
    await assertNothingLeaked();
    expect(mountsUnder(dir)).toEqual([]);
  });

  it('keeps a container whose StartContainer was cut by kill -9 consistent: created, or running with its process', async () => {
    const pod = (await c.runtime.RunPodSandbox({ config: podConfig('crash-start') })).pod_sandbox_id;
    const probe = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr('starter', ['sleep', '100000']) })).container_id;
    const t = Date.now();
    await c.runtime.StartContainer({ container_id: probe });
    const callMs = Date.now() - t;
    await c.runtime.RemoveContainer({ container_id: probe });
    const outcomes: string[] = [];
    const at = { id: '', checkpointed: '' };
    // runc removes exec.fifo (made by its create) when the container starts; the checkpoint says running a moment later.
    const started: Trigger = {
      label: 'runtime started',
      when: () => {
        const runtimeDir = path.join(d.stateDir, 'runtimes', 'runc', at.id);
        if (!fs.existsSync(path.join(runtimeDir, 'state.json')) || fs.existsSync(path.join(runtimeDir, 'exec.fifo'))) return false;
        at.checkpointed = (JSON.parse(readQuiet(path.join(d.root, 'checkpoints', 'containers', `${at.id}.json`)) || '{}') as { state?: string }).state ?? '';
        return true;
      },
    };
    const bundles = path.join(d.stateDir, 'containers');
    // StartContainer launches conmon, which runs `runtime create`, then starts: kill at each of those steps too.
    const launching: Trigger[] = [
      { label: 'conmon running', when: () => processesNaming(`${bundles}/${at.id}`, [d.process.pid ?? -1, process.pid]).some((p) => p.argv[0]?.endsWith('conmon')) },
      { label: 'runtime created', when: () => fs.existsSync(path.join(bundles, at.id, 'container.pid')) },
      { label: 'conmon.pid written', when: () => fs.existsSync(path.join(bundles, at.id, 'conmon.pid')) },
    ];
    for (const trigger of [...launching, started, started, ...delays(callMs, 5)]) {
      const id = (await c.runtime.CreateContainer({ pod_sandbox_id: pod, config: ctr('starter', ['sleep', '100000']) })).container_id;
      Object.assign(at, { id, checkpointed: '' });
      const { at: when } = await crashDuring(() => c.runtime.StartContainer({ container_id: id }), trigger);
      const fixed = d.logs().includes('container state updated from the runtime');
      let st = (await c.runtime.ContainerStatus({ container_id: id })).status;
      outcomes.push(`${when}: ${st?.state ?? '?'}${at.checkpointed ? ` (checkpoint said ${at.checkpointed} at the kill)` : ''}${fixed ? ', recovery set it from the runtime' : ''}`);
      if (st?.state === 'CONTAINER_CREATED') {
        await c.runtime.StartContainer({ container_id: id });
        st = (await c.runtime.ContainerStatus({ container_id: id })).status;
      }
      expect(st?.state).toBe('CONTAINER_RUNNING');
      expect(BigInt(st?.started_at ?? 0)).toBeGreaterThanOrEqual(BigInt(st?.created_at ?? 1));
      expect(BigInt(st?.started_at ?? 0)).toBeLessThan(BigInt(Date.now()) * 1_000_000n);
      expect(alive(await pidOf(id))).toBe(true);
      const out = await c.runtime.ExecSync({ container_id: id, cmd: ['echo', 'ok'], timeout: 10 });
      expect(Buffer.from(out.stdout).toString()).toBe('ok\n');
      await c.runtime.RemoveContainer({ container_id: id });
    }
    process.stdout.write(`\nStartContainer (${callMs} ms a call) killed at:\n  ${outcomes.join('\n  ')}\n`);
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: pod });
    await assertNothingLeaked();
  }, 120_000);

  interface Trigger {
    label: string;
    /** Kill this long after issuing the call … */
    delayMs?: number;
    /** … or as soon as this step is seen from outside (polled every millisecond or so). */
    when?: () => boolean;
  }

  /** Issues the call, kills berth with SIGKILL at the trigger, restarts it and checks that nothing leaked. */
  async function crashDuring(call: () => Promise<unknown>, trigger: Trigger): Promise<{ recovery: RecoveryLine; at: string }> {
    let result = 'pending';
    const t0 = Date.now();
    void call().then(
      () => (result = 'done'),
      (err: grpc.ServiceError) => (result = err.code === grpc.status.UNAVAILABLE || err.code === grpc.status.CANCELLED ? 'cut' : `error ${err.code}: ${err.details}`),
    );
    let seen = true;
    if (trigger.when) {
      const deadline = Date.now() + 10_000;
      while (!(seen = trigger.when()) && Date.now() < deadline && result === 'pending') await sleep(1);
    } else {
      await sleep(trigger.delayMs ?? 0);
    }
    const at = `${trigger.label}${seen ? '' : ' (not seen)'} @${Date.now() - t0}ms`;
    const recovery = await restart('SIGKILL');
    expect(result).not.toMatch(/^error/);
    expect(recovery.errors).toBe(0);
    await assertNothingLeaked();
    return { recovery, at };
  }

  function delays(callMs: number, tries: number): Trigger[] {
    return Array.from({ length: tries }, (_, i) => {
      const ms = Math.round((callMs * 1.3 * i) / (tries - 1) + Math.random() * 10);
      return { label: `${ms}ms`, delayMs: ms };
    });
  }

  it('leaves nothing behind after kill -9 at any point of RunPodSandbox', async () => {
    const config = podConfig('crash-pod', {
      linux: { sysctls: { 'net.ipv4.ip_unprivileged_port_start': '0' }, security_context: { namespace_options: { pid: 'POD' } } },
    });
    // How long a whole call takes here, so the kills spread over all of it.
    const t = Date.now();
    const probe = (await c.runtime.RunPodSandbox({ config })).pod_sandbox_id;
    const callMs = Date.now() - t;
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: probe });
    const podsDir = path.join(d.stateDir, 'pods');
    const noCheckpoint = (): boolean => ls(path.join(d.root, 'checkpoints', 'pods')).length === 0;
    const triggers: Trigger[] = [
      { label: 'pod dir made', when: () => ls(podsDir).length > 0 },
      { label: 'namespace helper running', when: () => processesNaming(`${podsDir}/`, [d.process.pid ?? -1, process.pid]).length > 0 && noCheckpoint() },
      { label: 'shm mounted', when: () => mountsUnder(podsDir).some((m) => m.endsWith('/shm')) && noCheckpoint() },
      { label: 'pause in its cgroup', when: () => cgroupTree().some((cg) => cg.dir.endsWith('/pause') && cg.pids.length > 0) && noCheckpoint() },
      ...delays(callMs, 8),
    ];
    const outcomes: string[] = [];
    let removed = 0;
    let killed = 0;
    for (const trigger of triggers) {
      const { recovery, at } = await crashDuring(() => c.runtime.RunPodSandbox({ config }), trigger);
      const pods = (await c.runtime.ListPodSandbox({})).items;
      outcomes.push(`${at}: ${pods.length > 0 ? 'kept' : recovery.removed.pods > 0 ? 'removed' : 'nothing'} (${summarize(recovery)})`);
      if (recovery.removed.pods > 0) removed++;
      if (recovery.removed.pods > 0 && recovery.removed.processes > 0) killed++;
      // A pod that made it to its checkpoint is whole and ready; otherwise the name is free again.
      for (const p of pods) {
        expect(p).toMatchObject({ state: 'SANDBOX_READY', metadata: { name: 'crash-pod' } });
        await c.runtime.RemovePodSandbox({ pod_sandbox_id: p.id });
      }
    }
    process.stdout.write(`\nRunPodSandbox (${callMs} ms a call) killed at:\n  ${outcomes.join('\n  ')}\n`);
    expect(removed).toBeGreaterThan(0);
    expect(killed).toBeGreaterThan(0);
    const id = (await c.runtime.RunPodSandbox({ config })).pod_sandbox_id;
    expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: id })).status?.state).toBe('SANDBOX_READY');
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: id });
    await assertNothingLeaked();
    expect(mountsUnder(dir)).toEqual([]);
    expect(cgroupTree()).toEqual([]);
  }, 240_000);

  it('leaves nothing behind after kill -9 at any point of CreateContainer', async () => {
    const podId = (await c.runtime.RunPodSandbox({ config: podConfig('crash-ctr-pod') })).pod_sandbox_id;
    const config = ctr('victim', ['sleep', '100000']);
    const t = Date.now();
    const probe = (await c.runtime.CreateContainer({ pod_sandbox_id: podId, config })).container_id;
    const callMs = Date.now() - t;
    await c.runtime.RemoveContainer({ container_id: probe });
    const bundles = path.join(d.stateDir, 'containers');
    const noCheckpoint = (): boolean => ls(path.join(d.root, 'checkpoints', 'containers')).length === 0;
    const inBundle = (file: string) => (): boolean => ls(bundles).some((id) => fs.existsSync(path.join(bundles, id, file))) && noCheckpoint();
    const triggers: Trigger[] = [
      { label: 'bundle made', when: () => ls(bundles).length > 0 },
      { label: 'rootfs mounted', when: () => mountsUnder(path.join(d.root, 'containers')).length > 0 && noCheckpoint() },
      { label: 'config.json written', when: inBundle('config.json') },
      ...delays(callMs, 8),
    ];
    const outcomes: string[] = [];
    let removed = 0;
    let killed = 0;
    for (const trigger of triggers) {
      const { recovery, at } = await crashDuring(() => c.runtime.CreateContainer({ pod_sandbox_id: podId, config }), trigger);
      expect((await c.runtime.PodSandboxStatus({ pod_sandbox_id: podId })).status?.state).toBe('SANDBOX_READY');
      const found = (await c.runtime.ListContainers({ filter: { pod_sandbox_id: podId } })).containers;
      outcomes.push(`${at}: ${found.length > 0 ? 'kept' : recovery.removed.containers > 0 ? 'removed' : 'nothing'} (${summarize(recovery)})`);
      if (recovery.removed.containers > 0) removed++;
      if (recovery.removed.containers > 0 && recovery.removed.processes > 0) killed++;
      for (const x of found) {
        // One that reached its checkpoint is a whole created container: it starts and runs.
        expect(x).toMatchObject({ state: 'CONTAINER_CREATED', metadata: { name: 'victim' } });
        await c.runtime.StartContainer({ container_id: x.id });
        const out = await c.runtime.ExecSync({ container_id: x.id, cmd: ['echo', 'ok'], timeout: 10 });
        expect(Buffer.from(out.stdout).toString()).toBe('ok\n');
        await c.runtime.RemoveContainer({ container_id: x.id });
      }
    }
    process.stdout.write(`\nCreateContainer (${callMs} ms a call) killed at:\n  ${outcomes.join('\n  ')}\n`);
    expect(removed).toBeGreaterThan(0);
    // CreateContainer runs no process (conmon and the runtime come with StartContainer): nothing to kill.
    expect(killed).toBe(0);
    const id = (await c.runtime.CreateContainer({ pod_sandbox_id: podId, config })).container_id;
    await c.runtime.StartContainer({ container_id: id });
    expect((await c.runtime.ContainerStatus({ container_id: id })).status?.state).toBe('CONTAINER_RUNNING');
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: podId });
    await assertNothingLeaked();
    expect(mountsUnder(dir)).toEqual([]);
    expect(cgroupTree()).toEqual([]);
  }, 240_000);
});
