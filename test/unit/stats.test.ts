// Stats readers over recorded files: test/fixtures/cgroup/v1 was copied from a real cgroup on this (hybrid, v1)
// host while a process wrote 20 MiB to /dev/shm and gzipped 30 MB (limit 256 MiB); v2 is written in the kernel's
// 6.x format (cpu.stat with the cpu controller on, memory.stat with every key).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BerthError } from '../../src/common/errors';
import { DiskUsage } from '../../src/storage/disk-usage';
import { packageRoot } from '../../src/common/package-root';
import { readCgroupStats, detectCgroupVersion } from '../../src/runtime/stats/cgroup-stats';
import { CgroupV1Files, parseCgroupV1 } from '../../src/runtime/stats/cgroup-v1';
import { CgroupV2Files, parseCgroupV2 } from '../../src/runtime/stats/cgroup-v2';
import { CpuRate } from '../../src/runtime/stats/cpu-rate';
import { parseNetDev, readPodNetStats } from '../../src/runtime/stats/net-stats';
import { UsageCache } from '../../src/runtime/stats/usage-cache';
import { rejection } from '../helpers/rejection';

const FIXTURES = path.join(packageRoot(), 'test', 'fixtures', 'cgroup');
const V1 = path.join(FIXTURES, 'v1');
const V2 = path.join(FIXTURES, 'v2');
const CG = '/berth-pod/ctr';
const T = 1_700_000_000_000_000_000n;

const read = (file: string): string => fs.readFileSync(file, 'utf8');

