// Exec, Attach and PortForward: validate the request as the kubelet does, then hand out a URL on the streaming
// server; the session itself runs there (streaming/server.ts).
import { failedPrecondition, invalidArgument } from '../common/errors';
import type { AttachRequest__Output } from './generated/runtime/v1/AttachRequest';
import type { AttachResponse } from './generated/runtime/v1/AttachResponse';
import type { ExecRequest__Output } from './generated/runtime/v1/ExecRequest';
import type { ExecResponse } from './generated/runtime/v1/ExecResponse';
import type { PortForwardRequest__Output } from './generated/runtime/v1/PortForwardRequest';
import type { PortForwardResponse } from './generated/runtime/v1/PortForwardResponse';
import type { ServerContext } from './context';
import { required } from './request';
import type { UnaryHandler } from './rpc';

function checkStreams(what: string, r: { stdin: boolean; stdout: boolean; stderr: boolean; tty: boolean }): void {
  if (!r.stdin && !r.stdout && !r.stderr) throw invalidArgument(`${what}: one of stdin, stdout and stderr must be set`);
  if (r.tty && r.stderr) throw invalidArgument(`${what}: tty and stderr cannot both be set (a terminal has one output stream)`);
}

async function runningContainer(s: ServerContext, id: string): Promise<string> {
  const c = await s.containers.status(required(id, 'container_id'));
  if (c.state !== 'CONTAINER_RUNNING') throw failedPrecondition(`container ${c.id} is not running (${c.state})`);
  return c.id;
}

export function exec(s: ServerContext): UnaryHandler<ExecRequest__Output, ExecResponse> {
  return async (req) => {
    if (req.cmd.length === 0 || req.cmd.some((a) => a.includes('\0'))) throw invalidArgument('cmd must be a non-empty list of strings without NUL');
    checkStreams('Exec', req);
    const containerId = await runningContainer(s, req.container_id);
    return { url: s.streaming().url({ kind: 'exec', containerId, cmd: req.cmd, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }) };
  };
}

export function attach(s: ServerContext): UnaryHandler<AttachRequest__Output, AttachResponse> {
  return async (req) => {
    checkStreams('Attach', req);
    const containerId = await runningContainer(s, req.container_id);
    return { url: s.streaming().url({ kind: 'attach', containerId, tty: req.tty, stdin: req.stdin, stdout: req.stdout, stderr: req.stderr }) };
  };
}

export function portForward(s: ServerContext): UnaryHandler<PortForwardRequest__Output, PortForwardResponse> {
  return async (req) => {
    const pod = s.sandboxes.get(required(req.pod_sandbox_id, 'pod_sandbox_id'));
    if (pod.state !== 'SANDBOX_READY') throw failedPrecondition(`pod sandbox ${pod.id} is not ready`);
    const bad = req.port.find((p) => !Number.isInteger(p) || p < 1 || p > 65535);
    if (bad !== undefined) throw invalidArgument(`port ${bad} is not in 1..65535`);
    return { url: s.streaming().url({ kind: 'portforward', podId: pod.id, ports: [...req.port] }) };
  };
}
