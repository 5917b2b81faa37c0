// Runs Debian's containerd 1.6 (the benchmark peer) with its CRI plugin, entirely inside a temp dir: its own root, state,
// sockets, CNI conf dir, runc root and registry hosts dir. It never reads /etc/containerd/config.toml (an explicit
// --config) and never writes /var/lib/containerd, /run/containerd or /opt/containerd, with one exception that a pull
// never reaches: containerd 1.6 puts each shim's socket in /run/containerd/s/<hash> (a hard-coded path), so a
// benchmark that starts containers leaves those there until the shims exit. A pod on a CNI network adds two more
// host paths, both removed by RemovePodSandbox: its netns pin /var/run/netns/cni-<uuid> (hard-coded) and libcni's
// result cache /var/lib/cni/results/<network>-<sandbox id>-<ifname> (go-cni sets no cache dir).
import { ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { connectCri, CriClient } from '../test/helpers/cri-client';
import { removeTree, unmountUnder } from './sys';

export const CONTAINERD_BIN = '/usr/bin/containerd';

export interface ContainerdOptions {
  /** "127.0.0.1:PORT" of a plain-HTTP registry the CRI plugin must reach. */
  registryHost?: string;
  /**
   * How the registry is configured: a certs.d `hosts.toml` through `registry.config_path` (default), or the deprecated
   * `registry.mirrors` table. containerd 1.6 refuses both at once.
   */
  registryMode?: 'hosts' | 'mirrors';
  /** The pause image for RunPodSandbox (a lifecycle benchmark pushes one to the local registry). */
  sandboxImage?: string;
  /** containerd's log level (stderr is kept for error messages). Default "warn". */
  logLevel?: string;
  /**
   * A CNI network list written into its own CNI conf dir before start (it loads only that dir's first file). Without
   * one, pods that need a network fail ("cni plugin not initialized"); host-network pods run.
   */
  cniConflist?: string;
  /** Extra TOML appended to the generated config (must not repeat a table the generator wrote). */
  toml?: string;
  /** Use this (empty or new) directory instead of a fresh mkdtemp one. */
  dir?: string;
  /** Readiness timeout, ms. Default 20 s. */
  readyTimeoutMs?: number;
}

export interface Containerd {
  dir: string;
  root: string;
  state: string;
  socket: string;
  configFile: string;
  cniConfDir: string;
  pid: number;
  process: ChildProcess;
  /** Seconds from spawn until the CRI plugin answered Version. */
  readySeconds: number;
  /** The tail of containerd's stderr. */
  logs(): string;
  /** A new CRI client on the socket (closed by stop()). */
  client(): CriClient;
  /** SIGTERM (SIGKILL after 10 s), then unmounts whatever is left under the temp dir; the exit code or signal. */
  stop(): Promise<number | string>;
  /** Stops if still running, unmounts and removes the temp dir. */
  cleanup(): Promise<void>;
}

const LOG_KEEP = 64 * 1024;

// A benchmark that dies before stop() must not leave a containerd behind.
const running = new Set<ChildProcess>();
let exitHook = false;
function track(child: ChildProcess): void {
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const c of running) c.kill('SIGKILL');
    });
  }
  running.add(child);
  child.once('exit', () => running.delete(child));
}

const q = (s: string): string => JSON.stringify(s); // a JSON string is a valid TOML basic string

export function containerdConfigToml(dir: string, opts: ContainerdOptions = {}): string {
  const cri = 'plugins."io.containerd.grpc.v1.cri"';
  const mode = opts.registryMode ?? 'hosts';
  const lines = [
    'version = 2',
    `root = ${q(path.join(dir, 'root'))}`,
    `state = ${q(path.join(dir, 'state'))}`,
    `temp = ${q(path.join(dir, 'tmp'))}`,
    'disabled_plugins = []',
    'imports = []',
    'oom_score = 0',
    '',
    '[grpc]',
    `  address = ${q(path.join(dir, 'containerd.sock'))}`,
    '',
    '[ttrpc]',
    `  address = ${q(path.join(dir, 'containerd.sock.ttrpc'))}`,
    '',
    '[debug]',
    '  address = ""',
    `  level = ${q(opts.logLevel ?? 'warn')}`,
    '',
    '[metrics]',
    '  address = ""',
    '',
    '[plugins."io.containerd.internal.v1.opt"]',
    `  path = ${q(path.join(dir, 'opt'))}`,
    '',
    `[${cri}]`,
    '  restrict_oom_score_adj = true',
    '  systemd_cgroup = false',
    '  stream_server_address = "127.0.0.1"',
    '  stream_server_port = "0"',
    '  max_concurrent_downloads = 3',
    ...(opts.sandboxImage ? [`  sandbox_image = ${q(opts.sandboxImage)}`] : []),
    '',
    `[${cri}.cni]`,
    '  bin_dir = "/usr/lib/cni"',
    `  conf_dir = ${q(path.join(dir, 'cni'))}`,
    '  max_conf_num = 1',
    '',
    `[${cri}.containerd]`,
    '  snapshotter = "overlayfs"',
    '  default_runtime_name = "runc"',
    '',
    `[${cri}.containerd.runtimes.runc]`,
    '  runtime_type = "io.containerd.runc.v2"',
    '',
    `[${cri}.containerd.runtimes.runc.options]`,
    '  SystemdCgroup = false',
    '  BinaryName = "/usr/sbin/runc"',
    `  Root = ${q(path.join(dir, 'state', 'runc'))}`,
    '',
    `[${cri}.registry]`,
    `  config_path = ${q(mode === 'hosts' ? path.join(dir, 'certs.d') : '')}`,
  ];
  if (opts.registryHost && mode === 'mirrors') {
    lines.push(
      '',
      `[${cri}.registry.mirrors.${q(opts.registryHost)}]`,
      `  endpoint = [${q(`http://${opts.registryHost}`)}]`,
    );
  }
  return lines.join('\n') + '\n' + (opts.toml ? `\n${opts.toml}\n` : '');
}

