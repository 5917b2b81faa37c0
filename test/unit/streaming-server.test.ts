// The streaming server's protocols with a stand-in backend (the runtime side is tested through the daemon): SPDY and
// WebSocket exec/attach framing, statuses and exit codes, resize, tokens, and port-forward over real TCP.
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { Readable } from 'node:stream';
import { WebSocket } from 'ws';
import { createLogger } from '../../src/server/log';
import type { RemoteCommand } from '../../src/server/streaming/remote-command';
import { StreamingServer } from '../../src/server/streaming/server';
import { spdyCommand, spdyPortForward, upgradeSpdy, wsCommand } from '../helpers/stream-client';

const log = createLogger('silent');

async function waitUntil(check: () => boolean): Promise<void> {
  for (const deadline = Date.now() + 5000; !check(); await new Promise((r) => setTimeout(r, 10))) {
    if (Date.now() > deadline) throw new Error('timed out');
  }
}
let ttlMs = 60_000;

// cmd[0]: "echo" copies stdin to stdout; "exit" returns cmd[1]; "size" waits for a resize and prints it.
const fakeExec = (cmd: string[]): RemoteCommand => async (io) => {
  if (cmd[0] === 'exit') return { exitCode: Number(cmd[1]) };
  if (cmd[0] === 'size') {
    const size = await new Promise<{ width: number; height: number }>((resolve) => io.resizes.once('resize', resolve));
    io.stdout?.write(`${size.height} ${size.width}\n`);
    return { exitCode: 0 };
  }
  if (cmd[0] === 'fail') throw new Error('the runtime refused');
  io.stderr?.write('to stderr\n');
  if (io.stdin && io.stdout) {
    for await (const chunk of io.stdin) io.stdout.write(chunk as Buffer);
  }
  return { exitCode: 0 };
};

