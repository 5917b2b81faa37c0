// Pod namespaces (net, ipc, uts and a pause-held pid namespace), pinned as nsfs bind mounts in the pod's ns dir so
// runc joins them by path and a restarted berth finds them. Node's threads never setns/unshare (only the calling
// thread would move): child processes do it, berth-pod-ns (native/pod-ns.c) for a new pod's namespaces (a child forked
// by one long-lived `berth-pod-ns --serve`) and util-linux nsenter/unshare for sysctls and the pause holder.
import { execFile, spawn } from 'node:child_process';
import fsSync from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { CleanupStack } from '../common/cleanup-stack';
import { BerthError, ErrorCode, errnoCode, errorMessage, failedPrecondition, internal, invalidArgument } from '../common/errors';
import { packageRoot } from '../common/package-root';
import { PodNsServer } from './pod-ns-server';
import { MNT_DETACH, UMOUNT_NOFOLLOW, umount2 } from '../../native/mount';

const UNSHARE = '/usr/bin/unshare';
const NSENTER = '/usr/bin/nsenter';
const SH = '/bin/sh';
const CHILD_ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };
const CHILD_TIMEOUT_MS = 10_000;
const PIN_WAIT_MS = 2_000;
const PIN_NAMES = ['net', 'ipc', 'uts', 'pid'] as const;

export interface NamespacePaths {
  net?: string;
  ipc?: string;
  uts?: string;
}

export interface PodNamespaces extends NamespacePaths {
  dir: string;
}

export interface PauseProcess {
  /** Host pid of pause, PID 1 of the pod's pid namespace. */
  pid: number;
  /** The pinned pid namespace (`<pidNsDir>/pid`): stays valid by path across restarts, unlike /proc/<pid>/ns/pid. */
  pidNsPath: string;
}

/** Makes `dir` and pins each requested namespace there with one unshare child; undoes everything on failure. */
export async function createPodNamespaces(
  dir: string,
  kinds: { net: boolean; ipc: boolean; uts: boolean },
  hostname?: string,
): Promise<PodNamespaces> {
  const wanted = (['net', 'ipc', 'uts'] as const).filter((k) => kinds[k]);
  const name = kinds.uts && hostname ? hostname : undefined; // host UTS: the node's name stays
  if (name !== undefined && (Buffer.byteLength(name) > 64 || hasControlChar(name))) {
    throw invalidArgument(`hostname ${JSON.stringify(name)} is longer than 64 bytes or holds control characters`);
  }
  const result: PodNamespaces = { dir };
  const cleanup = new CleanupStack();
  let step = `making ${dir}`;
  try {
    mkdirOwned(dir, cleanup);
    for (const kind of wanted) {
      step = `creating the ${kind} pin file`;
      result[kind] = createPinFile(dir, kind, cleanup);
    }
    if (wanted.length === 0) return result;
    step = `unshare ${wanted.join(', ')}${name !== undefined ? `, set hostname ${JSON.stringify(name)}` : ''}${result.net !== undefined ? ', bring up loopback' : ''}`;
    // One process does it all (native/pod-ns.c), forked by the long-lived berth-pod-ns server rather than exec'd: an
    // exec is milliseconds that RunPodSandbox waits for, and Node's spawn blocks the event loop meanwhile.
    const res = await runPodNs([dir, ...wanted, ...(name !== undefined ? ['--hostname', name] : [])]);
    if (res.failed) {
      // Exit 3: a hostname hostname(1) would refuse is the caller's error, not ours.
      throw new BerthError(res.code === 3 ? 'INVALID_ARGUMENT' : 'INTERNAL', res.message);
    }
    return result;
  } catch (err) {
    throw await unwound(cleanup, `creating pod namespaces in ${dir}: ${step}`, err);
  }
}

