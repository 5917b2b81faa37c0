// Starts the real berth binary on a temp socket with temp dirs, as a kubelet's runtime would run, and stops it.
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot } from '../../src/common/package-root';
import { connectCri, CriClient } from './cri-client';

export interface TestDaemon {
  dir: string;
  socket: string;
  configFile: string;
  configDir: string;
  root: string;
  stateDir: string;
  cniConfDir: string;
  metricsPort: number | undefined;
  process: ChildProcess;
  /** Everything the daemon wrote on stderr (JSON log lines). */
  logs(): string;
  client(): CriClient;
  /** SIGTERM, then the exit code (or the signal name). */
  stop(signal?: NodeJS.Signals): Promise<number | string>;
  /** The exit code (or signal name) once the daemon exits by itself or from a signal the test sent. */
  exited: Promise<number | string>;
  /** Removes the temp dirs (after stop). */
  cleanup(): void;
}

export interface StartOptions {
  /** Extra TOML appended to the generated config file. */
  toml?: string;
  args?: string[];
  env?: Record<string, string>;
  /** Reuse an existing test dir (for restart tests). */
  dir?: string;
  metrics?: boolean;
  /** Write a loopback-only CNI network (default true), so pods run without touching the host's network. */
  cni?: boolean;
}

export const LOOPBACK_CONFLIST = JSON.stringify({ cniVersion: '1.0.0', name: 'berth-test-lo', plugins: [{ type: 'loopback' }] });

export function berthBin(): string {
  return path.join(packageRoot(), 'bin', 'berth');
}

export function testConfigToml(dir: string, metrics: boolean): string {
  return [
    `root = "${dir}/root"`,
    `state_dir = "${dir}/state"`,
    `log_level = "debug"`,
    '[api]',
    `listen = "${dir}/state/berth.sock"`,
    '[network]',
    `cni_conf_dir = "${dir}/cni"`,
    '[metrics]',
    `enabled = ${metrics}`,
    'address = "127.0.0.1:0"',
    '',
  ].join('\n');
}

// A test that dies before its stop() must not leave a daemon behind.
const running = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of running) child.kill('SIGKILL');
});

export async function startDaemon(opts: StartOptions = {}): Promise<TestDaemon> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'berth-test-'));
  const configFile = path.join(dir, 'berth.toml');
  const configDir = path.join(dir, 'berth.d');
  fs.mkdirSync(configDir, { recursive: true });
  fs.mkdirSync(path.join(dir, 'cni'), { recursive: true });
  if (opts.cni !== false && !opts.dir) fs.writeFileSync(path.join(dir, 'cni', '10-loopback.conflist'), LOOPBACK_CONFLIST);
  if (!opts.dir || !fs.existsSync(configFile)) {
    fs.writeFileSync(configFile, testConfigToml(dir, opts.metrics ?? true) + (opts.toml ?? ''));
  }
  const socket = path.join(dir, 'state', 'berth.sock');
  const child = spawn(process.execPath, [berthBin(), 'run', '--config', configFile, '--config-dir', configDir, ...(opts.args ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...opts.env },
  });
  running.add(child);
  child.once('exit', () => running.delete(child));
  let stderr = '';
  let stdout = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const metricsPort = await waitServing(() => stderr, exited);
  const clients: CriClient[] = [];
  return {
    dir,
    socket,
    configFile,
    configDir,
    root: path.join(dir, 'root'),
    stateDir: path.join(dir, 'state'),
    cniConfDir: path.join(dir, 'cni'),
    metricsPort,
    process: child,
    exited,
    logs: () => stderr + stdout,
    client: () => {
      const c = connectCri(socket);
      clients.push(c);
      return c;
    },
    stop: async (signal: NodeJS.Signals = 'SIGTERM') => {
      for (const c of clients.splice(0)) c.close();
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const timer = setTimeout(() => child.kill('SIGKILL'), 15000);
      const code = await exited;
      clearTimeout(timer);
      return code;
    },
    cleanup: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

async function waitServing(stderr: () => string, exited: Promise<number | string>): Promise<number | undefined> {
  let exitCode: number | string | undefined;
  void exited.then((c) => (exitCode = c));
  const deadline = Date.now() + 20000;
  while (Date.now() < deadline) {
    for (const line of stderr().split('\n')) {
      if (!line.includes('berth is serving')) continue;
      const parsed = JSON.parse(line) as { metricsPort?: number | null };
      return parsed.metricsPort ?? undefined;
    }
    if (exitCode !== undefined) throw new Error(`berth exited (${exitCode}) before serving:\n${stderr()}`);
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(`berth did not start serving within 20 s:\n${stderr()}`);
}

/** Runs the berth binary to completion (for `berth config`, bad configs, …). */
export function runBerth(args: string[], env: Record<string, string> = {}): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [berthBin(), ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '', ...env } });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.once('exit', (code) => resolve({ code: code ?? -1, stdout, stderr }));
  });
}
