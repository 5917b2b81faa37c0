// CniNetwork over fake plugins (shell scripts that log each call and keep their stdin): call order, chaining, the
// cache across failures, restarts and config edits, CHECK/STATUS rules and the observer. The netns is the test's own
// (/proc/self/ns/net): the fakes never enter it.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { CniCommand } from '../../src/network/cni-exec';
import { CniNetwork, type CniPod } from '../../src/network/pod-network';
import { rejection } from '../helpers/rejection';

const NETNS = '/proc/self/ns/net';
let dir: string;
let bin: string;
let conf: string;
let calls: string;

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-cni-net-'));
  bin = path.join(dir, 'bin');
  conf = path.join(dir, 'conf');
  calls = path.join(dir, 'calls');
  fs.mkdirSync(bin);
  fs.mkdirSync(conf);
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** A plugin that logs "<COMMAND> <name>", keeps its stdin per command, then runs `tail` (default: ADD prints a result). */
function fake(name: string, tail = ''): void {
  const result = JSON.stringify({ cniVersion: '1.0.0', interfaces: [{ name: 'eth0', sandbox: NETNS }], ips: [{ interface: 0, address: `10.9.0.${name.length}/24` }] });
  const body = [
    `echo "$CNI_COMMAND ${name} netns=$CNI_NETNS" >> ${calls}`,
    `cat > ${dir}/${name}.$CNI_COMMAND.stdin`,
    tail,
    `[ "$CNI_COMMAND" = ADD ] && echo '${result}'`,
    'exit 0',
  ].join('\n');
  fs.writeFileSync(path.join(bin, name), `#!/bin/sh\n${body}\n`, { mode: 0o755 });
}
const failOn = (command: CniCommand, code = 7): string =>
  `[ "$CNI_COMMAND" = ${command} ] && { echo '{"code":${code},"msg":"${command.toLowerCase()} refused","details":"by design"}'; exit 1; }`;

const writeConf = (name: string, plugins: object[], extra: object = {}, file = '10-net.conflist'): void =>
  fs.writeFileSync(path.join(conf, file), JSON.stringify({ cniVersion: '1.0.0', name, plugins, ...extra }));
const log = (): string[] => (fs.existsSync(calls) ? fs.readFileSync(calls, 'utf8').trim().split('\n') : []);
const stdin = (name: string, command: CniCommand): Record<string, unknown> => JSON.parse(fs.readFileSync(path.join(dir, `${name}.${command}.stdin`), 'utf8')) as Record<string, unknown>;
const cacheFiles = (): string[] => (fs.existsSync(path.join(dir, 'cache')) ? fs.readdirSync(path.join(dir, 'cache')) : []);

const timings: [CniCommand, string, boolean][] = [];
function network(timeoutSeconds = 10): CniNetwork {
  return new CniNetwork({
    settings: () => ({ confDir: conf, pluginDirs: [bin], defaultNetwork: '', pluginTimeoutSeconds: timeoutSeconds }),
    cacheDir: path.join(dir, 'cache'),
    podCidr: () => '10.244.0.0/24',
    observer: { pluginDone: (op, plugin, seconds, ok) => (expect(seconds).toBeGreaterThan(0), timings.push([op, plugin, ok])) },
  });
}

const POD: CniPod = {
  id: 'f'.repeat(64),
  namespaces: { net: NETNS },
  config: {
    metadata: { name: 'p', namespace: 'ns', uid: 'uid-1', attempt: 0 },
    port_mappings: [{ protocol: 'TCP', container_port: 80, host_port: 8080, host_ip: '' }],
    annotations: {},
    dns_config: null,
  },
};


beforeEach(() => timings.splice(0));