/** The BerthError `fn` throws. */
function thrown(fn: () => unknown): BerthError {
  try {
    fn();
  } catch (err) {
    if (err instanceof BerthError) return err;
    throw err;
  }
  throw new Error('expected a throw');
}
function v1Files(): CgroupV1Files {
  const dir = (c: string, f: string): string => read(path.join(V1, c, CG, f));
  return {
    'cpuacct.usage': dir('cpuacct', 'cpuacct.usage'),
    'memory.usage_in_bytes': dir('memory', 'memory.usage_in_bytes'),
    'memory.stat': dir('memory', 'memory.stat'),
    'memory.limit_in_bytes': dir('memory', 'memory.limit_in_bytes'),
    'memory.memsw.usage_in_bytes': dir('memory', 'memory.memsw.usage_in_bytes'),
    'memory.memsw.limit_in_bytes': dir('memory', 'memory.memsw.limit_in_bytes'),
    'pids.current': dir('pids', 'pids.current'),
  };
}
function v2Files(): CgroupV2Files {
  const names = ['cpu.stat', 'memory.current', 'memory.stat', 'memory.max', 'memory.swap.current', 'memory.swap.max', 'pids.current'] as const;
  return Object.fromEntries(names.map((n) => [n, read(path.join(V2, CG, n))]));
}

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'berth-stats-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('cgroup v1', () => {
  const RECORDED = {
    cpu: { usageCoreNs: 1932238471n },
    memory: {
      usageBytes: 52674560n,
      workingSetBytes: 52674560n - 30015488n, // − total_inactive_file: the shm pages (inactive_anon) stay in it
      rssBytes: 139264n,
      pageFaults: 1466n,
      majorPageFaults: 3n,
      limitBytes: 268435456n,
      availableBytes: 268435456n - (52674560n - 30015488n),
    },
    swap: { usageBytes: 0n }, // memsw = usage; memsw unlimited: no available
    pids: { current: 2n },
  };

  test('recorded files, through the reader with an injected root (detected as v1: no cgroup.controllers)', async () => {
    expect(await detectCgroupVersion(V1)).toBe(1);
    const before = BigInt(Date.now()) * 1_000_000n;
    const stats = await readCgroupStats(CG, { root: V1 });
    const { timestampNs, ...rest } = stats;
    expect(rest).toEqual(RECORDED);
    expect(timestampNs).toBeGreaterThanOrEqual(before - 1_000_000_000n);
    expect(timestampNs).toBeLessThan(before + 10_000_000_000n);
  });

  test('the pure parser gives the same', () => {
    expect(parseCgroupV1(v1Files(), T)).toEqual({ timestampNs: T, ...RECORDED });
  });

  test('hierarchical total_* win over this level alone; plain keys when there are no totals', () => {
    const stat = 'rss 1\ninactive_file 2\npgfault 3\npgmajfault 4\ntotal_rss 10\ntotal_inactive_file 20\ntotal_pgfault 30\ntotal_pgmajfault 40\n';
    const m = parseCgroupV1({ ...v1Files(), 'memory.usage_in_bytes': '100\n', 'memory.stat': stat }, T).memory;
    expect([m.rssBytes, m.workingSetBytes, m.pageFaults, m.majorPageFaults]).toEqual([10n, 80n, 30n, 40n]);
    const local = parseCgroupV1({ ...v1Files(), 'memory.usage_in_bytes': '100\n', 'memory.stat': 'rss 1\ninactive_file 2\npgfault 3\npgmajfault 4\n' }, T);
    expect([local.memory.rssBytes, local.memory.workingSetBytes, local.memory.pageFaults]).toEqual([1n, 98n, 3n]);
  });

  test('the kernel\'s "no limit" (PAGE_COUNTER_MAX pages, 4 KiB or 64 KiB) is unlimited: no limit, no available', () => {
    for (const huge of ['9223372036854771712\n', '9223372036854710272\n']) {
      const m = parseCgroupV1({ ...v1Files(), 'memory.limit_in_bytes': huge }, T).memory;
      expect(m.limitBytes).toBeUndefined();
      expect(m.availableBytes).toBeUndefined();
      expect('availableBytes' in m).toBe(false);
    }
  });

  test('working set and available are floored at 0', () => {
    const m = parseCgroupV1(
      { ...v1Files(), 'memory.usage_in_bytes': '4096\n', 'memory.stat': 'total_inactive_file 8192\n', 'memory.limit_in_bytes': '1024\n' },
      T,
    ).memory;
    expect(m.workingSetBytes).toBe(0n);
    expect(m.availableBytes).toBe(1024n);
    const over = parseCgroupV1({ ...v1Files(), 'memory.usage_in_bytes': '8192\n', 'memory.stat': 'total_inactive_file 0\n', 'memory.limit_in_bytes': '4096\n' }, T);
    expect(over.memory.availableBytes).toBe(0n);
  });

  test('swap is memsw − usage; available is what memsw allows beyond the memory limit', () => {
    const s = parseCgroupV1(
      {
        ...v1Files(),
        'memory.usage_in_bytes': '1000\n',
        'memory.limit_in_bytes': '4000\n',
        'memory.memsw.usage_in_bytes': '1500\n',
        'memory.memsw.limit_in_bytes': '6000\n',
      },
      T,
    ).swap;
    expect(s).toEqual({ usageBytes: 500n, availableBytes: 1500n }); // 6000 − 4000 − 500
    // Read a moment apart, memsw can trail usage: never negative.
    expect(parseCgroupV1({ ...v1Files(), 'memory.usage_in_bytes': '2000\n', 'memory.memsw.usage_in_bytes': '1500\n' }, T).swap?.usageBytes).toBe(0n);
  });

  test('optional files that are missing leave their fields out', () => {
    const files = v1Files();
    delete files['memory.memsw.usage_in_bytes'];
    delete files['memory.memsw.limit_in_bytes'];
    delete files['pids.current'];
    delete files['memory.limit_in_bytes'];
    const stats = parseCgroupV1(files, T);
    expect(Object.keys(stats).sort()).toEqual(['cpu', 'memory', 'timestampNs']);
    expect(Object.keys(stats.memory).sort()).toEqual(['majorPageFaults', 'pageFaults', 'rssBytes', 'usageBytes', 'workingSetBytes']);
  });

  test('memory.stat keys that are missing count as 0 (as cadvisor does)', () => {
    const m = parseCgroupV1({ ...v1Files(), 'memory.usage_in_bytes': '100\n', 'memory.stat': '' }, T).memory;
    expect(m).toMatchObject({ workingSetBytes: 100n, rssBytes: 0n, pageFaults: 0n, majorPageFaults: 0n });
  });

  test('a required file that is missing is NOT_FOUND naming it; through the reader, naming the cgroup', async () => {
    for (const file of ['cpuacct.usage', 'memory.usage_in_bytes', 'memory.stat'] as const) {
      const files = v1Files();
      delete files[file];
      expect(thrown(() => parseCgroupV1(files, T))).toMatchObject({ code: 'NOT_FOUND', message: `no ${file}` });
    }
    const err = await rejection(readCgroupStats('/berth-pod/gone', { root: V1 }));
    expect(err.code).toBe('NOT_FOUND');
    expect(err.message).toBe('cgroup /berth-pod/gone (v1): no cpuacct.usage');
  });

  test('garbage is an INTERNAL error naming the file, never a number', () => {
    const cases: [Partial<CgroupV1Files>, string][] = [
      [{ 'cpuacct.usage': 'abc\n' }, 'cpuacct.usage'],
      [{ 'cpuacct.usage': '-5\n' }, 'cpuacct.usage'],
      [{ 'cpuacct.usage': '' }, 'cpuacct.usage'],
      [{ 'memory.usage_in_bytes': '12 34\n' }, 'memory.usage_in_bytes'],
      [{ 'memory.stat': 'total_rss 12\ntotal_cache\n' }, 'memory.stat'],
      [{ 'memory.stat': 'total_rss 1.5\n' }, 'memory.stat'],
      [{ 'memory.limit_in_bytes': 'max\n' }, 'memory.limit_in_bytes'],
      [{ 'pids.current': '\0\0' }, 'pids.current'],
    ];
    for (const [bad, file] of cases) {
      const err = thrown(() => parseCgroupV1({ ...v1Files(), ...bad }, T));
      expect(err.code).toBe('INTERNAL');
      expect(err.message).toContain(`${file} is not in the kernel's format`);
    }
  });

  test('the reader: an unreadable file is a typed error, a path that leaves the hierarchy is refused', async () => {
    const root = path.join(tmp, 'root');
    for (const c of ['cpuacct', 'memory', 'pids']) fs.cpSync(path.join(V1, c), path.join(root, c), { recursive: true });
    fs.rmSync(path.join(root, 'memory', CG, 'memory.stat'));
    fs.mkdirSync(path.join(root, 'memory', CG, 'memory.stat')); // EISDIR
    const err = await rejection(readCgroupStats(CG, { root }));
    expect(err.code).toBe('INTERNAL');
    expect(err.message).toMatch(/^cgroup \/berth-pod\/ctr \(v1\): reading .*memory\.stat: .*EISDIR/);
    for (const bad of ['/', '', '/../etc', 'a/../../b']) {
      expect((await rejection(readCgroupStats(bad, { root }))).code).toBe('INVALID_ARGUMENT');
    }
  });
});

