// Pod and container lifecycle benchmark: berth against Debian's containerd 1.6, both driven through their CRI sockets
// by the same client with the same sequence of calls, the same runc (cgroupfs) and the same busybox image.
//
//   node dist/bench/lifecycle.js [--phases=lifecycle,memory,network] [--pods=20] [--rounds=4] [--warmup-pods=3]
//                                [--warmup-reads=100]
//                                [--pod-pid=container|pod]
//                                [--rss-pods=30] [--list-pods=20] [--list-per-pod=10] [--list-calls=50]
//                                [--net-pods=20] [--net-rounds=2] [--runtimes=berth,containerd] [--keep]
//
// Phase 1 (lifecycle): one daemon per runtime (fresh temp dir). A round runs `--pods` pods through the whole lifecycle,
// one operation at a time across all pods (RunPodSandbox for every pod, then CreateContainer for every pod, …),
// each RPC timed on its own. Rounds alternate runtimes in ABBA order (berth, containerd, containerd, berth, …).
// Before them, an untimed warm-up round per runtime (`--warmup-pods` pods) that also makes `--warmup-reads` rounds of
// the reads a kubelet makes all the time (ContainerStatus, PodSandboxStatus, ListContainers, ListPodSandbox): a daemon
// in service has answered those thousands of times, and without them the JIT-compiled half of berth would be timed
// as no kubelet sees it after its first minute (`--warmup-reads=0` times it cold). Beside each timed ContainerStatus,
// the same client calls a bare node:http2 server (bench/http2-floor.ts) returning berth's reply: the floor that
// Node's HTTP/2 stack sets under any Node server.
// Phase 2 (memory and lists): fresh daemons again. berth's RSS at a fresh start, then with `--rss-pods` pods of one
// running container each; then pods are removed down to `--list-pods`, each filled up to `--list-per-pod`
// containers (the first running, the others created only), and ListContainers / ListPodSandbox are timed, the two
// runtimes interleaved call by call.
// Phase 3 (network): fresh daemons with the same CNI conflist (bridge + host-local + portmap on a bridge and /24 of
// the run's own); pods with one hostPort go through RunPodSandbox, StopPodSandbox, RemovePodSandbox, ABBA as in
// phase 1. berth's CNI plugin time per pod comes from its berth_cni_operation_duration_seconds metric, scraped
// around each call, so RunPodSandbox splits into plugin time and berth's own.
//
// Phases 1 and 2 use the host network (namespace_options.network NODE) on both sides, so they measure the runtimes'
// own work and not CNI plugins, which take most of a networked RunPodSandbox (phase 3 has those).
//
// Everything lives in fresh temp dirs and one unique cgroup root; pods, containers, mounts, cgroups, containerd's
// shim sockets in /run/containerd/s, the temp dirs and (phase 3) the bridge, its veths, iptables rules, netns pins and
// libcni result files are removed at the end, after a failure and on Ctrl-C.
// Prints a report; exits non-zero only if something failed to run (a daemon did not start, an RPC failed).
import { spawnSync } from 'node:child_process';
import { createHash, randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { packageRoot, packageVersion } from '../src/common/package-root';
import type { ContainerConfig } from '../src/server/generated/runtime/v1/ContainerConfig';
import type { PodSandboxConfig } from '../src/server/generated/runtime/v1/PodSandboxConfig';
import { buildImage, buildLayer, LayerEntry } from '../test/fixtures/oci-image';
import { Registry, startRegistry } from '../test/fixtures/registry';
import { connectCri, type CriClient } from '../test/helpers/cri-client';
import { startDaemon } from '../test/helpers/daemon';
import { host, HOSTPORT_PREFIX, ipamReservations, iptablesLines, iptablesSave, type IptablesOptions, networkLine, purgeIptables, readdirOr, vethsOn } from '../test/helpers/host-net';
import { startContainerd } from './containerd';
import { startFloor, type Floor, type FloorKind } from './http2-floor';
import { cleanUpOnInterrupt, ensureContainerd, MiB, mountsUnder, procStatusBytes, removeTree } from './sys';

type Runtime = 'berth' | 'containerd';
const RUNTIMES: readonly Runtime[] = ['berth', 'containerd'];
type Phase = 'lifecycle' | 'memory' | 'network';
const PHASES: readonly Phase[] = ['lifecycle', 'memory', 'network'];

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
  phases: Set<Phase>;
  pods: number;
  rounds: number;
  /** Pods in the untimed warm-up round per runtime before the timed lifecycle rounds (0 = none). */
  warmupPods: number;
  /** Rounds of the kubelet's read calls on the warm-up round's pods (0 = none). */
  warmupReads: number;
  podPid: 'container' | 'pod';
  rssPods: number;
  listPods: number;
  listPerPod: number;
  listCalls: number;
  netPods: number;
  netRounds: number;
  runtimes: Runtime[];
  keep: boolean;
}