it('ADDs in order with chained prevResult and declared capabilities, DELs in reverse with the cached result', async () => {
  fake('a');
  fake('bb');
  fake('ccc');
  writeConf('net', [{ type: 'a' }, { type: 'bb', capabilities: { portMappings: true, ipRanges: true } }, { type: 'ccc' }]);
  const net = network();
  await net.start();
  expect(await net.setUp(POD)).toEqual(['10.9.0.3']);
  expect(log()).toEqual(['ADD a netns=/proc/self/ns/net', 'ADD bb netns=/proc/self/ns/net', 'ADD ccc netns=/proc/self/ns/net']);
  expect(stdin('a', 'ADD')['prevResult']).toBeUndefined();
  expect(stdin('bb', 'ADD')).toMatchObject({
    name: 'net',
    cniVersion: '1.0.0',
    prevResult: { ips: [{ address: '10.9.0.1/24' }] },
    runtimeConfig: { portMappings: [{ hostPort: 8080, containerPort: 80, protocol: 'tcp' }], ipRanges: [[{ subnet: '10.244.0.0/24' }]] },
  });
  expect(stdin('ccc', 'ADD')['runtimeConfig']).toBeUndefined();
  expect(cacheFiles()).toEqual([`net-${POD.id}-eth0.json`]);
  expect(await net.check(POD)).toBe(true);
  expect(stdin('a', 'CHECK')['prevResult']).toMatchObject({ ips: [{ address: '10.9.0.3/24' }] });

  fs.writeFileSync(calls, '');
  await net.tearDown(POD);
  expect(log()).toEqual(['DEL ccc netns=/proc/self/ns/net', 'DEL bb netns=/proc/self/ns/net', 'DEL a netns=/proc/self/ns/net']);
  expect(stdin('a', 'DEL')['prevResult']).toMatchObject({ ips: [{ address: '10.9.0.3/24' }] });
  expect(stdin('bb', 'DEL')['runtimeConfig']).toMatchObject({ portMappings: [{ hostPort: 8080 }] });
  expect(cacheFiles()).toEqual([]);
  // Idempotent: nothing cached, nothing run.
  await net.tearDown(POD);
  expect(log()).toHaveLength(3);
  expect(timings.filter(([op]) => op === 'ADD')).toEqual([['ADD', 'a', true], ['ADD', 'bb', true], ['ADD', 'ccc', true]]);
  net.close();
});

it('undoes a half-finished ADD with DEL of every plugin (what is known as prevResult), then throws the ADD error', async () => {
  fake('a');
  fake('bb', failOn('ADD'));
  fake('ccc');
  writeConf('net', [{ type: 'a' }, { type: 'bb' }, { type: 'ccc' }]);
  const net = network();
  const err = await rejection(net.setUp(POD));
  expect(err.code).toBe('INTERNAL');
  expect(err.message).toBe(`CNI ADD of pod ${POD.id} to network net failed: CNI plugin bb (ADD) failed with CNI error 7: "add refused: by design"`);
  expect(log().map((l) => l.split(' netns')[0])).toEqual(['ADD a', 'ADD bb', 'DEL ccc', 'DEL bb', 'DEL a']);
  expect(stdin('ccc', 'DEL')['prevResult']).toMatchObject({ ips: [{ address: '10.9.0.1/24' }] });
  expect(cacheFiles()).toEqual([]);
  expect(timings).toContainEqual(['ADD', 'bb', false]);
  net.close();
});

it('hands the addresses to persist alongside the cache, and undoes the ADD when persisting fails', async () => {
  fake('a');
  fake('bb');
  writeConf('net', [{ type: 'a' }, { type: 'bb' }]);
  const net = network();
  const persisted: string[][] = [];
  expect(await net.setUp(POD, async (ips) => void persisted.push(ips))).toEqual(['10.9.0.2']);
  expect(persisted).toEqual([['10.9.0.2']]);
  await net.tearDown(POD);
  fs.writeFileSync(calls, '');
  const err = await rejection(net.setUp(POD, () => Promise.reject(new Error('checkpoint: no space left on device'))));
  expect(err.message).toBe(`CNI ADD of pod ${POD.id} to network net failed: checkpoint: no space left on device`);
  expect(log().map((l) => l.split(' netns')[0])).toEqual(['ADD a', 'ADD bb', 'DEL bb', 'DEL a']);
  expect(cacheFiles()).toEqual([]);
  net.close();
});

it('keeps the cache entry when the undoing DEL fails too, and a later tearDown finishes the job', async () => {
  fake('a');
  fake('bb', `${failOn('ADD')}\n[ -e ${dir}/del-ok ] || { ${failOn('DEL', 11)}; }`);
  writeConf('net', [{ type: 'a' }, { type: 'bb' }]);
  const net = network();
  const err = await rejection(net.setUp(POD));
  expect(err.message).toContain('(and the DEL to undo it failed, kept for a retry: CNI DEL on network net failed: CNI plugin bb (DEL) failed with CNI error 11');
  expect(log().map((l) => l.split(' netns')[0])).toEqual(['ADD a', 'ADD bb', 'DEL bb', 'DEL a']); // a's DEL still ran
  const cached = JSON.parse(fs.readFileSync(path.join(dir, 'cache', cacheFiles()[0] ?? ''), 'utf8')) as Record<string, unknown>;
  expect(cached).toMatchObject({ state: 'failed', completed: 1, result: { ips: [{ address: '10.9.0.1/24' }] } });
  expect((await rejection(net.tearDown(POD))).code).toBe('UNAVAILABLE');
  fs.writeFileSync(path.join(dir, 'del-ok'), '');
  await net.tearDown(POD);
  expect(cacheFiles()).toEqual([]);
  net.close();
});