/** Unmounts and removes every pin in `dir`, then `dir`; missing pins or dir are fine. */
export async function removePodNamespaces(dir: string): Promise<void> {
  await Promise.all(PIN_NAMES.map((pin) => removePin(path.join(dir, pin))));
  try {
    fsSync.rmdirSync(dir);
  } catch (err) {
    if (errnoCode(err) === 'ENOENT') return;
    throw internal(`removing pod namespace dir ${dir}: ${errorMessage(err)}`, err);
  }
}

// Namespaced sysctls (as runc and the kubelet list them); all others would change the host.
const IPC_SYSCTLS = new Set([
  'kernel.shm_rmid_forced', 'kernel.shmmax', 'kernel.shmall', 'kernel.shmmni',
  'kernel.msgmax', 'kernel.msgmnb', 'kernel.msgmni', 'kernel.sem',
]);
const MAX_SYSCTLS = 128; // the apply script reports a failing index in its exit status (100 + index)
// Each value/path pair is its own argv item: nothing is ever split on a delimiter (CRI-O's CVE-2022-0811).
const SYSCTL_SCRIPT = 'n=0; while [ $# -ge 2 ]; do printf %s "$1" > "$2" || exit $((100 + n)); n=$((n + 1)); shift 2; done';

/** Validates every sysctl against the namespaced allowlist, then writes them inside the pod's namespaces. */
export async function applySysctls(nsPaths: NamespacePaths, sysctls: Record<string, string>): Promise<void> {
  const entries = Object.entries(sysctls);
  if (entries.length === 0) return;
  if (entries.length > MAX_SYSCTLS) throw invalidArgument(`${entries.length} sysctls given, at most ${MAX_SYSCTLS}`);
  const items = entries.map(([key, value]) => checkSysctl(nsPaths, key, value));
  const joins: string[] = [];
  if (items.some((i) => i.scope === 'net')) joins.push(`--net=${nsPaths.net}`);
  if (items.some((i) => i.scope === 'ipc')) joins.push(`--ipc=${nsPaths.ipc}`);
  const res = await run(NSENTER, [...joins, '--', SH, '-c', SYSCTL_SCRIPT, 'sh', ...items.flatMap((i) => [i.value, i.file])]);
  if (!res.failed) return;
  const failed = res.code !== null && res.code >= 100 ? items[res.code - 100] : undefined;
  if (failed === undefined) throw internal(`applying sysctls: ${res.message}`);
  // The sysctl path was checked, so an unknown name or a value the kernel refuses is the caller's error.
  throw invalidArgument(`sysctl "${failed.name}" = ${JSON.stringify(failed.value)} was refused in the pod's namespace: ${res.stderr}`);
}

interface SysctlItem {
  name: string;
  value: string;
  file: string;
  scope: 'net' | 'ipc';
}

