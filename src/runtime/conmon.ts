// OciRuntime over conmon 2.x + runc/crun. conmon (one per container, --sync so it stays our direct child, in its own
// session so it outlives berth) runs `<runtime> create`, holds the container's stdio, writes the CRI log and the exit
// file. Everything else is a short runtime command: absolute path, --root, minimal env, a timeout, stderr in the error.
import fsSync, { constants as fsc } from 'node:fs';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { BerthError, errnoCode, errorMessage, invalidArgument, notFound } from '../common/errors';
import { execPiped, execTty, type PipedExec, type TtyExec } from './stream-io';
import { Capped, ENV_PATH, killGroup, killSession, procStat, run, signalNumber, sleep, waitGone, type RunResult } from './process';
import { explainRuntimeError, parseRuntimeError } from './runtime-errors';
import { spawnFast } from './spawn';
import type { CreateOptions, CreateResult, ExecSyncOptions, ExecSyncResult, ExitStatus, OciRuntime, RuntimeState } from './oci-runtime';

const CALL_TIMEOUT_MS = 30_000;
const CREATE_TIMEOUT_MS = 120_000;
const KILL_GRACE_MS = 5_000;
const EXIT_FILE_WAIT_MS = 2_000;
const REOPEN_WAIT_MS = 3_000;
const SYNC_CAP = 64 * 1024;
const ID = /^[A-Za-z0-9][A-Za-z0-9_.+-]{0,254}$/;
const NOT_EXIST = /container does not exist|error opening file `[^`]*\/status`: No such file or directory|cannot open directory '[^']*': No such file or directory/;
const NOT_RUNNING = /not running|not stopped|is running|cannot (?:start|exec)|is paused|not in `?(?:created|stopped|running)`?(?: or `?\w+`?)? state/i;
// conmon's ctl fifo protocol: "<type> <height> <width>\n"; type 2 = reopen the log files.
const REOPEN_LOGS = '2 0 0\n';

/** What create learnt about a container; lets stop/exitStatus/reopenLog work without asking the runtime. */
interface Known {
  bundle: string;
  exitDir: string;
  persistDir: string;
  logPath: string;
}

interface RawState {
  status?: unknown;
  pid?: unknown;
  bundle?: unknown;
}

export class ConmonRuntime implements OciRuntime {
  private readonly known = new Map<string, Known>();

  constructor(
    private readonly runtimePath: string,
    private readonly root: string,
    private readonly conmonPath: string,
  ) {}

  async create(c: CreateOptions): Promise<CreateResult> {
    checkId(c.id);
    for (const [what, p] of Object.entries({ bundle: c.bundle, logPath: c.logPath, exitDir: c.exitDir, persistDir: c.persistDir })) {
      if (!path.isAbsolute(p) || p.includes('\0')) throw invalidArgument(`create ${c.id}: ${what} must be an absolute path`);
    }
    // The checks and clean-up below are quick syscalls on local dirs: run in this thread, each costs less than a
    // trip through the thread pool (and StartContainer waits for all of them).
    try {
      fsSync.accessSync(path.join(c.bundle, 'config.json'));
    } catch (err) {
      throw new BerthError('FAILED_PRECONDITION', `create ${c.id}: bundle ${c.bundle} has no readable config.json: ${errorMessage(err)}`);
    }
    // runc and crun keep each container's state in <root>/<id>: a look there spares a `runtime state` process.
    if (await exists(path.join(this.root, c.id))) throw new BerthError('ALREADY_EXISTS', `create ${c.id}: the runtime already has a container with this id`);
    fsSync.mkdirSync(c.persistDir, { recursive: true, mode: 0o700 });
    fsSync.mkdirSync(c.exitDir, { recursive: true, mode: 0o700 });
    // A leftover exit/oom file from an earlier container with this id would be read as this one's.
    for (const f of [path.join(c.exitDir, c.id), ...['exit', 'oom', 'conmon.pid'].map((n) => path.join(c.persistDir, n))]) fsSync.rmSync(f, { force: true });

    const args = ['--api-version', '1', '-c', c.id, '-u', c.id, '-r', this.runtimePath, '-b', c.bundle,
      '-p', path.join(c.persistDir, 'container.pid'), '-l', `k8s-file:${c.logPath}`, '--exit-dir', c.exitDir,
      '--persist-dir', c.persistDir, '--full-attach', '--runtime-arg', `--root=${this.root}`, '--log-level', 'error', '--sync'];
    if (c.stdin) args.push('-i');
    if (c.stdin && !c.stdinOnce) args.push('--leave-stdin-open');
    if (c.tty) args.push('-t');
    // cwd = persistDir: conmon also drops an "oom" file into its cwd. detached: own session and process group, so a
    // signal to berth's group does not reach it. fd 3 = sync pipe (conmon → us), fd 4 = start pipe (us → conmon).
    // posix_spawn, not child_process: a fork stalls the event loop for a time that grows with our RSS.
    const child = spawnFast(this.conmonPath, args, {
      cwd: c.persistDir,
      detached: true,
      env: { PATH: ENV_PATH, _OCI_SYNCPIPE: '3', _OCI_STARTPIPE: '4' },
      stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe-in'],
    });
    const stderr = new Capped(SYNC_CAP);
    const [errStream, syncStream, startStream] = [child.stdio[2], child.stdio[3], child.stdio[4]];
    errStream.on('data', (b: Buffer) => stderr.push(b));
    startStream.on('error', () => undefined); // EPIPE when conmon died early; the sync EOF reports it
    const release = (): void => {
      for (const s of [errStream, syncStream, startStream]) s.destroy();
      child.unref();
    };

    const timeoutMs = c.timeoutMs ?? CREATE_TIMEOUT_MS;
    let timer: NodeJS.Timeout | undefined;
    let outcome: { data: number; message?: string } | 'timeout' | undefined;
    try {
      // Start pipe first: conmon blocks on it before forking the runtime; then read the sync pipe for the pid.
      startStream.end(Buffer.from([0]));
      outcome = await Promise.race([
        readSyncMessage(syncStream),
        new Promise<never>((_, reject) => child.once('error', reject)),
        new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), timeoutMs))),
      ]);
    } catch (err) {
      release();
      throw new BerthError('INTERNAL', `create ${c.id}: cannot run conmon ${this.conmonPath}: ${errorMessage(err)}`);
    } finally {
      clearTimeout(timer);
    }
    if (outcome !== 'timeout' && outcome !== undefined && outcome.data > 0 && child.pid !== undefined) {
      release();
      // Not fsynced: a pid means nothing after a power cut, and recovery treats an unreadable one as no conmon.
      // (conmon's own -P writes it only when it daemonizes, which --sync prevents.)
      fsSync.writeFileSync(path.join(c.persistDir, 'conmon.pid'), `${child.pid}\n`, { mode: 0o644 });
      this.known.set(c.id, { bundle: c.bundle, exitDir: c.exitDir, persistDir: c.persistDir, logPath: c.logPath });
      return { pid: outcome.data, conmonPid: child.pid };
    }

    // Failed: nothing may be left running. conmon leads its own process group (runtime create and init inside it);
    // let it exit by itself first (its exit code explains an early death), then kill whatever is left in the group.
    if (outcome === 'timeout') killGroup(child.pid);
    let grace: NodeJS.Timeout | undefined;
    const exit = await new Promise<string>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) return resolve(exitText(child.exitCode, child.signalCode));
      child.once('exit', (code, sig) => resolve(exitText(code, sig)));
      grace = setTimeout(() => resolve('did not exit'), 2000);
    });
    clearTimeout(grace);
    killGroup(child.pid);
    release();
    const reason =
      outcome === 'timeout'
        ? `timed out after ${timeoutMs} ms waiting for conmon`
        : outcome?.message
          ? await explainRuntimeError(parseRuntimeError(outcome.message))
          : `conmon ${exit} before reporting a pid${stderr.text() ? `: ${stderr.text().trim()}` : ''}`;
    // Never force-delete a same-id container that was there before us (a create race lost to another caller).
    const clash = /already exists|id exists/.test(reason);
    if (!clash) await this.delete(c.id, true).catch(() => undefined);
    const code = outcome === 'timeout' ? 'DEADLINE_EXCEEDED' : clash ? 'ALREADY_EXISTS' : 'INTERNAL';
    throw new BerthError(code, `create container ${c.id}: ${reason}`);
  }

  async start(id: string): Promise<void> {
    await this.call('start', id, ['start', id]);
  }

  async kill(id: string, signal: string, all = false): Promise<void> {
    const sig = signalNumber(signal);
    await this.call('kill', id, ['kill', ...(all ? ['--all'] : []), id, String(sig)]);
  }

  async stop(id: string, signal: string, timeoutMs: number): Promise<void> {
    const sig = signalNumber(signal);
    const st = await this.knownState(id) ?? await this.state(id);
    if (!st) throw notFound(`stop: container ${id} not found`);
    // Identify the process before signalling it, so a recycled pid cannot pass for the container.
    const started = st.status !== 'stopped' && st.pid > 0 ? (await procStat(st.pid))?.start : undefined;
    if (started !== undefined) {
      let gone = false;
      if (sig !== 9 && timeoutMs > 0) {
        await this.killUnlessStopped(id, sig, false);
        gone = await waitGone(st.pid, started, timeoutMs);
      }
      if (!gone) {
        await this.killUnlessStopped(id, 9, true);
        if (!(await waitGone(st.pid, started, KILL_GRACE_MS))) {
          throw new BerthError('DEADLINE_EXCEEDED', `stop: container ${id} (pid ${st.pid}) still alive ${KILL_GRACE_MS} ms after SIGKILL`);
        }
      }
    }
    // conmon writes the exit file just after reaping; wait for it so exitStatus right after stop has an answer.
    const k = this.known.get(id);
    if (k) await waitFor(() => exists(path.join(k.exitDir, id)), EXIT_FILE_WAIT_MS);
  }

  async delete(id: string, force = false): Promise<void> {
    checkId(id);
    // No state dir: nothing to delete, and no `runtime delete` process to pay for (RemoveContainer after StopContainer).
    if (!(await exists(path.join(this.root, id)))) {
      this.known.delete(id);
      return;
    }
    try {
      await this.call('delete', id, ['delete', ...(force ? ['--force'] : []), id]);
    } catch (err) {
      if (!(err instanceof BerthError && err.code === 'NOT_FOUND')) throw err;
    }
    this.known.delete(id);
  }

  async state(id: string): Promise<RuntimeState | undefined> {
    const raw = await this.rawState(id);
    if (!raw) return undefined;
    const status = typeof raw.status === 'string' ? raw.status : '';
    const mapped = status === 'created' || status === 'running' || status === 'stopped' || status === 'paused' ? status : status === 'pausing' ? 'paused' : 'unknown';
    return { status: mapped, pid: typeof raw.pid === 'number' && Number.isSafeInteger(raw.pid) ? raw.pid : 0 };
  }

  async exitStatus(id: string, exitDir: string, persistDir?: string): Promise<ExitStatus | undefined> {
    checkId(id);
    const file = path.join(exitDir, id);
    let text: string;
    let mtimeNs: bigint;
    try {
      // Most calls find no exit file (a running container's status): one stat in this thread answers that, where
      // the thread pool would cost a round trip per step of a read.
      const st = fsSync.statSync(file, { bigint: true, throwIfNoEntry: false });
      if (!st) return undefined;
      mtimeNs = st.mtimeNs;
      text = await fs.readFile(file, 'utf8');
    } catch (err) {
      if (errnoCode(err) === 'ENOENT') return undefined;
      throw new BerthError('INTERNAL', `exit status of ${id}: ${errorMessage(err)}`);
    }
    if (!/^-?\d{1,10}$/.test(text.trim())) throw new BerthError('DATA_LOSS', `exit file ${file} holds "${text.slice(0, 40)}", not an exit code`);
    const k = this.known.get(id);
    return { exitCode: Number(text.trim()), finishedAtNs: mtimeNs, oomKilled: await this.oomKilled(id, persistDir ?? k?.persistDir, k?.bundle) };
  }

  async execSync(id: string, cmd: string[], opts: ExecSyncOptions): Promise<ExecSyncResult> {
    checkId(id);
    if (opts.tty) throw new BerthError('UNIMPLEMENTED', `exec in ${id}: a tty for a synchronous exec needs the pty fd over SCM_RIGHTS, which berth cannot receive`);
    if (cmd.length === 0 || cmd.some((a) => typeof a !== 'string' || a.includes('\0'))) throw invalidArgument(`exec in ${id}: command must be non-empty strings without NUL`);
    for (const e of opts.env ?? []) {
      if (typeof e !== 'string' || e.includes('\0') || e.indexOf('=') < 1) throw invalidArgument(`exec in ${id}: env item "${String(e).slice(0, 40)}" is not KEY=VALUE`);
    }
    if (!(opts.timeoutMs > 0) || !Number.isSafeInteger(opts.maxOutputBytes) || opts.maxOutputBytes < 0) throw invalidArgument(`exec in ${id}: bad timeout or output limit`);
    // A full process.json (the container's process with args/env replaced) gives runc and crun the same semantics:
    // crun's --env replaces the env where runc's appends. The pid file names the exec'd process so a timeout can kill
    // its process group; the runtime's own errors go to a JSON log, apart from the command's stderr.
    const proc = await this.execProcess(id, cmd, opts.env ?? []);
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-exec-'));
    const [procFile, pidFile, logFile] = ['process.json', 'pid', 'log'].map((f) => path.join(dir, f)) as [string, string, string];
    const killExeced = (): Promise<void> => fs.readFile(pidFile, 'utf8').then((t) => killSession(Number.parseInt(t, 10)), () => undefined);
    try {
      await fs.writeFile(procFile, JSON.stringify(proc), { mode: 0o600 });
      const r = await run(this.runtimePath, ['--root', this.root, '--log', logFile, '--log-format', 'json', 'exec', '--process', procFile, '--pid-file', pidFile, id], {
        timeoutMs: opts.timeoutMs,
        stdoutCap: opts.maxOutputBytes,
        stderrCap: opts.maxOutputBytes,
        onTimeout: () => void killExeced(),
      });
      if (r.timedOut) await killExeced(); // again: the pid file may have appeared after the first attempt
      const runtimeErr = parseRuntimeError(await fs.readFile(logFile, 'utf8').catch(() => ''), true);
      if (!r.timedOut && runtimeErr) {
        throw new BerthError(NOT_EXIST.test(runtimeErr) ? 'NOT_FOUND' : NOT_RUNNING.test(runtimeErr) ? 'FAILED_PRECONDITION' : 'INTERNAL', `exec in ${id}: ${runtimeErr}`);
      }
      return { stdout: r.stdout, stderr: r.stderr, exitCode: exitCodeOf(r), timedOut: r.timedOut };
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  async updateResources(id: string, resources: object): Promise<void> {
    checkId(id);
    if (resources === null || typeof resources !== 'object' || Array.isArray(resources)) throw invalidArgument(`update ${id}: resources must be an object`);
    // A file, not stdin: Node's stdio pipes are socketpairs, and crun opens /dev/stdin, which fails on a socket.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'berth-update-'));
    try {
      const file = path.join(dir, 'resources.json');
      await fs.writeFile(file, JSON.stringify(resources), { mode: 0o600 });
      await this.call('update', id, ['update', '--resources', file, id]);
    } finally {
      await fs.rm(dir, { recursive: true, force: true });
    }
  }

  async reopenLog(id: string, persistDir: string): Promise<void> {
    checkId(id);
    const k = this.known.get(id);
    // conmon makes its ctl fifo in the bundle dir, not the persist dir.
    let ctl = path.join(persistDir, 'ctl');
    if (k || !(await exists(ctl))) ctl = path.join(await this.bundleOf(id), 'ctl');
    const st = await fs.lstat(ctl).catch(() => undefined);
    if (!st?.isFIFO()) throw new BerthError('FAILED_PRECONDITION', `reopen log of ${id}: no conmon control fifo at ${ctl}`);
    let fh: fs.FileHandle;
    try {
      fh = await fs.open(ctl, fsc.O_WRONLY | fsc.O_NONBLOCK | fsc.O_NOFOLLOW);
    } catch (err) {
      if (errnoCode(err) === 'ENXIO') throw new BerthError('FAILED_PRECONDITION', `reopen log of ${id}: conmon is not running`);
      throw new BerthError('INTERNAL', `reopen log of ${id}: ${errorMessage(err)}`);
    }
    try {
      await fh.write(REOPEN_LOGS);
    } finally {
      await fh.close();
    }
    if (k && !(await waitFor(() => exists(k.logPath), REOPEN_WAIT_MS))) {
      throw new BerthError('DEADLINE_EXCEEDED', `reopen log of ${id}: conmon did not recreate ${k.logPath} within ${REOPEN_WAIT_MS} ms`);
    }
  }

  async execStream(id: string, cmd: string[], opts: { tty: boolean; rows?: number; cols?: number }): Promise<TtyExec | PipedExec> {
    checkId(id);
    if (cmd.length === 0 || cmd.some((a) => typeof a !== 'string' || a.includes('\0'))) throw invalidArgument(`exec in ${id}: command must be non-empty strings without NUL`);
    const proc = await this.execProcess(id, cmd, []);
    const base = { runtimePath: this.runtimePath, root: this.root, id, process: proc };
    return opts.tty ? execTty({ ...base, ...(opts.rows ? { rows: opts.rows } : {}), ...(opts.cols ? { cols: opts.cols } : {}) }) : execPiped(base);
  }

  async checkpoint(id: string, imageDir: string, workDir: string, timeoutMs: number): Promise<void> {
    checkId(id);
    const r = await run(this.runtimePath, ['--root', this.root, 'checkpoint', '--image-path', imageDir, '--work-path', workDir, '--leave-running', id], { timeoutMs });
    if (r.timedOut) throw new BerthError('DEADLINE_EXCEEDED', `checkpoint ${id}: no answer within ${timeoutMs} ms`);
    if (r.code !== 0) throw new BerthError('INTERNAL', `checkpoint ${id}: ${parseRuntimeError(r.stderr.toString('utf8')) || exitText(r.code, r.signal)} (CRIU's log: ${workDir}/dump.log)`);
  }

  /**
   * The state of a container this instance launched, from conmon's pid file and /proc rather than a `runtime state`
   * process; undefined when unsure (not launched here, no pid file), and the caller asks the runtime.
   */
  private async knownState(id: string): Promise<RuntimeState | undefined> {
    const k = this.known.get(id);
    if (!k) return undefined;
    const pid = Number.parseInt(await fs.readFile(path.join(k.persistDir, 'container.pid'), 'utf8').catch(() => ''), 10);
    if (!(pid > 0)) return undefined;
    const st = await procStat(pid);
    return { status: !st || st.state === 'Z' || st.state === 'X' ? 'stopped' : 'running', pid };
  }

  private async bundleOf(id: string): Promise<string> {
    const k = this.known.get(id);
    if (k) return k.bundle;
    const raw = await this.rawState(id);
    if (!raw || typeof raw.bundle !== 'string') throw notFound(`container ${id} not found`);
    return raw.bundle;
  }

  private async execProcess(id: string, args: string[], env: string[]): Promise<object> {
    const bundle = await this.bundleOf(id);
    let spec: { process?: Record<string, unknown> };
    try {
      spec = JSON.parse(await fs.readFile(path.join(bundle, 'config.json'), 'utf8')) as typeof spec;
    } catch (err) {
      throw new BerthError('INTERNAL', `exec in ${id}: cannot read the bundle's config.json: ${errorMessage(err)}`);
    }
    const base: Record<string, unknown> = { ...spec.process };
    delete base['consoleSize'];
    const baseEnv: unknown[] = Array.isArray(base['env']) ? (base['env'] as unknown[]) : [];
    const vars = new Map<string, string>();
    for (const e of [...baseEnv, ...env]) {
      if (typeof e === 'string' && e.indexOf('=') > 0) vars.set(e.slice(0, e.indexOf('=')), e);
    }
    return { ...base, terminal: false, args, env: [...vars.values()] };
  }

  private async rawState(id: string): Promise<RawState | undefined> {
    let r: RunResult;
    try {
      r = await this.call('state', id, ['state', id]);
    } catch (err) {
      if (err instanceof BerthError && err.code === 'NOT_FOUND') return undefined;
      throw err;
    }
    try {
      const v = JSON.parse(r.stdout.toString('utf8')) as unknown;
      if (v === null || typeof v !== 'object') throw new Error('not an object');
      return v;
    } catch (err) {
      throw new BerthError('INTERNAL', `state of ${id}: unreadable runtime answer: ${errorMessage(err)}`);
    }
  }

  private async killUnlessStopped(id: string, sig: number, all: boolean): Promise<void> {
    try {
      await this.call('kill', id, ['kill', ...(all ? ['--all'] : []), id, String(sig)]);
    } catch (err) {
      const st = await this.state(id);
      if (st && st.status !== 'stopped') throw err;
    }
  }

  private async oomKilled(id: string, persistDir: string | undefined, bundle: string | undefined): Promise<boolean> {
    if (persistDir && (await exists(path.join(persistDir, 'oom')))) return true;
    // Fallback: the memory cgroup's kill counter, readable until `delete` removes the cgroup.
    if (!bundle) {
      const raw = await this.rawState(id).catch(() => undefined);
      bundle = typeof raw?.bundle === 'string' ? raw.bundle : undefined;
    }
    if (!bundle) return false;
    try {
      const spec = JSON.parse(await fs.readFile(path.join(bundle, 'config.json'), 'utf8')) as { linux?: { cgroupsPath?: unknown } };
      const cg = spec.linux?.cgroupsPath;
      return typeof cg === 'string' && (await cgroupOomKills(cg)) > 0;
    } catch {
      return false;
    }
  }

  /** Runs `<runtime> --root <root> ...args`; a failure becomes a BerthError naming the container and the runtime's message. */
  private async call(what: string, id: string, args: string[]): Promise<RunResult> {
    checkId(id);
    let r: RunResult;
    try {
      r = await run(this.runtimePath, ['--root', this.root, ...args], { timeoutMs: CALL_TIMEOUT_MS });
    } catch (err) {
      throw new BerthError('INTERNAL', `${what} ${id}: cannot run ${this.runtimePath}: ${errorMessage(err)}`);
    }
    if (r.timedOut) throw new BerthError('DEADLINE_EXCEEDED', `${what} ${id}: ${path.basename(this.runtimePath)} did not answer within ${CALL_TIMEOUT_MS} ms`);
    if (r.code !== 0) {
      const msg = parseRuntimeError(r.stderr.toString('utf8')) || `exit ${exitText(r.code, r.signal)}`;
      const code = NOT_EXIST.test(msg) ? 'NOT_FOUND' : NOT_RUNNING.test(msg) ? 'FAILED_PRECONDITION' : 'INTERNAL';
      throw new BerthError(code, `${what} ${id}: ${path.basename(this.runtimePath)}: ${msg}`);
    }
    return r;
  }
}

