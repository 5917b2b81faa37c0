// exec (tty and piped), attach and port-forward streams against real conmon + runc containers and a throwaway
// network namespace, through berth-stream-helper: output, exit codes, resizes, stdin ends, big transfers, clear
// errors, and no process left behind whether the stream ends, is closed, or its consumer is killed.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { packageRoot } from '../../src/common/package-root';
import { removeCgroup } from '../../src/runtime/cgroups';
import { runtimeFor, type RuntimeHandler } from '../../src/runtime/oci-runtime';
import { attach, execPiped, execTty, portForward, streamHelperPath } from '../../src/runtime/stream-io';
import { rejection } from '../helpers/rejection';
import { until } from '../helpers/until';

const CONMON = '/usr/bin/conmon';
const ENV = { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' };
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-stream-'));
const cgroupParent = `/berth-stream-test-${process.pid}-${Math.random().toString(16).slice(2, 8)}`;
const handler: RuntimeHandler = { name: 'runc', path: '/usr/sbin/runc', root: path.join(tmp, 'runc-root') };
const rt = runtimeFor(handler, CONMON);
const exitDir = path.join(tmp, 'exits');

const rootfs = path.join(tmp, 'rootfs');
fs.mkdirSync(path.join(rootfs, 'bin'), { recursive: true });
for (const d of ['proc', 'dev', 'sys', 'tmp']) fs.mkdirSync(path.join(rootfs, d));
fs.copyFileSync('/bin/busybox', path.join(rootfs, 'bin/busybox'));
fs.chmodSync(path.join(rootfs, 'bin/busybox'), 0o755);
for (const a of ['sh', 'cat', 'sleep', 'stty', 'echo', 'true']) fs.linkSync(path.join(rootfs, 'bin/busybox'), path.join(rootfs, 'bin', a));

interface Made {
  id: string;
  bundle: string;
  persistDir: string;
  logPath: string;
  pid: number;
  conmonPid: number;
}

const made: Made[] = [];
let seq = 0;

async function container(args: string[], o: { stdin?: boolean; tty?: boolean } = {}): Promise<Made> {
  const id = `stream-${process.pid}-${++seq}`;
  const base = path.join(tmp, id);
  const m = { id, bundle: path.join(base, 'bundle'), persistDir: path.join(base, 'persist'), logPath: path.join(base, 'logs', 'c.log') };
  fs.mkdirSync(m.bundle, { recursive: true });
  fs.mkdirSync(path.dirname(m.logPath), { recursive: true });
  const config = {
    ociVersion: '1.0.2',
    process: { terminal: o.tty === true, user: { uid: 0, gid: 0 }, args, env: ['PATH=/bin'], cwd: '/' },
    root: { path: rootfs },
    hostname: 'stream',
    mounts: [
      { destination: '/proc', type: 'proc', source: 'proc', options: ['nosuid', 'noexec', 'nodev'] },
      { destination: '/dev', type: 'tmpfs', source: 'tmpfs', options: ['nosuid', 'strictatime', 'mode=755', 'size=65536k'] },
      // a tty needs its own devpts (the runtime makes /dev/ptmx point into it)
      { destination: '/dev/pts', type: 'devpts', source: 'devpts', options: ['nosuid', 'noexec', 'newinstance', 'ptmxmode=0666', 'mode=0620'] },
      { destination: '/sys', type: 'sysfs', source: 'sysfs', options: ['nosuid', 'noexec', 'nodev', 'ro'] },
    ],
    linux: {
      namespaces: ['pid', 'ipc', 'uts', 'mount', 'network'].map((type) => ({ type })),
      cgroupsPath: `${cgroupParent}/${id}`,
      resources: {},
    },
  };
  fs.writeFileSync(path.join(m.bundle, 'config.json'), JSON.stringify(config));
  const r = await rt.create({ ...m, exitDir, stdin: o.stdin === true, stdinOnce: false, tty: o.tty === true });
  const c = { ...m, ...r };
  made.push(c);
  await rt.start(id);
  return c;
}

const proc = (args: string[]): object => ({ user: { uid: 0, gid: 0 }, args, env: ['PATH=/bin', 'TERM=xterm'], cwd: '/' });

/** Collects a stream's text as it arrives. */
function collect(s: Readable): { text: () => string; ended: Promise<void> } {
  let text = '';
  s.on('data', (b: Buffer) => (text += b.toString('utf8')));
  return { text: () => text, ended: new Promise((resolve) => s.once('end', () => resolve())) };
}

const alive = (pid: number): boolean => {
  try {
    return !/^\S+ \(.*\) [ZX] /s.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
};

const helperExe = fs.existsSync(streamHelperPath()) ? fs.realpathSync(streamHelperPath()) : streamHelperPath();

/** Live processes running the stream helper, with their parent pid. */
function helpers(): { pid: number; ppid: number }[] {
  const found: { pid: number; ppid: number }[] = [];
  for (const p of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(p)) continue;
    try {
      if (fs.readlinkSync(`/proc/${p}/exe`) !== helperExe || !alive(Number(p))) continue;
      const stat = fs.readFileSync(`/proc/${p}/stat`, 'utf8');
      found.push({ pid: Number(p), ppid: Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]) });
    } catch {
      // exited meanwhile
    }
  }
  return found;
}
const ourHelpers = (): number[] => helpers().filter((h) => h.ppid === process.pid).map((h) => h.pid);