function parseArgs(argv: string[]): Options {
  const opts: Options = {
    phases: new Set(PHASES), pods: 20, rounds: 4, warmupPods: 3, warmupReads: 100, podPid: 'container', rssPods: 30, listPods: 20, listPerPod: 10, listCalls: 50,
    netPods: 20, netRounds: 2, runtimes: [...RUNTIMES], keep: false,
  };
  const usage = 'usage: lifecycle.js [--phases=lifecycle,memory,network] [--pods=N] [--rounds=N] [--warmup-pods=N] [--warmup-reads=N] [--pod-pid=container|pod] ' +
    '[--rss-pods=N] [--list-pods=N] [--list-per-pod=N] [--list-calls=N] [--net-pods=N] [--net-rounds=N] ' +
    '[--runtimes=berth,containerd] [--keep]';
  const ints: Record<string, keyof Options> = {
    '--pods': 'pods', '--rounds': 'rounds', '--warmup-pods': 'warmupPods', '--warmup-reads': 'warmupReads', '--rss-pods': 'rssPods', '--list-pods': 'listPods', '--list-per-pod': 'listPerPod',
    '--list-calls': 'listCalls', '--net-pods': 'netPods', '--net-rounds': 'netRounds',
  };
  for (const arg of argv) {
    const [key = '', value = ''] = arg.split('=', 2);
    const intKey = ints[key];
    if (intKey && /^\d+$/.test(value)) (opts as unknown as Record<string, number>)[intKey] = Number(value);
    else if (key === '--pod-pid' && (value === 'container' || value === 'pod')) opts.podPid = value;
    else if (key === '--runtimes' && value !== '' && value.split(',').every((r) => (RUNTIMES as readonly string[]).includes(r))) {
      opts.runtimes = [...new Set(value.split(','))] as Runtime[];
    } else if (key === '--phases' && value !== '' && value.split(',').every((p) => (PHASES as readonly string[]).includes(p))) {
      opts.phases = new Set(value.split(',') as Phase[]);
    } else if (key === '--keep') opts.keep = true;
    else throw new Error(`${usage}  (bad argument ${arg})`);
  }
  if (opts.rssPods < opts.listPods) throw new Error('--rss-pods must be ≥ --list-pods (the list phase reuses those pods)');
  if (opts.pods < 1 || opts.rounds < 1 || opts.listPerPod < 1 || opts.listCalls < 1) throw new Error(usage);
  // One /24 holds every pod of a round (253 addresses less the gateway).
  if (opts.netPods < 1 || opts.netPods > 250 || opts.netRounds < 1) throw new Error(`${usage}  (--net-pods is 1..250)`);
  return opts;
}

// ---------------------------------------------------------------------------------------------------------------------
// Small helpers

const say = (s: string): void => void process.stdout.write(`${s}\n`);
const mib = (bytes: number): string => (bytes / MiB).toFixed(1);
const msSince = (t0: bigint): number => Number(process.hrtime.bigint() - t0) / 1e6;
const deadline = (): { deadline: number } => ({ deadline: Date.now() + RPC_DEADLINE_MS });

/** ABBA: berth, containerd, containerd, berth, berth, … (each runtime gets `rounds` rounds). */
function abba(runtimes: Runtime[], rounds: number): { rt: Runtime; round: number }[] {
  const schedule: { rt: Runtime; round: number }[] = [];
  for (let k = 0; k < rounds; k++) {
    for (const rt of k % 2 === 0 ? runtimes : [...runtimes].reverse()) schedule.push({ rt, round: k + 1 });
  }
  return schedule;
}

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

/**
 * Both daemons keep their runtime state (berth's state_dir, containerd's state: pod dirs, namespace pins, sockets,
 * runc state) in `<dir>/state`, and on a node that is /run: a tmpfs on any systemd host (berth's default state_dir is
 * /run/berth, containerd's /run/containerd). These machines have no systemd and /run is on the root disk, so the
 * benchmark mounts the tmpfs itself; roots (images, checkpoints, containerd's database) stay on disk. removeTree
 * unmounts it at the end.
 */
function mountStateTmpfs(dir: string): void {
  const state = path.join(dir, 'state');
  fs.mkdirSync(state, { recursive: true });
  const r = spawnSync('/usr/bin/mount', ['-t', 'tmpfs', '-o', 'mode=0711,size=1g', 'tmpfs', state], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`mounting a tmpfs on ${state}: ${r.stderr.trim() || `exit ${r.status}`}`);
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
  /** berth's metrics port (phase 3 scrapes its CNI plugin times), undefined when metrics are off. */
  metricsPort?: number;
  /** berth's state dir (pod dirs, netns pins, CNI cache), undefined for containerd. */
  stateDir?: string;
  /** containerd's netns pins under /var/run/netns, from PodSandboxStatus (removed at cleanup if left). */
  netnsPaths: Set<string>;
  readySeconds: number;
  logs(): string;
  stop(): Promise<unknown>;
}

