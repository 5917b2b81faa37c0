// CNI config loading (file choice, .conf → list, validation) and the conf dir watcher.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { compareVersions, findNetworkConfig, pluginCapabilities, readNetworkConfig } from '../../src/network/cni-config';
import { NetworkConfigWatcher } from '../../src/network/cni-watch';
import type { NetworkLookup } from '../../src/network/cni-config';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-config-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const list = (name: string, extra: object = {}): string =>
  JSON.stringify({ cniVersion: '1.0.0', name, plugins: [{ type: 'bridge' }, { type: 'portmap', capabilities: { portMappings: true } }], ...extra });
const write = (name: string, text: string): void => fs.writeFileSync(path.join(dir, name), text);

describe('findNetworkConfig', () => {
  it('takes the first valid file by lexical name among .conflist, .conf and .json, skipping other extensions', async () => {
    write('30-c.conflist', list('c'));
    write('20-b.conf', JSON.stringify({ cniVersion: '0.4.0', name: 'b', type: 'ptp', ipam: { type: 'host-local' } }));
    write('05-a.txt', list('a'));
    const found = await findNetworkConfig(dir, '');
    expect(found).toMatchObject({ ok: true, network: { name: 'b', cniVersion: '0.4.0', disableCheck: false, file: path.join(dir, '20-b.conf') } });
    if (!found.ok) throw new Error('unreachable');
    // A .conf is a list of one, its own object unchanged.
    expect(found.network.plugins).toEqual([{ cniVersion: '0.4.0', name: 'b', type: 'ptp', ipam: { type: 'host-local' } }]);
  });

  it('picks the configured network by name and reports why others were skipped', async () => {
    write('10-a.conflist', list('a'));
    write('20-b.json', list('b', { disableCheck: true }));
    write('05-bad.conflist', '{not json');
    expect(await findNetworkConfig(dir, 'b')).toMatchObject({ ok: true, network: { name: 'b', disableCheck: true } });
    const miss = await findNetworkConfig(dir, 'zzz');
    expect(miss.ok).toBe(false);
    if (miss.ok) throw new Error('unreachable');
    expect(miss.message).toContain('no valid network "zzz" found in');
    expect(miss.message).toContain('05-bad.conflist: not valid JSON');
  });

  it('names a missing dir in its message', async () => {
    const res = await findNetworkConfig(path.join(dir, 'nope'), '');
    expect(res).toEqual({ ok: false, message: expect.stringContaining(`no CNI network config in ${path.join(dir, 'nope')}`) });
  });

  it.each([
    ['no name', { cniVersion: '1.0.0', plugins: [{ type: 'bridge' }] }, 'missing "name"'],
    ['a name unsafe in a file name', { cniVersion: '1.0.0', name: '../x', plugins: [{ type: 'bridge' }] }, 'network name "../x"'],
    ['no cniVersion', { name: 'n', plugins: [{ type: 'bridge' }] }, 'missing "cniVersion"'],
    ['an unsupported cniVersion', { cniVersion: '0.2.0', name: 'n', plugins: [{ type: 'bridge' }] }, 'cniVersion "0.2.0" is not supported'],
    ['CNI 1.1 (not spoken yet)', { cniVersion: '1.1.0', name: 'n', plugins: [{ type: 'bridge' }] }, 'cniVersion "1.1.0" is not supported'],
    ['an empty plugin list', { cniVersion: '1.0.0', name: 'n', plugins: [] }, 'non-empty list'],
    ['a plugin without type', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'bridge' }, {}] }, 'plugins[1] has no "type"'],
    ['a type with a slash', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: '/bin/sh' }] }, 'plugin type "/bin/sh" is not a plain binary name'],
    ['a type with ..', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: '..' }] }, 'plugin type ".." is not a plain binary name'],
    ['a type that is a dotted escape', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'a..b' }] }, 'plugin type "a..b"'],
    ['capabilities that are not an object', { cniVersion: '1.0.0', name: 'n', plugins: [{ type: 'x', capabilities: ['portMappings'] }] }, '"capabilities" must be an object'],
    ['disableCheck not boolean', { cniVersion: '1.0.0', name: 'n', disableCheck: 'yes', plugins: [{ type: 'x' }] }, '"disableCheck" must be a boolean'],
  ])('rejects a config with %s', async (_what, config, message) => {
    write('10.conflist', JSON.stringify(config));
    await expect(readNetworkConfig(path.join(dir, '10.conflist'))).rejects.toThrow(message);
  });

  it('rejects a .conf without type, and a directory named like a config', async () => {
    write('10.conf', JSON.stringify({ cniVersion: '1.0.0', name: 'n' }));
    fs.mkdirSync(path.join(dir, '20.conflist'));
    const res = await findNetworkConfig(dir, '');
    expect(res.ok).toBe(false);
    if (res.ok) throw new Error('unreachable');
    expect(res.message).toContain('10.conf: the config has no "type"');
    expect(res.message).toMatch(/20\.conflist: .*(not a regular file|EISDIR)/);
  });

  it('reads declared capabilities and compares versions numerically', () => {
    expect([...pluginCapabilities({ type: 'x', capabilities: { portMappings: true, bandwidth: false, dns: true } })]).toEqual(['portMappings', 'dns']);
    expect([...pluginCapabilities({ type: 'x' })]).toEqual([]);
    expect(compareVersions('0.3.1', '0.4.0')).toBeLessThan(0);
    expect(compareVersions('1.0.0', '0.4.0')).toBeGreaterThan(0);
    expect(compareVersions('1.10.0', '1.9.0')).toBeGreaterThan(0);
    expect(compareVersions('1.0', '1.0.0')).toBe(0);
  });
});

