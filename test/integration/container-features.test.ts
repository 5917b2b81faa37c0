// What CreateContainer promises, observed from inside real containers: the real daemon, conmon, runc (and crun),
// a busybox image from a local registry. Every assertion reads what a process in the container sees (its log, an
// ExecSync, /proc) or what the host sees (cgroup files, bind-mounted dirs), never berth's own records alone.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { removeCgroup } from '../../src/runtime/cgroups';
import { DEFAULT_CAPABILITIES } from '../../src/runtime/container-manager';
import { ALL_CAPABILITIES } from '../../src/runtime/spec-security';
import type { ContainerConfig } from '../../src/server/generated/runtime/v1/ContainerConfig';
import type { ContainerStatus__Output } from '../../src/server/generated/runtime/v1/ContainerStatus';
import type { ExecSyncResponse__Output } from '../../src/server/generated/runtime/v1/ExecSyncResponse';
import type { LinuxContainerSecurityContext } from '../../src/server/generated/runtime/v1/LinuxContainerSecurityContext';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import { loadCri } from '../../src/server/proto';
import { buildImage, busyboxLayer, type LayerEntry } from '../fixtures/oci-image';
import { Registry, startRegistry } from '../fixtures/registry';
import { CriClient } from '../helpers/cri-client';
import { startDaemon, TestDaemon } from '../helpers/daemon';

const suffix = randomBytes(4).toString('hex');
const cgroupParent = `/berth-feat-${suffix}`;
const PIDS_LIMIT = 777;
const MiB = 1024 * 1024;

// Applets the cases below run, as hard links to the one busybox (the fixture's list lacks these).
const EXTRA_APPLETS = ['chown', 'head', 'tr', 'dd', 'unshare', 'grep', 'wc', 'stat', 'ip', 'readlink', 'mount', 'umount', 'tail'];

