// spawnFast (posix_spawn): output and input pipes, exit codes and signals, start failures shaped like Node's, cwd,
// env, sessions, signal state, the child's fd table, reaping under load, and a grandchild holding a pipe.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type net from 'node:net';
import { AT_FDCWD, O_RDONLY, openat } from '../../native/fs';
import { FastChild, liveChildren, spawnFast, type SpawnError } from '../../src/runtime/spawn';

const ENV = { PATH: '/usr/bin:/bin' };
let dir: string;
const started: FastChild[] = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-spawn-'));
});

afterEach(() => {
  // Whatever a failed test left running: the child's group (detached ones lead one), then the child itself.
  for (const c of started.splice(0)) {
    if (c.pid === undefined) continue;
    for (const target of [-c.pid, c.pid]) {
      try {
        if (c.exitCode === null && c.signalCode === null) process.kill(target, 'SIGKILL');
      } catch {
        // gone
      }
    }
    for (const s of c.stdio) s?.destroy();
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

function track<C extends FastChild>(c: C): C {
  started.push(c);
  return c;
}

function collect(s: net.Socket | null): () => string {
  let text = '';
  s?.on('data', (b: Buffer) => (text += b.toString('utf8')));
  return () => text;
}

interface Ended {
  code: number | null;
  signal: NodeJS.Signals | null;
  events: string[];
}

/** Resolves at 'close', with the order in which 'exit' and 'close' came. */
function ended(c: FastChild): Promise<Ended> {
  const events: string[] = [];
  c.on('exit', () => events.push('exit'));
  c.on('error', (e) => events.push(`error ${(e as SpawnError).code}`));
  return new Promise((resolve) => c.on('close', (code, signal) => resolve({ code, signal, events: [...events, 'close'] })));
}

/** /proc/<pid>/stat fields after the comm: [state, ppid, pgrp, session, ...]. */
function stat(pid: number): string[] {
  const text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

function sh(script: string, stdio: readonly ('pipe' | 'ignore')[] = ['ignore', 'pipe', 'pipe'], detached = false): FastChild {
  return track(spawnFast('/bin/sh', ['-c', script], { env: ENV, stdio, detached }));
}

describe('spawnFast', () => {
  it('captures stdout and stderr and reports the exit code, exit before close', async () => {
    const c = sh('echo out; echo err >&2; exit 3');
    const out = collect(c.stdout);
    const err = collect(c.stderr);
    expect(c.pid).toBeGreaterThan(1);
    expect(c.stdin).toBeNull();
    expect(c.stdio[0]).toBeNull();
    const r = await ended(c);
    expect(r).toEqual({ code: 3, signal: null, events: ['exit', 'close'] });
    expect([out(), err()]).toEqual(['out\n', 'err\n']);
    expect([c.exitCode, c.signalCode]).toEqual([3, null]);
    expect(c.kill()).toBe(false); // reaped: never signal a pid that may be someone else's now
  });

  it('pipes stdin through (cat), EOF at end()', async () => {
    const c = track(spawnFast('cat', [], { env: ENV, stdio: ['pipe', 'pipe', 'pipe'] }));
    const out = collect(c.stdout);
    c.stdin.write('hello ');
    c.stdin.end('world\n');
    expect((await ended(c)).code).toBe(0);
    expect(out()).toBe('hello world\n');
  });

  it('reports death by signal as signalCode, and kill() sends one', async () => {
    const self = sh('kill -TERM $$');
    expect(await ended(self)).toMatchObject({ code: null, signal: 'SIGTERM' });
    expect([self.exitCode, self.signalCode]).toEqual([null, 'SIGTERM']);

    const sleeper = sh('exec sleep 30');
    expect(sleeper.kill('SIGKILL')).toBe(true);
    expect(sleeper.killed).toBe(true);
    expect(await ended(sleeper)).toMatchObject({ code: null, signal: 'SIGKILL' });
  });

  it.each([
    ['a missing absolute path', () => path.join(dir, 'missing'), 'ENOENT'],
    ['a bare name not in PATH', () => 'berth-no-such-program', 'ENOENT'],
    ['a file without x bits', () => writeFile('noexec', '#!/bin/sh\n', 0o644), 'EACCES'],
    ['a bare name found only without x bits', () => (writeFile('noexec2', '#!/bin/sh\n', 0o644), 'noexec2'), 'EACCES'],
  ])('emits %s as an asynchronous error shaped like Node\'s', async (_what, name, code) => {
    const file = name();
    const c = track(spawnFast(file, ['x'], { env: { PATH: dir }, stdio: ['pipe', 'pipe', 'pipe'] }));
    let sync = true;
    let emittedSync: boolean | undefined;
    const error = new Promise<SpawnError>((resolve) => c.once('error', (e) => resolve(e as SpawnError)));
    c.once('error', () => (emittedSync = sync));
    const done = ended(c);
    sync = false;
    const e = await error;
    expect(emittedSync).toBe(false);
    expect(e).toBeInstanceOf(Error);
    expect(e.message).toBe(`spawn ${file} ${code}`);
    expect(e).toMatchObject({ code, errno: -(os.constants.errno as Record<string, number>)[code]!, syscall: `spawn ${file}`, path: file, spawnargs: ['x'] });
    expect(c.pid).toBeUndefined();
    // As Node: 'close' follows the error, with the negative errno as the code; the pipes exist and close.
    expect(await done).toEqual({ code: e.errno, signal: null, events: [`error ${code}`, 'close'] });
    expect(c.stdout.destroyed && c.stdin.destroyed).toBe(true);
    expect(c.kill()).toBe(false);
  });

  it('matches child_process.spawn on the ENOENT error fields', async () => {
    const { spawn } = await import('node:child_process');
    const file = path.join(dir, 'missing');
    const node = await new Promise<Error>((resolve) => spawn(file, ['a'], { stdio: 'ignore' }).on('error', resolve));
    const fast = await new Promise<Error>((resolve) => track(spawnFast(file, ['a'], { env: {}, stdio: ['ignore'] })).on('error', resolve));
    const fields = (e: Error): unknown => ({ ...e, message: e.message });
    expect(fields(fast)).toEqual(fields(node));
  });

  it('runs in cwd, with exactly the env given', async () => {
    const c = track(spawnFast('/bin/sh', ['-c', 'pwd; /usr/bin/env'], { cwd: dir, env: { A: '1', B: 'x y=z' }, stdio: ['ignore', 'pipe', 'pipe'] }));
    const out = collect(c.stdout);
    await ended(c);
    const [pwd, ...env] = out().trim().split('\n');
    expect(pwd).toBe(fs.realpathSync(dir));
    // sh adds PWD (and maybe others it always exports); nothing from our own environment arrives.
    expect(env.filter((l) => !/^(PWD|SHLVL|OLDPWD)=/.test(l)).sort()).toEqual(['A=1', 'B=x y=z']);
    const direct = track(spawnFast('/usr/bin/env', [], { env: { ONLY: 'this' }, stdio: ['ignore', 'pipe', 'ignore'] }));
    const directOut = collect(direct.stdout);
    await ended(direct);
    expect(directOut()).toBe('ONLY=this\n');
  });

  it('detached: the child leads its own session and process group; otherwise it shares ours', async () => {
    const own = stat(process.pid);
    const d = sh('exec sleep 30', ['ignore', 'ignore', 'ignore'], true);
    const a = sh('exec sleep 30', ['ignore', 'ignore', 'ignore'], false);
    const [ds, as] = [stat(d.pid!), stat(a.pid!)];
    expect([Number(ds[1]), Number(ds[2]), Number(ds[3])]).toEqual([process.pid, d.pid, d.pid]);
    expect([as[2], as[3]]).toEqual([own[2], own[3]]);
    d.kill('SIGKILL');
    a.kill('SIGKILL');
    await Promise.all([ended(d), ended(a)]);
  });

  it('gives the child default signal dispositions and an empty mask, though Node ignores SIGPIPE', async () => {
    const sigIgn = (status: string): bigint => BigInt(`0x${/^SigIgn:\s*([0-9a-f]+)/m.exec(status)?.[1] ?? ''}`);
    expect(sigIgn(fs.readFileSync('/proc/self/status', 'utf8')) & (1n << 12n)).toBe(1n << 12n); // bit 13-1: SIGPIPE
    const c = track(spawnFast('/bin/cat', ['/proc/self/status'], { env: ENV, stdio: ['ignore', 'pipe', 'ignore'] }));
    const out = collect(c.stdout);
    await ended(c);
    expect(/^SigIgn:\s*0+$/m.test(out())).toBe(true);
    expect(/^SigBlk:\s*0+$/m.test(out())).toBe(true);
    // With SIGPIPE ignored `yes` would see EPIPE and complain; with the default it dies quietly.
    const y = sh('yes | head -n 1');
    const [yout, yerr] = [collect(y.stdout), collect(y.stderr)];
    expect((await ended(y)).code).toBe(0);
    expect([yout(), yerr()]).toEqual(['y\n', '']);
  });

  it('leaves the child exactly its stdio fds, even when the parent holds one without O_CLOEXEC', async () => {
    const leaked = openat(AT_FDCWD, '/dev/null', O_RDONLY); // no O_CLOEXEC: a child would inherit it
    try {
      const fdsOf = async (stdio: readonly ('pipe' | 'pipe-in' | 'ignore')[]): Promise<string[]> => {
        const c = track(spawnFast('/bin/ls', ['/proc/self/fd'], { env: ENV, stdio }));
        const out = collect(c.stdout);
        await ended(c);
        return out().trim().split('\n').map(Number).sort((x, y) => x - y).map(String);
      };
      // ls opens one fd itself (the directory it lists): the next free number.
      expect(await fdsOf(['ignore', 'pipe', 'ignore'])).toEqual(['0', '1', '2', '3']);
      expect(await fdsOf(['ignore', 'pipe', 'pipe', 'pipe', 'pipe-in'])).toEqual(['0', '1', '2', '3', '4', '5']);
    } finally {
      fs.closeSync(leaked);
    }
  });

  it('serves extra fds both ways: fd 4 into the child, fd 3 out of it', async () => {
    const c = track(spawnFast('/bin/sh', ['-c', 'read line <&4; echo "got $line" >&3; echo done'], {
      env: ENV,
      stdio: ['ignore', 'pipe', 'pipe', 'pipe', 'pipe-in'],
    }));
    const fd3 = collect(c.stdio[3]);
    const out = collect(c.stdout);
    c.stdio[4].end('hello\n');
    expect((await ended(c)).code).toBe(0);
    expect([fd3(), out()]).toEqual(['got hello\n', 'done\n']);
  });

  it('reaps 200 concurrent children, delivering every exit and close, and leaves no zombie', async () => {
    const children = Array.from({ length: 200 }, (_, i) =>
      track(spawnFast('/bin/sh', ['-c', `echo ${i}; exit $((${i} % 7))`], { env: ENV, stdio: ['ignore', 'pipe', 'ignore'] })),
    );
    const outs = children.map((c) => collect(c.stdout));
    const results = await Promise.all(children.map(ended));
    results.forEach((r, i) => expect(r).toEqual({ code: i % 7, signal: null, events: ['exit', 'close'] }));
    outs.forEach((out, i) => expect(out()).toBe(`${i}\n`));
    expect(liveChildren()).toBe(0);
    const zombies = fs.readdirSync('/proc').filter((p) => {
      if (!/^\d+$/.test(p)) return false;
      try {
        const s = stat(Number(p));
        return Number(s[1]) === process.pid && s[0] === 'Z';
      } catch {
        return false; // gone meanwhile
      }
    });
    expect(zombies).toEqual([]);
  });

  it('sees a short child exit within about its run time, even where `process` emits no signals (jest)', async () => {
    const t0 = Date.now();
    for (let i = 0; i < 20; i++) await ended(track(spawnFast('/bin/true', [], { env: {}, stdio: ['ignore'] })));
    // The poll backs off from 1 ms; a fixed 1 s sweep alone would take 20 s here.
    expect(Date.now() - t0).toBeLessThan(2000);
  });

  it('reaps on SIGCHLD in a plain Node process, before the backing-off poll would', () => {
    // sleep 0.7 s: the poll looks at ~511 ms and next at ~1023 ms, SIGCHLD comes at ~700 ms.
    const script = `
      const { spawnFast } = require(${JSON.stringify(path.resolve(__dirname, '../../src/runtime/spawn.js'))});
      const t0 = Date.now();
      spawnFast('/bin/sleep', ['0.7'], { env: {}, stdio: ['ignore'] }).on('exit', () => console.log(Date.now() - t0));`;
    const ms = Number(execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 }));
    expect(ms).toBeGreaterThanOrEqual(700);
    expect(ms).toBeLessThan(950);
  });

  it('once SIGCHLD has been seen, later children are reaped by it with no fast poll behind them', () => {
    // The first child proves signals arrive; the second is then only on the 1 s backstop sweep, so an exit seen
    // well before the next sweep came through SIGCHLD.
    const script = `
      const { spawnFast, liveChildren, pollDelay } = require(${JSON.stringify(path.resolve(__dirname, '../../src/runtime/spawn.js'))});
      spawnFast('/bin/sleep', ['0.1'], { env: {}, stdio: ['ignore'] }).on('exit', () => {
        const t0 = Date.now();
        const c = spawnFast('/bin/sleep', ['0.2'], { env: {}, stdio: ['ignore'] });
        const delay = pollDelay(c.pid);
        c.on('exit', () => console.log(delay, Date.now() - t0, liveChildren()));
      });`;
    const [delay, ms, left] = execFileSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 }).trim().split(' ').map(Number);
    expect(delay).toBe(1000);
    expect(ms).toBeGreaterThanOrEqual(200);
    expect(ms).toBeLessThan(900);
    expect(left).toBe(0);
  });

  it("still reports 'exit' when a grandchild holds stdout; 'close' comes when it lets go", async () => {
    const c = sh('sleep 30 & echo $!', ['ignore', 'pipe', 'pipe'], true);
    const out = collect(c.stdout);
    let closed = false;
    c.on('close', () => (closed = true));
    const exit = await new Promise<number | null>((resolve) => c.on('exit', (code) => resolve(code)));
    expect(exit).toBe(0);
    await new Promise((resolve) => setTimeout(resolve, 200));
    expect(closed).toBe(false);
    const grandchild = Number(out().trim());
    expect(grandchild).toBeGreaterThan(1);
    process.kill(-c.pid!, 'SIGKILL'); // the group the detached child led
    await new Promise<void>((resolve) => (closed ? resolve() : c.on('close', () => resolve())));
  });

  it('holds the event loop open while a ref\'d child runs, not after unref()', () => {
    const script = (unref: boolean): string => `
      const { spawnFast } = require(${JSON.stringify(path.resolve(__dirname, '../../src/runtime/spawn.js'))});
      const c = spawnFast('/bin/sleep', ['0.3'], { env: {}, stdio: ['ignore'] });
      ${unref ? 'c.unref();' : ''}
      c.on('exit', (code) => console.log('exit ' + code));`;
    const run = (unref: boolean): string => execFileSync(process.execPath, ['-e', script(unref)], { encoding: 'utf8', timeout: 10_000 });
    expect(run(false)).toBe('exit 0\n');
    expect(run(true)).toBe('');
  });

  it('runs an executable without a #! line through /bin/sh, as execvp (and so Node) does', async () => {
    const file = writeFile('noshebang', 'echo "ran $1"\n', 0o755);
    const c = track(spawnFast(file, ['arg'], { env: ENV, stdio: ['ignore', 'pipe', 'pipe'] }));
    const out = collect(c.stdout);
    expect((await ended(c)).code).toBe(0);
    expect(out()).toBe('ran arg\n');
  });

  it('gives fds 0..2 /dev/null when stdio lists fewer', async () => {
    const c = track(spawnFast('/bin/sleep', ['30'], { env: ENV, stdio: ['ignore'] }));
    // No wait: posix_spawn returns once the child has exec'd (CLONE_VFORK).
    const fds = fs.readdirSync(`/proc/${c.pid}/fd`).sort();
    expect(fds).toEqual(['0', '1', '2']);
    expect(fds.map((fd) => fs.readlinkSync(`/proc/${c.pid}/fd/${fd}`))).toEqual(['/dev/null', '/dev/null', '/dev/null']);
    c.kill('SIGKILL');
    await ended(c);
  });

  it('refuses NUL bytes synchronously, as Node does', () => {
    expect(() => spawnFast('/bin/true', ['a\0b'], { env: {}, stdio: [] })).toThrow(TypeError);
    expect(() => spawnFast('/bin/true', [], { env: { A: 'x\0' }, stdio: [] })).toThrow(TypeError);
  });
});

function writeFile(name: string, text: string, mode: number): string {
  const file = path.join(dir, name);
  fs.writeFileSync(file, text, { mode });
  fs.chmodSync(file, mode);
  return file;
}
