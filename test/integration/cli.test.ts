// The berth command line: printing the configuration, reading it back, and refusing bad configuration.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { packageRoot, packageVersion } from '../../src/common/package-root';
import { runBerth } from '../helpers/daemon';

describe('berth command line', () => {
  let dir: string;
  beforeEach(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cli-'));
    fs.mkdirSync(path.join(dir, 'd'));
  });
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('prints valid TOML that it accepts back unchanged', async () => {
    fs.writeFileSync(path.join(dir, 'in.toml'), 'log_level = "debug"\n[runtime.handlers.kata]\npath = "/usr/bin/kata-runtime"\n');
    const first = await runBerth(['config', '--config', path.join(dir, 'in.toml'), '--config-dir', path.join(dir, 'd'), '--network-cni-conf-dir', '/etc/cni/other']);
    expect(first).toMatchObject({ code: 0, stderr: '' });
    expect(first.stdout).toContain('[runtime.handlers.kata]');
    expect(first.stdout).toContain('cni_conf_dir = "/etc/cni/other"');
    fs.writeFileSync(path.join(dir, 'out.toml'), first.stdout);
    const second = await runBerth(['config', '--config', path.join(dir, 'out.toml'), '--config-dir', path.join(dir, 'd')]);
    expect(second.code).toBe(0);
    expect(second.stdout).toBe(first.stdout);
  });

  it('ships deploy/berth.toml as exactly the rendered defaults (npm run gen:config)', async () => {
    const defaults = await runBerth(['config', '--config', '/dev/null', '--config-dir', path.join(dir, 'd')]);
    expect(defaults.code).toBe(0);
    expect(fs.readFileSync(path.join(packageRoot(), 'deploy', 'berth.toml'), 'utf8')).toBe(defaults.stdout);
  });

  it.each([
    ['an unknown key', '[api]\nlisten = "/run/x.sock"\nlisen = "/tmp/y"\n', /in\.toml: key "api\.lisen": unknown key/],
    ['a bad value', '[image]\npull_parallelism = 0\n', /in\.toml: key "image\.pull_parallelism"/],
    ['a TOML syntax error', 'log_level = \n', /in\.toml/],
  ])('stops start-up on %s with one line and exit code 2', async (_what, toml, pattern) => {
    fs.writeFileSync(path.join(dir, 'in.toml'), toml);
    const res = await runBerth(['run', '--config', path.join(dir, 'in.toml'), '--config-dir', path.join(dir, 'd')]);
    expect(res.code).toBe(2);
    expect(res.stdout).toBe('');
    expect(res.stderr.trim().split('\n')).toHaveLength(1);
    expect(res.stderr).toMatch(pattern);
  });

  it('refuses an unknown flag and an explicit config file that does not exist', async () => {
    const flag = await runBerth(['run', '--no-such-flag', 'x']);
    expect(flag.code).toBe(2);
    expect(flag.stderr).toMatch(/no-such-flag/);
    const missing = await runBerth(['run', '--config', path.join(dir, 'absent.toml')]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('absent.toml');
  });

  it('prints its version and its usage', async () => {
    expect((await runBerth(['version'])).stdout).toBe(`berth ${packageVersion()}\n`);
    const help = await runBerth(['help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('--network-cni-conf-dir');
  });
});
