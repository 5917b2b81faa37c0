// The one interface berth uses to drive OCI runtimes (runc, crun), and the choice of handler for a pod. The only
// implementation supervises each container with conmon (conmon.ts); nothing above this file spawns a runtime.
import path from 'node:path';
import { BerthError, invalidArgument } from '../common/errors';
import { ConmonRuntime } from './conmon';
import type { PipedExec, TtyExec } from './stream-io';

export type ContainerStatus = 'created' | 'running' | 'stopped' | 'paused' | 'unknown';

export interface CreateOptions {
  id: string;
  /** Absolute dir holding config.json; conmon also puts its ctl/winsz fifos and the attach socket here. */
  bundle: string;
  /** CRI log file, written by conmon in the k8s-file format. */
  logPath: string;
  /** conmon writes <exitDir>/<id> (the exit code as text) when the container exits. */
  exitDir: string;
  /** Per-container state dir: conmon.pid (written by berth), conmon's container.pid, exit and oom files. */
  persistDir: string;
  stdin: boolean;
  stdinOnce: boolean;
  tty: boolean;
  timeoutMs?: number;
}

export interface CreateResult {
  pid: number;
  conmonPid: number;
}

export interface RuntimeState {
  status: ContainerStatus;
  pid: number;
}

export interface ExitStatus {
  exitCode: number;
  finishedAtNs: bigint;
  oomKilled: boolean;
}

export interface ExecSyncOptions {
  timeoutMs: number;
  maxOutputBytes: number;
  /** Not supported: runc/crun hand a pty master over a unix socket (SCM_RIGHTS), which Node cannot receive. */
  tty?: boolean;
  /** KEY=VALUE items, added to the container's process env. */
  env?: string[];
}

export interface ExecSyncResult {
  stdout: Buffer;
  stderr: Buffer;
  /** The command's exit code; 128+n when killed by signal n (137 after a timeout). */
  exitCode: number;
  timedOut: boolean;
}

export interface OciRuntime {
  create(c: CreateOptions): Promise<CreateResult>;
  start(id: string): Promise<void>;
  kill(id: string, signal: string, all?: boolean): Promise<void>;
  /** Signal, wait up to timeoutMs for exit, then SIGKILL; returns when the process is gone (bounded: throws
   *  DEADLINE_EXCEEDED if even SIGKILL does not end it within a few seconds). */
  stop(id: string, signal: string, timeoutMs: number): Promise<void>;
  /** Idempotent: an unknown id is not an error. */
  delete(id: string, force?: boolean): Promise<void>;
  /** undefined = the runtime does not know the id. */
  state(id: string): Promise<RuntimeState | undefined>;
  /** undefined = no exit file yet. persistDir (optional) lets the OOM check use conmon's oom file after a restart. */
  exitStatus(id: string, exitDir: string, persistDir?: string): Promise<ExitStatus | undefined>;
  execSync(id: string, cmd: string[], opts: ExecSyncOptions): Promise<ExecSyncResult>;
  /** resources: an OCI linux.resources object. */
  updateResources(id: string, resources: object): Promise<void>;
  /** Asks conmon to reopen the CRI log file (after the kubelet renamed it for rotation). */
  reopenLog(id: string, persistDir: string): Promise<void>;
  /** An interactive exec for the streaming server: a real terminal when tty, pipes otherwise. */
  execStream(id: string, cmd: string[], opts: { tty: boolean; rows?: number; cols?: number }): Promise<TtyExec | PipedExec>;
  /** CRIU checkpoint of a running container into imageDir, leaving it running. */
  checkpoint(id: string, imageDir: string, workDir: string, timeoutMs: number): Promise<void>;
}

export interface RuntimeHandler {
  name: string;
  /** Absolute path of the runtime binary. */
  path: string;
  /** Absolute state root passed as --root. */
  root: string;
}

// One instance per (handler, conmon) so the per-container facts learnt at create are shared by every caller.
const instances = new Map<string, OciRuntime>();

export function runtimeFor(handler: RuntimeHandler, conmonPath: string): OciRuntime {
  for (const [what, p] of [['runtime path', handler.path], ['runtime root', handler.root], ['conmon path', conmonPath]] as const) {
    if (!path.isAbsolute(p) || p.includes('\0')) throw invalidArgument(`handler "${handler.name}": ${what} must be an absolute path, got "${p}"`);
  }
  const key = JSON.stringify([handler.path, handler.root, conmonPath]);
  let rt = instances.get(key);
  if (!rt) {
    rt = new ConmonRuntime(handler.path, handler.root, conmonPath);
    instances.set(key, rt);
  }
  return rt;
}

/** The subset of berth's runtime config that handler selection needs (kept structural: runtime/ does not import server/). */
export interface HandlerTable {
  default_handler: string;
  handlers: Record<string, { path: string; root: string }>;
}

/** Picks the handler a pod asked for ("" = the default); an empty configured root means <stateDir>/runtimes/<name>. */
export function selectHandler(table: HandlerTable, requested: string, stateDir: string): RuntimeHandler {
  const name = requested === '' ? table.default_handler : requested;
  const h = Object.prototype.hasOwnProperty.call(table.handlers, name) ? table.handlers[name] : undefined;
  if (!h) {
    throw new BerthError(
      requested === '' ? 'FAILED_PRECONDITION' : 'NOT_FOUND',
      `no runtime handler "${name}" is configured (have: ${Object.keys(table.handlers).sort().join(', ') || 'none'})`,
    );
  }
  return { name, path: h.path, root: h.root === '' ? path.join(stateDir, 'runtimes', name) : h.root };
}
