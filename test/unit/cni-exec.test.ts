// Running one CNI plugin: binary lookup, the exact env and stdin, error objects, garbage, timeouts, output limits.
// The plugins are small shell scripts in a temp dir.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { CniPluginError, findPlugin, runPlugin, type PluginRun } from '../../src/network/cni-exec';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-exec-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

function plugin(name: string, body: string, where = dir): string {
  const file = path.join(where, name);
  fs.writeFileSync(file, `#!/bin/sh\n${body}\n`, { mode: 0o755 });
  return file;
}

function run(binary: string, extra: Partial<PluginRun> = {}): Promise<unknown> {
  return runPlugin({
    command: 'ADD',
    type: path.basename(binary),
    binary,
    config: { cniVersion: '1.0.0', name: 'n', type: path.basename(binary) },
    containerId: 'c1',
    netns: '/run/netns/x',
    ifName: 'eth0',
    args: [['IgnoreUnknown', '1'], ['K8S_POD_NAME', 'p']],
    pluginDirs: [dir, '/usr/lib/cni'],
    timeoutMs: 5000,
    ...extra,
  });
}

async function failure(p: Promise<unknown>): Promise<CniPluginError> {
  try {
    await p;
  } catch (err) {
    if (err instanceof CniPluginError) return err;
    throw err;
  }
  throw new Error('expected a CniPluginError');
}

describe('findPlugin', () => {
  it('takes the first executable regular file named by the type, in dir order', async () => {
    const second = fs.mkdtempSync(path.join(dir, 'second-'));
    fs.writeFileSync(path.join(dir, 'noexec'), 'x', { mode: 0o644 });
    plugin('noexec', 'exit 0', second);
    fs.mkdirSync(path.join(dir, 'adir'));
    expect(await findPlugin('noexec', [dir, second])).toBe(path.join(second, 'noexec'));
    expect(await findPlugin('bridge', [dir, '/usr/lib/cni'])).toBe('/usr/lib/cni/bridge');
    const missing = await failure(findPlugin('adir', ['relative/dir', dir]));
    expect(missing.code).toBe('FAILED_PRECONDITION');
    expect(missing.message).toBe(`CNI plugin "adir" not found in relative/dir:${dir}`);
  });

  it.each([['../bin/sh'], ['/bin/sh'], ['a/b'], ['..'], ['']])('refuses the type %j', async (type) => {
    const err = await failure(findPlugin(type, ['/usr/bin']));
    expect(err.code).toBe('FAILED_PRECONDITION');
    expect(err.message).toContain('is not a plain binary name');
  });
});