/** `conflist`: the CNI network for pods (and metrics on, for the CNI plugin times); without it no network. */
async function startBerth(dir: string, registryHost: string, cgroupRoot: string, phase: string, conflist?: string): Promise<Daemon> {
  const started = process.hrtime.bigint();
  if (conflist !== undefined) {
    fs.mkdirSync(path.join(dir, 'cni'), { recursive: true });
    fs.writeFileSync(path.join(dir, 'cni', '10-bench.conflist'), conflist);
  }
  const d = await startDaemon({
    dir,
    metrics: conflist !== undefined,
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
    metricsPort: d.metricsPort,
    stateDir: d.stateDir,
    netnsPaths: new Set(),
    readySeconds: Number(process.hrtime.bigint() - started) / 1e9,
    logs: () => d.logs(),
    stop: () => d.stop(),
  };
}

async function startPeer(dir: string, registryHost: string, sandboxImage: string, cgroupRoot: string, phase: string, conflist?: string): Promise<Daemon> {
  const c = await startContainerd({ dir, registryHost, sandboxImage, cniConflist: conflist });
  return {
    rt: 'containerd',
    pid: c.pid,
    dir,
    client: c.client(),
    helperComms: ['containerd-shim'], // comm is cut to 15 bytes: containerd-shim-runc-v2
    cgroupParent: `${cgroupRoot}/containerd-${phase}`,
    sandboxIds: new Set(),
    netnsPaths: new Set(),
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

/** Untimed: `rounds` rounds of a kubelet's reads on these pods and containers (the floor gets its ContainerStatus too). */
async function warmupReads(d: Daemon, pods: [string, string][], rounds: number, probe?: FloorProbe): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    for (const [podId, ctrId] of pods) {
      await d.client.runtime.ContainerStatus({ container_id: ctrId }, deadline());
      await d.client.runtime.PodSandboxStatus({ pod_sandbox_id: podId }, deadline());
      if (probe) for (const f of probe.floors) await f.client.runtime.ContainerStatus({ container_id: ctrId }, deadline());
    }
    await d.client.runtime.ListContainers({}, deadline());
    await d.client.runtime.ListPodSandbox({}, deadline());
  }
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
  /** Phase 3: one sample per pod whose RunPodSandbox succeeded. */
  net: NetSample[];
  /** Phase 3: what the rounds' teardowns left on the host, and how many checks ran. */
  netLeftovers: string[];
  netChecks: number;
  /** Phase 1: the floor servers, timed beside each of this runtime's timed ContainerStatus calls. */
  floor: Record<FloorKind, number[]>;
}

function newResults(): RuntimeResults {
  return {
    ops: new Map(OPS.map((o) => [o, []])), combined: new Map(COMBINED.map((o) => [o, []])), lists: new Map(LIST_OPS.map((o) => [o, []])),
    errors: new Map(), exitCodes: new Map(), notes: [], rss: [], net: [], netLeftovers: [], netChecks: 0, floor: { http2: [], 'grpc-js': [], 'raw-h2': [] },
  };
}

function recordError(r: RuntimeResults, op: string, err: unknown): string {
  // Ids differ between otherwise equal errors: count them as one.
  const text = `${op}: ${errorText(err)}`.replace(/\b[0-9a-f]{64}\b/g, '<id>');
  r.errors.set(text, (r.errors.get(text) ?? 0) + 1);
  return text;
}

/** The floor servers (bench/http2-floor.ts), each with a client of its own. */
interface FloorProbe {
  floors: { floor: Floor; client: CriClient }[];
  /** Whether the floors answer with a reply of berth's yet (they start with an empty one). */
  hasReply: boolean;
}

async function lifecycleRound(
  d: Daemon, r: RuntimeResults, round: number, images: Images, opts: Options, interrupted: () => boolean, probe?: FloorProbe,
): Promise<void> {
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
    if (probe && !probe.hasReply && d.rt === 'berth') {
      for (const f of probe.floors) f.floor.setReply(st);
      probe.hasReply = true;
    }
  });
  if (probe && round > 0) {
    // The floors beside each timed call, in the same state of the machine (a sample per call, not in the step's time).
    for (const s of slots) {
      if (s.broken) continue;
      for (const { floor, client } of probe.floors) {
        const t0 = process.hrtime.bigint();
        await client.runtime.ContainerStatus({ container_id: ctr(s) }, deadline());
        r.floor[floor.kind].push(msSince(t0));
      }
    }
  }
  if (round === 0) await warmupReads(d, slots.filter((s) => !s.broken).map((s) => [s.podId as string, ctr(s)]), opts.warmupReads, probe);
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
// Phase 3: pods on a CNI bridge network (bridge + host-local + portmap), the same conflist for both runtimes

const NET_OPS = ['RunPodSandbox', 'StopPodSandbox', 'RemovePodSandbox'] as const;
type NetOp = (typeof NET_OPS)[number];
/** berth's own share of a networked RunPodSandbox (what is not CNI plugin time), p50 and overall. */
const TARGET_OWN_SHARE = 0.1;
/** containerd 1.6 pins each pod's netns here (hard-coded); go-cni leaves libcni's result cache at its default. */
const NETNS_DIR = '/var/run/netns';
const CNI_RESULTS_DIR = '/var/lib/cni/results';
/** The benchmark's iptables checks and cleanup are best effort: a failing iptables-save reads as no rules. */
const BEST_EFFORT: IptablesOptions = { ifSaveFails: 'empty' };

interface BenchNet {
  /** CNI network name: host-local's subdir, libcni's cache file prefix, iptables comments. */
  name: string;
  bridge: string;
  /** "10.233.N": the network is `${prefix}.0/24`. */
  prefix: string;
  ipamDir: string;
  conflist: string;
  /** Pod i of a round maps host port portBase + i to its port 80. */
  portBase: number;
  /** portmap's shared chains existed before the run: if not, the run removes them once nothing uses them. */
  hostportChainsExisted: boolean;
  /** Host dirs the plugins or containerd may create, that did not exist before the run (removed if left empty). */
  newHostDirs: string[];
  ipForwardBefore: string;
}

/** One pod of a network round; cni* are berth's plugin times during the call (ms), from its metrics. */
interface NetSample {
  run: number;
  stop?: number;
  remove?: number;
  cniAdd?: Record<string, number>;
  cniDel?: Record<string, number>;
}

const sumOf = (r: Record<string, number> | undefined): number => Object.values(r ?? {}).reduce((a, b) => a + b, 0);

function readIpForward(): string {
  try {
    return fs.readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();
  } catch {
    return '?';
  }
}

