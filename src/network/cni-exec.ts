// Running one CNI plugin binary as the spec describes: the type names an executable in the plugin dirs, parameters go
// in CNI_* variables, the network config on stdin, the result (or an error object) comes back on stdout. Every run
// has a timeout that kills the plugin's whole process group (bridge runs host-local as its child), and stdout and
// stderr are bounded so a broken plugin cannot grow berth's memory.
import fs from 'node:fs/promises';
import path from 'node:path';
import { BerthError, errnoCode, errorMessage, type ErrorCode } from '../common/errors';
import { spawnFast } from '../runtime/spawn';
import { checkPluginType } from './cni-config';

export type CniCommand = 'ADD' | 'DEL' | 'CHECK' | 'STATUS' | 'VERSION';

export interface PluginRun {
  command: CniCommand;
  /** The plugin's type (for messages) and its resolved binary. */
  type: string;
  binary: string;
  /** The config exactly as the plugin should read it (name, cniVersion, prevResult, runtimeConfig inserted). */
  config: Record<string, unknown>;
  containerId?: string;
  netns?: string;
  ifName?: string;
  /** CNI_ARGS pairs, already validated. */
  args?: [string, string][];
  pluginDirs: string[];
  timeoutMs: number;
}

/** A plugin's failure: the CNI error code when the plugin reported one (0 = none). */
export class CniPluginError extends BerthError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly plugin: string,
    readonly cniCode = 0,
  ) {
    super(code, message);
    this.name = 'CniPluginError';
  }
}

export const MAX_STDOUT_BYTES = 1 << 20;
const MAX_STDERR_BYTES = 64 << 10;
const MAX_SHOWN = 2048;
const PLUGIN_PATH = '/usr/sbin:/usr/bin:/sbin:/bin';
/** After the plugin exits, how long its stdout/stderr may stay open (held by an escaped child) before we stop reading. */
const DRAIN_MS = 1000;
/** Well-known CNI error codes a caller may retry: 11 "try again later", 50/51 "plugin not available" (1.1 STATUS). */
const TRANSIENT = new Set([11, 50, 51]);

/** Finds the binary for `type` in the plugin dirs, in order; the type must be a plain name. */
export async function findPlugin(type: string, dirs: string[]): Promise<string> {
  try {
    checkPluginType(type);
  } catch (err) {
    throw new CniPluginError('FAILED_PRECONDITION', `CNI ${errorMessage(err)}`, type);
  }
  for (const dir of dirs) {
    if (!path.isAbsolute(dir)) continue;
    const file = path.join(dir, type);
    try {
      const st = await fs.stat(file);
      if (!st.isFile()) continue;
      await fs.access(file, fs.constants.X_OK);
      return file;
    } catch (err) {
      if (errnoCode(err) !== 'ENOENT' && errnoCode(err) !== 'EACCES') throw err;
    }
  }
  throw new CniPluginError('FAILED_PRECONDITION', `CNI plugin "${type}" not found in ${dirs.join(':')}`, type);
}

/**
 * Runs the plugin and returns its stdout parsed as JSON (undefined when empty, as for DEL and CHECK). A non-zero
 * exit, a timeout, oversized output or JSON-less success output throws a CniPluginError naming the plugin.
 */
export async function runPlugin(r: PluginRun): Promise<unknown> {
  const env: Record<string, string> = {
    CNI_COMMAND: r.command,
    CNI_PATH: r.pluginDirs.join(':'),
    PATH: PLUGIN_PATH,
  };
  if (r.command !== 'VERSION' && r.command !== 'STATUS') {
    env['CNI_CONTAINERID'] = r.containerId ?? '';
    env['CNI_NETNS'] = r.netns ?? '';
    env['CNI_IFNAME'] = r.ifName ?? '';
    env['CNI_ARGS'] = (r.args ?? []).map(([k, v]) => `${k}=${v}`).join(';');
  }
  const what = `CNI plugin ${r.type} (${r.command})`;
  const out = await spawnBounded(r.binary, env, JSON.stringify(r.config), r.timeoutMs);
  if (out.timedOut) {
    throw new CniPluginError('DEADLINE_EXCEEDED', `plugin ${r.type} timed out after ${r.timeoutMs / 1000} s (${r.command})${stderrTail(out.stderr)}`, r.type);
  }
  if (out.spawnError) throw new CniPluginError('INTERNAL', `${what} could not run: ${out.spawnError}`, r.type);
  if (out.overflow) {
    throw new CniPluginError('INTERNAL', `${what} wrote more than ${MAX_STDOUT_BYTES} bytes to stdout${stderrTail(out.stderr)}`, r.type);
  }
  const text = out.stdout.toString('utf8').trim();
  if (out.exitCode !== 0) throw failure(r.type, r.command, out.exitCode, out.signal, text, out.stderr);
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    throw new CniPluginError('INTERNAL', `${what} succeeded but its output is not JSON: ${shown(text)}${stderrTail(out.stderr)}`, r.type);
  }
}