describe('cgroup v2', () => {
  const RECORDED = {
    cpu: { usageCoreNs: 8734212000n }, // usage_usec × 1000
    memory: {
      usageBytes: 50262016n,
      workingSetBytes: 50262016n - 12619776n,
      rssBytes: 31195136n, // anon
      pageFaults: 21877n,
      majorPageFaults: 112n,
      limitBytes: 134217728n,
      availableBytes: 134217728n - (50262016n - 12619776n),
    },
    swap: { usageBytes: 0n }, // memory.swap.max is "max"
    pids: { current: 7n },
  };

  test('recorded files, through the reader (detected as v2 by cgroup.controllers at the root)', async () => {
    expect(await detectCgroupVersion(V2)).toBe(2);
    const { timestampNs, ...rest } = await readCgroupStats(CG, { root: V2 });
    expect(rest).toEqual(RECORDED);
    expect(timestampNs).toBeGreaterThan(0n);
    expect(parseCgroupV2(v2Files(), T)).toEqual({ timestampNs: T, ...RECORDED });
  });

  test('"max" is unlimited; a swap limit gives swap available', () => {
    const stats = parseCgroupV2({ ...v2Files(), 'memory.max': 'max\n', 'memory.swap.current': '4096\n', 'memory.swap.max': '1048576\n' }, T);
    expect(stats.memory.limitBytes).toBeUndefined();
    expect('availableBytes' in stats.memory).toBe(false);
    expect(stats.swap).toEqual({ usageBytes: 4096n, availableBytes: 1048576n - 4096n });
  });

  test('working set floored at 0; missing optional files leave fields out', () => {
    const files: CgroupV2Files = { ...v2Files(), 'memory.current': '10\n' };
    delete files['memory.max'];
    delete files['memory.swap.current'];
    delete files['memory.swap.max'];
    delete files['pids.current'];
    const stats = parseCgroupV2(files, T);
    expect(stats.memory.workingSetBytes).toBe(0n);
    expect(Object.keys(stats).sort()).toEqual(['cpu', 'memory', 'timestampNs']);
    expect('limitBytes' in stats.memory).toBe(false);
  });

  test('missing required files are NOT_FOUND, garbage INTERNAL', async () => {
    for (const file of ['cpu.stat', 'memory.current', 'memory.stat'] as const) {
      const files = v2Files();
      delete files[file];
      expect(thrown(() => parseCgroupV2(files, T))).toMatchObject({ code: 'NOT_FOUND', message: `no ${file}` });
    }
    const cases: [Partial<CgroupV2Files>, string][] = [
      [{ 'cpu.stat': 'user_usec 5\nsystem_usec 6\n' }, 'cpu.stat'], // no usage_usec
      [{ 'cpu.stat': 'usage_usec five\n' }, 'cpu.stat'],
      [{ 'memory.max': 'unlimited\n' }, 'memory.max'],
      [{ 'memory.swap.max': '-1\n' }, 'memory.swap.max'],
      [{ 'memory.stat': 'anon 1 2\n' }, 'memory.stat'],
    ];
    for (const [bad, file] of cases) {
      const err = thrown(() => parseCgroupV2({ ...v2Files(), ...bad }, T));
      expect(err.code).toBe('INTERNAL');
      expect(err.message).toContain(`${file} is not in the kernel's format`);
    }
    const err = await rejection(readCgroupStats('/berth-pod/gone', { root: V2 }));
    expect(err.message).toBe('cgroup /berth-pod/gone (v2): no cpu.stat');
    expect(err.code).toBe('NOT_FOUND');
  });

  test('an explicit version overrides detection', async () => {
    const err = await rejection(readCgroupStats(CG, { root: V2, version: 1 }));
    expect(err.message).toBe('cgroup /berth-pod/ctr (v1): no cpuacct.usage');
  });
});