function benchNetwork(ipamDir: string, pods: number): BenchNet {
  const hex = randomBytes(2).toString('hex');
  const prefix = `10.233.${1 + randomInt(254)}`; // 10.233.0.0/24 is the daemon tests'
  const bridge = `berthbench${hex}`; // 14 bytes, within IFNAMSIZ
  const name = `berth-bench-${hex}`;
  const conflist = JSON.stringify(
    {
      cniVersion: '1.0.0',
      name,
      plugins: [
        {
          type: 'bridge', bridge, isGateway: true, ipMasq: true, hairpinMode: true,
          ipam: { type: 'host-local', dataDir: ipamDir, routes: [{ dst: '0.0.0.0/0' }], ranges: [[{ subnet: `${prefix}.0/24`, gateway: `${prefix}.1` }]] },
        },
        { type: 'portmap', capabilities: { portMappings: true } },
      ],
    },
    null,
    2,
  );
  return {
    name, bridge, prefix, ipamDir, conflist,
    portBase: 20_000 + randomInt(40_000 - pods),
    hostportChainsExisted: iptablesSave('iptables', 'empty').includes(`:${HOSTPORT_PREFIX}DNAT `),
    newHostDirs: [NETNS_DIR, CNI_RESULTS_DIR, path.dirname(CNI_RESULTS_DIR)].filter((d) => !fs.existsSync(d)),
    ipForwardBefore: readIpForward(),
  };
}

/** A phase-1 pod config on the pod network instead of the host's, with a hostname and one host port. */
function netPodConfig(d: Daemon, name: string, logRoot: string, hostPort: number, opts: Options): PodSandboxConfig {
  const c = podConfig(d, name, logRoot, opts);
  return {
    ...c,
    hostname: name,
    labels: { bench: 'network' },
    port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: hostPort, host_ip: '' }],
    linux: { ...c.linux, security_context: { namespace_options: { ...c.linux?.security_context?.namespace_options, network: 'POD' } } },
  };
}

/** berth_cni_operation_duration_seconds_sum by "op plugin", seconds. */
async function cniSums(port: number): Promise<Map<string, number>> {
  const res = await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(10_000) });
  if (!res.ok) throw new Error(`GET /metrics: HTTP ${res.status}`);
  const sums = new Map<string, number>();
  for (const m of (await res.text()).matchAll(/^berth_cni_operation_duration_seconds_sum\{([^}]*)\} (\S+)$/gm)) {
    const labels = new Map([...(m[1] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1] ?? '', l[2] ?? '']));
    sums.set(`${labels.get('op') ?? ''} ${labels.get('plugin') ?? ''}`, Number(m[2]));
  }
  return sums;
}

/** ms of `op` plugin time by plugin between two scrapes. */
function cniDelta(before: Map<string, number>, after: Map<string, number>, op: 'ADD' | 'DEL'): Record<string, number> {
  const by: Record<string, number> = {};
  for (const [key, v] of after) {
    const [o, plugin = ''] = key.split(' ');
    const ms = (v - (before.get(key) ?? 0)) * 1000;
    if (o === op && ms > 0) by[plugin] = ms;
  }
  return by;
}

/** containerd's netns pin from its verbose PodSandboxStatus (the runtime spec's network namespace path). */
function containerdNetns(info: Record<string, string>): string | undefined {
  try {
    const parsed = JSON.parse(info['info'] ?? '{}') as { runtimeSpec?: { linux?: { namespaces?: { type?: string; path?: string }[] } } };
    return parsed.runtimeSpec?.linux?.namespaces?.find((n) => n.type === 'network')?.path || undefined;
  } catch {
    return undefined;
  }
}

async function waitNetworkReady(d: Daemon): Promise<void> {
  const until = Date.now() + 15_000;
  for (;;) {
    const st = await d.client.runtime.Status({}, deadline());
    const cond = st.status?.conditions.find((x) => x.type === 'NetworkReady');
    if (cond?.status) return;
    if (Date.now() > until) throw new Error(`NetworkReady still false: ${cond?.reason ?? ''} ${cond?.message ?? ''}`);
    await delay(100);
  }
}

/**
 * One round: `--net-pods` pods through RunPodSandbox, then StopPodSandbox, then RemovePodSandbox, one operation at a
 * time across all pods, each call timed alone; for berth, its metrics are scraped (untimed) around each call. Then the
 * host is checked for anything the round left.
 */