/** pids in a container's cgroup (its init plus any exec'd processes). */
const cgroupPids = (c: Made): number[] =>
  fs.readFileSync(path.join('/sys/fs/cgroup/pids', cgroupParent, c.id, 'cgroup.procs'), 'utf8').trim().split('\n').filter(Boolean).map(Number).filter(alive);

beforeAll(() => {
  execFileSync(path.join(packageRoot(), 'native', 'build.sh'), [], { stdio: 'pipe' });
});

afterEach(async () => {
  for (const c of made.splice(0)) {
    await rt.delete(c.id, true).catch(() => undefined);
    if (alive(c.conmonPid)) process.kill(c.conmonPid, 'SIGKILL');
  }
  // every test ends its streams: nothing of ours may still run
  await until('our helpers to be gone', () => ourHelpers().length === 0 || undefined, 5000);
});

afterAll(async () => {
  try {
    await removeCgroup(cgroupParent);
  } finally {
    fs.rmSync(tmp, { recursive: true, force: true });
  }
});

describe('exec with a tty', () => {
  let c: Made;
  beforeEach(async () => {
    c = await container(['sleep', '100000']);
  });
  const base = () => ({ runtimePath: handler.path, root: handler.root, id: c.id });

  it('starts at the requested size and follows resizes', async () => {
    const first = await execTty({ ...base(), process: proc(['stty', 'size']), rows: 33, cols: 101 });
    const out1 = collect(first.output);
    expect(await first.exit).toEqual({ exitCode: 0 });
    await out1.ended;
    expect(out1.text()).toBe('33 101\r\n');

    const e = await execTty({ ...base(), process: proc(['sh', '-c', 'read x; stty size']), rows: 24, cols: 80 });
    const out = collect(e.output);
    e.resize(40, 120);
    e.stdin.write('go\n');
    expect(await e.exit).toEqual({ exitCode: 0 });
    await out.ended;
    expect(out.text()).toMatch(/40 120\r\n$/);
  });

  it('gives the exit code, and 128+n for a signal', async () => {
    const three = await execTty({ ...base(), process: proc(['sh', '-c', 'exit 3']) });
    expect(await three.exit).toEqual({ exitCode: 3 });
    const killed = await execTty({ ...base(), process: proc(['sh', '-c', 'kill -9 $$']) });
    expect(await killed.exit).toEqual({ exitCode: 137 });
  });

  it('relays stdin through the terminal, and its end as the terminal EOF', async () => {
    const e = await execTty({ ...base(), process: proc(['cat']) });
    const out = collect(e.output);
    e.stdin.write('hello tty\n');
    await until('the echo and cat', () => (out.text().split('hello tty\r\n').length === 3) || undefined);
    e.stdin.end(); // ^D at the start of a line: cat reads EOF and exits
    expect(await e.exit).toEqual({ exitCode: 0 });
    await out.ended;
  });

  it('kill() ends the process and the helper', async () => {
    const e = await execTty({ ...base(), process: proc(['sleep', '1000']) });
    await until('the exec in the container', () => cgroupPids(c).length === 2 || undefined);
    e.kill();
    expect(await e.exit).toEqual({ exitCode: 137 });
    await until('only the container init left', () => (cgroupPids(c).length === 1 && cgroupPids(c)[0] === c.pid) || undefined, 3000);
  });

  it('reports the runtime failure as an error', async () => {
    const gone = await execTty({ ...base(), id: 'no-such-container', process: proc(['true']) });
    expect((await rejection(gone.exit)).code).toBe('NOT_FOUND');
    const err = await rejection((await execTty({ ...base(), process: proc(['/no/such/binary']) })).exit);
    expect(err.message).toMatch(/no\/such\/binary/);
    await expect(execTty({ ...base(), process: { args: [] } })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    await expect(execTty({ ...base(), process: proc(['true']), rows: 10 })).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
  });
});

describe('exec without a tty', () => {
  let c: Made;
  beforeEach(async () => {
    c = await container(['sleep', '100000']);
  });
  const base = () => ({ runtimePath: handler.path, root: handler.root, id: c.id });

  it('pipes stdin to cat; its end ends the process; stderr stays apart', async () => {
    const e = await execPiped({ ...base(), process: proc(['sh', '-c', 'echo to-stderr >&2; cat; exit 4']) });
    const out = collect(e.stdout);
    const err = collect(e.stderr);
    e.stdin.write('line one\n');
    await until('cat to echo', () => out.text() === 'line one\n' || undefined);
    e.stdin.end('line two\n');
    expect(await e.exit).toEqual({ exitCode: 4 });
    await Promise.all([out.ended, err.ended]);
    expect(out.text()).toBe('line one\nline two\n');
    expect(err.text()).toBe('to-stderr\n');
  });

  it('kill() ends the process; runtime failures are errors', async () => {
    const e = await execPiped({ ...base(), process: proc(['sleep', '1000']) });
    await until('the exec in the container', () => cgroupPids(c).length === 2 || undefined);
    e.kill();
    expect((await e.exit).exitCode).toBe(137);
    await until('only the container init left', () => cgroupPids(c).length === 1 || undefined, 3000);
    const gone = await execPiped({ ...base(), id: 'no-such-container', process: proc(['true']) });
    expect((await rejection(gone.exit)).code).toBe('NOT_FOUND');
  });
});

describe('attach', () => {
  const socketOf = (c: Made) => ({ attachSocket: path.join(c.bundle, 'attach'), ctlFifo: path.join(c.bundle, 'ctl') });

  it('receives stdout and stderr apart; closing detaches without stopping the container', async () => {
    const c = await container(['sh', '-c', 'i=0; while true; do echo out$i; echo err$i >&2; i=$((i+1)); sleep 0.1; done']);
    const a = attach({ ...socketOf(c), tty: false });
    expect(a.stdin).toBeNull();
    const out = collect(a.stdout);
    const err = collect(a.stderr);
    await until('three lines on each', () => (out.text().split('\n').length > 3 && err.text().split('\n').length > 3) || undefined);
    expect(out.text()).toMatch(/^(out\d+\n)+/);
    expect(err.text()).toMatch(/^(err\d+\n)+/);
    await a.close();
    await a.done;
    const logged = fs.readFileSync(c.logPath, 'utf8').length;
    await new Promise((r) => setTimeout(r, 300));
    expect((await rt.state(c.id))?.status).toBe('running');
    expect(fs.readFileSync(c.logPath, 'utf8').length).toBeGreaterThan(logged);
  });

  it('sends stdin to a container created with stdin, again after a detach', async () => {
    const c = await container(['cat'], { stdin: true });
    for (const word of ['ping', 'again']) {
      const a = attach({ ...socketOf(c), tty: false, stdin: true });
      const out = collect(a.stdout);
      a.stdin?.write(`${word}\n`);
      await until(`${word} echoed`, () => out.text() === `${word}\n` || undefined);
      await a.close();
    }
    expect((await rt.state(c.id))?.status).toBe('running');
  });

  it('resizes a tty container through conmon and ends when the container exits', async () => {
    const c = await container(['sh'], { stdin: true, tty: true });
    const a = attach({ ...socketOf(c), tty: true, stdin: true });
    const out = collect(a.stdout);
    a.resize(50, 150);
    await new Promise((r) => setTimeout(r, 200)); // conmon applies it from its own loop
    a.stdin?.write('stty size; exit\n');
    await a.done;
    await out.ended;
    expect(out.text()).toMatch(/50 150\r\n/);
  });

  it('fails clearly when there is no attach socket', async () => {
    const a = attach({ attachSocket: path.join(tmp, 'nope', 'attach'), ctlFifo: path.join(tmp, 'nope', 'ctl'), tty: false });
    const err = await rejection(a.done);
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toMatch(/attach socket .*nope\/attach: No such file or directory/);
  });
});

describe('port-forward', () => {
  const ns = `berth-pf-${process.pid}-${Math.random().toString(16).slice(2, 6)}`;
  const netnsPath = `/var/run/netns/${ns}`;
  const port = 7000 + (process.pid % 1000);
  let server: ChildProcess;
  // An echo server with half-close: it answers until the client's end, then ends too.
  const echoServer = `require('net').createServer({ allowHalfOpen: true }, (s) => s.pipe(s)).listen(${port}, '127.0.0.1', () => console.log('ready'))`;

  beforeAll(async () => {
    execFileSync('ip', ['netns', 'add', ns], { env: ENV });
    execFileSync('ip', ['netns', 'exec', ns, 'ip', 'link', 'set', 'lo', 'up'], { env: ENV });
    server = spawn('ip', ['netns', 'exec', ns, process.execPath, '-e', echoServer], { env: ENV, stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      server.stdout?.once('data', () => resolve());
      server.once('exit', (code) => reject(new Error(`echo server exited (${code})`)));
    });
  });

  afterAll(() => {
    server.kill('SIGKILL');
    execFileSync('ip', ['netns', 'del', ns], { env: ENV });
  });

  /** Sends data through a forward, ends it, and returns what came back with its sha256. */
  async function roundTrip(data: Buffer, target: { netnsPath?: string; port: number } = { netnsPath, port }): Promise<{ back: Buffer; sha: string }> {
    const f = portForward(target);
    const chunks: Buffer[] = [];
    f.stream.on('data', (b: Buffer) => chunks.push(b));
    const ended = new Promise((resolve) => f.stream.once('end', resolve));
    f.stream.end(data);
    await ended;
    await f.done;
    const back = Buffer.concat(chunks);
    return { back, sha: crypto.createHash('sha256').update(back).digest('hex') };
  }

  it('round-trips bytes with half-close, ten connections at once', async () => {
    expect((await roundTrip(Buffer.from('hello pod'))).back.toString()).toBe('hello pod');
    const msgs = Array.from({ length: 10 }, (_, i) => Buffer.from(`connection ${i} `.repeat(1000 + i)));
    const backs = await Promise.all(msgs.map((m) => roundTrip(m)));
    backs.forEach((b, i) => expect(b.back.equals(msgs[i]!)).toBe(true));
  });

  it('moves 50 MiB each way intact', async () => {
    const data = Buffer.concat(Array.from({ length: 50 }, () => crypto.randomBytes(1024 * 1024)));
    const { back, sha } = await roundTrip(data);
    expect(back.length).toBe(data.length);
    expect(sha).toBe(crypto.createHash('sha256').update(data).digest('hex'));
  });

  it('reports a refused port clearly', async () => {
    const f = portForward({ netnsPath, port: port + 1 });
    f.stream.resume();
    const err = await rejection(f.done);
    expect(err.code).toBe('UNAVAILABLE');
    expect(err.message).toBe(`connect to port ${port + 1} in the pod's network namespace: Connection refused`);
  });

  it('connects from Node for a host-network pod', async () => {
    const host = net.createServer({ allowHalfOpen: true }, (s) => s.pipe(s));
    await new Promise<void>((resolve) => host.listen(0, '127.0.0.1', resolve));
    const hostPort = (host.address() as net.AddressInfo).port;
    try {
      expect((await roundTrip(Buffer.from('on the host'), { port: hostPort })).back.toString()).toBe('on the host');
    } finally {
      host.close();
    }
    const f = portForward({ port: hostPort });
    f.stream.resume();
    const err = await rejection(f.done);
    expect(err.message).toBe(`connect to port ${hostPort} in the pod's network namespace: Connection refused`);
  });

  it('destroying the stream stops the helper', async () => {
    const f = portForward({ netnsPath, port });
    const got = collect(f.stream);
    f.stream.write('x');
    await until('the echo', () => got.text() === 'x' || undefined);
    expect(ourHelpers()).toHaveLength(1);
    f.stream.destroy();
    await f.done;
    await until('the helper to exit', () => ourHelpers().length === 0 || undefined, 3000);
  });

  it('leaves no helper or exec behind when the consumer is killed', async () => {
    const c = await container(['sleep', '100000']);
    const mod = path.join(__dirname, '../../src/runtime/stream-io.js');
    const script = `
      const s = require(${JSON.stringify(mod)});
      (async () => {
        const f = s.portForward({ netnsPath: ${JSON.stringify(netnsPath)}, port: ${port} });
        f.stream.on('data', () => console.log('forwarding'));
        f.stream.write('x');
        const e = await s.execTty({ runtimePath: ${JSON.stringify(handler.path)}, root: ${JSON.stringify(handler.root)},
          id: ${JSON.stringify(c.id)}, process: ${JSON.stringify(proc(['sleep', '1000']))} });
        e.output.resume();
        setInterval(() => undefined, 1000);
      })();`;
    // A killed consumer cannot remove its process.json: keep that under our tmp.
    const consumer = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...ENV, TMPDIR: tmp } });
    try {
      await new Promise<void>((resolve) => consumer.stdout?.once('data', () => resolve()));
      await until('two helpers and the exec', () => (helpers().filter((h) => h.ppid === consumer.pid).length === 2 && cgroupPids(c).length === 2) || undefined);
      const theirs = helpers().filter((h) => h.ppid === consumer.pid).map((h) => h.pid);
      consumer.kill('SIGKILL');
      await until('the helpers to be gone', () => theirs.every((p) => !alive(p)) || undefined, 5000);
      await until('the exec to be gone', () => cgroupPids(c).length === 1 || undefined, 5000);
    } finally {
      consumer.kill('SIGKILL');
    }
  });
});