describe('runPlugin', () => {
  it('passes exactly the CNI variables, a minimal PATH and the config on stdin; returns parsed stdout', async () => {
    process.env['BERTH_CNI_TEST_SECRET'] = 'leak';
    try {
      const p = plugin('rec', `env > ${dir}/env; cat > ${dir}/stdin; echo '{"cniVersion":"1.0.0","ips":[]}'`);
      expect(await run(p)).toEqual({ cniVersion: '1.0.0', ips: [] });
    } finally {
      delete process.env['BERTH_CNI_TEST_SECRET'];
    }
    const env = Object.fromEntries(
      fs.readFileSync(path.join(dir, 'env'), 'utf8').trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    );
    expect(env).toMatchObject({
      CNI_COMMAND: 'ADD',
      CNI_CONTAINERID: 'c1',
      CNI_NETNS: '/run/netns/x',
      CNI_IFNAME: 'eth0',
      CNI_ARGS: 'IgnoreUnknown=1;K8S_POD_NAME=p',
      CNI_PATH: `${dir}:/usr/lib/cni`,
      PATH: '/usr/sbin:/usr/bin:/sbin:/bin',
    });
    expect(env['BERTH_CNI_TEST_SECRET']).toBeUndefined();
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'stdin'), 'utf8'))).toEqual({ cniVersion: '1.0.0', name: 'n', type: 'rec' });
  });

  it('returns undefined for empty success output (DEL, CHECK)', async () => {
    expect(await run(plugin('quiet', 'cat >/dev/null'), { command: 'DEL' })).toBeUndefined();
  });

  it('carries a CNI error object: code, msg, details and stderr, naming the plugin', async () => {
    const p = plugin('erring', `echo 'bad things' >&2; echo '{"cniVersion":"1.0.0","code":7,"msg":"invalid network config","details":"bridge name too long"}'; exit 1`);
    const err = await failure(run(p));
    expect(err).toMatchObject({ code: 'INTERNAL', cniCode: 7, plugin: 'erring' });
    expect(err.message).toBe('CNI plugin erring (ADD) failed with CNI error 7: "invalid network config: bridge name too long"; stderr: "bad things"');
    // "Try again later" is the caller's to retry.
    const busy = await failure(run(plugin('busy', `echo '{"code":11,"msg":"busy"}'; exit 1`)));
    expect(busy).toMatchObject({ code: 'UNAVAILABLE', cniCode: 11 });
  });

  it('reports garbage: non-JSON success output, and a failure without an error object', async () => {
    const ok = await failure(run(plugin('garbage', `echo 'hello, I am not JSON'`)));
    expect(ok.code).toBe('INTERNAL');
    expect(ok.message).toBe('CNI plugin garbage (ADD) succeeded but its output is not JSON: "hello, I am not JSON"');
    const bad = await failure(run(plugin('crash', `echo 'panic: runtime error' >&2; echo 'partial'; exit 2`)));
    expect(bad.message).toBe('CNI plugin crash (ADD) failed (exit 2) without a CNI error object; stdout: "partial"; stderr: "panic: runtime error"');
    const killed = await failure(run(plugin('suicide', 'kill -9 $$')));
    expect(killed.message).toContain('failed (killed by SIGKILL)');
  });

  it('bounds what it keeps of stderr', async () => {
    const err = await failure(run(plugin('noisy', `head -c 200000 /dev/zero | tr '\\0' x >&2; echo END >&2; exit 3`)));
    expect(err.message.length).toBeLessThan(3000);
    expect(err.message).toMatch(/stderr: "…x+"$/);
  });

  it('kills a hanging plugin and everything it started, and says so', async () => {
    const p = plugin('hang', `sleep 1000 & echo $! > ${dir}/child; wait`);
    const t0 = Date.now();
    const err = await failure(run(p, { timeoutMs: 700 }));
    const took = Date.now() - t0;
    expect(err.code).toBe('DEADLINE_EXCEEDED');
    expect(err.message).toBe('plugin hang timed out after 0.7 s (ADD)');
    expect(took).toBeGreaterThanOrEqual(690);
    expect(took).toBeLessThan(3000);
    const child = Number(fs.readFileSync(path.join(dir, 'child'), 'utf8'));
    await new Promise((r) => setTimeout(r, 100));
    expect(fs.existsSync(`/proc/${child}`) && !/^\S+ \(.*\) Z/.test(fs.readFileSync(`/proc/${child}/stat`, 'utf8'))).toBe(false);
  });

  it('stops reading at 1 MiB of stdout', async () => {
    const err = await failure(run(plugin('flood', `head -c 3000000 /dev/zero`)));
    expect(err.message).toBe('CNI plugin flood (ADD) wrote more than 1048576 bytes to stdout');
  });

  it('does not mind a plugin that never reads its (large) stdin', async () => {
    const config = { cniVersion: '1.0.0', name: 'n', type: 'deaf', pad: 'x'.repeat(1 << 20) };
    expect(await run(plugin('deaf', `echo '{"cniVersion":"1.0.0"}'`), { config })).toEqual({ cniVersion: '1.0.0' });
  });

  it('passes no container variables to STATUS', async () => {
    const p = plugin('stat', `env > ${dir}/env; cat >/dev/null`);
    await run(p, { command: 'STATUS' });
    const env = fs.readFileSync(path.join(dir, 'env'), 'utf8');
    expect(env).toContain('CNI_COMMAND=STATUS');
    expect(env).not.toContain('CNI_CONTAINERID');
  });
});
