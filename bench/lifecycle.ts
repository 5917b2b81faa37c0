// Pod and container lifecycle benchmark: berth against Debian's containerd 1.6, both driven through their CRI sockets
// by the same client with the same sequence of calls, the same runc (cgroupfs) and the same busybox image.
//
//   node dist/bench/lifecycle.js [--pods=20] [--rounds=2] [--pod-pid=container|pod]
//                                [--rss-pods=30] [--list-pods=20] [--list-per-pod=10] [--list-calls=50]
//                                [--runtimes=berth,containerd] [--keep]
//
// Phase 1 (lifecycle): one daemon per runtime (fresh temp dir). A round runs `--pods` pods through the whole lifecycle,
// one operation at a time across all pods (RunPodSandbox for every pod, then CreateContainer for every pod, …),
// each RPC timed on its own. Rounds alternate runtimes in ABBA order (berth, containerd, containerd, berth, …).
// Phase 2 (memory and lists): fresh daemons again. berth's RSS at a fresh start, then with `--rss-pods` pods of one
// running container each; then pods are removed down to `--list-pods`, each filled up to `--list-per-pod`
// containers (the first running, the others created only), and ListContainers / ListPodSandbox are timed, the two
// runtimes interleaved call by call.
//
// Pods use the host network (namespace_options.network NODE) on both sides, so no CNI is involved anywhere: berth has
// no CNI yet, and containerd 1.6 cannot run a pod-network sandbox without a real one (a loopback-only conflist fails
// every RunPodSandbox with "failed to find network info for sandbox": its CRI wants an eth0 result).
//
// Everything lives in fresh temp dirs and one unique cgroup root; pods, containers, mounts, cgroups, containerd's
// shim sockets in /run/containerd/s and the temp dirs are removed at the end, after a failure and on Ctrl-C.
// Prints a report; exits non-zero only if something failed to run (a daemon did not start, an RPC failed).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { packageRoot, packageVersion } from '../src/common/package-root';
import type { ContainerConfig } from '../src/server/generated/runtime/v1/ContainerConfig';
import type { PodSandboxConfig } from '../src/server/generated/runtime/v1/PodSandboxConfig';
import { buildImage, buildLayer, LayerEntry } from '../test/fixtures/oci-image';
import { Registry, startRegistry } from '../test/fixtures/registry';
import type { CriClient } from '../test/helpers/cri-client';
import { startDaemon } from '../test/helpers/daemon';
import { startContainerd } from './containerd';
import { cleanUpOnInterrupt, ensureContainerd, MiB, procStatusBytes, removeTree } from './sys';

type Runtime = 'berth' | 'containerd';
const RUNTIMES: readonly Runtime[] = ['berth', 'containerd'];

const OPS = [
  'RunPodSandbox',
  'CreateContainer',
  'StartContainer',
  'ContainerStatus',
  'StopContainer',
  'RemoveContainer',
  'StopPodSandbox',
  'RemovePodSandbox',
] as const;
type Op = (typeof OPS)[number];
/**
 * Per-pod sums, because the runtimes split work differently: containerd's CreateContainer only writes metadata and a
 * snapshot and runs `runc create` in StartContainer; berth (like CRI-O) mounts the rootfs and runs conmon + `runc
 * create` in CreateContainer. containerd's StopContainer also deletes the runc container, berth's RemoveContainer does.
 */
const COMBINED = ['CreateContainer + StartContainer', 'StopContainer + RemoveContainer', 'whole pod lifecycle (8 RPCs)'] as const;
type Combined = (typeof COMBINED)[number];
const LIST_OPS = ['ListContainers', 'ListPodSandbox'] as const;
type ListOp = (typeof LIST_OPS)[number];

const TARGET_RATIO = 1.0;
const GOAL_RATIO = 0.8;
const TARGET_LIST_MS = 10;
const RPC_DEADLINE_MS = 60_000;
/** StopContainer's timeout (s), equal for both: the container exits on SIGTERM at once, so it is never reached. */
const STOP_TIMEOUT_S = 2;
/**
 * PID 1 of its own PID namespace: exits 0 on SIGTERM right away (`wait` returns as soon as a trapped signal
 * arrives; a foreground `sleep 1` would delay the trap by up to a second). Its orphaned `sleep` dies with the namespace.
 */
const CONTAINER_SCRIPT = 'trap "exit 0" TERM; while :; do sleep 1 & wait $!; done';
const CGROUP_FS = '/sys/fs/cgroup';
const CONTAINERD_SHIM_SOCKET_DIR = '/run/containerd/s';