it('DELs after a restart with the cached config, even when the config file changed or vanished', async () => {
  fake('a');
  fake('old');
  fake('new');
  writeConf('net', [{ type: 'a' }, { type: 'old', capabilities: { portMappings: true } }]);
  const first = network();
  await first.setUp(POD);
  first.close();
  writeConf('other', [{ type: 'new' }]);
  fs.writeFileSync(calls, '');
  const second = network(); // the restarted daemon: nothing in memory
  await second.start();
  await second.tearDown({ ...POD, namespaces: {} }); // the pod's pin is gone: DEL runs with the cached one
  expect(log()).toEqual(['DEL old netns=/proc/self/ns/net', 'DEL a netns=/proc/self/ns/net']);
  expect(stdin('old', 'DEL')).toMatchObject({ name: 'net', runtimeConfig: { portMappings: [{ hostPort: 8080 }] } });
  expect(cacheFiles()).toEqual([]);
  second.close();
});

it('has the attachment cached before the first plugin runs (a daemon killed mid-ADD can still DEL it)', async () => {
  const file = path.join(dir, 'cache', `net-${POD.id}-eth0.json`);
  // The first plugin snapshots the cache as it is while ADD runs: what a crash at that moment would leave.
  fake('a', `[ "$CNI_COMMAND" = ADD ] && cp ${file} ${dir}/mid-add.json`);
  fake('bb');
  writeConf('net', [{ type: 'a' }, { type: 'bb', capabilities: { portMappings: true } }]);
  const net = network();
  await net.setUp(POD);
  await net.tearDown(POD);
  const midAdd = JSON.parse(fs.readFileSync(path.join(dir, 'mid-add.json'), 'utf8')) as Record<string, unknown>;
  expect(midAdd).toMatchObject({ state: 'adding', completed: 0, result: null, capabilityArgs: { portMappings: [{ hostPort: 8080 }] } });
  fs.copyFileSync(path.join(dir, 'mid-add.json'), file); // the crash
  fs.writeFileSync(calls, '');
  const restarted = network();
  await restarted.tearDown(POD);
  expect(log().map((l) => l.split(' netns')[0])).toEqual(['DEL bb', 'DEL a']);
  expect(stdin('a', 'DEL')['prevResult']).toBeUndefined(); // nothing known yet: the spec's "clean up what you can"
  expect(stdin('bb', 'DEL')['runtimeConfig']).toMatchObject({ portMappings: [{ hostPort: 8080 }] });
  expect(cacheFiles()).toEqual([]);
  net.close();
  restarted.close();
});

it('passes an empty CNI_NETNS to DEL when no pin is left, and releases orphans at start-up', async () => {
  fake('a');
  writeConf('net', [{ type: 'a' }]);
  const net = network();
  const other = { ...POD, id: 'e'.repeat(64) };
  await net.setUp(POD);
  await net.setUp(other);
  for (const f of cacheFiles()) {
    const file = path.join(dir, 'cache', f);
    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(`"netns":"${NETNS}"`, `"netns":"${dir}/gone"`));
  }
  fs.writeFileSync(calls, '');
  const released = await net.releaseOrphans((id) => id === POD.id);
  expect(released).toEqual([{ podId: other.id, network: 'net' }]);
  expect(log()).toEqual(['DEL a netns=']);
  expect(cacheFiles()).toEqual([`net-${POD.id}-eth0.json`]);
  net.close();
});

it('falls back to the current config when a cache entry is unreadable', async () => {
  fake('a');
  writeConf('net', [{ type: 'a' }]);
  const net = network();
  await net.setUp(POD);
  fs.writeFileSync(path.join(dir, 'cache', `net-${POD.id}-eth0.json`), '{torn');
  fs.writeFileSync(calls, '');
  await net.tearDown(POD);
  expect(log()).toEqual(['DEL a netns=/proc/self/ns/net']);
  expect(cacheFiles()).toEqual([]);
  net.close();
});