describe('CpuRate', () => {
  const S = 1_000_000_000n;

  test('nano-cores from successive samples, undefined for the first', () => {
    const r = new CpuRate();
    expect(r.sample('a', 5n * S, T)).toBeUndefined();
    expect(r.sample('a', 5n * S + S / 2n, T + 2n * S)).toBe(250_000_000n); // 0.5 s of CPU over 2 s = 0.25 core
    expect(r.sample('a', 5n * S + S / 2n + 3n * S, T + 3n * S)).toBe(3_000_000_000n); // 3 cores
    expect(r.sample('b', 0n, T + 3n * S)).toBeUndefined(); // keys are independent
  });

  test('bigint-safe far beyond 2^53', () => {
    const r = new CpuRate();
    const big = 2n ** 62n;
    r.sample('a', big, T);
    expect(r.sample('a', big + 123_456_789_012_345n, T + 100n * S)).toBe(1_234_567_890_123n);
  });

  test('no time passed: undefined, and the earlier sample stays the base', () => {
    const r = new CpuRate();
    r.sample('a', 0n, T);
    expect(r.sample('a', S, T)).toBeUndefined();
    expect(r.sample('a', S, T - S)).toBeUndefined();
    expect(r.sample('a', S, T + S)).toBe(S);
  });

  test('a counter that went down (a new cgroup under the key) starts over', () => {
    const r = new CpuRate();
    r.sample('a', 10n * S, T);
    expect(r.sample('a', S, T + S)).toBeUndefined();
    expect(r.sample('a', 2n * S, T + 2n * S)).toBe(S);
  });

  test('forget(), keys not sampled within the ttl, and the key cap', () => {
    const r = new CpuRate({ ttlNs: 60n * S, maxKeys: 3 });
    r.sample('a', 0n, T);
    r.forget('a');
    expect(r.sample('a', S, T + S)).toBeUndefined();
    r.sample('b', 0n, T + 30n * S);
    r.sample('c', 0n, T + 100n * S); // a (last at T+1s) is now 99 s old: gone; b (70 s) too
    expect(r.size).toBe(1);
    expect(r.sample('a', 2n * S, T + 100n * S)).toBeUndefined();
    r.sample('d', 0n, T + 100n * S);
    r.sample('e', 0n, T + 100n * S); // 4 keys > 3: the least recently sampled (c) goes
    expect(r.size).toBe(3);
    expect(r.sample('c', S, T + 101n * S)).toBeUndefined();
    expect(r.sample('e', S, T + 101n * S)).toBe(S);
  });
});