interface Options {
  pods: number;
  rounds: number;
  podPid: 'container' | 'pod';
  rssPods: number;
  listPods: number;
  listPerPod: number;
  listCalls: number;
  runtimes: Runtime[];
  keep: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    pods: 20, rounds: 2, podPid: 'container', rssPods: 30, listPods: 20, listPerPod: 10, listCalls: 50,
    runtimes: [...RUNTIMES], keep: false,
  };
  const usage = 'usage: lifecycle.js [--pods=N] [--rounds=N] [--pod-pid=container|pod] [--rss-pods=N] ' +
    '[--list-pods=N] [--list-per-pod=N] [--list-calls=N] [--runtimes=berth,containerd] [--keep]';
  const ints: Record<string, keyof Options> = {
    '--pods': 'pods', '--rounds': 'rounds', '--rss-pods': 'rssPods', '--list-pods': 'listPods', '--list-per-pod': 'listPerPod',
    '--list-calls': 'listCalls',
  };
  for (const arg of argv) {
    const [key = '', value = ''] = arg.split('=', 2);
    const intKey = ints[key];
    if (intKey && /^\d+$/.test(value)) (opts as unknown as Record<string, number>)[intKey] = Number(value);
    else if (key === '--pod-pid' && (value === 'container' || value === 'pod')) opts.podPid = value;
    else if (key === '--runtimes' && value !== '' && value.split(',').every((r) => (RUNTIMES as readonly string[]).includes(r))) {
      opts.runtimes = [...new Set(value.split(','))] as Runtime[];
    } else if (key === '--keep') opts.keep = true;
    else throw new Error(`${usage}  (bad argument ${arg})`);
  }
  if (opts.rssPods < opts.listPods) throw new Error('--rss-pods must be ≥ --list-pods (the list phase reuses those pods)');
  if (opts.pods < 1 || opts.rounds < 1 || opts.listPerPod < 1 || opts.listCalls < 1) throw new Error(usage);
  return opts;
}

// ---------------------------------------------------------------------------------------------------------------------
// Small helpers

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const mib = (bytes: number): string => (bytes / MiB).toFixed(1);
const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const deadline = (): { deadline: number } => ({ deadline: Date.now() + RPC_DEADLINE_MS });

/** Nearest-rank percentile (p in 0..1) of unsorted samples. */
function pct(xs: number[], p: number): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(p * s.length) - 1))] as number;
}

function errorText(err: unknown): string {
  if (err instanceof Error) {
    const e = err as { code?: unknown; details?: unknown };
    if (typeof e.code === 'number' && typeof e.details === 'string') {
      const names: Record<number, string> = {
        1: 'CANCELLED', 2: 'UNKNOWN', 3: 'INVALID_ARGUMENT', 4: 'DEADLINE_EXCEEDED', 5: 'NOT_FOUND', 6: 'ALREADY_EXISTS',
        7: 'PERMISSION_DENIED', 8: 'RESOURCE_EXHAUSTED', 9: 'FAILED_PRECONDITION', 10: 'ABORTED', 12: 'UNIMPLEMENTED',
        13: 'INTERNAL', 14: 'UNAVAILABLE',
      };
      return `${names[e.code] ?? `code ${e.code}`}: ${e.details}`;
    }
    return err.message;
  }
  return String(err);
}

function freshDir(prefix: string, dirs: string[]): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  dirs.push(dir);
  return dir;
}

/** Processes (other than this one) whose command line mentions `needle`: berth's conmons, containerd's shims, … */
function processesMentioning(needle: string): { pid: number; comm: string }[] {
  const out: { pid: number; comm: string }[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name) || Number(name) === process.pid) continue;
    try {
      const cmdline = fs.readFileSync(`/proc/${name}/cmdline`, 'utf8');
      if (!cmdline.includes(needle)) continue;
      out.push({ pid: Number(name), comm: fs.readFileSync(`/proc/${name}/comm`, 'utf8').trim() });
    } catch {
      // gone
    }
  }
  return out;
}

function rssOf(pid: number): number {
  try {
    return procStatusBytes(pid, 'VmRSS');
  } catch {
    return 0;
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Cgroups: one root for the whole run, in every hierarchy (v1 controllers, name=systemd, the unified v2 mount).

function cgroupHierarchies(): string[] {
  return fs.readdirSync(CGROUP_FS, { withFileTypes: true }).filter((e) => e.isDirectory()).map((e) => path.join(CGROUP_FS, e.name));
}

/** Every directory of the cgroup tree `cg` in every hierarchy, deepest first. */
function cgroupDirs(cg: string): string[] {
  const out: string[] = [];
  const walk = (dir: string): void => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) if (e.isDirectory()) walk(path.join(dir, e.name));
    out.push(dir);
  };
  for (const h of cgroupHierarchies()) walk(path.join(h, cg));
  return out.sort((a, b) => b.length - a.length);
}

