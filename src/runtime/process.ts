// Short-lived helper processes: run with a timeout and capped output in their own process group, killed as a group,
// identified through /proc so a recycled pid never passes for the process we started.
import fs from 'node:fs/promises';
import os from 'node:os';
import { invalidArgument } from '../common/errors';
import { spawnFast } from './spawn';

export const ENV_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
const STDERR_CAP = 64 * 1024; // a runtime's error output; more is noise


export interface RunResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: Buffer;
  stderr: Buffer;
  timedOut: boolean;
}

interface RunOptions {
  timeoutMs: number;
  stdoutCap?: number;
  stderrCap?: number;
  /** Extra work at the timeout, after the command's process group got SIGKILL. */
  onTimeout?: () => void;
}

/** Keeps the first `cap` bytes of a stream and drops the rest while the caller keeps draining (CVE-2022-31030). */
export class Capped {
  private readonly chunks: Buffer[] = [];
  private size = 0;

  constructor(private readonly cap: number) {}

  push(b: Buffer): void {
    const room = this.cap - this.size;
    if (room <= 0) return;
    const part = b.length > room ? Buffer.from(b.subarray(0, room)) : b;
    this.chunks.push(part);
    this.size += part.length;
  }

  buffer(): Buffer {
    return Buffer.concat(this.chunks, this.size);
  }

  text(): string {
    return this.buffer().toString('utf8');
  }
}

/** Spawns file in its own process group with a minimal env; at the timeout SIGKILLs the group. Never rejects for a
 *  non-zero exit, only when the program cannot be started. */
export function run(file: string, args: string[], o: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    // posix_spawn, not child_process: a fork would stall every other RPC for a time that grows with our RSS.
    const child = spawnFast(file, args, { detached: true, env: { PATH: ENV_PATH }, stdio: ['ignore', 'pipe', 'pipe'] });
    const out = new Capped(o.stdoutCap ?? 16 * 1024 * 1024);
    const err = new Capped(o.stderrCap ?? STDERR_CAP);
    const { stdout, stderr } = child;
    stdout.on('data', (b: Buffer) => out.push(b));
    stderr.on('data', (b: Buffer) => err.push(b));
    let timedOut = false;
    let settled = false;
    let grace: NodeJS.Timeout | undefined;
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup(child.pid);
      o.onTimeout?.();
    }, o.timeoutMs);
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      clearTimeout(grace);
      stdout.destroy();
      stderr.destroy();
      resolve({ code: child.exitCode, signal: child.signalCode, stdout: out.buffer(), stderr: err.buffer(), timedOut });
    };
    child.once('error', (e) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(e);
    });
    // 'close' waits for the pipes; a process left behind in the container could hold them open forever.
    child.once('exit', () => (grace = setTimeout(finish, 1000)));
    child.once('close', finish);
  });
}

/** SIGKILL to a process group led by pid, and to pid itself in case it leads none. */
export function killGroup(pid: number | undefined): void {
  if (pid === undefined || !Number.isSafeInteger(pid) || pid <= 1) return;
  for (const target of [-pid, pid]) {
    try {
      process.kill(target, 'SIGKILL');
    } catch {
      // ESRCH: already gone
    }
  }
}

let ownPgid: number | undefined;

/** SIGKILL to pid and to its whole process group (runtimes make an exec'd process the head of a new session, though
 *  crun's leader is an intermediate that is gone) — never to berth's own group. */
export async function killSession(pid: number): Promise<void> {
  if (!Number.isSafeInteger(pid) || pid <= 1) return;
  ownPgid ??= (await procStat(process.pid))?.pgid;
  const pgid = (await procStat(pid))?.pgid;
  killGroup(pid);
  if (pgid !== undefined && pgid > 1 && pgid !== ownPgid) killGroup(pgid);
}

/** "SIGTERM", "TERM" or "15" → 15; anything else is rejected before it reaches an argv. */
export function signalNumber(signal: string): number {
  const s = String(signal).trim().toUpperCase();
  if (/^\d{1,2}$/.test(s) && Number(s) >= 1 && Number(s) <= 64) return Number(s);
  const n = (os.constants.signals as Record<string, number | undefined>)[s.startsWith('SIG') ? s : `SIG${s}`];
  if (n === undefined) throw invalidArgument(`unknown signal "${String(signal).slice(0, 20)}"`);
  return n;
}

/** Polls /proc until pid is gone (no entry, a zombie, or a new process under the same number). */
export async function waitGone(pid: number, started: string, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  for (;;) {
    const now = await procStat(pid);
    if (!now || now.state === 'Z' || now.state === 'X' || now.start !== started) return true;
    if (Date.now() >= deadline) return false;
    await sleep(10);
  }
}

export async function procStat(pid: number): Promise<{ state: string; pgid: number; start: string } | undefined> {
  try {
    const text = await fs.readFile(`/proc/${pid}/stat`, 'utf8');
    // comm may hold spaces and parens: fields restart after the last ')'; state is field 3, pgrp 5, starttime 22.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0] ?? '', pgid: Number(rest[2]), start: rest[19] ?? '' };
  } catch {
    return undefined;
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}