function checkSysctl(nsPaths: NamespacePaths, key: string, value: string): SysctlItem {
  const shown = JSON.stringify(key);
  if (key.length > 256 || !/^[a-z0-9_./-]+$/.test(key) || key.includes('..')) {
    throw invalidArgument(`sysctl ${shown} is not a valid name (lower-case [a-z0-9_./-], no "..")`);
  }
  // sysctl(8)/kubelet form: with '/' as the first separator, '/' and '.' swap roles ("net/ipv4/conf/eth0.1/x").
  const dotted = key[key.search(/[./]/)] === '/' ? key.replace(/[./]/g, (c) => (c === '.' ? '/' : '.')) : key;
  const parts = dotted.split('.').map((p) => p.replace(/\//g, '.')); // in dotted form '/' is a literal '.'
  if (parts.some((p) => p === '' || p === '.' || p === '..')) {
    throw invalidArgument(`sysctl ${shown} has an empty or relative path component`);
  }
  const scope = IPC_SYSCTLS.has(dotted) || dotted.startsWith('fs.mqueue.') ? 'ipc' : dotted.startsWith('net.') ? 'net' : undefined;
  if (scope === undefined) {
    throw invalidArgument(`sysctl "${dotted}" is not namespaced: a pod may set only kernel.shm*/msg*/sem, fs.mqueue.* and net.*`);
  }
  if (nsPaths[scope] === undefined) {
    throw invalidArgument(`sysctl "${dotted}" needs the pod's own ${scope} namespace, and this pod shares the host's`);
  }
  // Values of namespaced sysctls are numbers, lists or words; '=' only ever appears in a smuggled assignment.
  if (typeof value !== 'string' || value.length === 0 || value.length > 1024 || hasControlChar(value) || value.includes('=')) {
    throw invalidArgument(`sysctl "${dotted}" value ${JSON.stringify(value)} is empty, too long or holds control characters or '='`);
  }
  return { name: dotted, value, file: `/proc/sys/${parts.join('/')}`, scope };
}

/** The pod namespace helper built by native/build.sh. */
export function podNsPath(): string {
  return path.join(packageRoot(), 'native', 'build', 'berth-pod-ns');
}

let podNsServer: PodNsServer | undefined;

function podNs(): PodNsServer {
  podNsServer ??= new PodNsServer(podNsPath(), CHILD_ENV, CHILD_TIMEOUT_MS);
  return podNsServer;
}

/**
 * Starts `berth-pod-ns --serve` ahead of the first pod (its spawn blocks the event loop for milliseconds); false when
 * it cannot be spawned, and pods then exec berth-pod-ns each. Optional: the first createPodNamespaces starts it too.
 */
export function startPodNsServer(): boolean {
  return podNs().start();
}

/** Stops the berth-pod-ns server (it exits at the end of its stdin) and waits for it; the next pod starts a new one. */
export async function stopPodNsServer(): Promise<void> {
  await podNsServer?.stop();
}

/** Pid of the running berth-pod-ns server, if any. */
export function podNsServerPid(): number | undefined {
  return podNsServer?.pid;
}

/** The static pause binary built by native/build.sh. */
export function pausePath(): string {
  return path.join(packageRoot(), 'native', 'build', 'pause');
}

/**
 * Starts pause as PID 1 of a new pid namespace, inside the pod's net/ipc/uts namespaces, pinned to `<pidNsDir>/pid`.
 * The holder chain (unshare --fork → pause) runs in its own session with stdio on /dev/null, so it outlives berth.
 */
export async function startPause(nsPaths: NamespacePaths, pidNsDir: string): Promise<PauseProcess> {
  const pause = pausePath();
  try {
    await fs.access(pause, fs.constants.X_OK);
  } catch {
    throw failedPrecondition(`pause binary ${pause} is missing: run native/build.sh`);
  }
  const cleanup = new CleanupStack();
  let step = 'creating the pid pin file';
  try {
    const pidNsPath = createPinFile(pidNsDir, 'pid', cleanup);
    const joins = (['net', 'ipc', 'uts'] as const).flatMap((k) => (nsPaths[k] !== undefined ? [`--${k}=${nsPaths[k]}`] : []));
    // --kill-child: pause never outlives its unshare parent; unshare exits when pause does.
    const unshareArgs = [`--pid=${pidNsPath}`, '--fork', '--kill-child', '--', pause];
    const [file, args] = joins.length > 0 ? [NSENTER, [...joins, '--', UNSHARE, ...unshareArgs]] : [UNSHARE, unshareArgs];
    step = 'starting pause';
    const child = spawn(file, args, { detached: true, stdio: 'ignore', env: CHILD_ENV });
    let exited: string | undefined;
    child.on('error', (err) => (exited = errorMessage(err)));
    child.on('exit', (code, signal) => (exited = `${path.basename(file)} exited (${signal ?? `code ${code}`}) before pause ran`));
    child.unref();
    const holder = child.pid;
    if (holder !== undefined) cleanup.push('kill the pause holder', () => killQuietly(-holder)); // its process group
    const pid = await waitFor(CHILD_TIMEOUT_MS, async () => {
      if (exited !== undefined) throw internal(exited);
      if (holder === undefined) return undefined;
      for (const kid of await childrenOf(holder)) if ((await exeOf(kid)) === pause && (await catchesSigterm(kid))) return kid;
      return undefined;
    });
    step = 'checking the pinned pid namespace';
    // With --fork, unshare binds the pin after forking, so pause may run before its namespace is pinned: wait for it.
    let seen = '';
    await waitFor(PIN_WAIT_MS, async () => {
      const [pinned, live] = await Promise.all([fs.stat(pidNsPath), fs.readlink(`/proc/${pid}/ns/pid`)]);
      seen = `pin ${pidNsPath} (inode ${pinned.ino}) is not pause's ${live}`;
      return live === `pid:[${pinned.ino}]` ? true : undefined;
    }).catch(() => {
      throw internal(seen);
    });
    return { pid, pidNsPath };
  } catch (err) {
    throw await unwound(cleanup, `starting pause in ${pidNsDir}: ${step}`, err);
  }
}

/** SIGKILLs pause and waits until it and its unshare parent are gone. A pid no longer running pause is left alone. */
export async function stopPause(pid: number): Promise<void> {
  if (!Number.isInteger(pid) || pid <= 1) throw invalidArgument(`pause pid ${pid} is not a process id`);
  const exe = await exeOf(pid);
  if (exe === undefined || path.basename(exe) !== 'pause') return; // exited, or the pid was reused
  const parent = await statOf(pid);
  killQuietly(pid);
  await waitFor(CHILD_TIMEOUT_MS, async () => ((await statOf(pid)) === undefined ? true : undefined));
  if (parent !== undefined && (await exeOf(parent.ppid)) === UNSHARE) {
    await waitFor(CHILD_TIMEOUT_MS, async () => ((await statOf(parent.ppid)) === undefined ? true : undefined));
  }
}

// ---- helpers

// mkdir and the pin files are made in the calling thread: each is one quick syscall, cheaper than a thread-pool trip.
function mkdirOwned(dir: string, cleanup: CleanupStack): void {
  const first = fsSync.mkdirSync(dir, { recursive: true, mode: 0o700 });
  if (first === undefined) return; // existed: not ours to remove
  cleanup.push(`remove ${dir}`, async () => {
    // Only the dirs this call made, innermost first; rmdir leaves anything someone else put there.
    for (let d = dir; ; d = path.dirname(d)) {
      await fs.rmdir(d);
      if (d === first || d === path.dirname(d)) break;
    }
  });
}

/** Creates an empty file for a namespace bind mount (the target must exist); EEXIST means another pod's pin. */
function createPinFile(dir: string, kind: string, cleanup: CleanupStack): string {
  const file = path.join(dir, kind);
  try {
    fsSync.closeSync(fsSync.openSync(file, 'wx', 0o444));
  } catch (err) {
    if (errnoCode(err) === 'EEXIST') throw new BerthError('ALREADY_EXISTS', `namespace pin ${file} already exists`);
    throw err;
  }
  cleanup.push(`remove pin ${file}`, () => removePin(file));
  return file;
}

async function removePin(file: string): Promise<void> {
  // A pin can be stacked (a retried bind); peel mounts until the file is not a mount point (EINVAL) or gone.
  for (let i = 0; i < 8; i++) {
    try {
      umount2(file, MNT_DETACH | UMOUNT_NOFOLLOW);
    } catch (err) {
      const code = errnoCode(err);
      if (code === 'EINVAL' || code === 'ENOENT') break;
      throw internal(`unmounting namespace pin ${file}: ${errorMessage(err)}`, err);
    }
  }
  fsSync.rmSync(file, { force: true }); // one syscall, like the umount2 above: no thread-pool trip
}

interface RunResult {
  failed: boolean;
  code: number | null;
  stderr: string;
  message: string;
}

/** Runs a host program with a fixed env and a timeout; never rejects, the caller decides what a failure means. */
function run(file: string, args: string[]): Promise<RunResult> {
  return new Promise((resolve) => {
    execFile(file, args, { env: CHILD_ENV, timeout: CHILD_TIMEOUT_MS, killSignal: 'SIGKILL', maxBuffer: 1 << 20 }, (err, _out, stderr) => {
      const text = stderr.trim();
      if (!err) return resolve({ failed: false, code: 0, stderr: text, message: '' });
      const code = typeof err.code === 'number' ? err.code : null;
      const why = err.killed ? `timed out after ${CHILD_TIMEOUT_MS} ms` : code !== null ? `exit ${code}` : errorMessage(err);
      resolve({ failed: true, code, stderr: text, message: `${path.basename(file)} failed (${why})${text ? `: ${text}` : ''}` });
    });
  });
}

/** berth-pod-ns through its server, or exec'd when the server cannot be spawned. Never rejects, like run(). */
async function runPodNs(args: string[]): Promise<RunResult> {
  const server = podNs();
  if (!server.start()) return run(podNsPath(), args);
  try {
    const { code, message } = await server.request(args);
    if (code === 0) return { failed: false, code, stderr: message, message: '' };
    return { failed: true, code, stderr: message, message: `berth-pod-ns failed (exit ${code})${message ? `: ${message}` : ''}` };
  } catch (err) {
    return { failed: true, code: null, stderr: '', message: errorMessage(err) };
  }
}

/** Polls `probe` every 5 ms until it yields a value; the timeout is an error. */
async function waitFor<T>(timeoutMs: number, probe: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new BerthError('DEADLINE_EXCEEDED', `gave up after ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

async function childrenOf(pid: number): Promise<number[]> {
  const text = await fs.readFile(`/proc/${pid}/task/${pid}/children`, 'utf8').catch(() => '');
  return text.split(' ').filter((s) => s !== '').map(Number);
}

async function exeOf(pid: number): Promise<string | undefined> {
  const exe = await fs.readlink(`/proc/${pid}/exe`).catch(() => undefined);
  return exe?.replace(/ \(deleted\)$/, ''); // a rebuilt binary still names the old path
}

/** State and parent from /proc/<pid>/stat; undefined when the process is gone or a zombie (dead, not yet reaped). */
async function statOf(pid: number): Promise<{ ppid: number } | undefined> {
  const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8').catch(() => undefined);
  const fields = text?.slice(text.lastIndexOf(')') + 2).split(' '); // comm may hold spaces and ')'
  if (fields === undefined || fields[0] === 'Z' || fields[0] === 'X') return undefined;
  return { ppid: Number(fields[1]) };
}

/**
 * Has the process installed its SIGTERM handler? Until then pause, as PID 1 of its namespace, silently drops
 * SIGTERM (the kernel ignores default-action signals to a namespace init), so startPause waits for it.
 */
async function catchesSigterm(pid: number): Promise<boolean> {
  const status = await fs.readFile(`/proc/${pid}/status`, 'utf8').catch(() => '');
  const mask = /^SigCgt:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  return mask !== undefined && (BigInt(`0x${mask}`) & (1n << 14n)) !== 0n; // bit (signal - 1), SIGTERM = 15
}

/** A C0 control character (NUL and newline among them) or DEL. */
function hasControlChar(s: string): boolean {
  return [...s].some((c) => c < ' ' || c === '\x7f');
}

function killQuietly(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
}

/** Unwinds `cleanup` and returns the error to throw: the step that failed, plus any undo step that also failed. */
async function unwound(cleanup: CleanupStack, context: string, err: unknown): Promise<BerthError> {
  const failures = await cleanup.unwind();
  const undo = failures.map((f) => `; undo "${f.what}" also failed: ${errorMessage(f.err)}`).join('');
  const code: ErrorCode = err instanceof BerthError ? err.code : 'INTERNAL';
  return new BerthError(code, `${context}: ${errorMessage(err)}${undo}`, { cause: err });
}