/** SIGKILLs every process left in the cgroup tree, then removes the tree; returns the dirs it could not remove. */
async function removeCgroupRoot(cg: string): Promise<string[]> {
  for (let attempt = 0; attempt < 20; attempt++) {
    for (const dir of cgroupDirs(cg)) {
      try {
        for (const pid of fs.readFileSync(path.join(dir, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
          try {
            process.kill(Number(pid), 'SIGKILL');
          } catch {
            // gone
          }
        }
      } catch {
        // no cgroup.procs
      }
    }
    for (const dir of cgroupDirs(cg)) {
      try {
        fs.rmdirSync(dir);
      } catch {
        // busy: retried
      }
    }
    const left = cgroupDirs(cg);
    if (left.length === 0) return [];
    await delay(100);
  }
  return cgroupDirs(cg);
}

// ---------------------------------------------------------------------------------------------------------------------
// Daemons

interface Daemon {
  rt: Runtime;
  pid: number;
  dir: string;
  client: CriClient;
  /** comm names of the per-container helpers whose RSS is reported beside the daemon's. */
  helperComms: string[];
  /** The cgroup parent its pods get (pod config linux.cgroup_parent is `<this>/pod-N`). */
  cgroupParent: string;
  /** Sandbox ids it ever returned (containerd: their shim sockets are removed at the end). */
  sandboxIds: Set<string>;
  /** containerd's gRPC address (shim socket names hash it), undefined for berth. */
  address?: string;
  readySeconds: number;
  logs(): string;
  stop(): Promise<unknown>;
}

async function startBerth(dir: string, registryHost: string, cgroupRoot: string, phase: string): Promise<Daemon> {
  const started = process.hrtime.bigint();
  const d = await startDaemon({
    dir,
    metrics: false,
    // The test config logs at debug; a benchmark should not pay for that. berth's own cgroup parent (unused: every
    // pod names one) is unique too.
    toml: `[image.registries."${registryHost}"]\ninsecure = true\n[runtime]\ncgroup_parent = "${cgroupRoot}/berth-${phase}-default"\n`,
    args: ['--log-level', 'info'],
  });
  if (d.process.pid === undefined) throw new Error('berth has no pid');
  return {
    rt: 'berth',
    pid: d.process.pid,
    dir,
    client: d.client(),
    helperComms: ['conmon'],
    cgroupParent: `${cgroupRoot}/berth-${phase}`,
    sandboxIds: new Set(),
    readySeconds: Number(process.hrtime.bigint() - started) / 1e9,
    logs: () => d.logs(),
    stop: () => d.stop(),
  };
}

async function startPeer(dir: string, registryHost: string, sandboxImage: string, cgroupRoot: string, phase: string): Promise<Daemon> {
  const c = await startContainerd({ dir, registryHost, sandboxImage });
  return {
    rt: 'containerd',
    pid: c.pid,
    dir,
    client: c.client(),
    helperComms: ['containerd-shim'], // comm is cut to 15 bytes: containerd-shim-runc-v2
    cgroupParent: `${cgroupRoot}/containerd-${phase}`,
    sandboxIds: new Set(),
    address: c.socket,
    readySeconds: c.readySeconds,
    logs: () => c.logs(),
    stop: () => c.stop(),
  };
}

/** containerd 1.6's shim socket for a sandbox: /run/containerd/s/sha256(<address>/<namespace>/<sandbox id>). */
function shimSocketPath(address: string, sandboxId: string): string {
  return path.join(CONTAINERD_SHIM_SOCKET_DIR, createHash('sha256').update(path.join(address, 'k8s.io', sandboxId)).digest('hex'));
}

// ---------------------------------------------------------------------------------------------------------------------
// Pods and containers, identical for both runtimes

interface Images {
  busybox: string;
  pause: string;
}

interface Slot {
  name: string;
  config: PodSandboxConfig;
  podId?: string;
  ctrIds: string[];
  broken?: string;
  /** ms per timed operation (lifecycle rounds). */
  times: Partial<Record<Op, number>>;
}

function podConfig(d: Daemon, name: string, logRoot: string, opts: Options): PodSandboxConfig {
  const uid = randomBytes(8).toString('hex');
  const logDir = path.join(logRoot, name);
  fs.mkdirSync(logDir, { recursive: true }); // the kubelet makes it before RunPodSandbox
  return {
    metadata: { name, namespace: 'bench', uid, attempt: 0 },
    // The kubelet leaves the hostname empty for host-network pods (runc cannot set one in the host's UTS namespace).
    hostname: '',
    log_directory: logDir,
    labels: { bench: 'lifecycle' },
    annotations: {},
    linux: {
      cgroup_parent: `${d.cgroupParent}/pod-${uid}`,
      security_context: {
        namespace_options: {
          network: 'NODE',
          pid: opts.podPid === 'pod' ? 'POD' : 'CONTAINER',
          ipc: 'POD',
        },
      },
    },
  };
}

function containerConfig(name: string, pod: PodSandboxConfig, image: string): ContainerConfig {
  return {
    metadata: { name, attempt: 0 },
    image: { image },
    command: ['/bin/sh', '-c', CONTAINER_SCRIPT],
    log_path: `${name}.log`,
    labels: { bench: 'lifecycle', name },
    annotations: {},
    // The kubelet repeats the pod's namespace options on each container.
    linux: { security_context: { namespace_options: pod.linux?.security_context?.namespace_options ?? {} } },
  };
}

async function runPod(d: Daemon, slot: Slot): Promise<string> {
  const res = await d.client.runtime.RunPodSandbox({ config: slot.config }, deadline());
  d.sandboxIds.add(res.pod_sandbox_id);
  slot.podId = res.pod_sandbox_id;
  return res.pod_sandbox_id;
}

async function createContainer(d: Daemon, slot: Slot, name: string, images: Images): Promise<string> {
  const res = await d.client.runtime.CreateContainer(
    { pod_sandbox_id: slot.podId, config: containerConfig(name, slot.config, images.busybox), sandbox_config: slot.config },
    deadline(),
  );
  slot.ctrIds.push(res.container_id);
  return res.container_id;
}

/** StopPodSandbox + RemovePodSandbox, untimed; errors are returned, not thrown. */
async function teardownPod(d: Daemon, podId: string): Promise<string | undefined> {
  try {
    await d.client.runtime.StopPodSandbox({ pod_sandbox_id: podId }, deadline());
    await d.client.runtime.RemovePodSandbox({ pod_sandbox_id: podId }, deadline());
    return undefined;
  } catch (err) {
    return errorText(err);
  }
}

/** Removes every pod the daemon lists (and so its containers), a few at a time. */
async function teardownAll(d: Daemon, concurrency = 4): Promise<string[]> {
  let pods: string[];
  try {
    pods = (await d.client.runtime.ListPodSandbox({}, { deadline: Date.now() + 10_000 })).items.map((p) => p.id);
  } catch (err) {
    return [`ListPodSandbox: ${errorText(err)}`];
  }
  const errors: string[] = [];
  const queue = [...pods];
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      for (let id = queue.shift(); id !== undefined; id = queue.shift()) {
        const e = await teardownPod(d, id);
        if (e) errors.push(`${id.slice(0, 12)}: ${e}`);
      }
    }),
  );
  return errors;
}

