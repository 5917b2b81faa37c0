// Exec, attach and port-forward through the real daemon: URLs from the CRI, sessions over SPDY (what crictl and the
// kubelet speak) and WebSocket, real containers under conmon + runc, a real server inside a pod's netns.
import { createHash } from 'node:crypto';
import { randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { PassThrough } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import type { ContainerConfig } from '../../src/server/generated/runtime/v1/ContainerConfig';
import type { PodSandboxConfig } from '../../src/server/generated/runtime/v1/PodSandboxConfig';
import type { CriClient } from '../helpers/cri-client';
import type { TestDaemon } from '../helpers/daemon';
import { startPodFixture, type PodFixture } from '../helpers/pod-fixture';
import { until } from '../helpers/until';
import { spdyCommand, spdyPortForward, upgradeSpdy, wsCommand } from '../helpers/stream-client';

const cgroupParent = `/berth-streaming-${randomBytes(4).toString('hex')}`;

/** Pids of processes whose command line matches (pgrep run directly: a shell around it would match itself). */
function pgrep(pattern: string): string {
  try {
    return execFileSync('pgrep', ['-f', pattern]).toString().trim();
  } catch {
    return ''; // exit 1: none
  }
}

function helpersRunning(): number {
  return pgrep('build/berth-stream-helper').split('\n').filter(Boolean).length;
}

describe('streaming through the daemon', () => {
  let f: PodFixture;
  let d: TestDaemon;
  let c: CriClient;
  let image: string;
  let podId: string;
  let podConfig: PodSandboxConfig;

  beforeAll(async () => {
    f = await startPodFixture({ name: 'stream', cgroupParent, toml: '[streaming]\ntoken_ttl_seconds = 3\n' });
    ({ d, c, image, podId, podConfig } = f);
  });

  afterAll(() => f?.close());

  async function run(name: string, extra: Partial<ContainerConfig>): Promise<string> {
    const { container_id: id } = await c.runtime.CreateContainer({ pod_sandbox_id: podId, config: { metadata: { name, attempt: 0 }, image: { image }, ...extra }, sandbox_config: podConfig });
    await c.runtime.StartContainer({ container_id: id });
    return id;
  }

  const execUrl = async (id: string, cmd: string[], o: { tty?: boolean; stdin?: boolean } = {}): Promise<string> =>
    (await c.runtime.Exec({ container_id: id, cmd, tty: o.tty ?? false, stdin: o.stdin ?? false, stdout: true, stderr: !o.tty })).url;

  it('execs over SPDY and WebSocket: output, exit code 3, stdin to cat, and a TTY that follows resizes', async () => {
    const id = await run('exec-target', { command: ['sleep', '100000'] });
    for (const client of [spdyCommand, wsCommand]) {
      const echo = await client(await execUrl(id, ['sh', '-c', 'echo out; echo err >&2']));
      expect(echo).toMatchObject({ stdout: 'out\n', stderr: 'err\n' });
      expect(JSON.parse(echo.status)).toEqual({ metadata: {}, status: 'Success' });
      const three = await client(await execUrl(id, ['sh', '-c', 'exit 3']));
      expect(JSON.parse(three.status)).toMatchObject({ reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] } });
      const cat = await client(await execUrl(id, ['cat'], { stdin: true }), { stdin: Buffer.from('piped through cat\n') });
      expect(cat.stdout).toBe('piped through cat\n');
      for (const cmd of [['stty', 'size'], ['sh', '-c', 'stty size'], ['sh', '-c', 'sleep 0.5; stty size']]) {
        const tty = await client(await execUrl(id, cmd, { tty: true }), { tty: true, resize: { width: 123, height: 45 } });
        expect({ cmd, out: tty.stdout }).toEqual({ cmd, out: expect.stringContaining('45 123') });
      }
    }
    await c.runtime.RemoveContainer({ container_id: id });
  });

  it('refuses bad Exec/Attach/PortForward requests, a used token and an expired one', async () => {
    const id = await run('refusals', { command: ['sleep', '100000'] });
    await expect(c.runtime.Exec({ container_id: id, cmd: ['true'], tty: true, stdout: true, stderr: true })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: expect.stringContaining('tty and stderr') });
    await expect(c.runtime.Exec({ container_id: id, cmd: ['true'] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    await expect(c.runtime.Exec({ container_id: 'nope', cmd: ['true'], stdout: true })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
    await expect(c.runtime.PortForward({ pod_sandbox_id: podId, port: [70000] })).rejects.toMatchObject({ code: grpc.status.INVALID_ARGUMENT });
    const url = await execUrl(id, ['true']);
    await spdyCommand(url);
    await expect(spdyCommand(url)).rejects.toMatchObject({ statusCode: 404 });
    const stale = await execUrl(id, ['true']);
    await new Promise((r) => setTimeout(r, 3500));
    await expect(spdyCommand(stale)).rejects.toMatchObject({ statusCode: 404 });
    await c.runtime.RemoveContainer({ container_id: id });
    await expect(c.runtime.Attach({ container_id: id, stdout: true })).rejects.toMatchObject({ code: grpc.status.NOT_FOUND });
  }, 30_000);

  it('attaches to a container printing lines and to one reading stdin; detaching leaves it running', async () => {
    const printer = await run('printer', { command: ['sh', '-c', 'i=0; while true; do i=$((i+1)); echo line $i; sleep 0.1; done'] });
    const url = (await c.runtime.Attach({ container_id: printer, stdout: true, stderr: true })).url;
    const seen = await spdyCommand(url, { onStdout: (text) => (text.split('\n').length > 4 ? true : undefined) });
    expect(seen.stdout).toMatch(/line \d+\nline \d+\n/);
    expect((await c.runtime.ContainerStatus({ container_id: printer })).status?.state).toBe('CONTAINER_RUNNING');
    const reader = await run('reader', { command: ['cat'], stdin: true });
    const input = new PassThrough();
    const attachUrl = (await c.runtime.Attach({ container_id: reader, stdin: true, stdout: true, stderr: true })).url;
    const got = wsCommand(attachUrl, { stdin: input, onStdout: (text) => (text.includes('hello reader') ? true : undefined) });
    input.write('hello reader\n');
    expect((await got).stdout).toContain('hello reader');
    expect((await c.runtime.ContainerStatus({ container_id: reader })).status?.state).toBe('CONTAINER_RUNNING');
    for (const id of [printer, reader]) await c.runtime.RemoveContainer({ container_id: id });
    await until('no stream helper left', () => (helpersRunning() === 0 ? true : undefined));
  }, 30_000);

  it('closes an exec stream cleanly when the container exits mid-stream, and a vanished client leaks no process', async () => {
    const id = await run('short', { command: ['sh', '-c', 'sleep 2'] });
    const r = await spdyCommand(await execUrl(id, ['sleep', '100']));
    expect(r.status).not.toBe('');
    const id2 = await run('long', { command: ['sleep', '100000'] });
    const { session } = await upgradeSpdy(await execUrl(id2, ['sleep', '4242']), ['v4.channel.k8s.io']);
    for (const t of ['error', 'stdout', 'stderr']) session.openStream({ streamtype: t }).on('error', () => undefined);
    await until('the exec to run', () => (pgrep('^sleep 4242') ? true : undefined));
    session.destroy();
    await until('the exec to be killed', () => (pgrep('^sleep 4242') === '' ? true : undefined));
    await until('no stream helper left', () => (helpersRunning() === 0 ? true : undefined));
    for (const x of [id, id2]) await c.runtime.RemoveContainer({ container_id: x });
  }, 30_000);

  it('port-forwards to an httpd inside the pod: 10 concurrent connections and 50 MiB checksum-equal', async () => {
    const id = await run('web', { command: ['sh', '-c', 'mkdir -p /www && echo hello-from-pod > /www/index.html && /bin/busybox dd if=/dev/urandom of=/www/big bs=1M count=50 2>/dev/null && exec httpd -f -p 8080 -h /www'] });
    const sum = await until('the big file', async () => {
      const out = await c.runtime.ExecSync({ container_id: id, cmd: ['/bin/busybox', 'sha256sum', '/www/big'], timeout: 10 }).catch(() => undefined);
      const text = out ? Buffer.from(out.stdout).toString() : '';
      return /^[0-9a-f]{64} /.test(text) ? text.slice(0, 64) : undefined;
    }, 30_000);
    const url = (await c.runtime.PortForward({ pod_sandbox_id: podId, port: [8080, 9] })).url;
    const { session } = await upgradeSpdy(url, ['portforward.k8s.io']);
    const get = (p: string): Buffer => Buffer.from(`GET ${p} HTTP/1.0\r\nHost: pod\r\n\r\n`);
    const small = await Promise.all(Array.from({ length: 10 }, (_, i) => spdyPortForward(session, 8080, i, get('/index.html'))));
    for (const r of small) expect(r.data.toString()).toMatch(/^HTTP\/1\.[01] 200[\s\S]*hello-from-pod\n$/);
    const big = await spdyPortForward(session, 8080, 99, get('/big'));
    const body = big.data.subarray(big.data.indexOf('\r\n\r\n') + 4);
    expect(body.length).toBe(50 * 1024 * 1024);
    expect(createHash('sha256').update(body).digest('hex')).toBe(sum);
    const refused = await spdyPortForward(session, 9, 100, Buffer.from('x'));
    expect(refused.error).toMatch(/error forwarding port 9 to pod .*Connection refused/);
    session.close();
    await c.runtime.RemoveContainer({ container_id: id });
  }, 90_000);

  it('counts every session out of berth_streams_active once it is over', async () => {
    const active = async (): Promise<string | undefined> => /^berth_streams_active (\S+)$/m.exec(await (await fetch(`http://127.0.0.1:${d.metricsPort}/metrics`)).text())?.[1];
    await until('no active stream', async () => ((await active()) === '0' ? true : undefined)).catch(async () => {
      process.stdout.write(d.logs().split('\n').filter((l) => l.includes('streaming')).join('\n'));
      expect(await active()).toBe('0');
    });
  });
});