describe('NetworkConfigWatcher', () => {
  const waitFor = async (cond: () => boolean, ms = 5000): Promise<void> => {
    const deadline = Date.now() + ms;
    while (!cond()) {
      if (Date.now() > deadline) throw new Error('condition not met in time');
      await new Promise((r) => setTimeout(r, 20));
    }
  };

  it('picks up a config added, changed and removed after start (debounced), without any call', async () => {
    const changes: NetworkLookup[] = [];
    const w = new NetworkConfigWatcher(() => ({ confDir: dir, defaultNetwork: '' }), { debounceMs: 50, onChange: (l) => changes.push(l) });
    try {
      expect((await w.start()).ok).toBe(false);
      const t0 = Date.now();
      write('10-a.conflist', list('a'));
      await waitFor(() => w.current()?.ok === true);
      const pickedUpMs = Date.now() - t0;
      expect(w.current()).toMatchObject({ ok: true, network: { name: 'a' } });
      // Several quick writes are one reload.
      const before = changes.length;
      for (let i = 0; i < 5; i++) write('10-a.conflist', list('a', { disableCheck: i % 2 === 0 }));
      await waitFor(() => w.current()?.ok === true && (w.current() as { network: { disableCheck: boolean } }).network.disableCheck);
      expect(changes.length - before).toBeLessThanOrEqual(2);
      write('05-first.conflist', list('first'));
      await waitFor(() => w.current()?.ok === true && (w.current() as { network: { name: string } }).network.name === 'first');
      fs.rmSync(path.join(dir, '05-first.conflist'));
      fs.rmSync(path.join(dir, '10-a.conflist'));
      await waitFor(() => w.current()?.ok === false);
      expect(pickedUpMs).toBeLessThan(2000);
    } finally {
      w.close();
    }
  });

  it('watches a conf dir that appears (or is replaced) after start, and re-checks on demand', async () => {
    const conf = path.join(dir, 'net.d');
    const w = new NetworkConfigWatcher(() => ({ confDir: conf, defaultNetwork: '' }), { debounceMs: 30, retryMs: 100 });
    try {
      expect((await w.start()).ok).toBe(false);
      fs.mkdirSync(conf);
      fs.writeFileSync(path.join(conf, '10.conflist'), list('late'));
      await waitFor(() => w.current()?.ok === true); // found by the retry timer, then watched
      fs.rmSync(conf, { recursive: true });
      await waitFor(() => w.current()?.ok === false);
      fs.mkdirSync(conf);
      fs.writeFileSync(path.join(conf, '10.conflist'), list('again'));
      await waitFor(() => w.current()?.ok === true && (w.current() as { network: { name: string } }).network.name === 'again');
      // get() returns the loaded config without a read while valid, and re-reads when it is not.
      expect(await w.get()).toMatchObject({ ok: true, network: { name: 'again' } });
    } finally {
      w.close();
    }
  });

  it('follows a changed conf dir setting on the next get()', async () => {
    const other = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-config-other-'));
    let confDir = dir;
    const w = new NetworkConfigWatcher(() => ({ confDir, defaultNetwork: '' }), { debounceMs: 30 });
    try {
      write('10.conflist', list('here'));
      fs.writeFileSync(path.join(other, '10.conflist'), list('there'));
      expect(await w.start()).toMatchObject({ ok: true, network: { name: 'here' } });
      confDir = other;
      expect(await w.get()).toMatchObject({ ok: true, network: { name: 'there' } });
      fs.writeFileSync(path.join(other, '01.conflist'), list('there2'));
      await waitFor(() => (w.current() as { network?: { name: string } }).network?.name === 'there2');
    } finally {
      w.close();
      fs.rmSync(other, { recursive: true, force: true });
    }
  });
});