async function pullImages(d: Daemon, images: Images): Promise<void> {
  await d.client.image.PullImage({ image: { image: images.busybox } }, deadline());
  // containerd would pull its sandbox image inside the first RunPodSandbox: pull it first, untimed.
  if (d.rt === 'containerd') await d.client.image.PullImage({ image: { image: images.pause } }, deadline());
}

// ---------------------------------------------------------------------------------------------------------------------
// Phase 1: lifecycle rounds

interface RuntimeResults {
  ops: Map<Op, number[]>;
  combined: Map<Combined, number[]>;
  lists: Map<ListOp, number[]>;
  /** Distinct error texts per operation, with counts. */
  errors: Map<string, number>;
  /** Exit codes after StopContainer (0 = exited on SIGTERM, 137 = SIGKILL). */
  exitCodes: Map<number, number>;
  notes: string[];
  rss: { label: string; daemon: number; helpers: number; helperCount: number }[];
  listCounts?: { containers: number; running: number; pods: number };
}

function newResults(): RuntimeResults {
  return { ops: new Map(OPS.map((o) => [o, []])), combined: new Map(COMBINED.map((o) => [o, []])), lists: new Map(LIST_OPS.map((o) => [o, []])), errors: new Map(), exitCodes: new Map(), notes: [], rss: [] };
}

function recordError(r: RuntimeResults, op: string, err: unknown): string {
  // Ids differ between otherwise equal errors: count them as one.
  const text = `${op}: ${errorText(err)}`.replace(/\b[0-9a-f]{64}\b/g, '<id>');
  r.errors.set(text, (r.errors.get(text) ?? 0) + 1);
  return text;
}