async function networkRound(d: Daemon, r: RuntimeResults, round: number, net: BenchNet, opts: Options, interrupted: () => boolean): Promise<void> {
  const logRoot = path.join(d.dir, 'pod-logs');
  const slots: Slot[] = Array.from({ length: opts.netPods }, (_, i) => {
    const name = `net-r${round}-p${i}`;
    return { name, config: netPodConfig(d, name, logRoot, net.portBase + i, opts), ctrIds: [], times: {} };
  });
  const cni = new Map<Slot, { ADD?: Record<string, number>; DEL?: Record<string, number> }>(slots.map((s) => [s, {}]));
  const port = d.metricsPort;

  const step = async (op: NetOp, call: (s: Slot) => Promise<unknown>, cniOp?: 'ADD' | 'DEL'): Promise<void> => {
    for (const s of slots) {
      if (interrupted()) throw new Error('interrupted');
      if (s.broken) continue;
      const before = cniOp && port !== undefined ? await cniSums(port) : undefined;
      const t0 = process.hrtime.bigint();
      try {
        await call(s);
      } catch (err) {
        s.broken = recordError(r, `${op} (network)`, err);
        continue;
      }
      s.times[op] = msSince(t0);
      const slotCni = cni.get(s);
      if (before && cniOp && port !== undefined && slotCni) slotCni[cniOp] = cniDelta(before, await cniSums(port), cniOp);
      if (op === 'RunPodSandbox') {
        // Untimed: the pod must have an address from the bench network (else no CNI ran), and containerd's netns
        // pin is noted for the cleanup.
        try {
          const st = await d.client.runtime.PodSandboxStatus({ pod_sandbox_id: s.podId, verbose: d.rt === 'containerd' }, deadline());
          const ns = d.rt === 'containerd' ? containerdNetns(st.info) : undefined;
          if (ns) d.netnsPaths.add(ns);
          const ip = st.status?.network?.ip ?? '';
          if (!ip.startsWith(`${net.prefix}.`)) recordError(r, 'PodSandboxStatus (network)', new Error(`pod IP "${ip}" is not in ${net.prefix}.0/24`));
        } catch (err) {
          recordError(r, 'PodSandboxStatus (network)', err);
        }
      }
    }
  };

  await step('RunPodSandbox', (s) => runPod(d, s), 'ADD');
  await step('StopPodSandbox', (s) => d.client.runtime.StopPodSandbox({ pod_sandbox_id: s.podId }, deadline()), 'DEL');
  await step('RemovePodSandbox', (s) => d.client.runtime.RemovePodSandbox({ pod_sandbox_id: s.podId }, deadline()));

  for (const s of slots) {
    const run = s.times.RunPodSandbox;
    if (run === undefined) continue;
    const c = cni.get(s);
    r.net.push({ run, stop: s.times.StopPodSandbox, remove: s.times.RemovePodSandbox, cniAdd: c?.ADD, cniDel: c?.DEL });
  }
  for (const s of slots) {
    if (s.broken && s.podId) {
      const e = await teardownPod(d, s.podId);
      if (e) r.notes.push(`network round ${round}: cleanup of broken pod ${s.name} failed: ${e}`);
    }
  }
  r.netChecks++;
  for (const l of netLeftovers(net, [d])) r.netLeftovers.push(`round ${round}: ${l}`);
}

/** Any iptables line of this run's network: its subnet, bridge or name, a pod's id or one of its chains. */
function ourIptablesLine(net: BenchNet, ids: string[]): (line: string) => boolean {
  return networkLine({ prefix: net.prefix, bridge: net.bridge, names: [net.name], ids });
}

/** What pods of these daemons left on the host after their teardown (the bridge itself excepted). */
function netLeftovers(net: BenchNet, daemons: Daemon[]): string[] {
  const ids = daemons.flatMap((d) => [...d.sandboxIds]);
  const out: string[] = [];
  for (const v of vethsOn(net.bridge)) out.push(`veth ${v} on ${net.bridge}`);
  for (const f of ipamReservations(net.ipamDir, net.name)) out.push(`host-local reservation ${f}`);
  for (const l of iptablesLines(ourIptablesLine(net, ids), BEST_EFFORT)) out.push(`iptables: ${l}`);
  for (const d of daemons) {
    for (const ns of d.netnsPaths) if (fs.existsSync(ns)) out.push(`netns ${ns}`);
    if (d.stateDir) {
      const pods = path.join(d.stateDir, 'pods');
      if (fs.existsSync(pods)) for (const m of mountsUnder(pods)) out.push(`mount ${m}`);
      for (const p of readdirOr(pods)) out.push(`pod dir ${path.join(pods, p)}`);
      for (const f of readdirOr(path.join(d.dir, 'root', 'cni-cache'))) out.push(`berth CNI cache ${f}`);
    }
  }
  for (const f of readdirOr(CNI_RESULTS_DIR)) if (f.startsWith(`${net.name}-`) || ids.some((id) => f.includes(id))) out.push(`libcni result ${f}`);
  return out;
}

/**
 * Removes whatever of the network is still on the host once the daemons are gone (normally just the bridge; more
 * after a failure or Ctrl-C): iptables lines, veths, the bridge, containerd's netns pins, libcni results, the
 * portmap chains and host dirs this run created. Returns what it removed.
 */
function cleanUpNetwork(net: BenchNet, daemons: Daemon[]): string[] {
  const ids = daemons.flatMap((d) => [...d.sandboxIds]);
  const done: string[] = [];
  const rules = purgeIptables(ourIptablesLine(net, ids), BEST_EFFORT);
  if (rules) done.push(`${rules} iptables rule(s)/chain(s)`);
  if (!net.hostportChainsExisted) {
    // Only while no other pod on the host has a host port (no rule in the DNAT chain): another user's are kept.
    const save = iptablesSave('iptables', 'empty');
    if (save.includes(`:${HOSTPORT_PREFIX}DNAT `) && !save.includes(`-A ${HOSTPORT_PREFIX}DNAT `)) {
      if (purgeIptables((l) => l.includes(HOSTPORT_PREFIX), { ...BEST_EFFORT, progs: ['iptables'] }) > 0) done.push(`portmap's ${HOSTPORT_PREFIX}* chains (this run made them)`);
    }
  }
  const veths = vethsOn(net.bridge).filter((v) => host('ip', ['link', 'del', v]).ok);
  if (veths.length) done.push(`${veths.length} veth(s)`);
  if (host('ip', ['link', 'show', net.bridge]).ok && host('ip', ['link', 'del', net.bridge]).ok) done.push(`bridge ${net.bridge}`);
  let netns = 0;
  for (const d of daemons) {
    for (const ns of d.netnsPaths) {
      if (!fs.existsSync(ns)) continue;
      host('umount', ['-l', ns]);
      fs.rmSync(ns, { force: true });
      netns++;
    }
  }
  if (netns) done.push(`${netns} netns pin(s)`);
  const results = readdirOr(CNI_RESULTS_DIR).filter((f) => f.startsWith(`${net.name}-`) || ids.some((id) => f.includes(id)));
  for (const f of results) fs.rmSync(path.join(CNI_RESULTS_DIR, f), { force: true });
  if (results.length) done.push(`${results.length} libcni result file(s)`);
  for (const dir of net.newHostDirs) {
    try {
      // `ip netns` makes /run/netns a mount point of its own; it goes too if this run created it and it is empty.
      if (readdirOr(dir).length === 0 && mountsUnder(dir).length > 0) host('umount', ['-l', dir]);
      fs.rmdirSync(dir); // deepest first by construction; only if empty
      done.push(dir);
    } catch {
      // not empty (someone else's now) or never made
    }
  }
  return done;
}