async function waitFor<T>(fn: () => Promise<T | undefined>, ms = 15_000, what = 'condition'): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`${what} not met within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function sh(cmd: string, args: string[]): string {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** The capability bit mask of a set, as /proc/<pid>/status prints it (16 hex digits). */
function capMask(caps: readonly string[]): string {
  let mask = 0n;
  for (const cap of caps) {
    const bit = ALL_CAPABILITIES.indexOf(cap);
    if (bit < 0) throw new Error(`unknown capability ${cap}`);
    mask |= 1n << BigInt(bit);
  }
  return mask.toString(16).padStart(16, '0');
}

function statusField(status: string, field: string): string {
  const m = new RegExp(`^${field}:\\s*(\\S+)$`, 'm').exec(status);
  if (!m?.[1]) throw new Error(`no ${field} in:\n${status}`);
  return m[1];
}

/** The text of a CRI (k8s-file) log: partial lines joined, both streams in order. */
function criLogText(file: string): string {
  let out = '';
  for (const line of fs.readFileSync(file, 'utf8').split('\n')) {
    const m = /^\S+ (stdout|stderr) ([FP]) ?(.*)$/.exec(line);
    if (!m) continue;
    out += m[3] ?? '';
    if (m[2] === 'F') out += '\n';
  }
  return out;
}

function isMounted(dir: string): boolean {
  return fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').some((l) => l.split(' ')[4] === dir);
}

/** A host dir that is its own mount point with the given propagation (umounted recursively in afterAll). */
function propagationDir(name: string, mode: 'shared' | 'private'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `berth-feat-${name}-`));
  sh('mount', ['--bind', dir, dir]);
  sh('mount', [`--make-${mode}`, dir]);
  return dir;
}

/**
 * Removes a cgroup tree from the cgroup2 hierarchies of this hybrid host (/sys/fs/cgroup/unified): runc and crun
 * create every container's cgroup there too, and removeCgroup (src/runtime/cgroups.ts) only walks the v1 ones.
 */
function removeUnifiedCgroup(cgroupPath: string): void {
  const roots = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter((l) => l.includes(' - cgroup2 '))
    .map((l) => l.split(' ')[4] ?? '')
    .filter((mp) => mp.startsWith('/sys/fs/cgroup/'));
  const rmTree = (dir: string): void => {
    if (!fs.existsSync(dir)) return;
    for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) rmTree(path.join(dir, e.name));
    fs.rmdirSync(dir);
  };
  for (const root of roots) rmTree(path.join(root, cgroupPath));
}

/** crun 1.8.1 refuses "cgroups in hybrid mode" unless a v1 hugetlb hierarchy is mounted (design.md). */
function ensureHugetlbHierarchy(): void {
  const mounted = fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .some((l) => / - cgroup cgroup \S*\bhugetlb\b/.test(l));
  if (mounted) return;
  fs.mkdirSync('/sys/fs/cgroup/hugetlb', { recursive: true });
  sh('mount', ['-t', 'cgroup', '-o', 'hugetlb', 'cgroup', '/sys/fs/cgroup/hugetlb']);
}

describe('container features through the real daemon', () => {
  let reg: Registry;
  let d: TestDaemon;
  let c: CriClient;
  let image: string;
  let userImage: string;
  let logDir: string;
  let work: string;
  let big: grpc.Client & { ExecSync: (req: object, cb: (err: grpc.ServiceError | null, res: ExecSyncResponse__Output) => void) => void };
  const pods = new Set<string>();
  const propagationDirs: string[] = [];
  let podSeq = 0;

  beforeAll(async () => {
    ensureHugetlbHierarchy();
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-feat-work-'));
    // A handler whose crun sees the host as before the v1 hugetlb hierarchy was mounted: in its own mount namespace,
    // cgroup.controllers of the v2 hierarchy says "hugetlb". Real crun, its real refusal, the host's mounts untouched
    // (once hugetlb is bound to v1 it stays there, so the refusal cannot be provoked for real without unmounting it
    // for every other test on this machine).
    const fakeControllers = path.join(work, 'cgroup.controllers');
    fs.writeFileSync(fakeControllers, 'hugetlb\n');
    const noHugetlb = path.join(work, 'crun-nohugetlb');
    fs.writeFileSync(
      noHugetlb,
      '#!/bin/sh\nexec /usr/bin/unshare --mount --propagation private /bin/sh -c ' +
        `'mount --bind ${fakeControllers} /sys/fs/cgroup/unified/cgroup.controllers && exec /usr/bin/crun "$@"' crun "$@"\n`,
      { mode: 0o755 },
    );
    reg = await startRegistry();
    const extra: LayerEntry[] = EXTRA_APPLETS.map((a) => ({ path: `bin/${a}`, type: 'hardlink', linkname: 'bin/busybox' }));
    const layer = await busyboxLayer({ extra });
    await reg.push('feat/busybox', 'v1', buildImage({ layers: [layer], config: { Cmd: ['/bin/sh'] } }));
    await reg.push('feat/busybox-app', 'v1', buildImage({ layers: [layer], config: { Cmd: ['/bin/sh'], User: 'app' } }));
    image = `${reg.host}/feat/busybox:v1`;
    userImage = `${reg.host}/feat/busybox-app:v1`;
    d = await startDaemon({
      toml: [
        '[runtime]',
        `cgroup_parent = "${cgroupParent}"`,
        `pids_limit = ${PIDS_LIMIT}`,
        '[runtime.handlers.crun-nohugetlb]',
        `path = "${noHugetlb}"`,
        '',
      ].join('\n'),
    });
    c = d.client();
    await c.image.PullImage({ image: { image } });
    await c.image.PullImage({ image: { image: userImage } });
    logDir = path.join(d.dir, 'logs');
    const cri = loadCri().runtime.v1;
    big = new cri.RuntimeService(`unix:${d.socket}`, grpc.credentials.createInsecure(), {
      'grpc.max_receive_message_length': 16 * MiB, // the kubelet's limit (maxMsgSize in its CRI client)
    }) as unknown as typeof big;
  }, 60_000);

  afterAll(async () => {
    big?.close();
    for (const id of pods) await c?.runtime.RemovePodSandbox({ pod_sandbox_id: id }).catch(() => undefined);
    await d?.stop();
    d?.cleanup();
    await reg?.stop();
    for (const dir of propagationDirs) {
      try {
        sh('umount', ['-R', dir]);
      } catch {
        // not mounted any more
      }
      fs.rmSync(dir, { recursive: true, force: true });
    }
    if (work) fs.rmSync(work, { recursive: true, force: true });
    await removeCgroup(cgroupParent);
    removeUnifiedCgroup(cgroupParent);
  }, 60_000);

  // ---- helpers over the CRI ----

  interface Pod {
    id: string;
    config: PodSandboxConfig;
  }

  async function runPod(extra: Partial<PodSandboxConfig> = {}, handler = ''): Promise<Pod> {
    const n = ++podSeq;
    const config: PodSandboxConfig = {
      metadata: { name: `feat-${n}`, namespace: 'default', uid: `feat-${suffix}-${n}`, attempt: 0 },
      hostname: `feat-${n}`,
      log_directory: path.join(logDir, `pod-${n}`),
      labels: {},
      annotations: {},
      ...extra,
    };
    const { pod_sandbox_id: id } = await c.runtime.RunPodSandbox({ config, runtime_handler: handler });
    pods.add(id);
    return { id, config };
  }

  async function removePod(pod: Pod): Promise<void> {
    await c.runtime.RemovePodSandbox({ pod_sandbox_id: pod.id });
    pods.delete(pod.id);
  }

  /** Runs fn with a fresh pod that is removed afterwards, also when fn fails (afterAll retries a failed removal). */
  async function withPod<T>(fn: (pod: Pod) => Promise<T>, extra: Partial<PodSandboxConfig> = {}, handler = ''): Promise<T> {
    const pod = await runPod(extra, handler);
    try {
      return await fn(pod);
    } finally {
      await removePod(pod).catch(() => undefined);
    }
  }

  function ctrConfig(name: string, extra: Partial<ContainerConfig> = {}, sc?: LinuxContainerSecurityContext): ContainerConfig {
    return {
      metadata: { name, attempt: 0 },
      image: { image },
      log_path: `${name}.log`,
      labels: {},
      ...(sc ? { linux: { security_context: sc } } : {}),
      ...extra,
    };
  }

  async function create(pod: Pod, config: ContainerConfig): Promise<string> {
    const { container_id: id } = await c.runtime.CreateContainer({ pod_sandbox_id: pod.id, config, sandbox_config: pod.config });
    return id;
  }

  async function start(pod: Pod, config: ContainerConfig): Promise<string> {
    const id = await create(pod, config);
    await c.runtime.StartContainer({ container_id: id });
    return id;
  }

  async function waitExited(id: string, ms = 15_000): Promise<ContainerStatus__Output> {
    return waitFor(
      async () => {
        const s = (await c.runtime.ContainerStatus({ container_id: id })).status;
        return s?.state === 'CONTAINER_EXITED' ? s : undefined;
      },
      ms,
      `container ${id.slice(0, 12)} exited`,
    );
  }

  /** Runs a container to completion: its exit status and everything it wrote (both streams, from the CRI log). */
  async function runOnce(pod: Pod, config: ContainerConfig): Promise<{ status: ContainerStatus__Output; out: string }> {
    const id = await start(pod, config);
    const status = await waitExited(id);
    const out = criLogText(status.log_path);
    await c.runtime.RemoveContainer({ container_id: id });
    return { status, out };
  }

  /** A shell script run as the container's command, its output and exit code. */
  async function script(pod: Pod, name: string, text: string, sc?: LinuxContainerSecurityContext, extra: Partial<ContainerConfig> = {}): Promise<{ code: number; out: string }> {
    const { status, out } = await runOnce(pod, ctrConfig(name, { command: ['/bin/sh', '-c', text], ...extra }, sc));
    return { code: status.exit_code, out };
  }

  async function exec(id: string, cmd: string[], timeout = 10): Promise<{ code: number; stdout: string; stderr: string }> {
    const r = await c.runtime.ExecSync({ container_id: id, cmd, timeout });
    return { code: r.exit_code, stdout: Buffer.from(r.stdout).toString('utf8'), stderr: Buffer.from(r.stderr).toString('utf8') };
  }

  const sleeper = (name: string, extra: Partial<ContainerConfig> = {}, sc?: LinuxContainerSecurityContext): ContainerConfig =>
    ctrConfig(name, { command: ['/bin/sleep', '1000'], ...extra }, sc);

  async function verboseInfo(id: string): Promise<{ pid: number; bundle: string }> {
    const res = await c.runtime.ContainerStatus({ container_id: id, verbose: true });
    return JSON.parse(res.info['info'] ?? '{}') as { pid: number; bundle: string };
  }

  /** The container's cgroup directory in a v1 hierarchy, from /proc/<pid>/cgroup of its init. */
  async function cgroupDir(id: string, controller: string): Promise<string> {
    const { pid } = await verboseInfo(id);
    const line = fs
      .readFileSync(`/proc/${pid}/cgroup`, 'utf8')
      .split('\n')
      .find((l) => l.split(':')[1]?.split(',').includes(controller));
    if (!line) throw new Error(`pid ${pid} has no ${controller} cgroup`);
    const rel = line.slice(line.indexOf(':', line.indexOf(':') + 1) + 1);
    expect(rel.startsWith(`${cgroupParent}/`)).toBe(true);
    expect(rel.endsWith(`/${id}`)).toBe(true);
    return path.join('/sys/fs/cgroup', controller, rel);
  }

  const readCg = (dir: string, file: string): string => fs.readFileSync(path.join(dir, file), 'utf8').trim();

  // ---- user ----

  describe('user', () => {
    it('run_as_user, run_as_username, run_as_group, the image USER and supplemental groups reach the process', async () => {
      await withPod(async (pod) => {
        const ids = 'echo "$(id -u) $(id -g) [$(id -G)]"';
        expect((await script(pod, 'uid', ids, { run_as_user: { value: 1000 } })).out).toBe('1000 1000 [1000]\n');
        expect((await script(pod, 'uname', ids, { run_as_username: 'app' })).out).toBe('1000 1000 [1000]\n');
        expect((await script(pod, 'gid', ids, { run_as_user: { value: 1000 }, run_as_group: { value: 2000 } })).out).toBe('1000 2000 [2000]\n');
        // An uid without a passwd entry: gid 0, as containerd and CRI-O do.
        expect((await script(pod, 'nopasswd', ids, { run_as_user: { value: 4242 } })).out).toBe('4242 0 [0]\n');
        const supp = await script(pod, 'supp', ids, { run_as_user: { value: 1000 }, supplemental_groups: [3000, 4000] });
        expect(supp.out).toBe('1000 1000 [1000 3000 4000]\n');
        // Nothing set: the image's USER "app".
        const { status, out } = await runOnce(pod, ctrConfig('imageuser', { image: { image: userImage }, command: ['/bin/sh', '-c', `${ids}; echo "$HOME"`] }));
        expect(out).toBe('1000 1000 [1000]\n/home/app\n');
        expect(status.user?.linux).toMatchObject({ uid: '1000', gid: '1000', supplemental_groups: ['1000'] });
        // run_as_user wins over the image's USER.
        const root = await runOnce(pod, ctrConfig('rootover', { image: { image: userImage }, command: ['/bin/sh', '-c', ids] }, { run_as_user: { value: 0 } }));
        expect(root.out).toBe('0 0 [0]\n');
      });
    });

    it('refuses a run_as_username that is not in the image /etc/passwd, naming it', async () => {
      await withPod(async (pod) => {
        const err = await create(pod, sleeper('ghost', {}, { run_as_username: 'ghost-user' })).catch((e: unknown) => e);
        expect(err).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('"ghost-user"') });
        expect((err as { details: string }).details).toMatch(/not found in the image's \/etc\/passwd/);
      });
    });
  });

  // ---- capabilities ----

  describe('capabilities', () => {
    const caps = 'grep -E "^Cap(Eff|Bnd|Prm|Inh|Amb):" /proc/self/status';

    it('default set, add NET_ADMIN, drop CHOWN, drop ALL', async () => {
      await withPod(async (pod) => {
        const def = await script(pod, 'defcaps', `${caps}; touch /tmp/f && chown 1000 /tmp/f && echo chown-ok; ip link set lo mtu 1300 && echo netadmin-ok; true`);
        expect(statusField(def.out, 'CapEff')).toBe(capMask(DEFAULT_CAPABILITIES));
        expect(statusField(def.out, 'CapBnd')).toBe(capMask(DEFAULT_CAPABILITIES));
        expect(statusField(def.out, 'CapInh')).toBe('0000000000000000');
        expect(def.out).toContain('chown-ok');
        expect(def.out).not.toContain('netadmin-ok');
        expect(def.out).toMatch(/ip: .*(Operation not permitted|RTNETLINK answers: Operation not permitted)/);

        const add = await script(pod, 'addcaps', `${caps}; ip link set lo mtu 1300 && echo netadmin-ok`, { capabilities: { add_capabilities: ['CAP_NET_ADMIN'] } });
        expect(statusField(add.out, 'CapEff')).toBe(capMask([...DEFAULT_CAPABILITIES, 'CAP_NET_ADMIN']));
        expect(add.out).toContain('netadmin-ok');

        const drop = await script(pod, 'dropchown', `${caps}; touch /tmp/f && chown 1000 /tmp/f && echo chown-ok`, { capabilities: { drop_capabilities: ['CHOWN'] } });
        expect(statusField(drop.out, 'CapEff')).toBe(capMask(DEFAULT_CAPABILITIES.filter((x) => x !== 'CAP_CHOWN')));
        expect(drop.code).not.toBe(0);
        expect(drop.out).not.toContain('chown-ok');
        expect(drop.out).toMatch(/chown: .*Operation not permitted/);

        const none = await script(pod, 'dropall', caps, { capabilities: { drop_capabilities: ['ALL'] } });
        for (const f of ['CapEff', 'CapBnd', 'CapPrm']) expect(statusField(none.out, f)).toBe('0000000000000000');

        // drop ALL then add one: just that one (containerd's order).
        const one = await script(pod, 'dropalladd', caps, { capabilities: { drop_capabilities: ['ALL'], add_capabilities: ['NET_BIND_SERVICE'] } });
        expect(statusField(one.out, 'CapEff')).toBe(capMask(['CAP_NET_BIND_SERVICE']));
      });
    });

    it("privileged gets the host's bounding set (berth's own), effective too", async () => {
      const host = fs.readFileSync(`/proc/${d.process.pid}/status`, 'utf8');
      await withPod(
        async (pod) => {
          const priv = await script(pod, 'priv', caps, { privileged: true });
          expect(statusField(priv.out, 'CapBnd')).toBe(statusField(host, 'CapBnd'));
          expect(statusField(priv.out, 'CapEff')).toBe(statusField(host, 'CapBnd'));
        },
        { linux: { security_context: { privileged: true } } },
      );
    });

    it('refuses a privileged container in a pod that is not privileged', async () => {
      await withPod(async (pod) => {
        await expect(create(pod, sleeper('priv', {}, { privileged: true }))).rejects.toMatchObject({
          code: grpc.status.INVALID_ARGUMENT,
          details: expect.stringContaining('not privileged'),
        });
      });
    });
  });

  // ---- read-only rootfs ----

  it('readonly_rootfs: / and the image dirs refuse writes; /tmp, /var/tmp, /run are tmpfs (as CRI-O); rw mounts and /dev/shm work', async () => {
    const rw = fs.mkdtempSync(path.join(work, 'rorootfs-'));
    await withPod(async (pod) => {
      const { code, out } = await script(
        pod,
        'ro',
        [
          'touch /x 2>&1 || echo root-refused',
          'touch /home/app/x 2>&1 || echo home-refused',
          'touch /tmp/x && echo tmp-ok',
          'touch /var/tmp/x && echo vartmp-ok',
          'touch /run/x && echo run-ok',
          'touch /dev/shm/x && echo shm-ok',
          'echo data > /data/from-ctr && echo data-ok',
          'echo x >> /etc/hosts 2>&1 || echo hosts-refused',
          'grep -E " /(tmp|var/tmp|run) " /proc/self/mounts',
        ].join('; '),
        { readonly_rootfs: true },
        { mounts: [{ container_path: '/data', host_path: rw }] },
      );
      expect(code).toBe(0);
      expect(out).toMatch(/touch: \/x: Read-only file system/);
      for (const word of ['root-refused', 'home-refused', 'tmp-ok', 'vartmp-ok', 'run-ok', 'shm-ok', 'data-ok', 'hosts-refused']) {
        expect(out).toContain(word);
      }
      expect(out).toMatch(/^tmpfs \/tmp tmpfs rw,nosuid,nodev,noexec/m);
      expect(out).toMatch(/^tmpfs \/var\/tmp tmpfs rw,nosuid,nodev,noexec/m);
      expect(out).toMatch(/^tmpfs \/run tmpfs rw,nosuid,nodev,noexec/m);
      expect(fs.readFileSync(path.join(rw, 'from-ctr'), 'utf8')).toBe('data\n');

      // A CRI mount at /tmp replaces the tmpfs.
      const own = await script(pod, 'rotmp', 'echo mine > /tmp/f && grep " /tmp " /proc/self/mounts', { readonly_rootfs: true }, { mounts: [{ container_path: '/tmp', host_path: rw }] });
      expect(own.code).toBe(0);
      expect(own.out).not.toMatch(/^tmpfs \/tmp/m);
      expect(fs.readFileSync(path.join(rw, 'f'), 'utf8')).toBe('mine\n');
    });
  });

  // ---- seccomp ----

  it('seccomp RuntimeDefault blocks unshare(2); Unconfined allows it', async () => {
    await withPod(async (pod) => {
      const cmd = 'unshare -U /bin/true && echo unshare-ok';
      const def = await script(pod, 'seccompdef', cmd, { seccomp: { profile_type: 'RuntimeDefault' } });
      expect(def.code).not.toBe(0);
      expect(def.out).toMatch(/unshare: .*Operation not permitted/);
      expect(def.out).not.toContain('unshare-ok');
      const unconfined = await script(pod, 'seccompoff', cmd, { seccomp: { profile_type: 'Unconfined' } });
      expect(unconfined).toEqual({ code: 0, out: 'unshare-ok\n' });
      // The process really runs under a filter, and without one when unconfined.
      expect((await script(pod, 'seccompmode', 'grep ^Seccomp: /proc/self/status', { seccomp: { profile_type: 'RuntimeDefault' } })).out).toMatch(/^Seccomp:\s+2$/m);
      expect((await script(pod, 'seccompnone', 'grep ^Seccomp: /proc/self/status')).out).toMatch(/^Seccomp:\s+0$/m);
    });
  });

  // ---- masked and read-only paths ----

  it('masks /proc paths and makes /proc/sys read-only by default; given lists replace the defaults', async () => {
    // This kernel has no /proc/kcore (nor /proc/sysrq-trigger): the masking is shown on /proc/timer_list and
    // /proc/keys (files: /dev/null over them) and /proc/acpi (a directory: an empty read-only tmpfs over it).
    const hasKcore = fs.existsSync('/proc/kcore');
    await withPod(async (pod) => {
      const probe = [
        'for f in /proc/kcore /proc/timer_list /proc/keys /proc/cpuinfo; do stat -c "type $f %F %t:%T" $f 2>&1; echo "bytes $f $(head -c 64 $f 2>/dev/null | wc -c)"; done',
        'grep " /proc/acpi " /proc/self/mounts',
        '(echo berth-feat > /proc/sys/kernel/domainname) 2>&1 && echo "domainname $(cat /proc/sys/kernel/domainname)"',
        '(echo feat-host > /proc/sys/kernel/hostname) 2>&1 && echo "hostname $(cat /proc/sys/kernel/hostname)"',
        'grep -E " /proc/(sys|bus|fs|irq) " /proc/self/mounts',
        'true',
      ].join('; ');
      const def = await script(pod, 'maskdef', probe);
      for (const f of ['/proc/timer_list', '/proc/keys']) {
        expect(def.out).toContain(`type ${f} character special file 1:3\n`);
        expect(def.out).toContain(`bytes ${f} 0\n`);
      }
      if (hasKcore) expect(def.out).toContain('type /proc/kcore character special file 1:3\n');
      else expect(def.out).toMatch(/stat: can't stat '\/proc\/kcore': No such file or directory/);
      expect(def.out).toMatch(/^bytes \/proc\/cpuinfo [1-9]\d*$/m);
      expect(def.out).toMatch(/^tmpfs \/proc\/acpi tmpfs ro[, ]/m);
      expect(def.out).toMatch(/domainname: Read-only file system/);
      expect(def.out).toMatch(/hostname: Read-only file system/);
      expect(def.out).not.toMatch(/^(domainname|hostname) /m);
      for (const p of ['sys', 'bus', 'fs', 'irq']) expect(def.out).toMatch(new RegExp(`^proc /proc/${p} proc ro[, ]`, 'm'));

      const given = await script(pod, 'maskgiven', probe, { masked_paths: ['/proc/cpuinfo'], readonly_paths: ['/proc/sys/kernel/hostname'] });
      expect(given.out).toContain('type /proc/cpuinfo character special file 1:3\n');
      expect(given.out).toContain('bytes /proc/cpuinfo 0\n');
      expect(given.out).toMatch(/^type \/proc\/timer_list regular/m);
      expect(given.out).toMatch(/^bytes \/proc\/timer_list [1-9]\d*$/m);
      expect(given.out).not.toMatch(/ \/proc\/acpi /);
      expect(given.out).toMatch(/^domainname berth-feat$/m);
      expect(given.out).toMatch(/hostname: Read-only file system/);
      expect(given.out).not.toMatch(/^proc \/proc\/sys proc /m);
    });
  });

  // ---- bind mounts and propagation ----

  describe('bind mounts', () => {
    it('rw mounts write through to the host; ro mounts refuse writes', async () => {
      const rw = fs.mkdtempSync(path.join(work, 'rw-'));
      const ro = fs.mkdtempSync(path.join(work, 'ro-'));
      fs.writeFileSync(path.join(ro, 'host-file'), 'from-host\n');
      await withPod(async (pod) => {
        const { code, out } = await script(
          pod,
          'binds',
          'echo written > /rw/out && echo rw-ok; cat /ro/host-file; touch /ro/x 2>&1 || echo ro-refused; grep -E " /(rw|ro) " /proc/self/mounts',
          undefined,
          { mounts: [{ container_path: '/rw', host_path: rw }, { container_path: '/ro', host_path: ro, readonly: true }] },
        );
        expect(code).toBe(0);
        expect(out).toContain('rw-ok');
        expect(out).toContain('from-host');
        expect(out).toMatch(/touch: \/ro\/x: Read-only file system/);
        expect(out).toContain('ro-refused');
        expect(out).toMatch(/ \/ro \S+ ro[, ]/);
        expect(out).toMatch(/ \/rw \S+ rw[, ]/);
      });
      expect(fs.readFileSync(path.join(rw, 'out'), 'utf8')).toBe('written\n');
      expect(fs.existsSync(path.join(ro, 'x'))).toBe(false);
    });

    it('HOST_TO_CONTAINER sees a mount made on the host after the start; PRIVATE does not', async () => {
      const shared = propagationDir('shared', 'shared');
      propagationDirs.push(shared);
      await withPod(async (pod) => {
        const slave = await start(pod, sleeper('slave', { mounts: [{ container_path: '/prop', host_path: shared, propagation: 'PROPAGATION_HOST_TO_CONTAINER' }] }));
        const priv = await start(pod, sleeper('private', { mounts: [{ container_path: '/prop', host_path: shared, propagation: 'PROPAGATION_PRIVATE' }] }));
        const sub = path.join(shared, 'late');
        fs.mkdirSync(sub);
        sh('mount', ['-t', 'tmpfs', '-o', 'size=1m', 'late-tmpfs', sub]);
        fs.writeFileSync(path.join(sub, 'file'), 'late-mount\n');
        expect(await exec(slave, ['cat', '/prop/late/file'])).toMatchObject({ code: 0, stdout: 'late-mount\n' });
        const p = await exec(priv, ['cat', '/prop/late/file']);
        expect(p.code).not.toBe(0);
        expect(p.stderr).toMatch(/No such file or directory/);
        expect((await exec(slave, ['grep', ' /prop ', '/proc/self/mountinfo'])).stdout).toMatch(/ master:\d+/);
      });
    });

    it('BIDIRECTIONAL on a shared source: a mount made in the container appears on the host', async () => {
      const shared = propagationDir('bidi', 'shared');
      propagationDirs.push(shared);
      fs.mkdirSync(path.join(shared, 'inner'));
      let id = '';
      const hostMountsOf = (): string[] => fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => id !== '' && l.includes(id));
      await withPod(
        async (pod) => {
          id = await start(pod, sleeper('bidi', { mounts: [{ container_path: '/bidi', host_path: shared, propagation: 'PROPAGATION_BIDIRECTIONAL' }] }, { privileged: true }));
          const r = await exec(id, ['/bin/sh', '-c', 'mount -t tmpfs -o size=1m from-ctr /bidi/inner && echo hi > /bidi/inner/f']);
          expect(r).toMatchObject({ code: 0 });
          expect(isMounted(path.join(shared, 'inner'))).toBe(true);
          expect(fs.readFileSync(path.join(shared, 'inner', 'f'), 'utf8')).toBe('hi\n');
          sh('umount', [path.join(shared, 'inner')]);
          // The container's own mounts (/proc, /dev, … under its rootfs) do not propagate back to the host.
          expect(hostMountsOf().filter((l) => / overlay /.test(l))).toHaveLength(1); // its rootfs
          expect(hostMountsOf().filter((l) => !/\/merged /.test(l))).toEqual([]);
        },
        { linux: { security_context: { privileged: true } } },
      );
      expect(hostMountsOf()).toEqual([]);
    });

    it('refuses BIDIRECTIONAL and HOST_TO_CONTAINER on a private source with a clear error', async () => {
      const priv = propagationDir('private', 'private');
      propagationDirs.push(priv);
      await withPod(async (pod) => {
        await expect(create(pod, sleeper('bidi', { mounts: [{ container_path: '/m', host_path: priv, propagation: 'PROPAGATION_BIDIRECTIONAL' }] }))).rejects.toMatchObject({
          code: grpc.status.INVALID_ARGUMENT,
          details: expect.stringContaining(`mounts[0]: path "${priv}" is mounted on "${priv}" but it is not a shared mount`),
        });
        await expect(create(pod, sleeper('h2c', { mounts: [{ container_path: '/m', host_path: priv, propagation: 'PROPAGATION_HOST_TO_CONTAINER' }] }))).rejects.toMatchObject({
          code: grpc.status.INVALID_ARGUMENT,
          details: expect.stringContaining('is not a shared or slave mount'),
        });
        // Nothing of the refused containers is left behind.
        expect((await c.runtime.ListContainers({ filter: { pod_sandbox_id: pod.id } })).containers).toEqual([]);
      });
    });
  });

  // ---- resources ----

  it('cpu, memory and pids limits land in the container cgroup; UpdateContainerResources changes them and ContainerStatus shows them', async () => {
    await withPod(async (pod) => {
      const resources = { cpu_shares: 512, cpu_quota: 50_000, cpu_period: 100_000, memory_limit_in_bytes: 64 * MiB };
      const id = await start(pod, sleeper('limited', { linux: { resources } }));
      const mem = await cgroupDir(id, 'memory');
      const cpu = await cgroupDir(id, 'cpu');
      const pids = await cgroupDir(id, 'pids');
      expect(readCg(cpu, 'cpu.shares')).toBe('512');
      expect(readCg(cpu, 'cpu.cfs_quota_us')).toBe('50000');
      expect(readCg(cpu, 'cpu.cfs_period_us')).toBe('100000');
      expect(readCg(mem, 'memory.limit_in_bytes')).toBe(String(64 * MiB));
      expect(readCg(mem, 'memory.memsw.limit_in_bytes')).toBe(String(64 * MiB)); // no swap beyond the limit
      expect(readCg(pids, 'pids.max')).toBe(String(PIDS_LIMIT));
      // The container's own view (cgroup namespace): the same files at its cgroup root.
      const inside = await exec(id, ['cat', '/sys/fs/cgroup/memory/memory.limit_in_bytes', '/sys/fs/cgroup/cpu/cpu.shares', '/sys/fs/cgroup/pids/pids.max']);
      expect(inside.stdout).toBe(`${64 * MiB}\n512\n${PIDS_LIMIT}\n`);
      expect((await c.runtime.ContainerStatus({ container_id: id })).status?.resources?.linux).toMatchObject({ memory_limit_in_bytes: String(64 * MiB), cpu_shares: '512' });

      await c.runtime.UpdateContainerResources({ container_id: id, linux: { ...resources, memory_limit_in_bytes: 128 * MiB, cpu_shares: 256 } });
      expect(readCg(mem, 'memory.limit_in_bytes')).toBe(String(128 * MiB));
      expect(readCg(cpu, 'cpu.shares')).toBe('256');
      expect(readCg(pids, 'pids.max')).toBe(String(PIDS_LIMIT));
      expect((await exec(id, ['cat', '/sys/fs/cgroup/memory/memory.limit_in_bytes'])).stdout).toBe(`${128 * MiB}\n`);
      expect((await c.runtime.ContainerStatus({ container_id: id })).status?.resources?.linux).toMatchObject({
        memory_limit_in_bytes: String(128 * MiB),
        cpu_shares: '256',
        cpu_quota: '50000',
        cpu_period: '100000',
      });
      // Down again, below the first limit: memsw follows in the order the kernel accepts.
      await c.runtime.UpdateContainerResources({ container_id: id, linux: { memory_limit_in_bytes: 32 * MiB } });
      expect(readCg(mem, 'memory.limit_in_bytes')).toBe(String(32 * MiB));
      expect(readCg(mem, 'memory.memsw.limit_in_bytes')).toBe(String(32 * MiB));
      expect((await c.runtime.ContainerStatus({ container_id: id })).status?.resources?.linux).toMatchObject({ memory_limit_in_bytes: String(32 * MiB) });
    });
  });

  it('OOM: a process over its memory limit is killed: reason OOMKilled, exit code 137, berth_containers_oom_total 1', async () => {
    const metric = async (): Promise<string | undefined> => {
      const text = await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text();
      return /^berth_containers_oom_total (\S+)$/m.exec(text)?.[1];
    };
    expect(await metric()).toBe('0');
    await withPod(async (pod) => {
      // dd's 64 MiB block buffer is filled from /dev/zero: 64 MiB resident in a 16 MiB cgroup without swap.
      const id = await start(pod, ctrConfig('oom', { command: ['/bin/dd', 'if=/dev/zero', 'of=/dev/null', 'bs=64M', 'count=1'], linux: { resources: { memory_limit_in_bytes: 16 * MiB } } }));
      // Polled the way a kubelet does (status and list calls overlapping): the kill is counted once all the same.
      const st = await waitFor(
        async () => {
          const [a, b] = await Promise.all([
            c.runtime.ContainerStatus({ container_id: id }),
            c.runtime.ContainerStatus({ container_id: id }),
            c.runtime.ListContainers({}),
            c.runtime.ListContainers({ filter: { id } }),
          ]);
          return a.status?.state === 'CONTAINER_EXITED' ? a.status : b.status?.state === 'CONTAINER_EXITED' ? b.status : undefined;
        },
        30_000,
        'OOM-killed container exited',
      );
      expect(st).toMatchObject({ reason: 'OOMKilled', exit_code: 137 });
      await c.runtime.ContainerStatus({ container_id: id });
    });
    expect(await metric()).toBe('1');
  }, 60_000);

  // ---- ExecSync ----

  it("ExecSync: a timeout is DEADLINE_EXCEEDED (what the kubelet reads as a probe timeout), output is capped at 16 MiB and fits a kubelet's message limit", async () => {
    await withPod(async (pod) => {
      const id = await start(pod, sleeper('exec'));
      const t0 = Date.now();
      await expect(c.runtime.ExecSync({ container_id: id, cmd: ['sleep', '97'], timeout: 1 })).rejects.toMatchObject({
        code: grpc.status.DEADLINE_EXCEEDED,
        details: expect.stringContaining('timed out after 1 s'),
      });
      expect(Date.now() - t0).toBeLessThan(5000);
      // The timed-out process is gone from the container.
      const ps = await exec(id, ['/bin/sh', '-c', 'cat /proc/[0-9]*/cmdline | tr "\\0" " "']);
      expect(ps.stdout).not.toContain('sleep 97');

      const res = await new Promise<ExecSyncResponse__Output>((resolve, reject) =>
        big.ExecSync({ container_id: id, cmd: ['/bin/sh', '-c', 'head -c 20m /dev/zero; echo err >&2'], timeout: 30 }, (err, r) => (err ? reject(err) : resolve(r))),
      );
      // 20 MiB written: stdout keeps its first 16 MiB less the room the response framing and stderr need, so the
      // whole answer fits in the 16 MiB message a kubelet accepts (this client's limit); stderr stays whole.
      expect(res.exit_code).toBe(0);
      expect(res.stdout.length).toBeLessThanOrEqual(16 * MiB);
      expect(res.stdout.length).toBeGreaterThan(16 * MiB - 4096);
      expect(res.stdout.every((b) => b === 0)).toBe(true);
      expect(Buffer.from(res.stderr).toString()).toBe('err\n');
    });
  }, 60_000);

  // ---- namespaces ----

  describe('namespaces', () => {
    const nsMode = (network: 'POD' | 'NODE', pid: 'POD' | 'CONTAINER' | 'NODE', ipc: 'POD' | 'NODE' = 'POD'): Partial<PodSandboxConfig> => ({
      linux: { security_context: { namespace_options: { network, pid, ipc } } },
    });
    const ctrNs = (network: 'POD' | 'NODE', pid: 'POD' | 'CONTAINER' | 'NODE', ipc: 'POD' | 'NODE' = 'POD'): LinuxContainerSecurityContext => ({
      namespace_options: { network, pid, ipc },
    });
    const defaultRouteIface = (): string | undefined =>
      fs
        .readFileSync('/proc/net/route', 'utf8')
        .split('\n')
        .map((l) => l.split('\t'))
        .find((f) => f[1] === '00000000')?.[0];

    it('network, pid and ipc NODE: the host interfaces, the host pid 1 and the host ipc namespace', async () => {
      const hostNet = fs.readlinkSync('/proc/self/ns/net');
      const hostIpc = fs.readlinkSync('/proc/self/ns/ipc');
      const hostInit = fs.readFileSync('/proc/1/cmdline', 'utf8').split('\0').join(' ').trim();
      const iface = defaultRouteIface();
      await withPod(
        async (pod) => {
          const { code, out } = await script(
            pod,
            'hostns',
            'cat /proc/net/dev; echo "net $(readlink /proc/self/ns/net)"; echo "ipc $(readlink /proc/self/ns/ipc)"; echo "init $(tr "\\0" " " < /proc/1/cmdline)"',
            ctrNs('NODE', 'NODE', 'NODE'),
          );
          expect(code).toBe(0);
          expect(out).toContain(`net ${hostNet}\n`);
          expect(out).toContain(`ipc ${hostIpc}\n`);
          expect(out).toContain(`init ${hostInit}`);
          if (iface) expect(out).toMatch(new RegExp(`^\\s*${iface}:`, 'm'));
          expect(out.split('\n').filter((l) => /^\s*[\w.@-]+:/.test(l)).length).toBeGreaterThan(1);
        },
        nsMode('NODE', 'NODE', 'NODE'),
      );
    });

    it('pod namespaces by default: only lo, own ipc namespace', async () => {
      await withPod(async (pod) => {
        const { out } = await script(pod, 'podns', 'cat /proc/net/dev; echo "ipc $(readlink /proc/self/ns/ipc)"');
        expect(out.split('\n').filter((l) => /^\s*[\w.@-]+:/.test(l)).map((l) => l.trim().split(':')[0])).toEqual(['lo']);
        expect(out).not.toContain(`ipc ${fs.readlinkSync('/proc/self/ns/ipc')}\n`);
      });
    });

    const processList = 'for f in /proc/[0-9]*/cmdline; do tr "\\0" " " < $f; echo; done';

    it('pid POD: containers of a pod see each other; pid 1 is the pause process', async () => {
      await withPod(
        async (pod) => {
          await start(pod, ctrConfig('a', { command: ['/bin/sleep', '4321'] }, ctrNs('POD', 'POD')));
          const b = await start(pod, ctrConfig('b', { command: ['/bin/sleep', '1234'] }, ctrNs('POD', 'POD')));
          const ps = await exec(b, ['/bin/sh', '-c', processList]);
          expect(ps.stdout).toContain('/bin/sleep 4321');
          expect(ps.stdout).toContain('/bin/sleep 1234');
          const init = await exec(b, ['cat', '/proc/1/cmdline']);
          expect(init.stdout).not.toContain('sleep');
        },
        nsMode('POD', 'POD'),
      );
    });

    it('pid CONTAINER: containers of a pod do not see each other; each is its own pid 1', async () => {
      await withPod(
        async (pod) => {
          await start(pod, ctrConfig('a', { command: ['/bin/sleep', '4321'] }, ctrNs('POD', 'CONTAINER')));
          const b = await start(pod, ctrConfig('b', { command: ['/bin/sleep', '1234'] }, ctrNs('POD', 'CONTAINER')));
          const ps = await exec(b, ['/bin/sh', '-c', processList]);
          expect(ps.stdout).not.toContain('4321');
          expect((await exec(b, ['/bin/sh', '-c', 'tr "\\0" " " < /proc/1/cmdline'])).stdout).toBe('/bin/sleep 1234 ');
        },
        nsMode('POD', 'CONTAINER'),
      );
    });
  });

  // ---- crun ----

  describe('runtime handler crun', () => {
    it('runs a pod and its containers under crun: output, caps, exec, exec timeout, update, stop', async () => {
      await withPod(
        async (pod) => {
          const caps = 'grep -E "^CapEff:" /proc/self/status';
          const once = await script(pod, 'crun-once', `echo "crun-ok $(id -u)"; ${caps}`, { run_as_user: { value: 0 } });
          expect(once.code).toBe(0);
          expect(once.out).toContain('crun-ok 0\n');
          expect(statusField(once.out, 'CapEff')).toBe(capMask(DEFAULT_CAPABILITIES));
          // crun implements tmpcopyup too: the read-only rootfs layout is the same as under runc.
          const ro = await script(pod, 'crun-ro', 'touch /x 2>/dev/null || echo root-refused; touch /tmp/y /run/y /var/tmp/y && echo scratch-ok', { readonly_rootfs: true });
          expect(ro).toEqual({ code: 0, out: 'root-refused\nscratch-ok\n' });
          const id = await start(pod, sleeper('crun-sleeper', { linux: { resources: { memory_limit_in_bytes: 48 * MiB } } }));
          const info = JSON.parse((await c.runtime.ContainerStatus({ container_id: id, verbose: true })).info['info'] ?? '{}') as { runtime?: { name?: string; path?: string } };
          expect(info.runtime).toMatchObject({ name: 'crun', path: '/usr/bin/crun' });
          expect(await exec(id, ['/bin/sh', '-c', 'echo from-exec; cat /sys/fs/cgroup/memory/memory.limit_in_bytes'])).toMatchObject({ code: 0, stdout: `from-exec\n${48 * MiB}\n` });
          const mem = await cgroupDir(id, 'memory');
          expect(readCg(mem, 'memory.limit_in_bytes')).toBe(String(48 * MiB));
          await c.runtime.UpdateContainerResources({ container_id: id, linux: { memory_limit_in_bytes: 96 * MiB } });
          expect(readCg(mem, 'memory.limit_in_bytes')).toBe(String(96 * MiB));
          await expect(c.runtime.ExecSync({ container_id: id, cmd: ['sleep', '5'], timeout: 1 })).rejects.toMatchObject({ code: grpc.status.DEADLINE_EXCEEDED });
          await c.runtime.StopContainer({ container_id: id, timeout: 2 });
          expect((await c.runtime.ContainerStatus({ container_id: id })).status).toMatchObject({ state: 'CONTAINER_EXITED' });
        },
        {},
        'crun',
      );
    }, 60_000);

    it("explains crun's hybrid-mode refusal (no v1 hugetlb hierarchy) with the fix", async () => {
      await withPod(
        async (pod) => {
          // The runtime first runs at StartContainer; the container is then exited with reason StartError, as in containerd.
          const id = await create(pod, sleeper('nohugetlb'));
          const explained = /cgroups in hybrid mode.*mount -t cgroup -o hugetlb cgroup \/sys\/fs\/cgroup\/hugetlb/s;
          await expect(c.runtime.StartContainer({ container_id: id })).rejects.toMatchObject({ code: grpc.status.INTERNAL, details: expect.stringMatching(explained) });
          const st = (await c.runtime.ContainerStatus({ container_id: id })).status;
          expect(st).toMatchObject({ state: 'CONTAINER_EXITED', exit_code: 128, reason: 'StartError', message: expect.stringMatching(explained) });
          expect(fs.existsSync(path.join(d.stateDir, 'runtimes', 'crun-nohugetlb', id))).toBe(false);
          await c.runtime.RemoveContainer({ container_id: id });
        },
        {},
        'crun-nohugetlb',
      );
    }, 60_000);
  });
});