async function lifecycleRound(d: Daemon, r: RuntimeResults, round: number, images: Images, opts: Options, interrupted: () => boolean): Promise<void> {
  const logRoot = path.join(d.dir, 'pod-logs');
  const slots: Slot[] = Array.from({ length: opts.pods }, (_, i) => {
    const name = `lc-r${round}-p${i}`;
    return { name, config: podConfig(d, name, logRoot, opts), ctrIds: [], times: {} };
  });
  const samples = (op: Op): number[] => r.ops.get(op) as number[];

  const step = async (op: Op, call: (s: Slot) => Promise<unknown>): Promise<void> => {
    for (const s of slots) {
      if (interrupted()) throw new Error('interrupted');
      if (s.broken) continue;
      const t0 = process.hrtime.bigint();
      try {
        await call(s);
        const ms = msSince(t0);
        samples(op).push(ms);
        s.times[op] = ms;
      } catch (err) {
        s.broken = recordError(r, op, err);
      }
    }
  };
  const ctr = (s: Slot): string => s.ctrIds[0] as string;

  await step('RunPodSandbox', (s) => runPod(d, s));
  await step('CreateContainer', (s) => createContainer(d, s, 'c0', images));
  await step('StartContainer', (s) => d.client.runtime.StartContainer({ container_id: ctr(s) }, deadline()));
  let notRunning = 0;
  await step('ContainerStatus', async (s) => {
    const st = await d.client.runtime.ContainerStatus({ container_id: ctr(s) }, deadline());
    if (st.status?.state !== 'CONTAINER_RUNNING') notRunning++;
  });
  if (notRunning > 0) r.notes.push(`round ${round}: ${notRunning} container(s) not RUNNING right after StartContainer`);
  await step('StopContainer', (s) => d.client.runtime.StopContainer({ container_id: ctr(s), timeout: STOP_TIMEOUT_S }, deadline()));
  // Untimed: how each container ended (0 = its SIGTERM trap; 137 = SIGKILL).
  for (const s of slots) {
    if (s.broken) continue;
    try {
      const st = (await d.client.runtime.ContainerStatus({ container_id: ctr(s) }, deadline())).status;
      const code = st?.state === 'CONTAINER_EXITED' ? st.exit_code : -1;
      r.exitCodes.set(code, (r.exitCodes.get(code) ?? 0) + 1);
    } catch (err) {
      recordError(r, 'ContainerStatus after stop (untimed)', err);
    }
  }
  await step('RemoveContainer', (s) => d.client.runtime.RemoveContainer({ container_id: ctr(s) }, deadline()));
  await step('StopPodSandbox', (s) => d.client.runtime.StopPodSandbox({ pod_sandbox_id: s.podId }, deadline()));
  await step('RemovePodSandbox', (s) => d.client.runtime.RemovePodSandbox({ pod_sandbox_id: s.podId }, deadline()));

  for (const s of slots) {
    if (s.broken) continue;
    const t = s.times;
    r.combined.get(COMBINED[0])?.push((t.CreateContainer ?? 0) + (t.StartContainer ?? 0));
    r.combined.get(COMBINED[1])?.push((t.StopContainer ?? 0) + (t.RemoveContainer ?? 0));
    r.combined.get(COMBINED[2])?.push(OPS.reduce((sum, op) => sum + (t[op] ?? 0), 0));
  }
  for (const s of slots) {
    if (s.broken && s.podId) {
      const e = await teardownPod(d, s.podId);
      if (e) r.notes.push(`round ${round}: cleanup of broken pod ${s.name} failed: ${e}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Phase 2: RSS with running pods, then lists at N containers

function measureRss(d: Daemon, r: RuntimeResults, label: string): void {
  const helpers = processesMentioning(d.dir).filter((p) => p.pid !== d.pid && d.helperComms.includes(p.comm));
  r.rss.push({ label, daemon: rssOf(d.pid), helpers: helpers.reduce((sum, p) => sum + rssOf(p.pid), 0), helperCount: helpers.length });
}

/** Fresh daemon → idle RSS → pull → `rssPods` running pods → RSS → down to `listPods` pods of `listPerPod` containers. */
async function fillForLists(d: Daemon, r: RuntimeResults, images: Images, opts: Options, interrupted: () => boolean): Promise<Slot[]> {
  const check = (): void => {
    if (interrupted()) throw new Error('interrupted');
  };
  await delay(1000); // let the start-up settle (GC, lazy init) before the idle figure
  measureRss(d, r, 'idle, fresh start');
  await pullImages(d, images);
  measureRss(d, r, 'after pulling busybox');
  const logRoot = path.join(d.dir, 'pod-logs');
  const slots: Slot[] = [];
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < opts.rssPods; i++) {
    check();
    const name = `rss-p${i}`;
    const s: Slot = { name, config: podConfig(d, name, logRoot, opts), ctrIds: [], times: {} };
    slots.push(s);
    await runPod(d, s);
    const id = await createContainer(d, s, 'c0', images);
    await d.client.runtime.StartContainer({ container_id: id }, deadline());
  }
  r.notes.push(`${opts.rssPods} pods with a running container set up in ${(msSince(t0) / 1000).toFixed(1)} s (untimed)`);
  await delay(2000);
  measureRss(d, r, `${opts.rssPods} running pods (1 running container each)`);
  if (d.address) {
    // Self-check of the cleanup's socket names: every live pod's shim socket should be where shimSocketPath says.
    const found = slots.filter((s) => fs.existsSync(shimSocketPath(d.address as string, s.podId as string))).length;
    r.notes.push(`shim sockets: ${found} of ${slots.length} pods' computed ${CONTAINERD_SHIM_SOCKET_DIR}/<sha256> paths exist`);
  }

  for (const s of slots.splice(opts.listPods)) {
    check();
    const e = await teardownPod(d, s.podId as string);
    if (e) throw new Error(`removing pod ${s.name}: ${e}`);
  }
  const t1 = process.hrtime.bigint();
  for (const s of slots) {
    for (let j = 1; j < opts.listPerPod; j++) {
      check();
      await createContainer(d, s, `c${j}`, images);
    }
  }
  r.notes.push(`${slots.length * (opts.listPerPod - 1)} more containers created in ${(msSince(t1) / 1000).toFixed(1)} s (untimed)`);
  const all = await d.client.runtime.ListContainers({}, deadline());
  const running = all.containers.filter((c) => c.state === 'CONTAINER_RUNNING').length;
  const pods = (await d.client.runtime.ListPodSandbox({}, deadline())).items.length;
  r.listCounts = { containers: all.containers.length, running, pods };
  await delay(1000);
  measureRss(d, r, `${pods} pods, ${all.containers.length} containers (${running} running)`);
  return slots;
}

async function timeLists(daemons: Daemon[], results: Map<Runtime, RuntimeResults>, calls: number): Promise<void> {
  const call = async (d: Daemon, op: ListOp): Promise<void> => {
    if (op === 'ListContainers') await d.client.runtime.ListContainers({}, deadline());
    else await d.client.runtime.ListPodSandbox({}, deadline());
  };
  for (const d of daemons) for (const op of LIST_OPS) for (let i = 0; i < 5; i++) await call(d, op); // warm-up
  for (let i = 0; i < calls; i++) {
    // ABBA across the runtimes, call by call.
    const order = i % 4 === 0 || i % 4 === 3 ? daemons : [...daemons].reverse();
    for (const op of LIST_OPS) {
      for (const d of order) {
        const t0 = process.hrtime.bigint();
        await call(d, op);
        results.get(d.rt)?.lists.get(op)?.push(msSince(t0));
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------------------------------
// Report

function table(rows: string[][]): void {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) say('  ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  '));
}

const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 1) : '—');

function report(results: Map<Runtime, RuntimeResults>, opts: Options): void {
  const b = results.get('berth');
  const c = results.get('containerd');
  const both = b !== undefined && c !== undefined;
  say('');
  say(`lifecycle, ${opts.pods} pods × ${opts.rounds} round(s) per runtime (ABBA), one busybox container per pod; ms per RPC:`);
  const header = ['operation', 'n', 'berth p50', 'p90', 'containerd p50', 'p90', 'ratio p50', 'p90', 'target ≤ 1.0'];
  const rows: string[][] = [header];
  let allPass = both;
  let allGoal = both;
  for (const op of OPS) {
    const bs = b?.ops.get(op) ?? [];
    const cs = c?.ops.get(op) ?? [];
    const ratio = pct(bs, 0.5) / pct(cs, 0.5);
    const ratio90 = pct(bs, 0.9) / pct(cs, 0.9);
    const ok = Number.isFinite(ratio) && ratio <= TARGET_RATIO && bs.length === opts.pods * opts.rounds;
    allPass &&= ok;
    allGoal &&= Number.isFinite(ratio) && ratio <= GOAL_RATIO;
    rows.push([
      op, `${bs.length}/${cs.length}`, f1(pct(bs, 0.5)), f1(pct(bs, 0.9)), f1(pct(cs, 0.5)), f1(pct(cs, 0.9)),
      Number.isFinite(ratio) ? ratio.toFixed(2) : '—', Number.isFinite(ratio90) ? ratio90.toFixed(2) : '—', both ? (ok ? 'PASS' : 'FAIL') : 'n/a',
    ]);
  }
  rows.push(['per pod (informational):', '', '', '', '', '', '', '', '']);
  for (const op of COMBINED) {
    const bs = b?.combined.get(op) ?? [];
    const cs = c?.combined.get(op) ?? [];
    const ratio = pct(bs, 0.5) / pct(cs, 0.5);
    const ratio90 = pct(bs, 0.9) / pct(cs, 0.9);
    rows.push([
      `  ${op}`, `${bs.length}/${cs.length}`, f1(pct(bs, 0.5)), f1(pct(bs, 0.9)), f1(pct(cs, 0.5)), f1(pct(cs, 0.9)),
      Number.isFinite(ratio) ? ratio.toFixed(2) : '—', Number.isFinite(ratio90) ? ratio90.toFixed(2) : '—', '',
    ]);
  }
  table(rows);
  for (const [rt, r] of results) {
    const codes = [...r.exitCodes].map(([code, n]) => `${n}× ${code === -1 ? 'not exited' : `exit ${code}`}`).join(', ');
    say(`  ${rt}: after StopContainer(timeout ${STOP_TIMEOUT_S}): ${codes || 'n/a'}`);
  }
  if (both) {
    say(`  every lifecycle ratio ≤ ${TARGET_RATIO.toFixed(1)}: ${allPass ? 'PASS' : 'FAIL'}   (goal ≤ ${GOAL_RATIO}: ${allGoal ? 'met' : 'not met'})`);
  }

  say('');
  const counts = (r: RuntimeResults | undefined): string =>
    r?.listCounts ? `${r.listCounts.pods} pods, ${r.listCounts.containers} containers (${r.listCounts.running} running)` : 'n/a';
  say(`lists, ${opts.listCalls} calls each, runtimes interleaved; berth: ${counts(b)}; containerd: ${counts(c)}; ms:`);
  const lrows: string[][] = [['operation', 'berth p50', 'p90', 'containerd p50', 'p90', 'ratio p50', `berth p50 ≤ ${TARGET_LIST_MS} ms`]];
  for (const op of LIST_OPS) {
    const bs = b?.lists.get(op) ?? [];
    const cs = c?.lists.get(op) ?? [];
    const ratio = pct(bs, 0.5) / pct(cs, 0.5);
    const enough = (b?.listCounts?.containers ?? 0) >= opts.listPods * opts.listPerPod;
    lrows.push([
      op, f1(pct(bs, 0.5)), f1(pct(bs, 0.9)), f1(pct(cs, 0.5)), f1(pct(cs, 0.9)), Number.isFinite(ratio) ? ratio.toFixed(2) : '—',
      bs.length === 0 ? 'n/a' : pct(bs, 0.5) <= TARGET_LIST_MS && enough ? 'PASS' : 'FAIL',
    ]);
  }
  table(lrows);

  say('');
  say('RSS (VmRSS; helpers = sum of VmRSS of berth\'s conmons / containerd\'s shims, shared pages counted in each):');
  const rrows: string[][] = [['runtime', 'state', 'daemon MiB', 'helpers MiB', 'helpers']];
  for (const [rt, r] of results) for (const x of r.rss) rrows.push([rt, x.label, mib(x.daemon), mib(x.helpers), String(x.helperCount)]);
  table(rrows);

  for (const [rt, r] of results) {
    for (const n of r.notes) say(`  ${rt}: ${n}`);
    for (const [e, n] of r.errors) say(`  ${rt} ERROR ×${n}: ${e}`);
  }
}

// ---------------------------------------------------------------------------------------------------------------------

/**
 * The container image: the host's static busybox with `sh` and `sleep` as hard links. Not test/fixtures' busyboxLayer:
 * its hard-link entries carry mode 0644, which containerd's unpacker applies to the linked inode (chmod), so
 * /bin/busybox loses its x bits there ("exec: /bin/sh: permission denied"); berth, like GNU tar, ignores a hard
 * link's mode. Here every link says 0755, so both unpack the same executable file.
 */
async function buildBusyboxImage(): Promise<ReturnType<typeof buildImage>> {
  const dir = (p: string, mode = 0o755): LayerEntry => ({ path: p, type: 'dir', mode });
  const layer = await buildLayer([
    dir('bin'),
    { path: 'bin/busybox', type: 'file', mode: 0o755, content: fs.readFileSync('/bin/busybox') },
    ...['sh', 'sleep'].map((a): LayerEntry => ({ path: `bin/${a}`, type: 'hardlink', linkname: 'bin/busybox', mode: 0o755 })),
    dir('etc'),
    { path: 'etc/passwd', type: 'file', content: 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n' },
    { path: 'etc/group', type: 'file', content: 'root:x:0:\nnogroup:x:65534:\n' },
    dir('tmp', 0o1777),
    dir('root', 0o700),
    dir('proc'),
    dir('sys'),
    dir('dev'),
  ]);
  return buildImage({ layers: [layer], config: { Cmd: ['/bin/sh'] } });
}

async function buildPauseImage(): Promise<ReturnType<typeof buildImage>> {
  const pauseBin = path.join(packageRoot(), 'native', 'build', 'pause');
  if (!fs.existsSync(pauseBin)) {
    const r = spawnSync('bash', [path.join(packageRoot(), 'native', 'build.sh')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`native/build.sh failed: ${r.stderr}`);
  }
  const layer = await buildLayer([
    { path: 'pause', type: 'file', mode: 0o755, content: fs.readFileSync(pauseBin) },
    { path: 'dev', type: 'dir' },
    { path: 'proc', type: 'dir' },
    { path: 'sys', type: 'dir' },
    { path: 'etc', type: 'dir' },
  ]);
  return buildImage({ layers: [layer], config: { Entrypoint: ['/pause'] } });
}

async function main(): Promise<number> {
  const opts = parseArgs(process.argv.slice(2));
  const startedAt = process.hrtime.bigint();
  const containerdVersion = opts.runtimes.includes('containerd') ? ensureContainerd((m) => say(m)) : 'not run';
  const runcVersion = spawnSync('/usr/sbin/runc', ['--version'], { encoding: 'utf8' }).stdout.split('\n')[0] ?? '?';
  say(`berth ${packageVersion()}, node ${process.version}; ${containerdVersion}; ${runcVersion}`);
  say(`${os.cpus().length} cores (${os.cpus()[0]?.model ?? '?'}), kernel ${os.release()}, load ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}`);
  say(
    'network: host (namespace_options.network NODE): no netns and no CNI on either side; ' +
      `pid: ${opts.podPid === 'pod' ? 'POD' : 'CONTAINER'}; cgroupfs, runc /usr/sbin/runc on both`,
  );

  const results = new Map<Runtime, RuntimeResults>(opts.runtimes.map((rt) => [rt, newResults()]));
  const dirs: string[] = [];
  const daemons: Daemon[] = [];
  const allDaemons: Daemon[] = [];
  const cgroupRoot = `/berth-bench-lifecycle-${randomBytes(4).toString('hex')}`;
  const shimDirExisted = fs.existsSync(CONTAINERD_SHIM_SOCKET_DIR);
  const runDirExisted = fs.existsSync(path.dirname(CONTAINERD_SHIM_SOCKET_DIR));
  let registry: Registry | undefined;

  const stopping = new Map<Daemon, Promise<string[]>>();
  const stopDaemon = (d: Daemon): Promise<string[]> => {
    let p = stopping.get(d);
    if (!p) stopping.set(d, (p = stopDaemonOnce(d)));
    return p;
  };
  const stopDaemonOnce = async (d: Daemon): Promise<string[]> => {
    const problems: string[] = [];
    const errs = await teardownAll(d);
    if (errs.length) problems.push(`${d.rt}: removing pods at cleanup: ${errs.join('; ')}`);
    await d.stop().catch((err: unknown) => problems.push(`${d.rt}: stop: ${errorText(err)}`));
    // Helpers that outlive their daemon (berth's conmons, containerd's shims), found by the daemon's dir in their argv.
    const left = processesMentioning(d.dir);
    for (const p of left) {
      try {
        process.kill(p.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    if (left.length) problems.push(`${d.rt}: killed ${left.length} leftover process(es): ${left.map((p) => `${p.comm}[${p.pid}]`).join(', ')}`);
    const i = daemons.indexOf(d);
    if (i >= 0) daemons.splice(i, 1);
    return problems;
  };

  let cleaning: Promise<void> | undefined;
  const cleanup = (): Promise<void> =>
    (cleaning ??= (async () => {
      const t = process.hrtime.bigint();
      const problems: string[] = [];
      const knownSockets = new Set<string>();
      for (const d of [...daemons]) {
        if (d.address) for (const id of d.sandboxIds) knownSockets.add(shimSocketPath(d.address, id));
        problems.push(...(await stopDaemon(d)));
      }
      for (const d of allDaemons) if (d.address) for (const id of d.sandboxIds) knownSockets.add(shimSocketPath(d.address, id));
      const cgLeft = await removeCgroupRoot(cgroupRoot);
      if (cgLeft.length) problems.push(`cgroups left: ${cgLeft.join(', ')}`);
      let sockets = 0;
      for (const s of knownSockets) {
        for (const p of [s, `${s}.debug`]) {
          if (fs.existsSync(p)) {
            fs.rmSync(p, { force: true });
            sockets++;
          }
        }
      }
      // Only the dirs this run created, and only if empty (another containerd may be using them).
      for (const [dir, existed] of [[CONTAINERD_SHIM_SOCKET_DIR, shimDirExisted], [path.dirname(CONTAINERD_SHIM_SOCKET_DIR), runDirExisted]] as const) {
        if (!existed) {
          try {
            fs.rmdirSync(dir);
          } catch {
            // not empty or gone
          }
        }
      }
      await registry?.stop().catch(() => undefined);
      if (opts.keep) {
        if (dirs.length) say(`kept: ${dirs.join(' ')}`);
      } else {
        for (const d of dirs) {
          try {
            removeTree(d);
          } catch (err) {
            problems.push(`removing ${d}: ${errorText(err)}`);
          }
        }
      }
      say(
        `cleanup: ${dirs.length} temp dirs ${opts.keep ? 'kept' : 'removed'}, cgroup root ${cgroupRoot} removed, ${sockets} leftover shim socket(s) removed ` +
          `in ${(msSince(t) / 1000).toFixed(1)} s${problems.length ? `; problems:\n    ${problems.join('\n    ')}` : ''}`,
      );
    })());
  const isInterrupted = cleanUpOnInterrupt(cleanup);

  const start = async (rt: Runtime, phase: string, images: Images): Promise<Daemon> => {
    const dir = freshDir(`berth-bench-lc-${phase}-${rt}-`, dirs);
    const d = rt === 'berth'
      ? await startBerth(dir, (registry as Registry).host, cgroupRoot, phase)
      : await startPeer(dir, (registry as Registry).host, images.pause, cgroupRoot, phase);
    daemons.push(d);
    allDaemons.push(d);
    return d;
  };
  const fail = (rt: Runtime, what: string, err: unknown, d?: Daemon): void => {
    const logs = d ? `\n--- ${rt} log (tail) ---\n${d.logs().trimEnd().split('\n').slice(-15).join('\n')}` : '';
    recordError(results.get(rt) as RuntimeResults, what, err);
    say(`${rt}: ${what} FAILED: ${errorText(err)}${logs}`);
  };

  try {
    registry = await startRegistry();
    const [busybox, pause] = [await buildBusyboxImage(), await buildPauseImage()];
    await registry.push('bench/busybox', 'v1', busybox);
    await registry.push('bench/pause', 'v1', pause);
    const images: Images = { busybox: `${registry.host}/bench/busybox:v1`, pause: `${registry.host}/bench/pause:v1` };
    say(`registry ${registry.host}: ${images.busybox}, ${images.pause} (sandbox_image); cgroup root ${cgroupRoot}`);

    // Phase 1 ---------------------------------------------------------------------------------------------------
    const t1 = process.hrtime.bigint();
    const lifecycleDaemons = new Map<Runtime, Daemon>();
    for (const rt of opts.runtimes) {
      try {
        const d = await start(rt, 'lc', images);
        await pullImages(d, images);
        lifecycleDaemons.set(rt, d);
        say(`${rt.padEnd(10)} ready in ${d.readySeconds.toFixed(2)} s (pid ${d.pid}, ${d.dir})`);
      } catch (err) {
        fail(rt, 'start and pull', err);
      }
    }
    // ABBA: berth, containerd, containerd, berth, berth, … (each runtime gets `rounds` rounds).
    const schedule: { rt: Runtime; round: number }[] = [];
    for (let k = 0; k < opts.rounds; k++) {
      for (const rt of k % 2 === 0 ? opts.runtimes : [...opts.runtimes].reverse()) schedule.push({ rt, round: k + 1 });
    }
    for (const { rt, round } of schedule) {
      const d = lifecycleDaemons.get(rt);
      if (isInterrupted()) break;
      if (!d) continue;
      const t = process.hrtime.bigint();
      try {
        await lifecycleRound(d, results.get(rt) as RuntimeResults, round, images, opts, isInterrupted);
        say(`${rt.padEnd(10)} lifecycle round ${round}: ${opts.pods} pods in ${(msSince(t) / 1000).toFixed(1)} s`);
      } catch (err) {
        if (isInterrupted()) break;
        fail(rt, `lifecycle round ${round}`, err, d);
      }
    }
    for (const d of lifecycleDaemons.values()) {
      const problems = await stopDaemon(d);
      for (const p of problems) say(`  ${p}`);
    }
    say(`phase 1 took ${(msSince(t1) / 1000).toFixed(1)} s`);

    // Phase 2 ---------------------------------------------------------------------------------------------------
    const t2 = process.hrtime.bigint();
    const listDaemons: Daemon[] = [];
    for (const rt of opts.runtimes) {
      if (isInterrupted()) break;
      let d: Daemon | undefined;
      try {
        d = await start(rt, 'mem', images);
        await fillForLists(d, results.get(rt) as RuntimeResults, images, opts, isInterrupted);
        listDaemons.push(d);
        say(`${rt.padEnd(10)} memory/list setup done`);
      } catch (err) {
        if (isInterrupted()) break;
        fail(rt, 'memory/list setup', err, d);
      }
    }
    if (!isInterrupted() && listDaemons.length > 0) await timeLists(listDaemons, results, opts.listCalls);
    for (const d of listDaemons) {
      const problems = await stopDaemon(d);
      for (const p of problems) say(`  ${p}`);
    }
    say(`phase 2 took ${(msSince(t2) / 1000).toFixed(1)} s`);

    if (isInterrupted()) return 130;
    report(results, opts);
    say(`\nload at the end ${os.loadavg().map((l) => l.toFixed(2)).join(' ')}; total ${(msSince(startedAt) / 1000).toFixed(1)} s`);
  } finally {
    await cleanup();
  }
  return [...results.values()].some((r) => r.errors.size > 0) ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`bench:lifecycle failed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(2);
  },
);