/** certs.d/<host>/hosts.toml sending pulls for `host` to it over plain HTTP. */
export function hostsToml(host: string): string {
  return [
    `server = ${q(`http://${host}`)}`,
    '',
    `[host.${q(`http://${host}`)}]`,
    '  capabilities = ["pull", "resolve"]',
    '',
  ].join('\n');
}

export async function startContainerd(opts: ContainerdOptions = {}): Promise<Containerd> {
  const dir = opts.dir ?? fs.mkdtempSync(path.join(os.tmpdir(), 'berth-bench-containerd-'));
  const root = path.join(dir, 'root');
  const state = path.join(dir, 'state');
  const cniConfDir = path.join(dir, 'cni');
  for (const d of [root, state, cniConfDir, path.join(dir, 'tmp'), path.join(dir, 'opt')]) fs.mkdirSync(d, { recursive: true });
  if (opts.cniConflist !== undefined) fs.writeFileSync(path.join(cniConfDir, '10-bench.conflist'), opts.cniConflist);
  if (opts.registryHost && (opts.registryMode ?? 'hosts') === 'hosts') {
    const hostDir = path.join(dir, 'certs.d', opts.registryHost);
    fs.mkdirSync(hostDir, { recursive: true });
    fs.writeFileSync(path.join(hostDir, 'hosts.toml'), hostsToml(opts.registryHost));
  }
  const configFile = path.join(dir, 'config.toml');
  fs.writeFileSync(configFile, containerdConfigToml(dir, opts));
  const socket = path.join(dir, 'containerd.sock');

  const started = process.hrtime.bigint();
  const child = spawn(CONTAINERD_BIN, ['--config', configFile], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // A clean env: no proxy variables, no CONTAINERD_* overrides; TMPDIR keeps Go's temp files inside the dir.
    env: { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', HOME: dir, TMPDIR: path.join(dir, 'tmp') },
  });
  track(child);
  let log = '';
  const keep = (s: string): void => {
    log = (log + s).slice(-LOG_KEEP);
  };
  child.stdout.setEncoding('utf8').on('data', keep);
  child.stderr.setEncoding('utf8').on('data', keep);
  const exited = new Promise<number | string>((resolve) => child.once('exit', (code, sig) => resolve(code ?? sig ?? -1)));
  const spawnError = new Promise<Error>((resolve) => child.once('error', resolve));

  const clients: CriClient[] = [];
  let stopping: Promise<number | string> | undefined;
  const stop = (): Promise<number | string> =>
    (stopping ??= (async () => {
      for (const c of clients.splice(0)) c.close();
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      const code = await Promise.race([exited, spawnError.then(() => 'spawn-error')]);
      clearTimeout(timer);
      unmountUnder(dir);
      return code;
    })());

  let readySeconds: number;
  try {
    await Promise.race([
      waitReady(socket, opts.readyTimeoutMs ?? 20_000, () => child.exitCode !== null || child.signalCode !== null),
      spawnError.then((e) => Promise.reject(e)),
    ]);
    readySeconds = Number(process.hrtime.bigint() - started) / 1e9;
  } catch (err) {
    await stop();
    if (!opts.dir) removeTree(dir);
    const why = err instanceof Error ? err.message : String(err);
    throw new Error(`containerd did not become ready: ${why}\n--- containerd log (tail) ---\n${log.slice(-8000)}`, { cause: err });
  }

  return {
    dir,
    root,
    state,
    socket,
    configFile,
    cniConfDir,
    pid: child.pid ?? -1,
    process: child,
    readySeconds,
    logs: () => log,
    client: () => {
      const c = connectCri(socket);
      clients.push(c);
      return c;
    },
    stop,
    cleanup: async () => {
      await stop();
      removeTree(dir);
    },
  };
}

/**
 * Polls until the CRI plugin answers Version. A fresh client per attempt: grpc-js backs off ≥ 1 s after a failed
 * connect, which would hide containerd's ≈ 0.2 s start.
 */
async function waitReady(socket: string, timeoutMs: number, dead: () => boolean): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'socket not created';
  while (Date.now() < deadline) {
    if (dead()) throw new Error(`containerd exited before it was ready (${last})`);
    if (fs.existsSync(socket)) {
      const c = connectCri(socket);
      try {
        const v = await c.runtime.Version({ version: 'v1' }, { deadline: Date.now() + 2_000 });
        if (v.runtime_name) return;
        last = 'empty Version reply';
      } catch (err) {
        last = err instanceof Error ? err.message : String(err);
      } finally {
        c.close();
      }
    }
    await delay(20);
  }
  throw new Error(`no CRI Version within ${timeoutMs} ms (${last})`);
}