/** The error for a failed run: the CNI error object if stdout holds one, else the exit status and raw output. */
function failure(type: string, command: CniCommand, exitCode: number | null, signal: string | null, stdout: string, stderr: string): CniPluginError {
  const status = signal ? `killed by ${signal}` : `exit ${exitCode}`;
  let parsed: unknown;
  try {
    parsed = JSON.parse(stdout);
  } catch {
    parsed = undefined;
  }
  const obj = typeof parsed === 'object' && parsed !== null && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : undefined;
  const cniCode = obj && typeof obj['code'] === 'number' && Number.isInteger(obj['code']) ? obj['code'] : undefined;
  if (obj && cniCode !== undefined) {
    const msg = typeof obj['msg'] === 'string' ? obj['msg'] : '';
    const details = typeof obj['details'] === 'string' && obj['details'] !== '' ? `: ${obj['details']}` : '';
    const code: ErrorCode = TRANSIENT.has(cniCode) ? 'UNAVAILABLE' : 'INTERNAL';
    const text = `CNI plugin ${type} (${command}) failed with CNI error ${cniCode}: ${shown(msg + details)}${stderrTail(stderr)}`;
    return new CniPluginError(code, text, type, cniCode);
  }
  const out = stdout !== '' ? `; stdout: ${shown(stdout)}` : '';
  return new CniPluginError('INTERNAL', `CNI plugin ${type} (${command}) failed (${status}) without a CNI error object${out}${stderrTail(stderr)}`, type);
}

interface Spawned {
  exitCode: number | null;
  signal: string | null;
  stdout: Buffer;
  stderr: string;
  overflow: boolean;
  timedOut: boolean;
  spawnError?: string;
}

function spawnBounded(file: string, env: Record<string, string>, stdin: string, timeoutMs: number): Promise<Spawned> {
  return new Promise((resolve) => {
    // detached: its own process group, so a timeout kills the plugin and whatever it started (IPAM, iptables).
    // posix_spawn, not child_process: a fork stalls the event loop for a time that grows with our RSS.
    const child = spawnFast(file, [], { env, cwd: '/', stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const chunks: Buffer[] = [];
    let size = 0;
    let stderr = '';
    const res: Spawned = { exitCode: null, signal: null, stdout: Buffer.alloc(0), stderr: '', overflow: false, timedOut: false };
    let settled = false;
    let drain: NodeJS.Timeout | undefined;
    const killGroup = (): void => {
      if (child.pid === undefined) return;
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    };
    const finish = (): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (drain) clearTimeout(drain);
      res.stdout = Buffer.concat(chunks);
      res.stderr = stderr;
      resolve(res);
    };
    const timer = setTimeout(() => {
      res.timedOut = true;
      killGroup();
    }, timeoutMs);
    child.stdout.on('data', (b: Buffer) => {
      size += b.length;
      if (size > MAX_STDOUT_BYTES) {
        if (!res.overflow) killGroup();
        res.overflow = true;
        return;
      }
      chunks.push(b);
    });
    child.stderr.on('data', (b: Buffer) => {
      if (stderr.length < MAX_STDERR_BYTES) stderr += b.toString('utf8').slice(0, MAX_STDERR_BYTES - stderr.length);
    });
    child.stdin.on('error', () => undefined); // a plugin that exits without reading stdin: EPIPE is not our failure
    child.on('error', (err) => {
      res.spawnError = errorMessage(err);
      finish();
    });
    child.on('exit', (code, signal) => {
      res.exitCode = code;
      res.signal = signal;
      // Normally 'close' follows at once; a child that escaped the group could hold the pipes open forever.
      drain = setTimeout(() => {
        child.stdout.destroy();
        child.stderr.destroy();
        finish();
      }, DRAIN_MS);
    });
    child.on('close', finish);
    child.stdin.end(stdin);
  });
}

function shown(text: string): string {
  const t = text.trim();
  return JSON.stringify(t.length > MAX_SHOWN ? `${t.slice(0, MAX_SHOWN)}…` : t);
}

function stderrTail(stderr: string): string {
  const t = stderr.trim();
  if (t === '') return '';
  // The end of stderr is where a Go plugin's fatal error lands.
  return `; stderr: ${JSON.stringify(t.length > MAX_SHOWN ? `…${t.slice(-MAX_SHOWN)}` : t)}`;
}
