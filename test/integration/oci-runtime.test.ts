// OciRuntime against the real conmon + runc (and crun when it can run here): lifecycle, CRI log, exit files, stop
// escalation, exec limits, resource updates, log reopen, survival of the parent, and failures that leave nothing behind.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BerthError } from '../../src/common/errors';
import { nowNs } from '../../src/common/time';
import { removeCgroup } from '../../src/runtime/cgroups';
import { signalNumber } from '../../src/runtime/process';
import { parseRuntimeError } from '../../src/runtime/runtime-errors';
import { runtimeFor, selectHandler, type OciRuntime, type RuntimeHandler } from '../../src/runtime/oci-runtime';
import { until } from '../helpers/until';

const CONMON = '/usr/bin/conmon';
const BUSYBOX_APPLETS = ['sh', 'echo', 'cat', 'sleep', 'true', 'false'];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-oci-'));
const cgroupParent = `/berth-test-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;

const rootfs = path.join(tmp, 'rootfs');
fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
for (const d of ['proc', 'dev', 'sys', 'tmp']) fs.mkdirSync(path.join(rootfs, d));
fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
// hard links, not symlinks: each name is a real file (see design.md on busybox)
for (const a of BUSYBOX_APPLETS) fs.linkSync(path.join(rootfs, 'bin/busybox'), path.join(rootfs, 'bin', a));

interface Spec {
  args: string[];
  resources?: object;
  rootPath?: string;
}

function writeBundle(dir: string, id: string, s: Spec): void {
  fs.mkdirSync(dir, { recursive: true });
  const config = {
    ociVersion: '1.0.2',
    process: { terminal: false, user: { uid: 0, gid: 0 }, args: s.args, env: ['PATH=/bin'], cwd: '/' },
    root: { path: s.rootPath ?? rootfs },
    hostname: id.slice(0, 60),
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'].map((type) => ({ type })),
      cgroupsPath: `${cgroupParent}/${id}`,
      resources: s.resources ?? {},
    },
  };
  fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify(config));
}

/** crun refuses cgroup v1 + v2 "hybrid" hosts until a v1 hugetlb hierarchy exists; mount one if missing, then try. */
function crunProblem(): string | undefined {
  if (!fs.existsSync('/usr/bin/crun')) return 'crun is not installed';
  try {
    if (!fs.existsSync('/sys/fs/cgroup/hugetlb/cgroup.procs')) {
      fs.mkdirSync('/sys/fs/cgroup/hugetlb', { recursive: true });
      execFileSync('mount', ['-t', 'cgroup', '-o', 'hugetlb', 'cgroup', '/sys/fs/cgroup/hugetlb'], { stdio: 'pipe' });
    }
  } catch (err) {
    return `cannot mount the v1 hugetlb hierarchy crun needs: ${String(err)}`;
  }
  const dir = path.join(tmp, 'crun-probe');
  writeBundle(dir, 'crun-probe', { args: ['true'] });
  try {
    execFileSync('/usr/bin/crun', ['--root', path.join(tmp, 'crun-probe-root'), 'run', 'crun-probe'], { cwd: dir, stdio: 'pipe', timeout: 20000 });
    return undefined;
  } catch (err) {
    const e = err as { stderr?: Buffer };
    return `crun cannot run a container here: ${e.stderr?.toString().trim() ?? String(err)}`;
  } finally {
    try {
      execFileSync('/usr/bin/crun', ['--root', path.join(tmp, 'crun-probe-root'), 'delete', '--force', 'crun-probe'], { stdio: 'pipe' });
    } catch {
      // already gone
    }
  }
}

const crunSkip = crunProblem();
const handlers: RuntimeHandler[] = [{ name: 'runc', path: '/usr/sbin/runc', root: path.join(tmp, 'runc-root') }];
if (crunSkip === undefined) handlers.push({ name: 'crun', path: '/usr/bin/crun', root: path.join(tmp, 'crun-root') });

const alive = (pid: number): boolean => {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^\S+ \(.*\) [ZX] /.test(stat);
  } catch {
    return false;
  }
};

/** Every process whose argv names this container id (conmon, runc init, runtime commands). */
function processesFor(id: string): number[] {
  const found: number[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0');
      if (argv.includes(id) && alive(Number(p))) found.push(Number(p));
    } catch {
      // exited meanwhile
    }
  }
  return found;
}

afterAll(async () => {
  try {
    await removeCgroup(cgroupParent);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

if (crunSkip !== undefined) {
  it.skip(`crun variant skipped: ${crunSkip}`, () => undefined);
}

describe.each(handlers)('OciRuntime via conmon + $name', (handler) => {
  const rt: OciRuntime = runtimeFor(handler, CONMON);
  const exitDir = path.join(tmp, handler.name, 'exits');
  const made: { id: string; persistDir: string }[] = [];
  let seq = 0;

  interface Made {
    id: string;
    bundle: string;
    persistDir: string;
    logPath: string;
  }

  function paths(spec: Spec): Made {
    const id = `${handler.name}-${process.pid}-${++seq}`;
    const base = path.join(tmp, handler.name, id);
    const m = { id, bundle: path.join(base, 'bundle'), persistDir: path.join(base, 'persist'), logPath: path.join(base, 'logs', 'c.log') };
    writeBundle(m.bundle, id, spec);
    fs.mkdirSync(path.dirname(m.logPath), { recursive: true });
    made.push({ id, persistDir: m.persistDir });
    return m;
  }

  async function create(spec: Spec): Promise<Made & { pid: number; conmonPid: number }> {
    const m = paths(spec);
    const r = await rt.create({ ...m, exitDir, stdin: false, stdinOnce: false, tty: false });
    return { ...m, ...r };
  }

  const log = (m: Made): string => (fs.existsSync(m.logPath) ? fs.readFileSync(m.logPath, 'utf8') : '');
  const waitLog = (m: Made, text: string): Promise<true> => until(`"${text}" in ${m.id}'s log`, () => log(m).includes(text) || undefined);
  const waitExit = (m: Made) => until(`exit of ${m.id}`, () => rt.exitStatus(m.id, exitDir, m.persistDir));

  afterEach(async () => {
    for (const { id, persistDir } of made.splice(0)) {
      await rt.delete(id, true).catch(() => undefined);
      try {
        execFileSync(handler.path, ['--root', handler.root, 'delete', '--force', id], { stdio: 'pipe' });
      } catch {
        // not there: fine
      }
      const conmonPid = Number(fs.existsSync(path.join(persistDir, 'conmon.pid')) ? fs.readFileSync(path.join(persistDir, 'conmon.pid'), 'utf8') : 0);
      if (conmonPid > 1 && alive(conmonPid)) process.kill(conmonPid, 'SIGKILL');
    }
  });

  it('creates, starts, logs in CRI format, and stops with SIGTERM', async () => {
    const c = await create({ args: ['sh', '-c', "trap 'echo got TERM; exit 7' TERM; echo hello; sleep 1000 & wait"] });
    expect(c.pid).toBeGreaterThan(1);
    expect(alive(c.conmonPid)).toBe(true);
    expect(await rt.state(c.id)).toEqual({ status: 'created', pid: c.pid });
    expect(fs.readFileSync(path.join(c.persistDir, 'conmon.pid'), 'utf8').trim()).toBe(String(c.conmonPid));
    await rt.start(c.id);
    expect((await rt.state(c.id))?.status).toBe('running');
    await waitLog(c, 'hello');
    expect(log(c)).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{1,9}(?:Z|[+-]\d\d:\d\d) stdout F hello$/m);
    expect(await rt.exitStatus(c.id, exitDir)).toBeUndefined();

    const before = nowNs();
    const t0 = Date.now();
    await rt.stop(c.id, 'SIGTERM', 10000);
    expect(Date.now() - t0).toBeLessThan(5000);
    const st = await rt.exitStatus(c.id, exitDir);
    expect(st).toEqual({ exitCode: 7, finishedAtNs: expect.any(BigInt), oomKilled: false });
    expect(st!.finishedAtNs).toBeGreaterThanOrEqual(before - 1_000_000_000n);
    expect(st!.finishedAtNs).toBeLessThanOrEqual(nowNs() + 1_000_000_000n);
    expect((await rt.state(c.id))?.status).toBe('stopped');
    expect(log(c)).toContain('stdout F got TERM');
    await until('conmon to exit', () => !alive(c.conmonPid) || undefined);
    await rt.stop(c.id, 'SIGTERM', 1000); // already stopped: returns at once
  });

  it('records exit codes 0 and 3 with finish times, and stderr in the log', async () => {
    const ok = await create({ args: ['true'] });
    const three = await create({ args: ['sh', '-c', 'echo oops >&2; exit 3'] });
    const before = nowNs();
    await rt.start(ok.id);
    await rt.start(three.id);
    const [a, b] = [await waitExit(ok), await waitExit(three)];
    const after = nowNs();
    expect(a).toMatchObject({ exitCode: 0, oomKilled: false });
    expect(b).toMatchObject({ exitCode: 3, oomKilled: false });
    for (const s of [a, b]) {
      expect(s.finishedAtNs).toBeGreaterThanOrEqual(before - 50_000_000n);
      expect(s.finishedAtNs).toBeLessThanOrEqual(after + 50_000_000n);
    }
    await waitLog(three, 'oops');
    expect(log(three)).toMatch(/ stderr F oops$/m);
  });

  it('escalates to SIGKILL when SIGTERM is ignored (exit 137), bounded by the timeout', async () => {
    const c = await create({ args: ['sh', '-c', 'trap "" TERM; echo ready; sleep 1000'] });
    await rt.start(c.id);
    await waitLog(c, 'ready');
    const t0 = Date.now();
    await rt.stop(c.id, 'TERM', 1000);
    const took = Date.now() - t0;
    expect(took).toBeGreaterThanOrEqual(900);
    expect(took).toBeLessThan(7000);
    expect((await rt.exitStatus(c.id, exitDir))?.exitCode).toBe(137);
    expect(alive(c.pid)).toBe(false);
  });

  describe('execSync', () => {
    let c: Made & { pid: number };
    beforeEach(async () => {
      c = await create({ args: ['sh', '-c', 'echo ready; exec sleep 1000'] });
      await rt.start(c.id);
    });

    it('returns output and exit codes, with env as separate items', async () => {
      const hi = await rt.execSync(c.id, ['echo', 'hi'], { timeoutMs: 10000, maxOutputBytes: 1024 });
      expect(hi).toEqual({ stdout: Buffer.from('hi\n'), stderr: Buffer.alloc(0), exitCode: 0, timedOut: false });
      const bad = await rt.execSync(c.id, ['sh', '-c', 'echo err >&2; exit 5'], { timeoutMs: 10000, maxOutputBytes: 1024 });
      expect(bad).toMatchObject({ exitCode: 5, timedOut: false });
      expect(bad.stderr.toString()).toBe('err\n');
      const env = await rt.execSync(c.id, ['sh', '-c', 'echo "$FOO|$BAR"'], { timeoutMs: 10000, maxOutputBytes: 1024, env: ['FOO=a b;c', 'BAR=--x'] });
      expect(env.stdout.toString()).toBe('a b;c|--x\n');
      await expect(rt.execSync(c.id, ['echo'], { timeoutMs: 1000, maxOutputBytes: 10, env: ['NOEQUALS'] })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
      await expect(rt.execSync(c.id, ['echo'], { timeoutMs: 1000, maxOutputBytes: 10, tty: true })).rejects.toMatchObject({ code: 'UNIMPLEMENTED' });
    });

    it('kills the command at the timeout and leaves nothing running', async () => {
      const t0 = Date.now();
      const r = await rt.execSync(c.id, ['sh', '-c', 'echo started; sleep 10; echo never'], { timeoutMs: 500, maxOutputBytes: 1024 });
      expect(Date.now() - t0).toBeLessThan(3000);
      expect(r.timedOut).toBe(true);
      expect(r.stdout.toString()).toBe('started\n');
      // only the container's init is left in its cgroup
      const procs = path.join('/sys/fs/cgroup/pids', cgroupParent, c.id, 'cgroup.procs');
      await until('exec processes to be gone', () => {
        const pids = fs.readFileSync(procs, 'utf8').trim().split('\n').filter(Boolean).map(Number).filter(alive);
        return pids.length === 1 && pids[0] === c.pid ? true : undefined;
      }, 3000);
    });

    it('caps stdout and stderr at maxOutputBytes each and keeps draining', async () => {
      const r = await rt.execSync(c.id, ['sh', '-c', 'yes out | head -c 2000000; yes err | head -c 2000000 >&2; echo done >&2'], {
        timeoutMs: 20000,
        maxOutputBytes: 1000,
      });
      expect(r.timedOut).toBe(false);
      expect(r.exitCode).toBe(0);
      expect(r.stdout.length).toBe(1000);
      expect(r.stderr.length).toBe(1000);
      expect(r.stdout.toString().startsWith('out\nout\n')).toBe(true);
    });

    it('reports runtime failures as errors, not as command output', async () => {
      await expect(rt.execSync(c.id, ['/no/such/binary'], { timeoutMs: 10000, maxOutputBytes: 1024 })).rejects.toThrow(/no\/such\/binary/);
      await expect(rt.execSync('no-such-container', ['true'], { timeoutMs: 10000, maxOutputBytes: 1024 })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    });
  });

  it('updates resources in the cgroup', async () => {
    const c = await create({ args: ['sleep', '1000'], resources: { memory: { limit: 64 * 1024 * 1024 } } });
    await rt.start(c.id);
    const file = path.join('/sys/fs/cgroup/memory', cgroupParent, c.id, 'memory.limit_in_bytes');
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(String(64 * 1024 * 1024));
    await rt.updateResources(c.id, { memory: { limit: 32 * 1024 * 1024 }, pids: { limit: 50 } });
    expect(fs.readFileSync(file, 'utf8').trim()).toBe(String(32 * 1024 * 1024));
    expect(fs.readFileSync(path.join('/sys/fs/cgroup/pids', cgroupParent, c.id, 'pids.max'), 'utf8').trim()).toBe('50');
  });

  it('reopens the log after rotation: new output lands in a new file at logPath', async () => {
    const c = await create({ args: ['sh', '-c', 'i=0; while true; do echo line$i; i=$((i+1)); sleep 0.1; done'] });
    await rt.start(c.id);
    await waitLog(c, 'line2');
    const rotated = `${c.logPath}.1`;
    fs.renameSync(c.logPath, rotated);
    await rt.reopenLog(c.id, c.persistDir);
    expect(fs.existsSync(c.logPath)).toBe(true);
    await until('new lines in the new log', () => /stdout F line\d+/.test(log(c)) || undefined);
    await new Promise((r) => setTimeout(r, 300));
    const oldSize = fs.statSync(rotated).size;
    await new Promise((r) => setTimeout(r, 400));
    expect(fs.statSync(rotated).size).toBe(oldSize);
    expect(fs.readFileSync(rotated, 'utf8')).toContain('stdout F line0');
    expect(log(c)).not.toContain('stdout F line0\n');
  });

  it('keeps the container running after the creating process exits and its process group is killed', async () => {
    const m = paths({ args: ['sh', '-c', 'echo alive; exec sleep 1000'] });
    const script = path.join(tmp, `${m.id}-child.js`);
    const mod = path.join(__dirname, '../../src/runtime/oci-runtime.js');
    fs.writeFileSync(
      script,
      `const { runtimeFor } = require(${JSON.stringify(mod)});
       runtimeFor(${JSON.stringify(handler)}, ${JSON.stringify(CONMON)})
         .create(${JSON.stringify({ ...m, exitDir, stdin: false, stdinOnce: false, tty: false })})
         .then((r) => process.stdout.write(JSON.stringify(r)), (e) => { process.stderr.write(String(e && e.stack)); process.exitCode = 1; });`,
    );
    const child = spawn(process.execPath, [script], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.stderr.on('data', (b: Buffer) => (err += b.toString()));
    // exiting on its own proves conmon's pipes and handle do not hold the creator's event loop
    const code = await new Promise<number | null>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`child did not exit by itself; stderr: ${err}`)), 20000);
      child.once('close', (c) => (clearTimeout(t), resolve(c)));
    });
    expect(err).toBe('');
    expect(code).toBe(0);
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // group already empty: conmon is not in it
    }
    const r = JSON.parse(out) as { pid: number; conmonPid: number };
    expect(alive(r.conmonPid)).toBe(true);
    expect(fs.readFileSync(`/proc/${r.conmonPid}/stat`, 'utf8').split(') ')[1]?.split(' ')[2]).toBe(String(r.conmonPid)); // own pgid
    // this process never saw the create: everything below goes through the runtime, not cached facts
    await rt.start(m.id);
    await waitLog(m, 'alive');
    expect(await rt.state(m.id)).toEqual({ status: 'running', pid: r.pid });
    fs.renameSync(m.logPath, `${m.logPath}.old`);
    await rt.reopenLog(m.id, m.persistDir);
    await until('a new log file', () => fs.existsSync(m.logPath) || undefined, 3000);
    await rt.stop(m.id, 'SIGKILL', 0);
    expect((await until('exit', () => rt.exitStatus(m.id, exitDir, m.persistDir))).exitCode).toBe(137);
  });

  it('delete removes the runtime state and is idempotent; a running container needs force', async () => {
    const c = await create({ args: ['sleep', '1000'] });
    await rt.start(c.id);
    await expect(rt.delete(c.id)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await rt.stop(c.id, 'KILL', 0);
    await rt.delete(c.id);
    expect(await rt.state(c.id)).toBeUndefined();
    expect(execFileSync(handler.path, ['--root', handler.root, 'list'], { encoding: 'utf8' })).not.toContain(c.id);
    expect(fs.existsSync(path.join('/sys/fs/cgroup/memory', cgroupParent, c.id))).toBe(false);
    await rt.delete(c.id);
    await rt.delete(c.id, true);
    await expect(rt.stop(c.id, 'TERM', 100)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(rt.start(c.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('fails create with the runtime message and leaves nothing behind', async () => {
    const noRootfs = paths({ args: ['true'], rootPath: path.join(tmp, 'missing-rootfs') });
    const e1 = await rt.create({ ...noRootfs, exitDir, stdin: false, stdinOnce: false, tty: false }).catch((e: unknown) => e);
    expect(e1).toBeInstanceOf(BerthError);
    expect((e1 as BerthError).message).toMatch(new RegExp(`create container ${noRootfs.id}: .*missing-rootfs`));

    const noBinary = paths({ args: ['/nonexistent-binary'] });
    const e2 = await (async () => {
      await rt.create({ ...noBinary, exitDir, stdin: false, stdinOnce: false, tty: false });
      await rt.start(noBinary.id); // crun checks the executable only at start
    })().catch((e: unknown) => e);
    expect(e2).toBeInstanceOf(BerthError);
    expect((e2 as BerthError).message).toMatch(/nonexistent-binary/);

    const noConfig = paths({ args: ['true'] });
    fs.rmSync(path.join(noConfig.bundle, 'config.json'));
    await expect(rt.create({ ...noConfig, exitDir, stdin: false, stdinOnce: false, tty: false })).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });

    expect(await rt.state(noRootfs.id)).toBeUndefined();
    await until('no processes left', () => (processesFor(noRootfs.id).length === 0 && processesFor(noConfig.id).length === 0) || undefined, 3000);
  });

  it('reports OOM kills', async () => {
    const c = await create({
      args: ['sh', '-c', 'echo ready; a=xxxxxxxxxxxxxxxx; while true; do a="$a$a"; done'],
      resources: { memory: { limit: 16 * 1024 * 1024, swap: 16 * 1024 * 1024 } },
    });
    await rt.start(c.id);
    const st = await waitExit(c);
    expect(st).toMatchObject({ exitCode: 137, oomKilled: true });
  });

  it('rejects bad ids and signals before running anything', async () => {
    await expect(rt.state('../etc')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(rt.kill('x', '--all')).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    expect(await rt.state('never-created')).toBeUndefined();
  });
});

describe('runtime helpers', () => {
  it('maps signal names and numbers', () => {
    expect(signalNumber('SIGTERM')).toBe(15);
    expect(signalNumber('kill')).toBe(9);
    expect(signalNumber('10')).toBe(10);
    expect(() => signalNumber('SIGNOPE')).toThrow(/unknown signal/);
  });

  it('extracts the last error message from runtime output', () => {
    expect(parseRuntimeError('time="x" level=warning msg="meh"\ntime="y" level=error msg="runc create failed: \\"a\\" b"\n')).toBe('runc create failed: "a" b');
    expect(parseRuntimeError('{"level":"info","msg":"x"}\n{"level":"error","msg":"boom","time":"t"}\n')).toBe('boom');
    expect(parseRuntimeError('plain failure\n')).toBe('plain failure');
    expect(parseRuntimeError('plain noise\n', true)).toBe('');
  });

  it('selects handlers, the default for an empty name', () => {
    const table = { default_handler: 'runc', handlers: { runc: { path: '/usr/sbin/runc', root: '' }, crun: { path: '/usr/bin/crun', root: '/r/crun' } } };
    expect(selectHandler(table, '', '/run/berth')).toEqual({ name: 'runc', path: '/usr/sbin/runc', root: '/run/berth/runtimes/runc' });
    expect(selectHandler(table, 'crun', '/run/berth')).toEqual({ name: 'crun', path: '/usr/bin/crun', root: '/r/crun' });
    expect(() => selectHandler(table, 'kata', '/run/berth')).toThrow(/no runtime handler "kata"/);
    expect(() => runtimeFor({ name: 'x', path: 'runc', root: '/r' }, CONMON)).toThrow(/absolute/);
  });
});