it('refuses a cached plugin type that is a path (a tampered cache runs nothing)', async () => {
  fake('a');
  writeConf('net', [{ type: 'a' }]);
  const net = network();
  await net.setUp(POD);
  const file = path.join(dir, 'cache', `net-${POD.id}-eth0.json`);
  fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace('"type":"a"', '"type":"../../bin/true"'));
  fs.rmSync(path.join(conf, '10-net.conflist'));
  await net.watcher.refresh();
  const err = await rejection(net.tearDown(POD));
  expect(err.message).toContain('is unreadable');
  expect(err.message).toContain('not a plain binary name');
  net.close();
});

it('skips CHECK where the spec says so, and skips STATUS before CNI 1.1', async () => {
  fake('a');
  writeConf('net', [{ type: 'a' }], { cniVersion: '0.3.1' });
  const net = network();
  await net.setUp(POD);
  expect(await net.check(POD)).toBe(false);
  expect(await net.status()).toEqual({ ready: true, message: '' });
  fs.writeFileSync(calls, '');
  await net.tearDown(POD);
  expect(stdin('a', 'DEL')['prevResult']).toBeUndefined(); // 0.3.x: no prevResult on DEL
  writeConf('net', [{ type: 'a' }], { disableCheck: true });
  await net.watcher.refresh();
  await net.setUp(POD);
  expect(await net.check(POD)).toBe(false);
  expect(log().some((l) => l.startsWith('CHECK') || l.startsWith('STATUS'))).toBe(false);
  await net.tearDown(POD);
  net.close();
});

it('skips portmap CHECK only with port mappings and no IPv6 address (portmap 1.1.1 bug)', async () => {
  fake('a');
  fake('portmap');
  writeConf('net', [{ type: 'a' }, { type: 'portmap', capabilities: { portMappings: true } }]);
  const net = network();
  await net.setUp(POD);
  fs.writeFileSync(calls, '');
  expect(await net.check(POD)).toBe(true);
  expect(log()).toEqual(['CHECK a netns=/proc/self/ns/net']);
  await net.tearDown(POD);
  await net.setUp({ ...POD, config: { ...POD.config, port_mappings: [] } });
  fs.writeFileSync(calls, '');
  await net.check(POD);
  expect(log().map((l) => l.split(' netns')[0])).toEqual(['CHECK a', 'CHECK portmap']);
  await net.tearDown(POD);
  net.close();
});

it('reports a failed CHECK, and refuses CHECK without an attachment', async () => {
  fake('a', failOn('CHECK', 3));
  writeConf('net', [{ type: 'a' }]);
  const net = network();
  expect((await rejection(net.check(POD))).code).toBe('FAILED_PRECONDITION');
  await net.setUp(POD);
  expect((await rejection(net.check(POD))).message).toContain('CNI plugin a (CHECK) failed with CNI error 3: "check refused: by design"');
  await net.tearDown(POD);
  net.close();
});

it('refuses to start without a config, a netns, or valid pod fields, before running anything', async () => {
  fake('a');
  const net = network();
  const none = await rejection(net.setUp(POD));
  expect(none.code).toBe('UNAVAILABLE');
  expect(none.message).toContain(`pod network is not ready: no valid CNI network config found in ${conf}`);
  writeConf('net', [{ type: 'a' }]);
  expect((await rejection(net.setUp({ ...POD, namespaces: { net: path.join(dir, 'calls') } }))).code).toBe('FAILED_PRECONDITION');
  expect((await rejection(net.setUp({ ...POD, id: '-x' }))).code).toBe('INVALID_ARGUMENT');
  const badBw = { ...POD, config: { ...POD.config, annotations: { 'kubernetes.io/ingress-bandwidth': 'lots' } } };
  expect((await rejection(net.setUp(badBw))).code).toBe('INVALID_ARGUMENT');
  expect(log()).toEqual([]);
  expect(cacheFiles()).toEqual([]);
  net.close();
});

it('serialises calls for one pod and runs different pods concurrently', async () => {
  fake('slow', 'sleep 0.5');
  writeConf('net', [{ type: 'slow' }]);
  const net = network();
  const t0 = Date.now();
  await Promise.all([net.setUp(POD), net.setUp({ ...POD, id: 'e'.repeat(64) })]);
  const concurrent = Date.now() - t0;
  const t1 = Date.now();
  await Promise.all([net.tearDown(POD), net.check(POD).catch(() => false)]);
  const serial = Date.now() - t1;
  expect(concurrent).toBeLessThan(950);
  expect(serial).toBeGreaterThanOrEqual(500); // CHECK waited for DEL (and then found nothing cached)
  await net.tearDown({ ...POD, id: 'e'.repeat(64) });
  net.close();
});