describe('/proc/net/dev', () => {
  // Two header lines; a long name and a wide count run into the colon; lo first, as the kernel lists it.
  const NET_DEV = [
    'Inter-|   Receive                                                |  Transmit',
    ' face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed',
    '    lo:    4536      54    0    0    0     0          0         0     4536      54    0    0    0     0       0          0',
    '  eth0: 98765432   61234    3   17    0     0          0        12  4567890   30123    1    0    0     0       0          0',
    'veth1a2b3c4d:18446744073709551615 9007199254740993    0    0    0     0          0         0 9007199254740993   12    7    0    0     0       0          0',
    '  wg0:       0       0    0    0    0     0          0         0        0       0    0    0    0     0       0          0',
    '',
  ].join('\n');

  test('every interface, with bigint counters', () => {
    expect(parseNetDev(NET_DEV)).toEqual([
      { name: 'lo', rxBytes: 4536n, rxErrors: 0n, txBytes: 4536n, txErrors: 0n },
      { name: 'eth0', rxBytes: 98765432n, rxErrors: 3n, txBytes: 4567890n, txErrors: 1n },
      { name: 'veth1a2b3c4d', rxBytes: 18446744073709551615n, rxErrors: 0n, txBytes: 9007199254740993n, txErrors: 7n },
      { name: 'wg0', rxBytes: 0n, rxErrors: 0n, txBytes: 0n, txErrors: 0n },
    ]);
    expect(parseNetDev(NET_DEV.split('\n').slice(0, 2).join('\n'))).toEqual([]);
  });

  test('a line in another shape is an INTERNAL error', () => {
    for (const line of ['  eth0 1 2 3', '  eth0: 1 2 3', `  eth0: ${'1 '.repeat(15)}x`, `: ${'1 '.repeat(16)}`]) {
      expect(thrown(() => parseNetDev(`${NET_DEV}${line}\n`)).code).toBe('INTERNAL');
    }
  });

  test('this host: a pid alone reads its namespace; nothing, a bad pid or a missing netns file is refused', async () => {
    const own = await readPodNetStats({ pid: process.pid });
    expect(own.source).toBe('pid');
    expect(own.interfaces.map((i) => i.name)).not.toContain('lo');
    expect((await rejection(readPodNetStats({}))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(readPodNetStats({ pid: -1 }))).code).toBe('INVALID_ARGUMENT');
    expect((await rejection(readPodNetStats({ pid: 2 ** 22 + 1 }))).code).toBe('NOT_FOUND'); // above pid_max
    expect((await rejection(readPodNetStats({ pid: process.pid, netnsPath: path.join(tmp, 'none') }))).code).toBe('NOT_FOUND');
  });
});

describe('UsageCache', () => {
  const usage = (bytes: number): DiskUsage => ({ bytes: BigInt(bytes), inodes: 1n });

  test('reuses a young result, measures again once it is old, and shares one walk between concurrent callers', async () => {
    let now = 0;
    let walks = 0;
    let release: (() => void) | undefined;
    const cache = new UsageCache({
      maxAgeMs: 10_000,
      now: () => now,
      measure: async () => {
        walks++;
        await new Promise<void>((r) => (release = r));
        return usage(walks);
      },
    });
    const a = cache.get('/d');
    const b = cache.get('/d');
    await new Promise((r) => setImmediate(r));
    release?.();
    expect(await a).toEqual(usage(1));
    expect(await b).toEqual(usage(1));
    expect(walks).toBe(1);
    now = 9_999;
    expect(await cache.get('/d')).toEqual(usage(1));
    now = 10_000;
    const c = cache.get('/d');
    await new Promise((r) => setImmediate(r));
    release?.();
    expect(await c).toEqual(usage(2));
    cache.forget('/d');
    expect(cache.size).toBe(0);
  });

  test('failures are not cached; old entries do not pile up', async () => {
    let now = 0;
    let fail = true;
    const cache = new UsageCache({
      maxAgeMs: 1_000,
      now: () => now,
      measure: async (dir) => {
        if (fail) throw new Error('EIO');
        return usage(dir.length);
      },
    });
    await expect(cache.get('/x')).rejects.toThrow('EIO');
    fail = false;
    expect(await cache.get('/x')).toEqual(usage(2));
    for (let i = 0; i < 50; i++) await cache.get(`/dir${i}`);
    expect(cache.size).toBe(51);
    now = 5_000;
    await cache.get('/y');
    expect(cache.size).toBe(1);
  });

  test('the real walker by default', async () => {
    fs.writeFileSync(path.join(tmp, 'f'), Buffer.alloc(64 * 1024, 1));
    const got = await new UsageCache().get(tmp);
    expect(got.inodes).toBe(2n);
    expect(got.bytes).toBeGreaterThanOrEqual(64n * 1024n);
  });
});