// ---------------------------------------------------------------------------------------------------------------------
// Report

function table(rows: string[][]): void {
  const widths = (rows[0] ?? []).map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  for (const r of rows) say('  ' + r.map((c, i) => (i === 0 ? c.padEnd(widths[i] ?? 0) : c.padStart(widths[i] ?? 0))).join('  '));
}

const f1 = (n: number): string => (Number.isFinite(n) ? n.toFixed(n < 10 ? 2 : 1) : '—');

const ratioText = (r: number): string => (Number.isFinite(r) ? r.toFixed(2) : '—');
const share = (x: number): string => (Number.isFinite(x) ? `${(x * 100).toFixed(1)} %` : '—');

function report(results: Map<Runtime, RuntimeResults>, opts: Options, net: BenchNet | undefined): void {
  if (opts.phases.has('lifecycle')) reportLifecycle(results, opts);
  if (opts.phases.has('memory')) reportMemory(results, opts);
  if (opts.phases.has('network') && net) reportNetwork(results, opts, net);
  for (const [rt, r] of results) {
    for (const n of r.notes) say(`  ${rt}: ${n}`);
    for (const [e, n] of r.errors) say(`  ${rt} ERROR ×${n}: ${e}`);
  }
}

function reportLifecycle(results: Map<Runtime, RuntimeResults>, opts: Options): void {
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
  const floorRows: [string, number[]][] = [
    ['a bare node:http2 server (no gRPC library)', [...(b?.floor.http2 ?? []), ...(c?.floor.http2 ?? [])]],
    ['a bare grpc-js server (the server berth used before src/server/h2)', [...(b?.floor['grpc-js'] ?? []), ...(c?.floor['grpc-js'] ?? [])]],
    ['a raw-socket HTTP/2 sketch (one write per reply; bench/http2-floor.ts)', [...(b?.floor['raw-h2'] ?? []), ...(c?.floor['raw-h2'] ?? [])]],
  ];
  if (floorRows.some(([, xs]) => xs.length > 0)) {
    say('  floors — the same ContainerStatus reply from servers in their own processes, called beside each timed ContainerStatus:');
    const of = (xs: number[], floor: number[]): string => (xs.length > 0 ? `${(pct(xs, 0.5) / pct(floor, 0.5)).toFixed(2)}×` : 'n/a');
    for (const [what, xs] of floorRows) {
      say(`    ${what}: p50 ${f1(pct(xs, 0.5))} ms, p90 ${f1(pct(xs, 0.9))} ms (n ${xs.length}); berth's ContainerStatus p50 is ` +
        `${of(b?.ops.get('ContainerStatus') ?? [], xs)} it, containerd's ${of(c?.ops.get('ContainerStatus') ?? [], xs)}`);
    }
  }
  if (both) {
    say(`  every lifecycle ratio ≤ ${TARGET_RATIO.toFixed(1)}: ${allPass ? 'PASS' : 'FAIL'}   (goal ≤ ${GOAL_RATIO}: ${allGoal ? 'met' : 'not met'})`);
  }
}

function reportMemory(results: Map<Runtime, RuntimeResults>, opts: Options): void {
  const b = results.get('berth');
  const c = results.get('containerd');
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
}

