// Small host helpers shared by the benchmarks: /proc memory figures, mounts under a directory, the containerd package.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';

export const MiB = 1024 * 1024;

/** A `Vm*` line of /proc/PID/status in bytes (VmRSS, VmHWM, …). */
export function procStatusBytes(pid: number, field: 'VmRSS' | 'VmHWM' | 'VmSize' | 'VmPeak'): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const m = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (!m?.[1]) throw new Error(`no ${field} in /proc/${pid}/status`);
  return Number(m[1]) * 1024;
}

/**
 * Resets VmHWM to the current VmRSS (clear_refs "5", Linux ≥ 4.0), so the peak read after an operation belongs to
 * that operation and not to the process's start-up. Returns false if the kernel refused.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    fs.writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}

/** Decodes mountinfo's octal escapes (`\040` for a space, …). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, oct: string) => String.fromCharCode(parseInt(oct, 8)));
}

/** Mount points at or below `dir` (this mount namespace), deepest first. */
export function mountsUnder(dir: string): string[] {
  const root = fs.realpathSync(dir).replace(/\/+$/, '');
  const out: string[] = [];
  for (const line of fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    const p = unescapeMountPath(mp);
    if (p === root || p.startsWith(`${root}/`)) out.push(p);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Lazily unmounts everything at or below `dir`, deepest first; returns what it unmounted. Throws if a mount stays. */
export function unmountUnder(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  const done: string[] = [];
  for (let pass = 0; pass < 3; pass++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) return done;
    for (const mp of mounts) {
      const r = spawnSync('/usr/bin/umount', ['-l', '--', mp], { encoding: 'utf8' });
      if (r.status === 0) done.push(mp);
    }
  }
  const left = mountsUnder(dir);
  if (left.length > 0) throw new Error(`mounts left under ${dir}: ${left.join(', ')}`);
  return done;
}

/** Unmounts everything under `dir`, then removes it. */
export function removeTree(dir: string): void {
  unmountUnder(dir);
  fs.rmSync(dir, { recursive: true, force: true });
}

const CONTAINERD_BIN = '/usr/bin/containerd';

function dpkgInstalled(pkg: string): boolean {
  const r = spawnSync('dpkg-query', ['-W', '-f=${Status}', pkg], { encoding: 'utf8' });
  return r.status === 0 && r.stdout.trim() === 'install ok installed';
}

/** Installs Debian's containerd through apt if it is missing (idempotent); returns its version line. */
export function ensureContainerd(log: (msg: string) => void = () => undefined): string {
  if (!dpkgInstalled('containerd') || !fs.existsSync(CONTAINERD_BIN)) {
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' };
    const install = (): ReturnType<typeof spawnSync> =>
      spawnSync('apt-get', ['install', '-y', '-q', '--no-install-recommends', 'containerd'], { env, encoding: 'utf8' });
    log('containerd is not installed: apt-get install -y containerd');
    let r = install();
    if (r.status !== 0) {
      // Stale package lists are the usual reason: refresh once and retry.
      spawnSync('apt-get', ['update', '-q'], { env, encoding: 'utf8' });
      r = install();
    }
    if (r.status !== 0 || !fs.existsSync(CONTAINERD_BIN)) {
      throw new Error(`apt-get install containerd failed (${r.status ?? r.signal}): ${String(r.stderr).slice(-2000)}`);
    }
  }
  const v = spawnSync(CONTAINERD_BIN, ['--version'], { encoding: 'utf8' });
  if (v.status !== 0) throw new Error(`${CONTAINERD_BIN} --version failed: ${v.stderr}`);
  return v.stdout.trim();
}

/** User + system CPU seconds of a process, plus those of its children it has waited for (/proc/PID/stat). */
export function procCpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // f[0] is field 3 (state)
  const ticks = [11, 12, 13, 14].reduce((sum, i) => sum + Number(f[i] ?? 0), 0); // utime stime cutime cstime
  return ticks / 100; // USER_HZ is 100 on Linux
}

/** Bytes a directory tree uses on disk (du -sx); undefined if du fails. */
export function diskUsageBytes(dir: string): number | undefined {
  const r = spawnSync('/usr/bin/du', ['-sx', '--block-size=1', dir], { encoding: 'utf8' });
  const n = Number(r.stdout.split('\t')[0]);
  return r.status === 0 && Number.isFinite(n) ? n : undefined;
}

/** Flushes dirty pages system-wide (sync(1)), so one run's write-back does not land in the next run's timing. */
export function syncDisks(): void {
  spawnSync('/usr/bin/sync', [], { stdio: 'ignore' });
}

/** On SIGINT/SIGTERM: run `cleanup`, then exit 130. Returns a probe the benchmark loops check to stop early. */
export function cleanUpOnInterrupt(cleanup: () => Promise<unknown>): () => boolean {
  let interrupted = false;
  const onSignal = (sig: NodeJS.Signals): void => {
    interrupted = true;
    process.stderr.write(`\n${sig}: cleaning up\n`);
    void cleanup().finally(() => process.exit(130));
  };
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  return () => interrupted;
}