describe('streaming server', () => {
  let server: StreamingServer;
  let echo: net.Server;
  let echoPort = 0;

  beforeAll(async () => {
    echo = net.createServer((s) => s.pipe(s));
    await new Promise<void>((r) => echo.listen(0, '127.0.0.1', r));
    echoPort = (echo.address() as net.AddressInfo).port;
    server = await StreamingServer.start({
      address: '127.0.0.1',
      port: 0,
      tokenTtlMs: () => ttlMs,
      idleTimeoutMs: () => 60_000,
      log,
      backend: {
        exec: (req) => fakeExec(req.cmd),
        attach: () => fakeExec(['echo']),
        portForward: () => (port) => {
          const stream = net.connect(port === 1 ? 1 : echoPort, '127.0.0.1');
          const done = new Promise<void>((resolve, reject) => {
            stream.once('error', reject);
            stream.once('close', () => resolve());
          });
          return { stream, done };
        },
      },
    });
  });

  afterAll(async () => {
    await server.close();
    echo.close();
  });

  const execUrl = (cmd: string[], o: { tty?: boolean; stdin?: boolean } = {}): string =>
    server.url({ kind: 'exec', containerId: 'c1', cmd, tty: o.tty ?? false, stdin: o.stdin ?? false, stdout: true, stderr: !o.tty });

  it.each([['spdy', spdyCommand], ['websocket', wsCommand]] as const)('%s: pipes stdin to stdout, stderr apart, and reports success', async (_name, run) => {
    const r = await run(execUrl(['echo'], { stdin: true }), { stdin: Buffer.from('hello\n') });
    expect(r).toMatchObject({ stdout: 'hello\n', stderr: 'to stderr\n' });
    expect(JSON.parse(r.status)).toEqual({ metadata: {}, status: 'Success' });
  });

  it.each([['spdy', spdyCommand], ['websocket', wsCommand]] as const)('%s: reports exit code 3 as the kubelet does', async (_name, run) => {
    const r = await run(execUrl(['exit', '3']), {});
    expect(JSON.parse(r.status)).toMatchObject({ status: 'Failure', reason: 'NonZeroExitCode', details: { causes: [{ reason: 'ExitCode', message: '3' }] } });
  });

  it.each([['spdy', spdyCommand], ['websocket', wsCommand]] as const)('%s: delivers terminal resizes', async (_name, run) => {
    const r = await run(execUrl(['size'], { tty: true }), { tty: true, resize: { width: 132, height: 43 } });
    expect(r.stdout).toBe('43 132\n');
  });

  it('negotiates the client\'s preferred SPDY protocol, speaks plain-text errors before v4, and refuses unknown ones', async () => {
    expect((await spdyCommand(execUrl(['exit', '0']), { protocols: ['v5.channel.k8s.io', 'v4.channel.k8s.io'] })).protocol).toBe('v5.channel.k8s.io');
    const v3 = await spdyCommand(execUrl(['fail']), { protocols: ['v3.channel.k8s.io'] });
    expect(v3).toMatchObject({ protocol: 'v3.channel.k8s.io', status: 'the runtime refused' });
    const v4 = await spdyCommand(execUrl(['fail']), { protocols: ['v4.channel.k8s.io'] });
    expect(JSON.parse(v4.status)).toMatchObject({ status: 'Failure', reason: 'InternalError', message: expect.stringContaining('the runtime refused') });
    await expect(upgradeSpdy(execUrl(['exit', '0']), ['v9.channel.k8s.io'])).rejects.toMatchObject({ statusCode: 403 });
  });

  it('refuses a token used twice, an expired one and an unknown one', async () => {
    const url = execUrl(['exit', '0']);
    await spdyCommand(url);
    await expect(spdyCommand(url)).rejects.toMatchObject({ statusCode: 404 });
    ttlMs = 1;
    const stale = execUrl(['exit', '0']);
    ttlMs = 60_000;
    await new Promise((r) => setTimeout(r, 5));
    await expect(spdyCommand(stale)).rejects.toMatchObject({ statusCode: 404 });
    await expect(wsCommand(stale)).rejects.toThrow('404');
    await expect(spdyCommand(`http://127.0.0.1:${server.port}/exec/nope`)).rejects.toMatchObject({ statusCode: 404 });
  });

  it('port-forwards over SPDY: 10 concurrent connections and 50 MiB checksum-equal, a refused port as an error', async () => {
    const { session } = await upgradeSpdy(server.url({ kind: 'portforward', podId: 'p1', ports: [] }), ['portforward.k8s.io']);
    const results = await Promise.all(Array.from({ length: 10 }, (_, i) => spdyPortForward(session, 8080, i, Buffer.from(`conn ${i}`))));
    results.forEach((r, i) => expect(r).toEqual({ data: Buffer.from(`conn ${i}`), error: '' }));
    const big = randomBytes(50 * 1024 * 1024);
    const chunks = Array.from({ length: 50 }, (_, i) => big.subarray(i * 1024 * 1024, (i + 1) * 1024 * 1024));
    const r = await spdyPortForward(session, 8080, 100, Readable.from(chunks));
    expect(createHash('sha256').update(r.data).digest('hex')).toBe(createHash('sha256').update(big).digest('hex'));
    const refused = await spdyPortForward(session, 1, 101, Buffer.from('x'));
    expect(refused.error).toMatch(/error forwarding port 1 to pod p1: .*ECONNREFUSED/);
    session.close();
  }, 60_000);

  it('port-forwards over WebSocket: a port header on each channel, then data both ways', async () => {
    const url = `${server.url({ kind: 'portforward', podId: 'p1', ports: [] }).replace(/^http/, 'ws')}?port=8080`;
    const ws = new WebSocket(url, ['v4.channel.k8s.io']);
    const got: Buffer[] = [];
    ws.on('message', (d: Buffer) => got.push(d));
    await new Promise((r) => ws.once('open', r));
    await waitUntil(() => got.length >= 2);
    expect(got.slice(0, 2).map((b) => [...b])).toEqual([[0, 0x90, 0x1f], [1, 0x90, 0x1f]]);
    ws.send(Buffer.concat([Buffer.from([0]), Buffer.from('ping over ws')]));
    await waitUntil(() => Buffer.concat(got.slice(2).map((b) => b.subarray(1))).toString() === 'ping over ws');
    ws.close();
  });

  it('refuses port-forward to a port the request did not name', async () => {
    const { session } = await upgradeSpdy(server.url({ kind: 'portforward', podId: 'p1', ports: [8080] }), ['portforward.k8s.io']);
    expect((await spdyPortForward(session, 9090, 1, Buffer.from('x'))).error).toContain('port 9090 was not named');
    session.close();
  });
});