function checkId(id: string): void {
  if (typeof id !== 'string' || !ID.test(id)) throw invalidArgument(`invalid container id "${String(id).slice(0, 80)}"`);
}

/** conmon's sync pipe carries one JSON object per line: {"data": pid} or {"data": -1, "message": "..."}. */
function readSyncMessage(stream: Readable): Promise<{ data: number; message?: string } | undefined> {
  return new Promise((resolve) => {
    let buf = '';
    const done = (v: { data: number; message?: string } | undefined): void => {
      stream.removeAllListeners('data');
      resolve(v);
    };
    stream.on('data', (b: Buffer) => {
      buf += b.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0 && buf.length < SYNC_CAP) return;
      try {
        const v = JSON.parse(nl < 0 ? buf : buf.slice(0, nl)) as { data?: unknown; message?: unknown };
        done(typeof v.data === 'number' ? { data: v.data, message: typeof v.message === 'string' ? v.message : undefined } : { data: -1, message: `bad sync message: ${buf.slice(0, 200)}` });
      } catch {
        done({ data: -1, message: `bad sync message: ${buf.slice(0, 200)}` });
      }
    });
    stream.once('end', () => done(undefined));
    stream.once('error', () => done(undefined));
  });
}

function exitCodeOf(r: RunResult): number {
  if (r.code !== null) return r.code;
  return 128 + (r.signal ? (os.constants.signals[r.signal] ?? 0) : 0);
}

function exitText(code: number | null, signal: NodeJS.Signals | null): string {
  return code !== null ? `exited with code ${code}` : `killed by ${signal ?? 'a signal'}`;
}

// A stat in this thread: quicker than a thread-pool trip, and callers poll it.
async function exists(p: string): Promise<boolean> {
  return fsSync.existsSync(p);
}

async function waitFor(check: () => Promise<boolean>, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= deadline) return false;
    await sleep(20);
  }
}

/** OOM kills recorded by the memory cgroup at an absolute cgroupfs path (v1 memory.oom_control, else v2 memory.events). */
export async function cgroupOomKills(cgroupsPath: string): Promise<number> {
  const rel = path.posix.normalize(cgroupsPath);
  if (!rel.startsWith('/') || rel.split('/').includes('..')) return 0;
  for (const [file, key] of [[`/sys/fs/cgroup/memory${rel}/memory.oom_control`, 'oom_kill'], [`/sys/fs/cgroup${rel}/memory.events`, 'oom_kill']] as const) {
    const text = await fs.readFile(file, 'utf8').catch(() => undefined);
    const m = text === undefined ? null : new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
    if (m) return Number(m[1]);
  }
  return 0;
}