function reportNetwork(results: Map<Runtime, RuntimeResults>, opts: Options, net: BenchNet): void {
  const b = results.get('berth');
  const c = results.get('containerd');
  const both = b !== undefined && c !== undefined;
  const expected = opts.netPods * opts.netRounds;
  say('');
  say(
    `network, ${opts.netPods} pods × ${opts.netRounds} round(s) per runtime (ABBA), no containers; one conflist for both: bridge ` +
      `${net.bridge} (ipMasq, hairpin) + host-local ${net.prefix}.0/24 + portmap, one hostPort per pod; ms per RPC:`,
  );
  const rows: string[][] = [['operation', 'n', 'berth p50', 'p90', 'containerd p50', 'p90', 'ratio p50', 'p90', 'target ≤ 1.0']];
  let runPass = both;
  for (const op of NET_OPS) {
    const pick = (r: RuntimeResults | undefined): number[] =>
      (r?.net ?? []).map((x) => (op === 'RunPodSandbox' ? x.run : op === 'StopPodSandbox' ? x.stop : x.remove)).filter((x): x is number => x !== undefined);
    const bs = pick(b);
    const cs = pick(c);
    const ratio = pct(bs, 0.5) / pct(cs, 0.5);
    let verdict = both ? 'info' : 'n/a';
    if (op === 'RunPodSandbox' && both) {
      const ok = Number.isFinite(ratio) && ratio <= TARGET_RATIO && bs.length === expected;
      runPass = ok;
      verdict = ok ? 'PASS' : 'FAIL';
    }
    rows.push([op, `${bs.length}/${cs.length}`, f1(pct(bs, 0.5)), f1(pct(bs, 0.9)), f1(pct(cs, 0.5)), f1(pct(cs, 0.9)), ratioText(ratio), ratioText(pct(bs, 0.9) / pct(cs, 0.9)), verdict]);
  }
  table(rows);

  // berth's calls split into CNI plugin time (as berth times each plugin run: spawn to exit) and the rest.
  const withAdd = (b?.net ?? []).filter((x) => x.cniAdd !== undefined);
  const withDel = (b?.net ?? []).filter((x) => x.stop !== undefined && x.cniDel !== undefined);
  const own = (call: number, cni: Record<string, number> | undefined): number => call - sumOf(cni);
  const plugins = (pick: (x: NetSample) => Record<string, number> | undefined, list: NetSample[]): string[] =>
    [...new Set(list.flatMap((x) => Object.keys(pick(x) ?? {})))];
  const srows: string[][] = [['berth, ms per pod', 'p50', 'p90', 'share p50', 'share overall']];
  const addRow = (label: string, xs: number[], calls: number[]): void => {
    const shares = xs.map((x, i) => x / (calls[i] as number));
    const overall = xs.reduce((a, v) => a + v, 0) / calls.reduce((a, v) => a + v, 0);
    srows.push([label, f1(pct(xs, 0.5)), f1(pct(xs, 0.9)), share(pct(shares, 0.5)), share(overall)]);
  };
  const runs = withAdd.map((x) => x.run);
  addRow('RunPodSandbox', runs, runs);
  addRow('  CNI ADD, all plugins', withAdd.map((x) => sumOf(x.cniAdd)), runs);
  for (const p of plugins((x) => x.cniAdd, withAdd)) addRow(`    ${p}`, withAdd.map((x) => x.cniAdd?.[p] ?? 0), runs);
  addRow("  berth's own", withAdd.map((x) => own(x.run, x.cniAdd)), runs);
  const stops = withDel.map((x) => x.stop as number);
  addRow('StopPodSandbox', stops, stops);
  addRow('  CNI DEL, all plugins', withDel.map((x) => sumOf(x.cniDel)), stops);
  for (const p of plugins((x) => x.cniDel, withDel)) addRow(`    ${p}`, withDel.map((x) => x.cniDel?.[p] ?? 0), stops);
  addRow("  berth's own", withDel.map((x) => own(x.stop as number, x.cniDel)), stops);
  table(srows);

  const ownShares = withAdd.map((x) => own(x.run, x.cniAdd) / x.run);
  const ownP50 = pct(ownShares, 0.5);
  const ownOverall = withAdd.reduce((a, x) => a + own(x.run, x.cniAdd), 0) / withAdd.reduce((a, x) => a + x.run, 0);
  const ownPass = withAdd.length === expected && ownP50 <= TARGET_OWN_SHARE && ownOverall <= TARGET_OWN_SHARE;
  if (b) {
    say(
      `  berth's own share of RunPodSandbox, (RunPodSandbox − CNI ADD) / RunPodSandbox: p50 ${share(ownP50)}, overall ${share(ownOverall)}` +
        `   target ≤ ${TARGET_OWN_SHARE * 100} %: ${ownPass ? 'PASS' : 'FAIL'}`,
    );
  }
  if (both) say(`  RunPodSandbox p50 ratio berth / containerd ≤ ${TARGET_RATIO.toFixed(1)}: ${runPass ? 'PASS' : 'FAIL'}`);
  for (const [rt, r] of results) {
    const verdict = r.netChecks === 0 ? 'n/a' : r.netLeftovers.length === 0 ? 'PASS' : 'FAIL';
    const what = r.netLeftovers.length === 0 ? 'none' : `${r.netLeftovers.length}:\n      ${r.netLeftovers.slice(0, 12).join('\n      ')}`;
    say(`  ${rt}: left after ${r.netChecks} round teardown(s) (veths, host-local reservations, iptables, netns, pod dirs, CNI caches): ${what}   ${verdict}`);
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
    `phases: ${[...opts.phases].join(', ')}; lifecycle and memory on the host network (no netns, no CNI on either side); ` +
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
  let network: BenchNet | undefined;

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
      // After the daemons tore their pods down (CNI DEL): normally only the bridge is left.
      const netDone = network ? cleanUpNetwork(network, allDaemons) : [];
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
      if (network) {
        const fwd = readIpForward();
        say(
          `network cleanup: ${netDone.length ? `removed ${netDone.join(', ')}` : 'nothing to remove'}` +
            (fwd !== network.ipForwardBefore ? `; net.ipv4.ip_forward ${network.ipForwardBefore} → ${fwd} (the bridge plugin's isGateway; left as is)` : ''),
        );
      }
    })());
  const isInterrupted = cleanUpOnInterrupt(cleanup);

  const start = async (rt: Runtime, phase: string, images: Images, conflist?: string): Promise<Daemon> => {
    const dir = freshDir(`berth-bench-lc-${phase}-${rt}-`, dirs);
    mountStateTmpfs(dir);
    const d = rt === 'berth'
      ? await startBerth(dir, (registry as Registry).host, cgroupRoot, phase, conflist)
      : await startPeer(dir, (registry as Registry).host, images.pause, cgroupRoot, phase, conflist);
    daemons.push(d);
    allDaemons.push(d);
    return d;
  };
  const fail = (rt: Runtime, what: string, err: unknown, d?: Daemon): void => {
    const logs = d ? `\n--- ${rt} log (tail) ---\n${d.logs().trimEnd().split('\n').slice(-15).join('\n')}` : '';
    recordError(results.get(rt) as RuntimeResults, what, err);
    say(`${rt}: ${what} FAILED: ${errorText(err)}${logs}`);
  };
  /** Runs `rounds` rounds of `kind` (pods each) on the runtimes' daemons in ABBA order; a failed round is recorded. */
  const runRounds = async (
    ds: Map<Runtime, Daemon>,
    kind: string,
    rounds: number,
    pods: number,
    run: (d: Daemon, r: RuntimeResults, round: number) => Promise<void>,
  ): Promise<void> => {
    for (const { rt, round } of abba(opts.runtimes, rounds)) {
      const d = ds.get(rt);
      if (isInterrupted()) break;
      if (!d) continue;
      const t = process.hrtime.bigint();
      try {
        await run(d, results.get(rt) as RuntimeResults, round);
        say(`${rt.padEnd(10)} ${kind} round ${round}: ${pods} pods in ${(msSince(t) / 1000).toFixed(1)} s`);
      } catch (err) {
        if (isInterrupted()) break;
        fail(rt, `${kind} round ${round}`, err, d);
      }
    }
  };
  const stopAll = async (ds: Iterable<Daemon>): Promise<void> => {
    for (const d of ds) for (const p of await stopDaemon(d)) say(`  ${p}`);
  };

  try {
    registry = await startRegistry();
    const [busybox, pause] = [await buildBusyboxImage(), await buildPauseImage()];
    await registry.push('bench/busybox', 'v1', busybox);
    await registry.push('bench/pause', 'v1', pause);
    const images: Images = { busybox: `${registry.host}/bench/busybox:v1`, pause: `${registry.host}/bench/pause:v1` };
    say(`registry ${registry.host}: ${images.busybox}, ${images.pause} (sandbox_image); cgroup root ${cgroupRoot}`);

    // Phase 1 ---------------------------------------------------------------------------------------------------
    if (opts.phases.has('lifecycle')) {
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
      const floorDir = freshDir('berth-bench-lc-floor-', dirs);
      const floors = await Promise.all((['http2', 'grpc-js', 'raw-h2'] as const).map((kind) => startFloor(kind, path.join(floorDir, `${kind}.sock`))));
      const probe: FloorProbe = { floors: floors.map((floor) => ({ floor, client: connectCri(floor.socket) })), hasReply: false };
      // Untimed warm-up round per runtime: both daemons have run every RPC before the first timed call (Node's JIT,
      // Go's lazily built paths, page cache), so round 1 is not the only one that pays for it.
      for (const [rt, d] of lifecycleDaemons) {
        if (opts.warmupPods === 0 || isInterrupted()) break;
        await lifecycleRound(d, newResults(), 0, images, { ...opts, pods: opts.warmupPods }, isInterrupted, probe).catch((err: unknown) => fail(rt, 'warm-up round', err, d));
      }
      await runRounds(lifecycleDaemons, 'lifecycle', opts.rounds, opts.pods, (d, r, round) => lifecycleRound(d, r, round, images, opts, isInterrupted, probe));
      for (const f of probe.floors) {
        f.client.close();
        f.floor.stop();
      }
      await stopAll(lifecycleDaemons.values());
      say(`phase 1 (lifecycle) took ${(msSince(t1) / 1000).toFixed(1)} s`);
    }

    // Phase 2 ---------------------------------------------------------------------------------------------------
    if (opts.phases.has('memory') && !isInterrupted()) {
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
      await stopAll(listDaemons);
      say(`phase 2 (memory) took ${(msSince(t2) / 1000).toFixed(1)} s`);
    }

    // Phase 3 ---------------------------------------------------------------------------------------------------
    if (opts.phases.has('network') && !isInterrupted()) {
      const t3 = process.hrtime.bigint();
      const net = (network = benchNetwork(freshDir('berth-bench-lc-ipam-', dirs), opts.netPods));
      say(`network ${net.name}: bridge ${net.bridge}, ${net.prefix}.0/24, host-local dataDir ${net.ipamDir}, host ports ${net.portBase}..${net.portBase + opts.netPods - 1}`);
      const netDaemons = new Map<Runtime, Daemon>();
      for (const rt of opts.runtimes) {
        if (isInterrupted()) break;
        let d: Daemon | undefined;
        try {
          d = await start(rt, 'net', images, net.conflist);
          // containerd would pull its sandbox image inside the first RunPodSandbox: pull it first, untimed.
          if (d.rt === 'containerd') await d.client.image.PullImage({ image: { image: images.pause } }, deadline());
          await waitNetworkReady(d);
          netDaemons.set(rt, d);
          say(`${rt.padEnd(10)} ready with the bench network in ${d.readySeconds.toFixed(2)} s (pid ${d.pid}, ${d.dir})`);
        } catch (err) {
          if (isInterrupted()) break;
          fail(rt, 'network start', err, d);
        }
      }
      // Untimed warm-up round per runtime, as in phase 1 (these are fresh daemons).
      for (const [rt, d] of netDaemons) {
        if (opts.warmupPods === 0 || isInterrupted()) break;
        await networkRound(d, newResults(), 0, net, { ...opts, netPods: opts.warmupPods }, isInterrupted).catch((err: unknown) => fail(rt, 'network warm-up round', err, d));
      }
      await runRounds(netDaemons, 'network', opts.netRounds, opts.netPods, (d, r, round) => networkRound(d, r, round, net, opts, isInterrupted));
      await stopAll(netDaemons.values());
      say(`phase 3 (network) took ${(msSince(t3) / 1000).toFixed(1)} s`);
    }

    if (isInterrupted()) return 130;
    report(results, opts, network);
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
